"""Thumbnails inline (data URIs) or by URL (immutable, cached by the browser): which costs the server less?

    python -m benchmarks.thumbnail_delivery [--sessions 20] [--rounds 10] [--repeats 2]

The floor app (``benchmarks/floor_app.py``) serves the same batches of real bundle thumbnails both ways, in turn,
to the load test's visitors (``benchmarks/load_test.py``), who fetch each URL once as a browser would. Reported:
the server's CPU per round and the round latency of each, side by side in one run.
"""

from __future__ import annotations

import argparse
import os

from benchmarks.load_test import floor_server, measure
from benchmarks.machine import machine_line, today


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--deadline", type=float, default=600.0)
    args = parser.parse_args()
    print(f"{today()}; {machine_line()}", flush=True)
    rows = []
    for _ in range(args.repeats):
        for delivery in ("data", "url"):
            report = measure(f"floor, {delivery}", lambda d=delivery: floor_server(4, d), args)
            rows.append((delivery, report, os.getloadavg()[0]))
    print("\n| thumbnails | rounds/s | round p50 ms | round p95 ms | server CPU ms/round | requests | 1-min load |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for delivery, r, load in rows:
        print(
            f"| {delivery} | {r.throughput:.1f} | {r.percentile(50) * 1000:.0f} | {r.percentile(95) * 1000:.0f} "
            f"| {r.cpu_per_round_ms:.1f} | {r.thumbnails_fetched} | {load:.1f} |"
        )


if __name__ == "__main__":
    main()
