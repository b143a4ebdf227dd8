"""Load test: many visitors at once on the scripting API, the app side by side with a bare Gradio floor.

    python -m benchmarks.load_test [--sessions 20] [--rounds 10] [--batch-size 10] [--repeats 1]   # repo root

- two servers, each in its own process on 127.0.0.1 (so the clients do not share their GIL), run one after the
  other on the same machine: the **floor** (``benchmarks/floor_app.py``: the same ``/start`` + ``/round`` JSON from a
  bare Gradio endpoint) and the **app** (``python app.py`` on the offline bundle, a fresh cache, shipped settings);
- the visitors: ``--sessions`` threads, each its own ``gradio_client.Client`` (its own Gradio session), each calling
  ``/start`` once and then ``/round`` ``--rounds`` times, labelling every card of every batch; a thumbnail that is a
  URL is fetched as a browser would (once: the app marks them immutable), a data URI needs no request;
- every visitor has its own prompt and labelling pattern and checks after every round that the reply is its own:
  round number, label counts, and no image twice in one session. Any failed request or check is an error;
- reported for each server: rounds per second over the run, round latency p50 / p95, errors, and the server
  process's CPU time (user + system, all its threads) over the run divided by the rounds served: what a round costs
  the server, thumbnails included. The app's throughput is also given as a share of the floor's, measured in the
  same run: on a shared machine only such ratios are stable.

Every loop is bounded in count and time (``--deadline``); the servers are always stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.helpers.app_process import app_process, free_port

COLOURS = ["red", "blue", "green", "yellow", "purple"]
SHAPES = ["circle", "square", "triangle", "star"]


@dataclass
class SessionResult:
    name: str
    start_s: float = 0.0
    round_s: list[float] = field(default_factory=list)
    thumbnails_fetched: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LoadReport:
    server: str
    sessions: int
    rounds: int
    batch_size: int
    wall_s: float
    round_s: list[float]
    start_s: list[float]
    errors: list[str]
    cpu_s: float  # the server process's CPU time over the run
    thumbnails_fetched: int

    @property
    def throughput(self) -> float:
        """Completed rounds per second over the whole run (the /start calls are in the time, not the count)."""
        return len(self.round_s) / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def cpu_per_round_ms(self) -> float:
        return 1000 * self.cpu_s / max(len(self.round_s), 1)

    def percentile(self, q: float) -> float:
        return percentile(self.round_s, q)

    def summary(self) -> str:
        return (
            f"{self.server}: {self.sessions} sessions x {self.rounds} rounds of {self.batch_size}: "
            f"{len(self.round_s)} rounds in {self.wall_s:.1f} s = {self.throughput:.1f} rounds/s, "
            f"round p50 {self.percentile(50) * 1000:.0f} ms, p95 {self.percentile(95) * 1000:.0f} ms, "
            f"start p50 {percentile(self.start_s, 50) * 1000:.0f} ms, server CPU {self.cpu_per_round_ms:.1f} ms/round, "
            f"{self.thumbnails_fetched} thumbnail requests, {len(self.errors)} errors"
        )


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


# ------------------------------------------------------------------------------------------------ one visitor
def labels_for(batch: list[dict], positives: int) -> dict[str, float]:
    """The first ``positives`` cards "it", the rest "not it": a labeller who marks the hits and the rest."""
    return {card["id"]: (1.0 if k < positives else -1.0) for k, card in enumerate(batch)}


def run_session(url: str, k: int, rounds: int, batch_size: int, deadline: float) -> SessionResult:
    """One visitor: /start, then ``rounds`` x /round, checking every reply is its own. Never raises."""
    prompt = f"a {COLOURS[k % len(COLOURS)]} {SHAPES[k // len(COLOURS) % len(SHAPES)]}"
    positives = 1 + k % 3
    result = SessionResult(f"session {k}: {prompt!r}, {positives} positive a round")
    try:
        client = Client(url, verbose=False)
        with httpx.Client(base_url=url, timeout=60) as browser:
            started = time.perf_counter()
            reply = client.predict(prompt, "", "mixed", batch_size, api_name="/start")
            result.thumbnails_fetched += fetch_thumbnails(browser, reply["batch"])
            result.start_s = time.perf_counter() - started
            seen: set[str] = set()
            expected_labels, expected_positives = 0, 0
            for done in range(rounds):
                if time.perf_counter() > deadline:
                    result.errors.append(f"{result.name}: out of time after {done} rounds")
                    break
                batch = reply["batch"]
                ids = [card["id"] for card in batch]
                if len(ids) != batch_size or seen & set(ids) or len(set(ids)) != len(ids):
                    result.errors.append(f"{result.name}: round {done + 1} showed {ids} (again: {seen & set(ids)})")
                    break
                seen.update(ids)
                labels = labels_for(batch, positives)
                started = time.perf_counter()
                reply = client.predict(labels, api_name="/round")
                result.thumbnails_fetched += fetch_thumbnails(browser, reply["batch"])
                result.round_s.append(time.perf_counter() - started)
                expected_labels += len(labels)
                expected_positives += positives
                stats = reply["stats"]
                got = (reply["round"], stats["labels"], stats["positives"])
                if got != (done + 2, expected_labels, expected_positives):
                    result.errors.append(
                        f"{result.name}: after round {done + 1} (round, labels, positives) = {got}, expected "
                        f"{(done + 2, expected_labels, expected_positives)}"
                    )
                    break
    except (AppError, httpx.HTTPError, OSError, ValueError, KeyError, TypeError) as err:  # a failure is a finding
        result.errors.append(f"{result.name}: {type(err).__name__}: {err}")
    return result


def fetch_thumbnails(browser: httpx.Client, batch: list[dict]) -> int:
    """Fetch what a browser would: thumbnails given as URL paths (each new image once). Data URIs need nothing."""
    fetched = 0
    for card in batch:
        thumbnail = card["thumbnail"]
        if thumbnail.startswith("data:image/"):
            continue
        response = browser.get(thumbnail)
        response.raise_for_status()
        if not response.content:
            raise ValueError(f"empty thumbnail at {thumbnail}")
        fetched += 1
    return fetched


def run_load(
    url: str, server: str, pid: int, sessions: int, rounds: int, batch_size: int, timeout_s: float
) -> LoadReport:
    """Drive ``sessions`` concurrent visitors; return latencies, errors and the server's CPU time over the run."""
    deadline = time.perf_counter() + timeout_s
    results: list[SessionResult | None] = [None] * sessions

    def worker(k: int) -> None:
        results[k] = run_session(url, k, rounds, batch_size, deadline)

    threads = [threading.Thread(target=worker, args=(k,), name=f"visitor-{k}", daemon=True) for k in range(sessions)]
    cpu_before, started = cpu_seconds(pid), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.perf_counter()) + 5)
    wall, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu_before
    done = [r for r in results if r is not None]
    errors = [e for r in done for e in r.errors] + [
        f"session {k}: never finished" for k, r in enumerate(results) if r is None
    ]
    return LoadReport(
        server,
        sessions,
        rounds,
        batch_size,
        wall,
        [s for r in done for s in r.round_s],
        [r.start_s for r in done if r.start_s],
        errors,
        cpu,
        sum(r.thumbnails_fetched for r in done),
    )


# ------------------------------------------------------------------------------------------------ servers
def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


@dataclass(frozen=True)
class Server:
    url: str
    pid: int


@contextlib.contextmanager
def serve(argv: list[str], env: dict[str, str] | None = None, ready_timeout_s: float = 240.0) -> Iterator[Server]:
    """Run ``argv`` (a Gradio app) on 127.0.0.1:<free port>; yield once its ``/start`` answers. Always stopped."""
    port = free_port()
    environment = {
        **os.environ,
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        **(env or {}),
    }
    environment.pop("SPACE_ID", None)
    with tempfile.TemporaryFile() as log, app_process(environment, log, argv) as process:
        url = f"http://127.0.0.1:{port}/"
        wait_until_ready(url, process, log, ready_timeout_s)
        yield Server(url, process.pid)


def wait_until_ready(url: str, process: subprocess.Popen, log, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"the server exited with {process.returncode}:\n{log.read().decode()[-3000:]}")
        try:
            Client(url, verbose=False).predict("a red circle", "", "mixed", 10, api_name="/start")
            return
        except AppError as err:  # "still preparing the collection": the workspace is loading
            if "preparing" not in str(err):
                raise
        except (httpx.HTTPError, OSError, ValueError):  # not listening yet, or the page not served yet
            pass
        time.sleep(1.0)
    raise TimeoutError(f"the server at {url} was not ready within {timeout_s:.0f} s")


def app_server(cache_dir: Path, concurrency: int, torch_threads: int) -> contextlib.AbstractContextManager[Server]:
    env = {
        "CT_SOURCE": "bundle",
        "CT_CACHE_DIR": str(cache_dir),
        "CT_CONCURRENCY": str(concurrency),
        "CT_TORCH_THREADS": str(torch_threads),
    }
    return serve([sys.executable, "app.py"], env)


def floor_server(concurrency: int, delivery: str = "data") -> contextlib.AbstractContextManager[Server]:
    env = {"CT_CONCURRENCY": str(concurrency), "CT_FLOOR_THUMBNAILS": delivery}
    return serve([sys.executable, "-m", "benchmarks.floor_app"], env)


def measure(
    name: str, server: Callable[[], contextlib.AbstractContextManager[Server]], args: argparse.Namespace
) -> LoadReport:
    with server() as running:
        report = run_load(running.url, name, running.pid, args.sessions, args.rounds, args.batch_size, args.deadline)
    print(f"{report.summary()}, load {os.getloadavg()[0]:.1f}", flush=True)
    for error in report.errors[:10]:
        print("   ", error, flush=True)
    return report


def main() -> None:
    from benchmarks.machine import machine_line, today
    from trainer.config import Settings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=10, help="20 reaches 200 labels a visitor in 10 rounds")
    parser.add_argument("--repeats", type=int, default=1, help="floor / app pairs, alternating")
    parser.add_argument("--deadline", type=float, default=600.0, help="seconds per run, at most")
    parser.add_argument("--concurrency", type=int, help="queue concurrency of both servers (default: as shipped)")
    parser.add_argument("--torch-threads", type=int, help="the app's torch threads (default: as shipped)")
    args = parser.parse_args()
    shipped = Settings.from_env(environ={})
    concurrency = args.concurrency or shipped.concurrency
    threads = args.torch_threads or shipped.torch_threads
    print(f"{today()}; {machine_line()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ct-load-") as cache:
        for _ in range(args.repeats):
            floor = measure("floor", lambda: floor_server(concurrency), args)
            app = measure("app", lambda: app_server(Path(cache), concurrency, threads), args)
            rows.append((floor, app, os.getloadavg()[0]))
    print(
        "\n| sessions x rounds x batch | server | rounds/s | share of floor | round p50 ms | round p95 ms "
        "| server CPU ms/round | errors | 1-min load |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for floor, app, load in rows:
        for report in (floor, app):
            share = f"{report.throughput / floor.throughput:.0%}" if floor.throughput else "-"
            print(
                f"| {report.sessions} x {report.rounds} x {report.batch_size} | {report.server} "
                f"| {report.throughput:.1f} | {share} | {report.percentile(50) * 1000:.0f} "
                f"| {report.percentile(95) * 1000:.0f} | {report.cpu_per_round_ms:.1f} | {len(report.errors)} "
                f"| {load:.1f} |"
            )


if __name__ == "__main__":
    main()
