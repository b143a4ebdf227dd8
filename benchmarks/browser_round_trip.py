"""Time from clicking "Train & requery" to the next batch rendered in a real browser, on the offline bundle.

What a person feels: the click, the request through Gradio's queue, labelling + training + re-query, thumbnail
encoding, the transfer, and the browser swapping the images and the round counter. Measured in the page itself
(performance.now() at the click, then polling every animation frame until every visible cell shows an image it
did not show before and the round counter has moved), so Playwright's own round trips are not counted.

    python -m benchmarks.browser_round_trip --rounds 15
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# Runs in the page: click Train, then resolve with the milliseconds until the new batch is on screen.
MEASURE_JS = """
async (round) => {
  const sources = () => [...document.querySelectorAll('.ct-cell img')].map(i => i.getAttribute('src'));
  const before = new Set(sources());
  const start = performance.now();
  document.querySelector('#train').click();
  return await new Promise(resolve => {
    const check = () => {
      const now = sources();
      const fresh = now.length > 0 && now.every(s => s && !before.has(s));
      const moved = document.querySelector('#stats').innerText.includes(`Round ${round}`);
      if (fresh && moved) resolve(performance.now() - start); else requestAnimationFrame(check);
    };
    requestAnimationFrame(check);
  });
}
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds (after one warm-up round)")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args(argv)

    import tempfile

    from playwright.sync_api import sync_playwright

    import app
    from tests.helpers.browser import CHROMIUM_ARGS  # one list of the flags this machine's Chromium needs
    from trainer.config import Settings
    from trainer.workspace import WorkspaceLoader, load_workspace

    settings = Settings.from_env(environ={}, source="bundle", cache_dir=Path(tempfile.mkdtemp()))
    loader = WorkspaceLoader(lambda progress: load_workspace(settings, progress)).start()
    loader.wait()
    demo = app.build_demo(loader)
    demo.queue(default_concurrency_limit=4)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **app.LAUNCH_KWARGS)
    timings: list[float] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(url)
            page.wait_for_function("document.querySelector('#status')?.innerText.includes('images')")
            if args.batch_size != 10:
                page.get_by_text("More: negative prompt").click()
            page.locator("#prompt textarea, #prompt input").first.fill("a small red circle on stripes")
            page.click("#search")
            page.wait_for_function("document.querySelector('#stats')?.innerText.includes('Round 1')")
            page.wait_for_function("document.querySelectorAll('.ct-cell img').length >= 10")
            for round_ in range(2, args.rounds + 3):
                page.click("#mark-rest")  # every round labels the whole batch "not it", as a labeller would
                page.wait_for_timeout(150)
                elapsed = page.evaluate(MEASURE_JS, round_)
                if round_ > 2:  # the first round warms caches: not timed
                    timings.append(elapsed)
            browser.close()
    finally:
        demo.close()
    timings.sort()
    p95 = timings[min(len(timings) - 1, round(0.95 * (len(timings) - 1)))]
    load = os.getloadavg()[0]
    print(
        f"{len(timings)} rounds: median {statistics.median(timings):.0f} ms, p95 {p95:.0f} ms, "
        f"min {timings[0]:.0f} ms, max {timings[-1]:.0f} ms (target < 300 ms)"
    )
    print("| date | machine | load avg | rounds | median | p95 | min | max |")
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {date.today()} | {os.cpu_count()}-core {platform.machine()}, Chromium headless | {load:.1f} | "
        f"{len(timings)} | {statistics.median(timings):.0f} ms | {p95:.0f} ms | {timings[0]:.0f} ms | "
        f"{timings[-1]:.0f} ms |"
    )
    time.sleep(0.1)


if __name__ == "__main__":
    main()
