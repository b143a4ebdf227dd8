"""Which model and collection a start uses: the configured ones (Hub or local paths) or the offline bundle, and
opening the collection and its held-out split that the settings name.

``resolve_source`` decides once, at start-up or before ``python -m trainer index``: ``CT_SOURCE=bundle`` always
takes the bundle, ``hub`` requires the Hub (or local paths), ``auto`` falls back to the bundle when the Hub does not
answer (``hub_reachable``) and logs why.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

from trainer.config import BUNDLE_DATASET, BUNDLE_MODEL, Settings
from trainer.data import Collection
from trainer.files import is_local_path

__all__ = ["SOURCES", "hub_reachable", "open_collection", "open_held_out", "resolve_source"]

logger = logging.getLogger(__name__)

SOURCES = ("auto", "bundle", "hub")
_TRUE = {"1", "ON", "YES", "TRUE"}


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub answers within ``timeout`` seconds. False at once when offline mode is set."""
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(variable, "").strip().upper() in _TRUE:
            logger.info("%s is set: not contacting the Hugging Face Hub", variable)
            return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    request = urllib.request.Request(endpoint + "/", method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return True
    except urllib.error.HTTPError as err:
        return err.code < 500  # it answered: reachable, whatever it thinks of this path
    except OSError as err:  # URLError, timeouts, DNS and connection failures are all OSErrors
        logger.info("The Hugging Face Hub at %s did not answer within %ss: %s", endpoint, timeout, err)
        return False


def resolve_source(settings: Settings, *, timeout: float = 3.0) -> Settings:
    """Settings with the model and dataset that will actually be used: the configured ones or the offline bundle.

    ``settings.source``: "bundle" always uses the bundle; "hub" requires the Hub (or local paths) and raises
    without it; "auto" uses the configured ones when they are local or the Hub answers, else the bundle, and
    logs why.
    """
    if settings.source not in SOURCES:
        raise ValueError(f"unknown source {settings.source!r}; choose one of {', '.join(SOURCES)}")
    if settings.source == "bundle":
        logger.info("Using the offline bundle (source=bundle)")
        return _bundle(settings)
    if is_local_path(settings.model_id) and is_local_path(settings.dataset):
        return settings  # nothing to fetch: the Hub does not matter
    if hub_reachable(timeout):
        return settings
    if settings.source == "hub":
        raise RuntimeError(
            f"source='hub' needs the Hugging Face Hub for {settings.model_id} / {settings.dataset}, but it is not "
            "reachable (offline mode set, or no answer). Unset HF_HUB_OFFLINE, check the network, or use "
            "CT_SOURCE=auto to fall back to the offline bundle."
        )
    bundle = _bundle(settings)
    logger.warning(
        "The Hugging Face Hub is not reachable, so %s on %s cannot be used: using the offline bundle "
        "(model %s, dataset %s) instead",
        settings.model_id,
        settings.dataset,
        bundle.model_id,
        bundle.dataset,
    )
    return bundle


def _bundle(settings: Settings) -> Settings:
    for path in (BUNDLE_MODEL, BUNDLE_DATASET):
        if not Path(path).is_dir():
            raise FileNotFoundError(
                f"the offline bundle is missing: {path} does not exist. Build it with the script in assets/, "
                "or make the Hugging Face Hub reachable."
            )
    return dataclasses.replace(
        settings, model_id=BUNDLE_MODEL, dataset=BUNDLE_DATASET, dataset_config=None, image_column=None, source="bundle"
    )


def open_collection(settings: Settings, split: str | None = None) -> Collection:
    """Open ``settings.dataset`` (already resolved with :func:`resolve_source`) at ``split`` or ``settings.split``."""
    return Collection.open(
        settings.dataset,
        config=settings.dataset_config,
        split=split or settings.split,
        revision=settings.dataset_revision,
        image_column=settings.image_column,
    )


def open_held_out(settings: Settings, without_it: str) -> Collection | None:
    """The held-out split ``settings.eval_split``, or None (logged, saying ``without_it``) when there is none."""
    if not settings.eval_split:
        return None
    try:
        return open_collection(settings, settings.eval_split)
    except (ValueError, KeyError, FileNotFoundError) as err:
        logger.warning("No held-out split %r in %s (%s): %s", settings.eval_split, settings.dataset, err, without_it)
        return None
