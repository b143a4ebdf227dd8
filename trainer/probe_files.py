"""A LinearProbe's files read strictly: ``config.json`` and ``model.safetensors``, from a stranger as often as not.

The one implementation behind ``LinearProbe.from_pretrained`` and ``trainer.hub.load_classifier``. Everything is
checked before anything is allocated: the config's size, nesting, keys and value types, then its values (dim within
``MAX_DIM``, finite numbers in range: ``LinearProbe``'s own checks), then the weights file's size and header (exactly
the probe's tensors, each of the right shape) before a byte of tensor data is read, then every value finite. Any
failure raises ``InvalidClassifier`` (a ValueError) whose message names the file and what is wrong.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors
import torch
from safetensors.torch import load_file

from . import checks
from .classifier import LinearProbe

__all__ = [
    "CONFIG_KEYS",
    "CONFIG_NAME",
    "MAX_CONFIG_BYTES",
    "WEIGHTS_NAME",
    "InvalidClassifier",
    "load_weights",
    "max_weights_bytes",
    "probe_from_config",
    "read_config",
]

CONFIG_NAME = "config.json"  # the names PyTorchModelHubMixin reads and writes
WEIGHTS_NAME = "model.safetensors"
# A probe's config.json is a few hundred bytes (a 1,000-character prompt at most); anything near this is not one.
MAX_CONFIG_BYTES = 64 * 1024
# What config.json may hold: LinearProbe's constructor arguments, each a plain JSON value.
CONFIG_KEYS = tuple(p for p in inspect.signature(LinearProbe.__init__).parameters if p != "self")
_SCALARS = (str, int, float, bool, type(None))
_FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}


class InvalidClassifier(ValueError):
    """The files are not a LinearProbe this code can load; the message names the file and what is wrong."""


def read_config(path: str | os.PathLike[str], source: str) -> dict[str, Any]:
    """config.json as a dict of LinearProbe arguments, checked for size, nesting, keys and value types."""
    path = Path(path)
    where = f"{CONFIG_NAME} of {source}"
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise InvalidClassifier(
                f"{where} is {size:,} bytes; a classifier's config is far smaller (at most {MAX_CONFIG_BYTES:,}), "
                "so this is not one"
            )
        config = json.loads(path.read_bytes().decode("utf-8"))
    except RecursionError:
        raise InvalidClassifier(f"{where} is nested too deeply to be a classifier's config") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InvalidClassifier(f"{where} cannot be read: {err}") from None
    if not isinstance(config, dict):
        raise InvalidClassifier(f"{where} must be a JSON object of settings; got {checks.shown(config)}")
    unknown = sorted(str(k)[:40] for k in config if k not in CONFIG_KEYS)
    if unknown:
        raise InvalidClassifier(
            f"{where} has settings a classifier does not take: {unknown[:5]}; it takes {', '.join(CONFIG_KEYS)}"
        )
    nested = [k for k, v in config.items() if not isinstance(v, _SCALARS)]
    if nested:
        raise InvalidClassifier(
            f"{where} is invalid: {nested[0]} must be a plain value; got {checks.shown(config[nested[0]])}"
        )
    return config


def probe_from_config(config: Mapping[str, Any], source: str) -> LinearProbe:
    """A LinearProbe of ``config``'s settings, its weights still zero; each value is checked before allocating."""
    if "dim" not in config:
        raise InvalidClassifier(f"{CONFIG_NAME} of {source} does not describe a classifier: it has no 'dim'")
    try:
        return LinearProbe(**config)
    except (TypeError, ValueError) as err:
        raise InvalidClassifier(f"{CONFIG_NAME} of {source} is invalid: {err}") from None


def max_weights_bytes(dim: int) -> int:
    """The largest model.safetensors a probe of ``dim`` can have: its 2 * dim + 2 values as float64, plus a header."""
    return 8 * (2 * dim + 2) + 16 * 1024


def load_weights(probe: LinearProbe, path: str | os.PathLike[str], source: str) -> None:
    """Fill ``probe`` from model.safetensors, strictly: exactly its tensors (none missing, none unexpected, each of
    its shape, a float type), every value finite. The file's size and header are checked before any data is read."""
    path = Path(path)
    where = f"{WEIGHTS_NAME} of {source}"
    expected = probe.state_dict()
    try:
        size = path.stat().st_size
        if size > max_weights_bytes(probe.dim):
            raise InvalidClassifier(
                f"{where} is {size:,} bytes, too big for a classifier of dim {probe.dim} "
                f"(at most {max_weights_bytes(probe.dim):,}); it does not match its {CONFIG_NAME}"
            )
        with safetensors.safe_open(str(path), framework="pt") as header:  # reads the header only
            shapes = {k: tuple(header.get_slice(k).get_shape()) for k in header.keys()}  # noqa: SIM118
            dtypes = {k: header.get_slice(k).get_dtype() for k in header.keys()}  # noqa: SIM118
    except (OSError, safetensors.SafetensorError) as err:
        raise InvalidClassifier(f"{where} is not a readable safetensors file: {err}") from None
    missing, unexpected = sorted(expected.keys() - shapes.keys()), sorted(shapes.keys() - expected.keys())
    wrong_shape = [
        f"{k} {shapes[k]} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in shapes and shapes[k] != tuple(v.shape)
    ]
    wrong_type = [f"{k} {dtypes[k]}" for k in expected if k in dtypes and dtypes[k] not in _FLOAT_DTYPES]
    if missing or unexpected or wrong_shape or wrong_type:
        details = [
            f"missing {missing}" if missing else "",
            f"unexpected {unexpected[:5]}" if unexpected else "",
            f"wrong shape {wrong_shape}" if wrong_shape else "",
            f"not floating point {wrong_type}" if wrong_type else "",
        ]
        raise InvalidClassifier(
            f"{where} does not match its {CONFIG_NAME} (dim {probe.dim}): " + "; ".join(d for d in details if d)
        )
    try:
        state = load_file(str(path))
    except (OSError, safetensors.SafetensorError) as err:
        raise InvalidClassifier(f"{where} is not a readable safetensors file: {err}") from None
    not_finite = sorted(k for k, v in state.items() if not torch.isfinite(v).all())
    if not_finite:
        raise InvalidClassifier(f"{where} holds NaN or infinite values in {not_finite}.")
    probe.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)  # cannot fail now
    probe.eval()


def load_files(config_path: str | os.PathLike[str], weights_path: str | os.PathLike[str], source: str) -> LinearProbe:
    """A probe from its two files, checked as above."""
    probe = probe_from_config(read_config(config_path, source), source)
    load_weights(probe, weights_path, source)
    return probe
