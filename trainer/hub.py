"""Share a classifier: export it to a folder, zip it, push it to the Hugging Face Hub, and load it back strictly.

The folder is the unit of sharing. ``export_classifier`` writes everything another person needs into one folder:

    model.safetensors   the head: ``linear.weight`` (1, D), ``linear.bias`` (1,) and the prompt prior buffers
    config.json         LinearProbe's constructor arguments: base CLIP model id and revision, dim, prompt, recipe, ...
    README.md           a model card (YAML metadata + how it was trained, how good it is, how to use it, limitations)
    labels.jsonl/.csv   every label (collection id, score in [-1, 1], round) so anyone can retrain or continue

The app's "Export" zips that folder (``zip_export``); a push uploads it. Pushing follows huggingface_hub's template
method (``ModelHubMixin.push_to_hub``): save to a temporary folder, ``create_repo``, ``upload_folder``, both through
one ``HfApi`` made here, so tests patch ``trainer.hub.HfApi`` at the boundary.

Tokens. A push takes the token explicitly: the app passes the visitor's OAuth token and must never fall back to the
Space's own ``HF_TOKEN`` (that would push a visitor's work into the Space owner's account), so only the command line
looks one up, with ``find_local_token``. A token is never written to a file, logged, or left in an error message:
every Hub error is re-raised as a ``HubError`` whose text has been scrubbed of it.

Failures a person can act on (no token, a bad or taken name, no permission, the Hub down or unreachable, a broken
or mismatched classifier) all raise ``HubError`` with a message that says what to do. Nothing local is deleted on
failure: an exported folder stays where it was.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from huggingface_hub import HfApi, get_token
from huggingface_hub.errors import (
    DeviceCodeError,
    HFValidationError,
    OIDCError,
)
from huggingface_hub.utils import validate_repo_id as _hub_validate_repo_id

from .card import LIBRARY_NAME, REPO_PLACEHOLDER, CardFacts, model_card
from .classifier import LinearProbe
from .embed import is_local_identity, model_identity
from .files import atomic_file, atomic_folder, is_local_path, looks_like_path
from .hub_calls import SIGN_IN_MESSAGE, HubError, HubRetry, call_hub, create_repo, fetch_file, scrub
from .probe_files import (
    CONFIG_KEYS,
    CONFIG_NAME,
    MAX_CONFIG_BYTES,
    WEIGHTS_NAME,
    InvalidClassifier,
    load_weights,
    max_weights_bytes,
    probe_from_config,
    read_config,
)
from .quality import Quality
from .session import RoundStats, Session

__all__ = [
    "CARD_NAME",
    "CONFIG_NAME",
    "DEFAULT_LICENSE",
    "EXPORT_FILES",
    "LABELS_CSV",
    "LABELS_JSONL",
    "SIGN_IN_MESSAGE",
    "WEIGHTS_NAME",
    "ClassifierMismatch",
    "HubError",
    "LabelRecord",
    "check_compatible",
    "export_classifier",
    "find_local_token",
    "load_classifier",
    "push_classifier",
    "read_labels",
    "validate_repo_id",
    "zip_export",
]

log = logging.getLogger(__name__)

CARD_NAME = "README.md"
LABELS_JSONL = "labels.jsonl"
LABELS_CSV = "labels.csv"
EXPORT_FILES = (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME, LABELS_JSONL, LABELS_CSV)
DEFAULT_LICENSE = "apache-2.0"

_MAX_NAME_LENGTH = 96  # the Hub's limit for each of owner and name
T = TypeVar("T")


class ClassifierMismatch(HubError):
    """A classifier was trained on embeddings of another CLIP model or of another size than the ones at hand."""


class LabelRecord(NamedTuple):
    id: str  # the item's id in its image collection
    score: float  # in [-1, 1]: sign = class, magnitude = confidence, 0 = seen, no opinion
    round: int | None  # the labelling round it was given in, when known
    audit: bool = False  # an audit label: held out to measure quality, never to be trained on


# ------------------------------------------------------------------------------------------------- names, tokens
def validate_repo_id(repo_id: str) -> str:
    """Return ``repo_id`` (surrounding spaces removed) if it is a valid Hub model id, else raise ``HubError``.

    Valid: ``name`` or ``owner/name``; each part 1-96 ASCII letters, digits, ``-``, ``_`` or ``.``; no ``--`` or
    ``..``; not starting or ending with ``-`` or ``.``; the name not ending in ``.git``. These rules also rule out
    every path trick (``../x``, ``/etc/x``, ``a\\b``), so a repo id can never be mistaken for a local path.
    """
    if not isinstance(repo_id, str) or not repo_id.strip():
        raise HubError("Enter a repository name, e.g. 'dogs-in-snow' or 'your-name/dogs-in-snow'.")
    repo_id = repo_id.strip()
    parts = repo_id.split("/")
    if len(parts) > 2:
        raise HubError(f"{repo_id!r} has {len(parts) - 1} '/': a repository id is 'name' or 'owner/name'.")
    for part in parts:
        problem = _name_problem(part)
        if problem:
            raise HubError(f"Invalid repository id {repo_id!r}: {problem}.")
    if parts[-1].lower().endswith(".git"):
        raise HubError(f"Invalid repository id {repo_id!r}: a name cannot end with '.git'.")
    try:  # the Hub library's own check too, so that nothing it would refuse ever gets this far
        _hub_validate_repo_id(repo_id)
    except HFValidationError as err:
        raise HubError(f"Invalid repository id {repo_id!r}: {err}") from None
    return repo_id


def _name_problem(part: str) -> str | None:
    if not part:
        return "the owner and the name must both be non-empty"
    bad = sorted({c for c in part if not (c.isascii() and (c.isalnum() or c in "-_."))})
    if bad:
        return f"{part!r} contains {', '.join(repr(c) for c in bad)}; use only letters, digits, '-', '_' and '.'"
    if "--" in part or ".." in part:
        return f"{part!r} contains '--' or '..'"
    if part[0] in "-." or part[-1] in "-.":
        return f"{part!r} starts or ends with '-' or '.'"
    if len(part) > _MAX_NAME_LENGTH:
        return f"{part[:20]!r}... is {len(part)} characters long; the Hub allows at most {_MAX_NAME_LENGTH}"
    return None


def find_local_token() -> str:
    """This machine's token: ``HF_TOKEN``, else the one saved by ``hf auth login``. For the CLI and scripts only.

    The app must not call this: on a Space it would find the Space owner's secret, not the visitor's sign-in.
    """
    try:
        token = get_token()
    except (OIDCError, DeviceCodeError, OSError) as err:  # a failed OIDC exchange or token refresh, an unreadable file
        raise HubError(f"Could not read a Hugging Face token ({scrub(str(err), None)}). {SIGN_IN_MESSAGE}.") from None
    if not token:
        raise HubError(f"No Hugging Face token found. {SIGN_IN_MESSAGE}.")
    return token


# ------------------------------------------------------------------------------------------------------- export
def export_classifier(
    source: Session | LinearProbe,
    folder: str | os.PathLike[str],
    *,
    labels: Mapping[str, float] | None = None,
    label_rounds: Mapping[str, int] | None = None,
    history: Sequence[RoundStats] | None = None,
    strategy: str | None = None,
    held_out_ap: float | None = None,
    held_out_note: str | None = None,
    collection: str | None = None,
    quality: Quality | None = None,
    repo_id: str | None = None,
    license: str = DEFAULT_LICENSE,  # the model card's own field name, shadowing the builtin on purpose
    tags: Sequence[str] = (),
) -> Path:
    """Write weights, config, model card and labels into ``folder`` and return its path.

    ``source`` is a Session (its classifier, labels, label rounds, history, strategy, audit labels and quality
    estimate are used; passing any of those too is an error) or a bare LinearProbe (pass what you have; what is
    missing is reported as unknown).
    ``held_out_ap`` is the average precision measured on images never labelled, if the caller has one; the card
    says plainly when none was measured. ``collection`` names the image collection the label ids refer to.
    ``repo_id`` fills the card's code snippets; without it they show a placeholder that a push replaces.

    The folder is built beside the target and moved into place, so it is never left half-written. An existing
    earlier export there is replaced; any other non-empty folder is refused.
    """
    facts = _gather_facts(
        source,
        labels=labels,
        label_rounds=label_rounds,
        history=history,
        strategy=strategy,
        held_out_ap=held_out_ap,
        held_out_note=held_out_note,
        collection=collection,
        quality=quality,
        repo_id=repo_id,
        license=license,
        tags=tags,
    )
    folder = Path(folder)
    _check_replaceable(folder)
    with atomic_folder(folder) as staging:
        _write_export(facts, staging)
    log.info("Exported the classifier for %r to %s", facts.probe.prompt, folder)
    return folder


def _gather_facts(source: Session | LinearProbe, **given: Any) -> CardFacts:
    from_session = ("labels", "label_rounds", "history", "strategy", "quality")
    audit_labels: dict[str, float] = {}
    if isinstance(source, Session):
        doubled = [name for name in from_session if given[name] is not None]
        if doubled:
            raise TypeError(f"{', '.join(doubled)} come from the Session; pass them only with a bare LinearProbe")
        probe = source.classifier
        given.update(
            labels=source.labels,
            label_rounds=source.label_rounds,
            history=source.history,
            strategy=source.strategy,
            quality=source.quality(),
        )
        audit_labels = source.audit_labels
    elif isinstance(source, LinearProbe):
        probe = source
    else:
        raise TypeError(f"export a Session or a LinearProbe; got {type(source).__name__}")
    if not probe.base_model:
        raise ValueError(
            "this classifier does not record its base CLIP model (base_model is None), so nobody could use it: "
            "create the Session or LinearProbe with base_model=<the CLIP model id>"
        )
    labels = {str(k): float(v) for k, v in (given["labels"] or {}).items()}
    bad = {k: v for k, v in labels.items() if not (math.isfinite(v) and -1 <= v <= 1)}
    if bad:
        raise ValueError(f"label scores must be finite and within [-1, 1]; got {dict(list(bad.items())[:5])}")
    ap = given["held_out_ap"]
    if ap is not None and not (math.isfinite(ap) and 0 <= ap <= 1):
        raise ValueError(f"held_out_ap must be an average precision in [0, 1]; got {ap!r}")
    return CardFacts(
        probe=probe,
        labels=labels,
        label_rounds={str(k): int(v) for k, v in (given["label_rounds"] or {}).items()},
        history=list(given["history"] or []),
        strategy=given["strategy"],
        held_out_ap=ap,
        held_out_note=given["held_out_note"],
        collection=given["collection"],
        quality=given["quality"],
        audit_labels=audit_labels,
        repo_id=validate_repo_id(given["repo_id"]) if given["repo_id"] else REPO_PLACEHOLDER,
        license=given["license"] or DEFAULT_LICENSE,
        tags=tuple(given["tags"]),
    )


def _check_replaceable(folder: Path) -> None:
    if not folder.exists():
        return
    if not folder.is_dir():
        raise FileExistsError(f"{folder} exists and is not a folder; choose another export folder")
    names = {p.name for p in folder.iterdir()}
    if names and not (names <= set(EXPORT_FILES) and CONFIG_NAME in names):
        raise FileExistsError(
            f"{folder} is not empty and is not an earlier export ({sorted(names - set(EXPORT_FILES))[:5]}); "
            "choose an empty or new folder"
        )


def _write_export(facts: CardFacts, folder: Path) -> None:
    # The card first: save_pretrained writes the mixin's generic card only where no README.md exists yet.
    files = dict(weights=WEIGHTS_NAME, config=CONFIG_NAME, jsonl=LABELS_JSONL, csv=LABELS_CSV)
    model_card(facts, files=files).save(folder / CARD_NAME)
    facts.probe.save_pretrained(folder, config=_probe_config(facts.probe))
    records = [LabelRecord(i, s, facts.label_rounds.get(i)) for i, s in facts.labels.items()]
    records += [LabelRecord(i, s, None, audit=True) for i, s in facts.audit_labels.items()]
    with (folder / LABELS_JSONL).open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r._asdict(), ensure_ascii=False) + "\n")
    with (folder / LABELS_CSV).open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(LabelRecord._fields)
        writer.writerows((r.id, r.score, "" if r.round is None else r.round, int(r.audit)) for r in records)


def _probe_config(probe: LinearProbe) -> dict[str, Any]:
    """LinearProbe's constructor arguments, read from the probe now (the threshold may have moved since init)."""
    return {name: getattr(probe, name) for name in CONFIG_KEYS}


def read_labels(path: str | os.PathLike[str]) -> list[LabelRecord]:
    """The labels of an export: ``path`` is its folder, its labels.jsonl or its labels.csv."""
    path = Path(path)
    if path.is_dir():
        path = path / LABELS_JSONL
    if not path.is_file():
        raise FileNotFoundError(f"no labels file at {path}")
    if path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as f:
            rows: list[dict[str, Any]] = list(csv.DictReader(f))
    else:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    try:
        return [
            LabelRecord(
                str(r["id"]),
                float(r["score"]),
                None if r.get("round") in (None, "") else int(r["round"]),
                str(r.get("audit", "")).lower() in ("1", "true"),
            )
            for r in rows
        ]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path} is not a labels file (columns id, score, round): {err}") from None


def zip_export(folder: str | os.PathLike[str], zip_path: str | os.PathLike[str] | None = None) -> Path:
    """Zip an export folder for download (default: ``<folder>.zip`` beside it); it unzips to a folder of that name."""
    folder = Path(folder)
    _require_export_files(folder)
    target = Path(zip_path) if zip_path is not None else folder.with_name(folder.name + ".zip")
    with atomic_file(target) as f, zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in EXPORT_FILES:
            if (folder / name).is_file():
                archive.write(folder / name, f"{folder.name}/{name}")
    return target


def _require_export_files(folder: Path) -> None:
    if not folder.is_dir():
        raise HubError(f"No classifier folder at {folder}: export one first.")
    missing = [n for n in (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME) if not (folder / n).is_file()]
    if missing:
        raise HubError(f"{folder} is not a classifier export: {', '.join(missing)} missing. Export it again.")


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
    source: str | os.PathLike[str] | Session | LinearProbe,
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

    ``source`` is an export folder (uploaded as it is, after a strict load check) or a Session / LinearProbe (exported
    to a temporary folder first; ``export_options`` go to ``export_classifier``). ``token`` is required: the app
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
    if not given_folder and not isinstance(source, Session | LinearProbe):
        raise TypeError(f"push an export folder, a Session or a LinearProbe; got {type(source).__name__}")

    with tempfile.TemporaryDirectory(prefix="concept-trainer-push-") as tmp:
        if given_folder:
            folder = Path(source)  # type: ignore[arg-type]
            _require_export_files(folder)
            load_classifier(folder)  # never upload a folder that would not load back
        else:  # the template method's "save to a temporary folder", done before anything exists on the Hub
            folder = export_classifier(source, Path(tmp) / "export", **export_options)  # type: ignore[arg-type]
        kept = f" Nothing was lost: the export is still at {folder}." if given_folder else ""
        calls = dict(repo_id=repo_id, token=token, retry=retry, note=kept)
        api = HfApi(token=token, library_name=LIBRARY_NAME)  # names this app in the Hub's user agent
        repo_url, final_id = create_repo(api, private=private, exist_ok=exist_ok, repo_type="model", **calls)
        staged = _stage_folder(folder, Path(tmp) / "upload", final_id)
        prompt = json.loads((staged / CONFIG_NAME).read_text(encoding="utf-8")).get("prompt") or "a concept"
        commit = call_hub(
            lambda: api.upload_folder(
                repo_id=final_id,
                repo_type="model",
                folder_path=staged,
                commit_message=commit_message or f"Concept Trainer classifier: {_shorten(prompt, 60)}",
                allow_patterns=list(EXPORT_FILES),  # only the export's own files, whatever else lies in the folder
            ),
            what=f"uploading to '{final_id}'",
            **calls,
        )
    url = str(getattr(commit, "repo_url", None) or repo_url)
    log.info("Pushed the classifier for %r to %s", prompt, url)
    return url


def _stage_folder(folder: Path, staged: Path, repo_id: str) -> Path:
    """Copy an export's files for upload, filling the card's placeholder repo id with the real one."""
    staged.mkdir(parents=True)
    for name in EXPORT_FILES:
        if (folder / name).is_file():
            shutil.copyfile(folder / name, staged / name)
    card = staged / CARD_NAME
    card.write_text(card.read_text(encoding="utf-8").replace(REPO_PLACEHOLDER, repo_id), encoding="utf-8")
    return staged


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def on_space() -> bool:
    """Whether this process runs on a Hugging Face Space (the Spaces runtime sets SPACE_ID)."""
    return bool(os.environ.get("SPACE_ID"))


def token_for_push(oauth_token: str | None, *, space: bool) -> str:
    """The token a push from the app uses: the visitor's sign-in on a Space, this machine's token when run locally.

    On a Space a visitor who has not signed in is refused: the Space's own HF_TOKEN secret belongs to its owner
    and must never carry a visitor's push.
    """
    if oauth_token:
        return oauth_token
    if space:
        raise HubError("Sign in with Hugging Face (the button above) to push to your own account.")
    return find_local_token()
