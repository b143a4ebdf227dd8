"""Command line: ``python -m trainer <command> ...``, one function per subcommand.

To add a command, write a public ``add_<name>_command(subparsers)`` that registers its arguments and sets ``func`` to
a ``cmd_<name>(args) -> int`` function, then call it from :func:`build_parser`. Public, because the sharing commands
live in ``trainer/hub_cli.py`` and one module does not call another's private helpers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from trainer.config import Settings
from trainer.hub_cli import add_predict_command, add_push_command
from trainer.sources import SOURCES

if TYPE_CHECKING:
    from trainer.data import Collection
    from trainer.embed import Embedder
    from trainer.embedding_cache import Embeddings
    from trainer.ray_indexing import RayOptions, RayRun

__all__ = ["add_index_command", "build_parser", "cmd_index", "main"]

logger = logging.getLogger(__name__)

_SHOW_SKIPPED = 20  # beyond this many, the summary says how many more


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer", description="Concept Trainer command line.")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_index_command(subparsers)
    add_push_command(subparsers)
    add_predict_command(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded in what a command publishes (a snapshot card)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(message)s")
    return args.func(args)


# ------------------------------------------------------------------------------------------------------- index
def add_index_command(subparsers: argparse._SubParsersAction) -> None:
    index = subparsers.add_parser(
        "index",
        help="embed an image collection and save a local vector index",
        description="Embed every image of a collection (cached, resumable) and save a LocalIndex. With no model "
        "and dataset given, uses the settings (CT_* variables) and falls back to the offline bundle when the "
        "Hugging Face Hub is not reachable.",
    )
    index.add_argument("--model", help="CLIP model: Hub id or local folder (default: settings / bundle)")
    index.add_argument("--model-revision", help="Hub revision of the model")
    index.add_argument("--dataset", help="Hub dataset name, local dataset folder, or folder of images")
    index.add_argument("--config", help="dataset config (e.g. 320px)")
    index.add_argument("--split", help="split to index (default: settings.split, 'train')")
    index.add_argument("--revision", help="Hub revision of the dataset")
    index.add_argument("--image-column", help="image column (default: the first Image feature)")
    index.add_argument("--source", choices=SOURCES, help="auto: real defaults if the Hub answers, else the bundle")
    index.add_argument("--cache-dir", type=Path, help="embeddings cache (default: settings.cache_dir)")
    index.add_argument("--batch-size", type=int, help="images per forward pass (default: settings.embed_batch_size)")
    index.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    index.add_argument("--out", type=Path, help="index folder (default: <cache-dir>/indexes/<cache key>)")
    index.add_argument(
        "--backend",
        choices=("local", "pinecone"),
        help="where the vectors go: a saved local index (default) or Pinecone (needs PINECONE_API_KEY; resumable)",
    )
    index.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this process (default); ray: a Ray Data pipeline on a Ray cluster or this machine (pip install "
        '"ray[data]==2.60.0"), for collections too big for one process',
    )
    ray = index.add_argument_group(
        "Ray engine (--engine ray)",
        "Decoding runs on CPU actors and embedding on an actor pool (a GPU each, float16), writing resumable parquet "
        "shards (id, vector); the outputs are the same. On a cluster, the model, the collection and the shard folder "
        "must be readable at the same path on every node.",
    )
    ray.add_argument("--ray-address", help="auto (the cluster on this node), ray://host:10001, or none: start Ray here")
    ray.add_argument("--num-gpus", type=int, help="embedding actors, one GPU each (default: every GPU; 0: CPU)")
    ray.add_argument("--cpus-per-decode", type=float, help="CPUs reserved by each decoding actor (default: 1)")
    ray.add_argument("--shard-size", type=int, help="rows per shard, the unit of work and of resumption (default: 256)")
    ray.add_argument("--shard-dir", help="where shard folders go: a shared path or URI (default: the cache folder)")
    snapshot = index.add_argument_group(
        "embedding snapshot",
        "Publish the embeddings so that an app (a Space with CT_SNAPSHOT=<repo>) starts in seconds instead of "
        "embedding again. The snapshot also holds the held-out split, which the app classifies.",
    )
    snapshot.add_argument("--push-to-hub", metavar="REPO", help="push a snapshot to this Hub dataset repo (owner/name)")
    snapshot.add_argument("--snapshot-out", type=Path, help="write the snapshot to this folder (kept after a push)")
    snapshot.add_argument("--eval-split", help="held-out split to include (default: settings.eval_split; 'none': none)")
    snapshot.add_argument("--private", action="store_true", help="create the snapshot repo as private")
    snapshot.add_argument("--exist-ok", action="store_true", help="update the snapshot repo if it exists (yours)")
    index.set_defaults(func=cmd_index)


def cmd_index(args: argparse.Namespace) -> int:
    # Imported here so that `--help` and other commands do not pay for torch and transformers.
    from trainer import embed
    from trainer.embedding_cache import cache_key
    from trainer.indexing import build_embeddings
    from trainer.sources import open_collection, resolve_source

    settings = Settings.from_env(**({"source": args.source} if args.source else {}))
    if not (args.model and args.dataset):  # something comes from the settings: they may need the bundle
        settings = resolve_source(settings)
    flags = {
        "model_id": args.model,
        "model_revision": args.model_revision,
        "dataset": args.dataset,
        "dataset_config": args.config,
        "dataset_revision": args.revision,
        "split": args.split,
        "image_column": args.image_column,
        "cache_dir": args.cache_dir,
        "embed_batch_size": args.batch_size,
        "backend": args.backend,
    }
    settings = dataclasses.replace(settings, **{k: v for k, v in flags.items() if v is not None})
    if args.dataset and args.config is None:  # the settings' config is their dataset's ("320px"), not this one's
        settings = dataclasses.replace(settings, dataset_config=None)
    if settings.embed_batch_size <= 0:
        raise SystemExit(f"--batch-size must be a positive integer; got {settings.embed_batch_size}")
    if args.eval_split is not None:
        settings = dataclasses.replace(
            settings, eval_split=None if args.eval_split.lower() in ("", "none") else args.eval_split
        )
    ray_options = _ray_options(args, settings)  # flag mistakes before loading anything
    token = _check_push(args.push_to_hub)  # before minutes of embedding, not after

    embedder = embed.load(settings.model_id, settings.model_revision, device=args.device)
    collection = open_collection(settings)
    logger.info("Indexing %r with %s", collection, settings.model_id)
    out = args.out or Path(settings.cache_dir) / "indexes" / cache_key(embedder, collection)
    if ray_options is not None:
        return _index_on_ray(args, ray_options, settings, embedder, collection, out, token)

    def embed_split(split: Collection) -> Embeddings:
        with _ProgressBar(len(split)) as bar:
            return build_embeddings(
                embedder, split, settings.cache_dir, batch_size=settings.embed_batch_size, progress=bar.update
            )

    started = time.perf_counter()
    result = embed_split(collection)
    elapsed = time.perf_counter() - started
    _refuse_empty(len(result), result.skipped, collection)
    if result.cache_hit:
        how = f"Cache hit: loaded in {elapsed:.2f} s, no model forward ({result.path})"
    else:
        handled = len(result) + len(result.skipped)
        how = f"Embedded in {elapsed:.1f} s: {handled / max(elapsed, 1e-9):.1f} images/s (cache miss)"
    _write_index(settings, collection, result, how, out)
    if args.push_to_hub or args.snapshot_out:
        _publish_snapshot(args, settings, embedder, collection, result, embed_split, token)
    return 0


def _ray_options(args: argparse.Namespace, settings: Settings) -> RayOptions | None:
    """The Ray engine's options (None for ``--engine local``); Ray flags without ``--engine ray`` are refused."""
    flags = {
        "--ray-address": args.ray_address,
        "--num-gpus": args.num_gpus,
        "--cpus-per-decode": args.cpus_per_decode,
        "--shard-size": args.shard_size,
        "--shard-dir": args.shard_dir,
    }
    if args.engine != "ray":
        given = [flag for flag, value in flags.items() if value is not None]
        if given:
            raise SystemExit(f"{', '.join(given)} only apply to --engine ray (the engine is {args.engine})")
        return None
    if args.device != "cpu":
        raise SystemExit(
            "--device applies to --engine local; with --engine ray, GPUs come from the cluster (--num-gpus)"
        )
    from trainer.ray_indexing import RayOptions, ray_missing

    if ray_missing():
        raise SystemExit(f"--engine ray: {ray_missing()}")

    given = {
        "address": args.ray_address,
        "num_gpus": args.num_gpus,
        "cpus_per_decode": args.cpus_per_decode,
        "rows_per_shard": args.shard_size,
        "shard_root": args.shard_dir,
    }
    try:
        return RayOptions(batch_size=settings.embed_batch_size, **{k: v for k, v in given.items() if v is not None})
    except ValueError as err:
        raise SystemExit(f"--engine ray: {err}") from None


def _index_on_ray(
    args: argparse.Namespace,
    options: RayOptions,
    settings: Settings,
    embedder: Embedder,
    collection: Collection,
    out: Path,
    token: str | None,
) -> int:
    """``index --engine ray``: embed into shards on the cluster, then the same outputs as the local engine."""
    import contextlib

    from trainer import ray_indexing
    from trainer.embedding_cache import load_cached
    from trainer.index import IndexUnavailable
    from trainer.index.factory import collection_namespace, open_index

    namespace = collection_namespace(settings.model_id, collection)
    if settings.backend == "pinecone":  # a missing key or a wrong index must not wait for the embedding
        try:
            open_index(settings, embedder.dim, namespace)
        except IndexUnavailable as err:
            raise SystemExit(f"Pinecone: {err}") from None
    with contextlib.ExitStack() as stack:
        indexers: list[ray_indexing.RayIndexer] = []  # made on first use: a cache hit needs no cluster

        def indexer() -> ray_indexing.RayIndexer:
            if not indexers:
                stack.enter_context(ray_indexing.ray_session(options.address))
                try:
                    indexers.append(ray_indexing.RayIndexer(options))
                except ValueError as err:
                    raise SystemExit(f"--engine ray: {err}") from None
            return indexers[0]

        def run_split(split: Collection) -> ray_indexing.RayRun:
            with _ProgressBar(len(split)) as bar:
                return indexer().embed(embedder, split, settings.cache_dir, progress=bar.update)

        def embed_split(split: Collection) -> Embeddings:
            cached = load_cached(embedder, split, settings.cache_dir)
            return cached if cached is not None else run_split(split).to_cache(embedder, split, settings.cache_dir)

        cached = load_cached(embedder, collection, settings.cache_dir)
        if cached is not None:  # as with --engine local: the cache entry is this machine's record of the vectors
            result: Embeddings | None = cached
            how = f"Cache hit: no model forward, no Ray ({cached.path})"
            _write_index(settings, collection, cached, how, out)
        else:
            run = run_split(collection)
            _refuse_empty(len(run), run.skipped, collection)
            how = _ray_how(run, indexer().describe())
            result = None
            if settings.backend == "pinecone":
                try:
                    with _ProgressBar(len(run)) as bar:
                        written = indexer().upsert(run, settings, namespace, progress=bar.update)
                except IndexUnavailable as err:
                    raise SystemExit(f"Pinecone: {err}") from None
                print(_summary(collection, settings.model_id, len(run), run.dim, run.skipped, how, run.skipped_file))
                print(
                    f"Pinecone index {settings.pinecone_index!r}, namespace {namespace!r}: {written} record(s) "
                    f"written, {len(run) - written} already there (from {len(run.shards)} shard(s), on Ray)"
                )
            else:
                result = run.to_cache(embedder, collection, settings.cache_dir)
                _write_index(settings, collection, result, how, out)
        if args.push_to_hub or args.snapshot_out:
            result = result or embed_split(collection)
            _publish_snapshot(args, settings, embedder, collection, result, embed_split, token)
    return 0


def _ray_how(run: RayRun, engine: str) -> str:
    if not run.embedded_now:
        return f"Every row was in a shard already: nothing embedded ({run.store.location})"
    rate = run.embedded_now / max(run.seconds, 1e-9)
    resumed = f"; {run.resumed_rows} row(s) resumed from earlier shards" if run.resumed_rows else ""
    return f"Embedded {run.embedded_now} images on Ray in {run.seconds:.1f} s: {rate:.1f} images/s ({engine}){resumed}"


def _refuse_empty(count: int, skipped: list[tuple[str, str]], collection: Collection) -> None:
    if not count:
        reasons = "; ".join(f"{id_}: {why}" for id_, why in skipped[:3])
        raise SystemExit(f"no image of {collection.source} could be decoded ({len(skipped)} skipped: {reasons})")


def _check_push(repo: str | None) -> str | None:
    """The token for ``--push-to-hub`` (None without it); a bad repo id or a missing token ends the command now."""
    if not repo:
        return None
    from trainer.hub_calls import HubError, find_local_token, validate_repo_id

    try:
        validate_repo_id(repo)
        return find_local_token()
    except HubError as err:
        raise SystemExit(f"--push-to-hub: {err}") from None


def _publish_snapshot(
    args: argparse.Namespace,
    settings: Settings,
    embedder: Embedder,
    collection: Collection,
    result: Embeddings,
    embed_split: Callable[[Collection], Embeddings],
    token: str | None,
) -> None:
    """Embed the held-out split too (the app classifies it) with the same engine, write the snapshot, and push it
    when asked."""
    import tempfile

    from trainer.hub_calls import HubError
    from trainer.snapshot_publish import export_snapshot, push_snapshot
    from trainer.sources import open_held_out

    parts = [(collection, result)]
    held_out = None
    if settings.eval_split != collection.split:
        held_out = open_held_out(settings, "the snapshot holds the indexed split only")
    if held_out is not None:
        logger.info("Embedding the held-out split %r for the snapshot", settings.eval_split)
        parts.append((held_out, embed_split(held_out)))
    command = "python -m trainer " + " ".join(shlex.quote(a) for a in args.argv)
    with tempfile.TemporaryDirectory(prefix="concept-trainer-snapshot-") as tmp:
        folder = args.snapshot_out or Path(tmp) / "snapshot"
        export_snapshot(embedder, parts, folder, command=command, repo_id=args.push_to_hub)
        splits = ", ".join(f"{c.split or 'train'} ({len(e)})" for c, e in parts)
        if args.snapshot_out:
            print(f"Snapshot of {splits} written to {folder}")
        if args.push_to_hub:
            try:
                url = push_snapshot(folder, args.push_to_hub, token, private=args.private, exist_ok=args.exist_ok)
            except HubError as err:  # already scrubbed of the token, and says what to do
                raise SystemExit(f"snapshot push failed: {err}") from None
            print(f"Pushed the snapshot of {splits} to {url}")
            repo = url.rstrip("/").split("/datasets/")[-1] if "/datasets/" in url else args.push_to_hub
            print(f"Start the app from it with CT_SNAPSHOT={repo}")


def _write_index(settings: Settings, collection: Collection, result: Embeddings, how: str, out: Path) -> None:
    """Put the embeddings where ``settings.backend`` says, through the one index builder, and say what was done:
    a local index saved at ``out``, or the collection's Pinecone namespace (batched, retried, resumable)."""
    from trainer.index import IndexUnavailable
    from trainer.index.factory import build_index

    try:
        with _ProgressBar(len(result)) as bar:
            built = build_index(settings, collection, result.ids, result.vectors, local_path=out, progress=bar.update)
    except IndexUnavailable as err:
        raise SystemExit(f"Pinecone: {err}") from None
    details = result.path / "skipped.json" if result.path else None  # every skipped image, with its reason
    if built.namespace is None:
        # Which model and collection the index was built from: what a later command needs to embed prompts with
        # the same model and to fetch thumbnails by id.
        (out / "source.json").write_text(json.dumps(result.manifest, indent=2))
        print(_summary(collection, settings.model_id, len(result), result.dim, result.skipped, how, details, out))
        return
    print(_summary(collection, settings.model_id, len(result), result.dim, result.skipped, how, details))
    print(
        f"Pinecone index {settings.pinecone_index!r}, namespace {built.namespace!r}: {built.written} record(s) "
        f"written, {len(result) - built.written} already there"
    )


def _summary(
    collection: Collection,
    model_id: str,
    count: int,
    dim: int,
    skipped: list[tuple[str, str]],
    how: str,
    details: Path | str | None,
    out: Path | None = None,
) -> str:
    """What was indexed, how (``how``: cache hit, speed), which images were skipped and why, and where it went."""
    lines = [
        f"Indexed {count} images (dim {dim}) from {collection.source}"
        + (f" [{collection.split}]" if collection.split else "")
        + f" with {model_id}",
        how,
    ]
    if skipped:
        lines.append(f"Skipped {len(skipped)} undecodable image(s):")
        lines += [f"  {id_}: {why}" for id_, why in skipped[:_SHOW_SKIPPED]]
        if len(skipped) > _SHOW_SKIPPED:
            lines.append(f"  ... and {len(skipped) - _SHOW_SKIPPED} more (see {details})")
    else:
        lines.append("Skipped: none")
    if out is not None:
        lines.append(f"Index saved to {out}")
    return "\n".join(lines)


class _ProgressBar:
    """``progress(done, total, message)`` callback drawn with tqdm (a dependency of transformers and datasets)."""

    def __init__(self, total: int) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total, unit="img", file=sys.stderr, dynamic_ncols=True)

    def update(self, done: int, total: int, message: str) -> None:
        self._bar.total = total
        self._bar.set_postfix_str(message, refresh=False)
        self._bar.update(done - self._bar.n)

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.close()
