"""Load test: many visitors at once, each running rounds of search, label, train & requery through the HTTP API.

    python -m benchmarks.load_test [--sessions 20] [--rounds 10] [--concurrency 4] [--torch-threads 1]   # repo root

- the app: ``python app.py`` in its own process (so the clients below do not share its GIL), on the offline bundle,
  listening on 127.0.0.1 only, with ``CT_CONCURRENCY`` / ``CT_TORCH_THREADS`` set from the flags and a fresh cache;
- the visitors: ``--sessions`` threads, each with its own ``gradio_client.Client`` (its own Gradio session), each
  searching once and then running ``--rounds`` rounds of "label the batch, Train & requery";
- every session has its own prompt, batch size and labelling pattern, and checks after every round that the stats
  line shows exactly its own round number and label counts, and that no image comes back twice within it: a
  session that ever got another's batch or labels fails. Any failed request fails the run;
- reported: p50 / p95 of the round latency (one Train & requery call, as a visitor waits for it), the search
  latency, and throughput in rounds per second over the whole run. Prints a markdown table row at the end.

Every loop is bounded in count and in time (``--deadline``); the server is always stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import re
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.helpers.app_process import app_process, free_port

MAX_BATCH = 20  # app.MAX_BATCH; not imported so that this client does not load gradio's server side and torch
COLOURS = ["red", "blue", "green", "yellow", "purple"]
SHAPES = ["circle", "square", "triangle", "star"]
STATS = re.compile(r"Round (\d+)\*\* · (\d+) labels \(\+(\d+) / −(\d+)\)")


@dataclass
class SessionResult:
    name: str
    search_s: float = 0.0
    round_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LoadReport:
    sessions: int
    rounds: int
    wall_s: float
    round_s: list[float]
    search_s: list[float]
    errors: list[str]

    @property
    def throughput(self) -> float:
        """Completed rounds per second over the whole run (searches included in the time, not the count)."""
        return len(self.round_s) / self.wall_s if self.wall_s > 0 else 0.0

    def percentile(self, q: float) -> float:
        return _percentile(self.round_s, q)

    def summary(self) -> str:
        return (
            f"{self.sessions} sessions x {self.rounds} rounds: {len(self.round_s)} rounds in {self.wall_s:.1f} s, "
            f"round p50 {self.percentile(50) * 1000:.0f} ms, p95 {self.percentile(95) * 1000:.0f} ms, "
            f"search p50 {_percentile(self.search_s, 50) * 1000:.0f} ms, {self.throughput:.1f} rounds/s, "
            f"{len(self.errors)} errors"
        )


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def _value(output: object) -> object:
    """A component update arrives as {"value": ..., "__type__": "update"}; a plain value as itself."""
    if isinstance(output, dict) and output.get("__type__") == "update":
        return output.get("value")
    return output


def _images(outputs: tuple) -> list[str]:
    """The ids of the batch shown: each image cell's label is its collection id."""
    ids = []
    for position in range(MAX_BATCH):
        cell = outputs[2 * position]
        if isinstance(cell, dict) and _value(cell):
            ids.append(str(cell.get("label") or _value(cell)))
    return ids


def _stats(outputs: tuple) -> tuple[int, int, int, int]:
    text = str(_value(outputs[2 * MAX_BATCH]))
    match = STATS.search(text)
    if not match:
        raise AssertionError(f"no stats line in {text!r}")
    return tuple(int(g) for g in match.groups())  # type: ignore[return-value]


def run_session(url: str, k: int, rounds: int, deadline: float) -> SessionResult:
    """One visitor. Its batch size (5..14) and positives per round (1 or 2) differ from every other session's."""
    prompt = f"a {COLOURS[k % len(COLOURS)]} {SHAPES[k // len(COLOURS) % len(SHAPES)]}"
    batch_size, positives = 5 + k % 10, 1 + k // 10 % 2
    result = SessionResult(f"session {k}: {prompt!r}, {batch_size} a round, {positives} positive")
    try:
        client = Client(url, verbose=False)
        started = time.perf_counter()
        out = client.predict(prompt, "", "mixed", batch_size, 10, api_name="/search")
        result.search_s = time.perf_counter() - started
        seen: set[str] = set()
        for done in range(rounds):
            if time.perf_counter() > deadline:
                result.errors.append(f"{result.name}: out of time after {done} rounds")
                break
            batch = _images(out)
            if len(batch) != batch_size or seen & set(batch):
                result.errors.append(
                    f"{result.name}: round {done + 1} showed {batch} (seen before: {seen & set(batch)})"
                )
                break
            seen.update(batch)
            values = [1.0] * positives + [-1.0] * (batch_size - positives)
            started = time.perf_counter()
            out = client.predict(*values, *[0.0] * (MAX_BATCH - batch_size), api_name="/train")
            result.round_s.append(time.perf_counter() - started)
            expected = (
                done + 2,
                (done + 1) * batch_size,
                (done + 1) * positives,
                (done + 1) * (batch_size - positives),
            )
            if _stats(out) != expected:
                result.errors.append(f"{result.name}: after round {done + 1} stats {_stats(out)} != {expected}")
                break
    except (
        AppError,
        AssertionError,
        httpx.HTTPError,
        OSError,
        ValueError,
    ) as err:  # a failed request is a finding, not a crash
        result.errors.append(f"{result.name}: {type(err).__name__}: {err}")
    return result


def run_load(url: str, sessions: int = 20, rounds: int = 10, timeout_s: float = 600.0) -> LoadReport:
    """Drive ``sessions`` concurrent visitors through ``rounds`` rounds each; return latencies and every error."""
    deadline = time.perf_counter() + timeout_s
    results: list[SessionResult | None] = [None] * sessions

    def worker(k: int) -> None:
        results[k] = run_session(url, k, rounds, deadline)

    threads = [threading.Thread(target=worker, args=(k,), name=f"visitor-{k}", daemon=True) for k in range(sessions)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.perf_counter()) + 5)
    wall = time.perf_counter() - started
    done = [r for r in results if r is not None]
    errors = [e for r in done for e in r.errors] + [
        f"session {k}: never finished" for k, r in enumerate(results) if r is None
    ]
    return LoadReport(
        sessions, rounds, wall, [s for r in done for s in r.round_s], [r.search_s for r in done if r.search_s], errors
    )


@contextlib.contextmanager
def serve_app(
    *, concurrency: int, torch_threads: int, cache_dir: Path | None = None, ready_timeout_s: float = 180.0
) -> Iterator[str]:
    """``python app.py`` on the offline bundle at 127.0.0.1:<free port>; yields its URL once search works."""
    port = free_port()
    with contextlib.ExitStack() as stack:
        cache = cache_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ct-load-")))
        env = {
            **os.environ,
            "CT_SOURCE": "bundle",
            "CT_CACHE_DIR": str(cache),
            "CT_CONCURRENCY": str(concurrency),
            "CT_TORCH_THREADS": str(torch_threads),
            "GRADIO_SERVER_NAME": "127.0.0.1",
            "GRADIO_SERVER_PORT": str(port),
            "GRADIO_ANALYTICS_ENABLED": "False",
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
        }
        env.pop("SPACE_ID", None)
        log = stack.enter_context(tempfile.TemporaryFile())
        server = stack.enter_context(app_process(env, log))
        url = f"http://127.0.0.1:{port}/"
        _wait_until_ready(url, server, log, ready_timeout_s)
        yield url


def _wait_until_ready(url: str, server: subprocess.Popen, log: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            log.seek(0)  # type: ignore[attr-defined]
            raise RuntimeError(f"the app exited with {server.returncode}:\n{log.read().decode()[-3000:]}")  # type: ignore[attr-defined]
        try:
            Client(url, verbose=False).predict("a red circle", "", "mixed", 10, 10, api_name="/search")
            return
        except AppError as err:  # "still preparing the collection": the workspace is loading
            if "preparing" not in str(err):
                raise
        except (httpx.HTTPError, OSError, ValueError):  # not listening yet, or the page not served yet
            pass
        time.sleep(1.0)
    raise TimeoutError(f"the app at {url} was not ready within {timeout_s:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[4], help="queue limits to compare")
    parser.add_argument("--torch-threads", type=int, nargs="+", default=[1], help="torch thread counts to compare")
    parser.add_argument("--deadline", type=float, default=600.0, help="seconds per configuration, at most")
    args = parser.parse_args()
    rows = []
    for threads in args.torch_threads:
        for limit in args.concurrency:
            with serve_app(concurrency=limit, torch_threads=threads) as url:
                report = run_load(url, args.sessions, args.rounds, args.deadline)
            load = os.getloadavg()[0]  # the machine is shared: say how busy it was
            print(f"concurrency {limit}, torch threads {threads}: {report.summary()}, load {load:.1f}", flush=True)
            for error in report.errors[:10]:
                print("  ", error)
            rows.append(
                f"| {datetime.date.today()} | {platform.node()} ({os.cpu_count()} CPUs) "
                f"| {args.sessions}x{args.rounds} "
                f"| {limit} | {threads} | {report.percentile(50) * 1000:.0f} | {report.percentile(95) * 1000:.0f} "
                f"| {statistics.median(report.search_s) * 1000 if report.search_s else float('nan'):.0f} "
                f"| {report.throughput:.2f} | {len(report.errors)} | {load:.1f} |"
            )
    print(
        "\n| date | machine | sessions x rounds | concurrency | torch threads | round p50 ms | round p95 ms "
        "| search p50 ms | rounds/s | errors | 1-min load |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
