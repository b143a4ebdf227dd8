"""The machine and date every benchmark prints with its results, so figures are never quoted without them."""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path

import numpy as np
import torch

__all__ = ["machine_line", "today"]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_line() -> str:
    """e.g. ``2 cores (nproc), AMD EPYC, load 1.7; python 3.11.14, numpy 2.4.6, torch 2.13.0+cpu (2 threads)``."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = f", load {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return (
        f"{cores} cores (nproc), {cpu_model()}{load}; python {platform.python_version()}, numpy {np.__version__}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    )


def today() -> str:
    return datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
