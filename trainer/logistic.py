"""The logistic function and its inverse, computed without overflow: a score's probability and back."""

from __future__ import annotations

import numpy as np

__all__ = ["logit", "sigmoid"]


def sigmoid(z: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-z))`` in its tanh form, which never overflows."""
    z = np.asarray(z)
    half = z.dtype.type(0.5) if z.dtype == np.float32 else 0.5  # float32 stays float32: half the time
    return half * (1 + np.tanh(half * z))


def logit(p: float | np.ndarray) -> np.ndarray:
    """``log(p / (1 - p))``, in float64; +-inf at 0 and 1."""
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.log(p) - np.log1p(-p)
