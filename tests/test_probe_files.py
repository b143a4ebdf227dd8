"""A classifier's files read strictly, by both loaders: ``LinearProbe.from_pretrained`` (what the README and the
model card tell people to use) and ``trainer.hub.load_classifier`` (what the app and the CLI use). One
implementation (trainer/probe_files.py) behind both, so every case runs through both."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.helpers.memory import rss_mb
from trainer.classifier import LinearProbe
from trainer.hub import load_classifier
from trainer.hub_calls import HubError
from trainer.probe_files import MAX_CONFIG_BYTES, InvalidClassifier

LOADERS = {
    "from_pretrained": (lambda folder: LinearProbe.from_pretrained(folder), InvalidClassifier),
    "load_classifier": (lambda folder: load_classifier(folder), HubError),
}


@pytest.fixture
def saved(tmp_path) -> Path:
    probe = LinearProbe.from_prompt(np.ones(16, np.float32) / 4, scale=5.0, bias=-1.0, base_model="some/clip")
    probe.save_pretrained(tmp_path / "probe")
    return tmp_path / "probe"


def edit_config(folder: Path, **changes) -> None:
    path = folder / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def edit_weights(folder: Path, change) -> None:
    state = load_file(folder / "model.safetensors")
    change(state)
    save_file(state, folder / "model.safetensors")


TAMPERED = {
    "NaN weights": (lambda f: edit_weights(f, lambda s: s["linear.weight"].fill_(float("nan"))), "NaN or infinite"),
    "inf prior": (lambda f: edit_weights(f, lambda s: s["prior_weight"].fill_(float("inf"))), "NaN or infinite"),
    "a tensor missing": (lambda f: edit_weights(f, lambda s: s.pop("linear.bias")), r"missing \['linear.bias'\]"),
    "an extra tensor": (
        lambda f: edit_weights(f, lambda s: s.update(extra=torch.zeros(3))),
        r"unexpected \['extra'\]",
    ),
    "a wrong shape": (
        lambda f: edit_weights(f, lambda s: s.update({"linear.weight": torch.zeros(1, 8)})),
        r"wrong shape \['linear.weight \(1, 8\) \(expected \(1, 16\)\)'\]",
    ),
    "integer weights": (
        lambda f: edit_weights(f, lambda s: s.update({"linear.bias": torch.zeros(1, dtype=torch.int64)})),
        r"not floating point \['linear.bias I64'\]",
    ),
    "not safetensors": (lambda f: (f / "model.safetensors").write_bytes(b"junk"), "not a readable safetensors"),
    "threshold NaN": (lambda f: edit_config(f, threshold=float("nan")), "threshold must be a finite number"),
    "threshold 2": (lambda f: edit_config(f, threshold=2), r"threshold must be within \[0, 1\]"),
    "prior strength 'ten'": (lambda f: edit_config(f, prior_strength="ten"), "must be a number; got 'ten'"),
    "prior strength 0": (lambda f: edit_config(f, prior_strength=0), "greater than 0"),
    "dim as text": (lambda f: edit_config(f, dim="16"), "dim must be a whole number"),
    "no dim": (lambda f: (f / "config.json").write_text("{}"), "it has no 'dim'"),
    "an unknown setting": (lambda f: edit_config(f, activation="relu"), r"does not take: \['activation'\]"),
    "a nested value": (lambda f: edit_config(f, prompt={"a": [1]}), "prompt must be a plain value"),
    "a list, not an object": (lambda f: (f / "config.json").write_text("[16]"), "must be a JSON object"),
    "not JSON": (lambda f: (f / "config.json").write_text("{dim: 16"), "cannot be read"),
    "nested 30,000 levels": (
        lambda f: (f / "config.json").write_text("[" * 30_000 + "]" * 30_000),
        "nested too deeply",
    ),
    "nested 100,000 levels": (
        lambda f: (f / "config.json").write_text("[" * 100_000 + "]" * 100_000),
        "200,000 bytes; a classifier's config is far smaller",
    ),
    "a prompt with NUL": (lambda f: edit_config(f, prompt="red\x00"), r"control character \(U\+0000\)"),
    "no weights file": (lambda f: (f / "model.safetensors").unlink(), "model.safetensors missing"),
}


@pytest.mark.parametrize("loader", list(LOADERS))
@pytest.mark.parametrize("case", list(TAMPERED))
def test_both_loaders_refuse_a_tampered_classifier_with_the_same_clear_message(saved, loader, case):
    tamper, message = TAMPERED[case]
    load, error = LOADERS[loader]
    tamper(saved)
    with pytest.raises(error, match=message):
        load(saved)


@pytest.mark.parametrize("loader", list(LOADERS))
def test_both_loaders_load_a_good_classifier_bit_identically(saved, loader):
    load, _ = LOADERS[loader]
    original = load_file(saved / "model.safetensors")
    loaded = load(saved)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in original.items())
    assert (loaded.dim, loaded.base_model) == (16, "some/clip")


@pytest.mark.parametrize("dim", [500_000_000, 10**18], ids=["5e8", "1e18"])
@pytest.mark.parametrize("loader", list(LOADERS))
def test_an_absurd_dim_is_refused_in_milliseconds_without_allocating(saved, loader, dim):
    load, error = LOADERS[loader]
    edit_config(saved, dim=dim)
    before, started = rss_mb(), time.perf_counter()
    with pytest.raises(error, match=f"dim must be from 1 to 16,384; got {dim:,}"):
        load(saved)
    assert time.perf_counter() - started < 2  # a hang check, not a speed claim: it used to take 10.5 s and 3.8 GB
    assert rss_mb() - before < 100


def test_a_huge_config_or_weights_file_is_refused_before_it_is_read(saved):
    (saved / "config.json").write_text(json.dumps({"dim": 16, "prompt": "x" * MAX_CONFIG_BYTES}))
    with pytest.raises(InvalidClassifier, match="bytes; a classifier's config is far smaller"):
        LinearProbe.from_pretrained(saved)
    edit_config(saved, prompt="red")
    with (saved / "model.safetensors").open("ab") as f:
        f.write(b"\0" * 1_000_000)
    with pytest.raises(InvalidClassifier, match="too big for a classifier of dim 16"):
        LinearProbe.from_pretrained(saved)
