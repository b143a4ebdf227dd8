"""Time from clicking "Train & requery" to every new card painted in a real browser, on the offline bundle.

What a person feels: the click, the request through Gradio's queue, labelling + training + re-query, the thumbnails,
the transfer, and the browser drawing the new cards. Measured in the page itself: ``performance.now()`` at the
click, then every animation frame until every card shows an image of the new batch, every image is decoded
(``img.decode()``), and the round counter has moved; then one more frame, so the cards have been painted. Playwright's
own round trips are not counted. Each round labels the batch first (one "it", the rest "not it"), as a person would,
so the labels grow by a batch a round.

    python -m benchmarks.browser_round_trip --rounds 20
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Runs in the page: click Train, then resolve with the milliseconds until the new batch is painted.
MEASURE_JS = """
async (round) => {
  const cards = () => [...document.querySelectorAll('.ct-card')];
  const before = new Set(cards().map(c => c.dataset.id));
  const start = performance.now();
  document.querySelector('.ct-train').click();
  await new Promise(resolve => {
    const check = () => {
      const now = cards();
      const fresh = now.length > 0 && now.every(c => !before.has(c.dataset.id));
      const moved = document.querySelector('.ct-stats').innerText.startsWith(`Round ${round} `);
      if (fresh && moved) resolve(); else requestAnimationFrame(check);
    };
    requestAnimationFrame(check);
  });
  await Promise.all(cards().map(c => c.querySelector('img').decode()));
  await new Promise(resolve => requestAnimationFrame(() => resolve()));
  return performance.now() - start;
}
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds (after one warm-up round)")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    import app
    from benchmarks.machine import machine_line, today
    from tests.helpers.browser import CHROMIUM_ARGS  # one list of the flags this machine's Chromium needs
    from trainer.config import Settings
    from trainer.workspace import WorkspaceLoader, load_workspace

    settings = Settings.from_env(environ={}, source="bundle")  # the app's own cache: a second run starts at once
    loader = WorkspaceLoader(lambda progress: load_workspace(settings, progress)).start()
    loader.wait()
    demo = app.build_demo(loader)
    demo.queue(default_concurrency_limit=settings.concurrency)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **app.LAUNCH_KWARGS)
    timings: list[float] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(url)
            page.wait_for_function("document.querySelector('#status')?.innerText.includes('ready in')")
            prompt = page.locator("#prompt textarea, #prompt input").first
            prompt.fill("a small red circle on stripes")
            prompt.press("Enter")
            page.wait_for_function("document.querySelectorAll('.ct-card').length > 0")
            for round_ in range(2, args.rounds + 3):
                page.locator(".ct-card .ct-yes").first.click()
                page.locator(".ct-rest").click()
                elapsed = page.evaluate(MEASURE_JS, round_)
                if round_ > 2:  # the first round warms caches: not timed
                    timings.append(elapsed)
            browser.close()
    finally:
        demo.close()
    timings.sort()
    p95 = timings[min(len(timings) - 1, round(0.95 * (len(timings) - 1)))]
    print(f"{today()}; {machine_line()}")
    print(
        f"{len(timings)} rounds (10 to {10 * (args.rounds + 1)} labels): median {statistics.median(timings):.0f} ms, "
        f"p95 {p95:.0f} ms, min {timings[0]:.0f} ms, max {timings[-1]:.0f} ms (target: median <= 150, p95 <= 300)"
    )


if __name__ == "__main__":
    main()
