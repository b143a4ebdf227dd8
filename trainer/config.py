"""Every setting in one dataclass. Environment variables named ``CT_<FIELD>`` override the defaults.

Example: ``CT_MODEL_ID=assets/tiny-clip CT_BATCH_SIZE=20 python app.py``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["BUNDLE_DATASET", "BUNDLE_MODEL", "PROJECT_ROOT", "Settings"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The offline demo bundle: a tiny CLIP-format model and a generated collection, both shipped in assets/.
BUNDLE_MODEL = str(PROJECT_ROOT / "assets" / "tiny-clip")
BUNDLE_DATASET = str(PROJECT_ROOT / "assets" / "shapes")


@dataclass
class Settings:
    # The real defaults, used when the Hub is reachable (a Space). Offline, the app falls back to the bundle.
    model_id: str = "openai/clip-vit-base-patch32"
    model_revision: str = "main"
    dataset: str = "frgfm/imagenette"
    dataset_config: str | None = "320px"
    # datasets 4+ dropped loading scripts; the parquet conversion branch is what loads today.
    dataset_revision: str = "refs/convert/parquet"
    split: str = "train"  # indexed and searched
    eval_split: str | None = "validation"  # held out: only ever classified, never labelled
    image_column: str | None = None  # None: found automatically (the first Image feature)
    # "auto": real model and dataset if the Hub answers, else the bundle. "bundle" / "hub" force one.
    source: str = "auto"

    # Engine defaults. 10 images a round is what a person scores comfortably on one screen.
    batch_size: int = 10
    strategy: str = "mixed"
    seed: int = 0

    # Indexing: 64 images a forward pass keeps a ViT-B/32 busy on 2 cores without hoarding memory.
    embed_batch_size: int = 64
    cache_dir: Path = field(default_factory=lambda: PROJECT_ROOT / "cache")
    index_dtype: str = "float32"  # "float16" halves memory; scores are computed in float32 either way

    # A published embedding snapshot (a Hub dataset repo "owner/name", or a local folder) to start from instead of
    # embedding the collection: seconds instead of minutes on a CPU Space. Checked against the model and collection;
    # refused (and indexed locally) when it does not match. See trainer/snapshot.py and the README's
    # 'Deploying the Space'.
    snapshot: str | None = None
    snapshot_revision: str | None = None  # pin a commit or tag of the snapshot repo; None: its main branch

    # Serving, tuned from measurements (benchmarks/RESULTS-load.md): events the queue runs at once, and torch's
    # intra-op threads (process-wide). A round is mostly Python and image encoding, not big tensor ops, so on 2
    # cores more concurrent events beat more threads per event; 0 leaves torch's own default.
    concurrency: int = 4
    torch_threads: int = 1

    # Vector index backend: "local" (exact, in memory) or "pinecone".
    backend: str = "local"
    pinecone_index: str = "concept-trainer"
    pinecone_cloud: str = "aws"
    pinecone_region: str = "us-east-1"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> Settings:
        """Defaults, then ``CT_*`` variables, then explicit keyword overrides (highest priority)."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(f"CT_{f.name.upper()}")
            if raw is not None:
                values[f.name] = _parse(f.name, f.type, raw)
        values.update(overrides)
        return cls(**values)


def _parse(name: str, annotation: object, raw: str) -> object:
    kind = str(annotation)
    if "int" in kind:
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"CT_{name.upper()}={raw!r} is not an integer") from None
    if "Path" in kind:
        return Path(raw)
    if "None" in kind and raw.strip().lower() in {"", "none"}:
        return None
    return raw
