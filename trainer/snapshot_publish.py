"""Publishing embedding snapshots (see trainer/snapshot.py for what one is and how an app reads it).

``export_snapshot`` writes one from ``build_embeddings`` results, with a dataset card whose metadata the loader
checks; ``push_snapshot`` reads it back strictly and uploads it (same template as ``trainer.hub.push_classifier``:
validate, create the repo, upload, every failure a scrubbed ``HubError``). ``python -m trainer index --push-to-hub``
runs both.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from huggingface_hub import DatasetCard, DatasetCardData, HfApi, metadata_load

from .data import Collection
from .embed import Embedder
from .embedding_cache import Embeddings
from .files import atomic_folder
from .hub_calls import LIBRARY_NAME, SIGN_IN_MESSAGE, HubError, HubRetry, call_hub, create_repo, scrub, validate_repo_id
from .snapshot import (
    CARD_KEY,
    CARD_NAME,
    DATA_DIR,
    SNAPSHOT_FORMAT,
    collection_facts,
    model_facts,
    read_snapshot,
    read_split,
    split_file,
    split_name,
)

__all__ = ["export_snapshot", "push_snapshot", "snapshot_card"]

log = logging.getLogger(__name__)


def export_snapshot(
    embedder: Embedder,
    parts: Sequence[tuple[Collection, Embeddings]],
    folder: str | Path,
    *,
    command: str | None = None,
    repo_id: str | None = None,
) -> Path:
    """Write a snapshot of ``parts`` (splits of one collection, embedded by ``embedder``) to ``folder``.

    ``command`` is how the embeddings were made (recorded in the card, scrubbed of anything token-like);
    ``repo_id`` fills the card's usage line. The folder is built beside the target and moved into place; an
    earlier snapshot there is replaced, any other non-empty folder refused.
    """
    if not parts:
        raise ValueError("a snapshot needs at least one split")
    identities = {tuple(sorted(collection_facts(c).items())) for c, _ in parts}
    if len(identities) != 1:
        raise ValueError(f"a snapshot holds splits of one collection; got {[repr(c) for c, _ in parts]}")
    splits: dict[str, dict[str, Any]] = {}
    for collection, embeddings in parts:
        split = split_name(collection)
        if split in splits:
            raise ValueError(f"split {split!r} given twice")
        if not len(embeddings):
            raise ValueError(f"split {split!r} has no embedded image: nothing to publish")
        if embeddings.dim != embedder.dim:
            raise ValueError(
                f"split {split!r} holds {embeddings.dim}-d vectors; {embedder.model_id} gives {embedder.dim}"
            )
        splits[split] = {"file": split_file(split), "count": len(embeddings), "skipped": len(embeddings.skipped)}

    folder = Path(folder)
    _check_replaceable(folder)
    with atomic_folder(folder) as staging:
        (staging / DATA_DIR).mkdir()
        for collection, embeddings in parts:
            _write_parquet(staging / splits[split_name(collection)]["file"], embeddings)
        facts = {
            "format": SNAPSHOT_FORMAT,
            "model": model_facts(embedder),
            "collection": collection_facts(parts[0][0]),
            "splits": splits,
            "made_with": {
                "command": scrub(command, None) if command else None,
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "versions": _versions(),
            },
        }
        snapshot_card(facts, repo_id=repo_id).save(staging / CARD_NAME)
    log.info(
        "Wrote an embedding snapshot of %s to %s", ", ".join(f"{s} ({v['count']})" for s, v in splits.items()), folder
    )
    return folder


def _write_parquet(path: Path, embeddings: Embeddings) -> None:
    rows = np.ascontiguousarray(embeddings.vectors, dtype=np.float32)  # (N, D); reads a memory-mapped cache once
    n, dim = rows.shape
    offsets = pa.array(np.arange(0, n * dim + 1, dim, dtype=np.int32))
    vectors = pa.ListArray.from_arrays(offsets, pa.array(rows.reshape(-1), type=pa.float32()))
    table = pa.table({"id": pa.array(embeddings.ids, type=pa.string()), "vector": vectors})
    pq.write_table(table, path)


def _check_replaceable(folder: Path) -> None:
    if not folder.exists():
        return
    if not folder.is_dir():
        raise FileExistsError(f"{folder} exists and is not a folder; choose another snapshot folder")
    if any(folder.iterdir()) and not _is_snapshot_folder(folder):
        raise FileExistsError(f"{folder} is not empty and is not an earlier snapshot; choose an empty or new folder")


def _is_snapshot_folder(folder: Path) -> bool:
    try:
        return CARD_KEY in (metadata_load(folder / CARD_NAME) or {})
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError):
        return False


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for package in ("torch", "transformers", "datasets", "huggingface_hub", "pyarrow"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def snapshot_card(facts: dict[str, Any], *, repo_id: str | None = None) -> DatasetCard:
    """The dataset card: ``facts`` under ``concept_trainer`` (what the loader checks), standard Hub metadata
    (viewer configs, tags, size) and the same facts in words."""
    model, collection, splits, made = facts["model"], facts["collection"], facts["splits"], facts["made_with"]
    total = sum(s["count"] for s in splits.values())
    data = DatasetCardData(
        pretty_name=f"CLIP embeddings of {collection['dataset']} ({model['id']})",
        tags=["concept-trainer", "clip", "embeddings"],
        size_categories=_size_category(total),
        configs=[
            {
                "config_name": "default",
                "data_files": [{"split": split, "path": s["file"]} for split, s in splits.items()],
            }
        ],
        **{CARD_KEY: facts},
    )
    repo = repo_id or "<owner>/<this-snapshot>"
    model_line = model["id"] + ("" if model["local"] else f" at revision `{model['revision']}`")
    if model.get("commit"):
        model_line += f" (commit `{model['commit']}`)"
    dataset_line = collection["dataset"] + (f", config `{collection['config']}`" if collection.get("config") else "")
    if collection.get("revision"):
        dataset_line += f", revision `{collection['revision']}`"
    rows = "\n".join(f"| {split} | {s['count']:,} | {s['skipped']:,} | `{s['file']}` |" for split, s in splits.items())
    versions = ", ".join(f"{k} {v}" for k, v in made["versions"].items() if v)
    command = f"`{made['command']}`" if made.get("command") else "not recorded"
    body = f"""
# CLIP embeddings for Concept Trainer

Precomputed image embeddings, so that a [Concept Trainer](https://github.com/) app starts in seconds instead of
embedding the collection again. Set `CT_SNAPSHOT={repo}` on the app (a Space variable); it checks that this
snapshot matches its model and collection, and indexes locally otherwise.

- **Model**: {model_line}; {model["dim"]}-dimensional image embeddings, each L2-normalised on its own (a dot
  product is a cosine similarity), stored as float32.
- **Collection**: {dataset_line}.
- **Rows**: one per image that could be decoded, with its `id` in the collection (the image itself is not here:
  the app fetches it by id) and its `vector`. Images that could not be decoded are counted as skipped.

| split | images | skipped | file |
|---|---|---|---|
{rows}

## How it was made

Command: {command}. Date: {made["date"]}. Libraries: {versions}.
"""
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n{body}")


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M" if n < 10_000_000 else "n>10M"


# -------------------------------------------------------------------------------------------------------- push
def push_snapshot(
    folder: str | Path,
    repo_id: str,
    token: str | None,
    *,
    private: bool = False,
    exist_ok: bool = False,
    retry: HubRetry | None = None,
) -> str:
    """Upload a snapshot folder to the Hub dataset repo ``repo_id`` and return its URL.

    The folder is read back strictly first (a snapshot that would not load is never uploaded). ``exist_ok=False``
    refuses to add to an existing repo; with it, the upload replaces every earlier data file, so the repo never
    mixes splits of two snapshots. Retries and error messages are those of ``trainer.hub_calls``; the token never
    appears in a message.
    """
    repo_id = validate_repo_id(repo_id)
    if not token or not isinstance(token, str):
        raise HubError(f"Pushing a snapshot needs a Hugging Face token with write access. {SIGN_IN_MESSAGE}.")
    snapshot = read_snapshot(folder)
    for split in snapshot.splits:
        read_split(snapshot, split)  # the same checks a loading app makes
    calls = dict(repo_id=repo_id, token=token, retry=retry, repo_type="dataset")
    calls["note"] = f" Nothing was lost: the snapshot is still at {folder}."
    api = HfApi(token=token, library_name=LIBRARY_NAME)
    repo_url, final_id = create_repo(api, private=private, exist_ok=exist_ok, **calls)
    with tempfile.TemporaryDirectory(prefix="concept-trainer-snapshot-") as tmp:
        staged = Path(tmp) / "upload"
        shutil.copytree(snapshot.folder, staged)
        card = staged / CARD_NAME  # the usage line names the repo it was finally pushed to
        card.write_text(card.read_text(encoding="utf-8").replace("<owner>/<this-snapshot>", final_id), encoding="utf-8")
        commit = call_hub(
            lambda: api.upload_folder(
                repo_id=final_id,
                repo_type="dataset",
                folder_path=staged,
                commit_message=f"Embedding snapshot: {snapshot.describe()}",
                allow_patterns=[CARD_NAME, f"{DATA_DIR}/*.parquet"],
                delete_patterns=[f"{DATA_DIR}/*"],  # an earlier snapshot's splits must not outlive its card
            ),
            what=f"uploading the snapshot to '{final_id}'",
            **{**calls, "repo_id": final_id},
        )
    url = str(getattr(commit, "repo_url", None) or repo_url)
    log.info("Pushed the embedding snapshot (%s) to %s", snapshot.describe(), url)
    return url
