"""Share a classifier on the Hugging Face Hub: push an export (or a session, exported on the way), and load one back
strictly, from the Hub or from an export folder.

Pushing follows huggingface_hub's template method (``ModelHubMixin.push_to_hub``): check everything, create the
repo, upload the folder, both through one ``HfApi`` made here, so tests patch ``trainer.hub.HfApi`` at the boundary.
Every Hub call runs under ``trainer.hub_calls``' retry policy, and every failure a person can act on (no token, a bad
or taken name, no permission, the Hub down or unreachable, a broken or mismatched classifier) raises ``HubError``
with a message that says what to do and holds no token. Nothing local is deleted on failure: an export folder stays
where it was.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi

from .card import REPO_PLACEHOLDER
from .classifier import LinearProbe
from .embed import is_local_identity, model_identity
from .export import CARD_NAME, EXPORT_FILES, export_facts, require_export, write_export
from .files import is_local_path, looks_like_path
from .hub_calls import (
    LIBRARY_NAME,
    SIGN_IN_MESSAGE,
    HubError,
    HubRetry,
    call_hub,
    create_repo,
    fetch_file,
    validate_repo_id,
)
from .probe_files import (
    CONFIG_NAME,
    MAX_CONFIG_BYTES,
    WEIGHTS_NAME,
    InvalidClassifier,
    load_weights,
    max_weights_bytes,
    probe_from_config,
    read_config,
)
from .record import SessionRecord, Shareable

__all__ = ["ClassifierMismatch", "check_compatible", "load_classifier", "push_classifier"]

log = logging.getLogger(__name__)


class ClassifierMismatch(HubError):
    """A classifier was trained on embeddings of another CLIP model or of another size than the ones at hand."""


# ------------------------------------------------------------------------------------------------------- load
def load_classifier(
    repo_or_folder: str | os.PathLike[str],
    *,
    expect_base_model: str | None = None,
    expect_dim: int | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    retry: HubRetry | None = None,
    local: bool = True,
) -> LinearProbe:
    """Load a classifier from an export folder or a Hub model repo, strictly.

    Strict means: config.json must describe a LinearProbe, model.safetensors must hold exactly its tensors (no key
    missing, none unexpected, every shape right, every value finite), and, when ``expect_base_model`` or
    ``expect_dim`` is given, the classifier must take that model's embeddings; otherwise ``ClassifierMismatch``
    names both models. ``token`` is for private repos: None uses this machine's login (the app should pass the
    visitor's token, or False). ``local=False`` never touches the local file system: the source must be a Hub repo
    id, and anything shaped like a path is refused. A public Space passes that, so that a visitor cannot make the
    server read its own folders. Downloads follow ``retry`` (default: ``HUB_RETRY``, see trainer/hub_calls.py): at
    most 3 requests a file, a few seconds in all, nothing kept on disk afterwards.
    """
    source = str(repo_or_folder)
    if not local:
        if looks_like_path(repo_or_folder):
            raise HubError(
                "Loading from a folder on the server is turned off here: enter a Hub repository such as "
                "'someone/red-circles'."
            )
        source = validate_repo_id(source)  # a relative path that happens to exist is still only a repo id here
    if local and Path(source).is_dir():
        _require_files(Path(source), source)
        return _load_files(lambda name, max_bytes: Path(source) / name, source, expect_base_model, expect_dim)
    if local and is_local_path(repo_or_folder):
        raise HubError(f"No classifier folder at {source}: pass the folder of an export, or a Hub repo id.")
    repo_id = validate_repo_id(source)
    with tempfile.TemporaryDirectory(prefix="concept-trainer-pull-") as tmp:  # gone once the probe is in memory

        def fetch(name: str, max_bytes: int) -> Path:
            return call_hub(
                lambda: fetch_file(repo_id, name, Path(tmp), max_bytes=max_bytes, revision=revision, token=token),
                what=f"downloading {name} from '{repo_id}'",
                repo_id=repo_id,
                token=token if isinstance(token, str) else None,
                retry=retry,
                note=f" (There is no local folder named {source!r} either.)" if local else "",
            )

        return _load_files(fetch, source, expect_base_model, expect_dim)


def _load_files(
    fetch: Callable[[str, int], Path], source: str, expect_base_model: str | None, expect_dim: int | None
) -> LinearProbe:
    """config.json first, checked and matched against the model in use before the weights are even fetched."""
    try:
        probe = probe_from_config(read_config(fetch(CONFIG_NAME, MAX_CONFIG_BYTES), source), source)
        check_compatible(probe, base_model=expect_base_model, dim=expect_dim)
        load_weights(probe, fetch(WEIGHTS_NAME, max_weights_bytes(probe.dim)), source)
    except InvalidClassifier as err:
        raise HubError(str(err)) from None
    return probe


def _require_files(folder: Path, source: str) -> None:
    missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if not (folder / n).is_file()]
    if missing:
        raise HubError(f"{source} is not a classifier export: {' and '.join(missing)} missing.")


def check_compatible(probe: LinearProbe, *, base_model: str | None = None, dim: int | None = None) -> None:
    """Raise ``ClassifierMismatch`` unless ``probe`` takes embeddings of ``base_model`` of size ``dim`` (None: any)."""
    model_differs = base_model is not None and not _same_model(probe.base_model, base_model)
    if model_differs or (dim is not None and dim != probe.dim):
        size = f" ({dim}-d)" if dim is not None else ""
        have = f"is {base_model}{size}" if base_model is not None else f"gives {dim}-d embeddings"
        raise ClassifierMismatch(
            f"This classifier takes {probe.dim}-d embeddings of {probe.base_model or 'an unrecorded model'}, "
            f"but the current model {have}. Use a classifier trained on {base_model or 'the current model'}, or "
            f"switch to {probe.base_model or 'its model'}."
        )


def _same_model(recorded: str | None, current: str) -> bool:
    """Whether two names mean the same CLIP model. A local model folder is known by its identity (its name and a
    hash of its files, ``embed.model_identity``), whatever its path; so is an older export that recorded a path, as
    long as that folder is still there. Hub ids are case-insensitive."""
    if recorded is None:
        return False
    if recorded == current:
        return True
    recorded, current = model_identity(recorded), model_identity(current)
    if is_local_identity(recorded) or is_local_identity(current):
        return recorded == current
    return recorded.casefold() == current.casefold()


# ------------------------------------------------------------------------------------------------------- push
def push_classifier(
    source: str | os.PathLike[str] | Shareable | SessionRecord | LinearProbe,
    repo_id: str,
    token: str | None,
    *,
    private: bool = False,
    exist_ok: bool = False,
    commit_message: str | None = None,
    retry: HubRetry | None = None,
    **export_options: Any,
) -> str:
    """Push a classifier to the Hub and return the repository's URL.

    ``source`` is an export folder (uploaded as it is, after a strict load check) or a Session, its record or a
    LinearProbe (exported to a temporary folder first; ``export_options`` go to ``export_classifier``). ``token`` is
    required: the app
    passes the visitor's OAuth token, the CLI ``find_local_token()``. ``exist_ok=False`` refuses to add to a
    repository that already exists (HTTP 409), so a visitor never overwrites an earlier model by accident.
    Connection errors, timeouts, 429 and 5xx answers are retried as ``retry`` says (default ``HUB_RETRY``: at most
    3 tries, a few seconds); then, like every other failure, they raise ``HubError``. The export folder is
    never modified or deleted.
    """
    repo_id = validate_repo_id(repo_id)
    if not token or not isinstance(token, str):
        raise HubError(f"Pushing to the Hub needs a Hugging Face token. {SIGN_IN_MESSAGE}.")
    given_folder = isinstance(source, str | os.PathLike)
    if given_folder and export_options:
        raise TypeError(f"export options {sorted(export_options)} only apply when pushing a Session or a probe")
    if not given_folder and not isinstance(source, Shareable | SessionRecord | LinearProbe):
        raise TypeError(f"push an export folder, a Session, its record or a LinearProbe; got {type(source).__name__}")

    with tempfile.TemporaryDirectory(prefix="concept-trainer-push-") as tmp:
        # Everything is checked before anything exists on the Hub: a folder must load back, a session must export.
        if given_folder:
            folder = Path(source)  # type: ignore[arg-type]
            require_export(folder)
            prompt = load_classifier(folder).prompt  # never upload a folder that would not load back
            kept = f" Nothing was lost: the export is still at {folder}."
        else:
            facts = export_facts(source, **export_options)  # type: ignore[arg-type]
            prompt, kept = facts.probe.prompt, ""
        calls = dict(repo_id=repo_id, token=token, retry=retry, note=kept)
        api = HfApi(token=token, library_name=LIBRARY_NAME)  # names this app in the Hub's user agent
        repo_url, final_id = create_repo(api, private=private, exist_ok=exist_ok, repo_type="model", **calls)
        if given_folder:
            folder = _naming_repo(folder, Path(tmp) / "upload", final_id)
        else:  # written once, with the repo's real id in its card, and uploaded as it is
            folder = write_export(dataclasses.replace(facts, repo_id=final_id), Path(tmp) / "export")
        commit = call_hub(
            lambda: api.upload_folder(
                repo_id=final_id,
                repo_type="model",
                folder_path=folder,
                commit_message=commit_message or f"Concept Trainer classifier: {_shorten(prompt or 'a concept', 60)}",
                allow_patterns=list(EXPORT_FILES),  # only the export's own files, whatever else lies in the folder
            ),
            what=f"uploading to '{final_id}'",
            **calls,
        )
    url = str(getattr(commit, "repo_url", None) or repo_url)
    log.info("Pushed the classifier for %r to %s", prompt, url)
    return url


def _naming_repo(folder: Path, staged: Path, repo_id: str) -> Path:
    """``folder`` if its card names no placeholder repo; else a copy of its files whose card names ``repo_id``
    (the folder itself is never modified)."""
    card = (folder / CARD_NAME).read_text(encoding="utf-8")
    if REPO_PLACEHOLDER not in card:
        return folder
    staged.mkdir(parents=True)
    for name in EXPORT_FILES:
        if name != CARD_NAME and (folder / name).is_file():
            shutil.copyfile(folder / name, staged / name)
    (staged / CARD_NAME).write_text(card.replace(REPO_PLACEHOLDER, repo_id), encoding="utf-8")
    return staged


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
