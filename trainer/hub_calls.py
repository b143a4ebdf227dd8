"""Every call this project makes to the Hugging Face Hub goes through here: one retry policy, one way to explain a
failure, and no token in any message; with them, what every call needs first: a valid repository id and a token.

The policy (``HubRetry``): a call is tried at most ``attempts`` times; only answers that may change by waiting are
retried (429 and 5xx, and network errors), never a refusal (any other 4xx); and no new attempt starts once
``deadline_s`` has passed since the first began, so an unreachable Hub (a connect timeout of ``timeout_s``) is
given up on within about 5 s instead of being waited on for a minute. A retry waits ``backoff_s``, then twice that,
or what a ``Retry-After`` header asks, when that still fits the deadline.

``fetch_file`` is the one download this project does itself: a classifier's small files, one GET per attempt with a
timeout and a byte limit, so that a Hub answering 500 costs at most ``attempts`` requests (``hf_hub_download``
retries on its own, six more times, inside each of ours: one Load sent 21 requests over 36 s) and a huge file is
refused while it streams, never held. Calls through ``huggingface_hub``'s own API (create a repo, upload, download a
snapshot) get the same policy around them; what the library sends inside one such call is its own.

Every failure becomes a ``HubError`` whose message says what happened and what to do, with the real cause (the
status and the Hub's own message) and never a token.

Names and tokens. ``validate_repo_id`` refuses anything the Hub would refuse, and every path trick, before a
request. A push takes its token explicitly: the app passes the visitor's OAuth token and must never fall back to
the Space's own ``HF_TOKEN`` (that would push a visitor's work into the Space owner's account), so only the command
line looks one up, with ``find_local_token``; ``token_for_push`` is that choice for the app.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx2
from huggingface_hub import HfApi, get_token
from huggingface_hub import constants as hub_constants
from huggingface_hub.errors import (
    DeviceCodeError,
    EntryNotFoundError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    OIDCError,
    RepositoryNotFoundError,
)
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status
from huggingface_hub.utils import validate_repo_id as _hub_validate_repo_id

__all__ = [
    "HUB_RETRY",
    "LIBRARY_NAME",
    "SIGN_IN_MESSAGE",
    "HubError",
    "HubRetry",
    "call_hub",
    "create_repo",
    "fetch_file",
    "find_local_token",
    "on_space",
    "scrub",
    "token_for_push",
    "validate_repo_id",
]

log = logging.getLogger(__name__)

LIBRARY_NAME = "concept-trainer"  # names this app in the Hub's user agent, and shared classifiers' library
SIGN_IN_MESSAGE = "Sign in with Hugging Face, or set HF_TOKEN / run `hf auth login`"
_MAX_NAME_LENGTH = 96  # the Hub's limit for each of owner and name
# Hub answers worth another try: rate limited, or the server side failing. Anything else will not change by waiting.
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_NETWORK_ERRORS = (
    httpx2.TimeoutException,
    httpx2.NetworkError,
    httpx2.RemoteProtocolError,
    ConnectionError,
    TimeoutError,
)
# Hub tokens: "hf_" + ~34 letters and digits (OAuth ones "hf_oauth_..."). Long enough not to eat "hf_hub_download".
_TOKEN_LIKE = re.compile(r"\bhf_(?:[a-z]+_)?[A-Za-z0-9]{16,}")
_BEARER = re.compile(r"(?i)(bearer\s+)\S+")
# What a repository of each type holds, in the words of the error messages.
_REPO_CONTENT = {"model": "classifier", "dataset": "embedding snapshot"}

T = TypeVar("T")


class HubError(RuntimeError):
    """A sharing step failed; the message says what happened and what to do, and never contains a token."""


@dataclass(frozen=True)
class HubRetry:
    """How a Hub call is retried. The defaults: at most 3 requests, waits of 1 s then 2 s, nothing new started
    after 5 s, each request of ``fetch_file`` given 5 s. A visitor waits at most a few seconds for a verdict."""

    attempts: int = 3  # tries in all, the first included
    backoff_s: float = 1.0  # the first wait; each later one doubles
    deadline_s: float = 5.0  # no attempt starts later than this after the first began
    timeout_s: float = 5.0  # each request's connect / read timeout (fetch_file)

    def __post_init__(self) -> None:
        if self.attempts < 1 or min(self.backoff_s, self.deadline_s, self.timeout_s) < 0:
            raise ValueError(f"invalid Hub retry policy {self}: attempts must be >= 1 and times >= 0")


HUB_RETRY = HubRetry()  # the policy every call uses unless given another


def scrub(text: str, token: str | None) -> str:
    """Remove a token (the one given, and anything that looks like one) from text that may be shown or logged."""
    if token:
        text = text.replace(token, "***")
    return _BEARER.sub(r"\1***", _TOKEN_LIKE.sub("hf_***", text))


def call_hub(
    call: Callable[[], T],
    *,
    what: str,
    repo_id: str,
    token: str | None,
    retry: HubRetry | None = None,
    note: str = "",
    repo_type: str = "model",
) -> T:
    """Run one Hub call under the retry policy; turn every failure into a scrubbed HubError.

    ``repo_type`` ("model": a classifier, "dataset": an embedding snapshot) only words the error messages."""
    policy = retry or HUB_RETRY
    started = time.monotonic()
    for attempt in range(1, policy.attempts + 1):
        try:
            return call()
        except Exception as err:
            if not _is_hub_failure(err):
                if _leaks(err, token):  # not ours to explain, but its text must not carry the token any further
                    raise HubError(f"Unexpected error while {what}: {scrub(_summary(err), token)}") from None
                raise
            delay = _retry_after(err) or policy.backoff_s * 2 ** (attempt - 1)
            late = time.monotonic() - started + delay > policy.deadline_s
            if not _is_transient(err) or attempt == policy.attempts or late:
                explained = _explain(
                    err, what=what, repo_id=repo_id, token=token, attempts=attempt, note=note, repo_type=repo_type
                )
                raise explained from (None if _leaks(err, token) else err)
            log.warning(
                "%s failed (%s); retrying in %.1f s [%d/%d]",
                what,
                scrub(_summary(err), token),
                delay,
                attempt,
                policy.attempts - 1,
            )
            time.sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


def fetch_file(
    repo_id: str,
    filename: str,
    folder: Path,
    *,
    max_bytes: int,
    revision: str | None = None,
    token: str | bool | None = None,
    repo_type: str = "model",
    retry: HubRetry | None = None,
) -> Path:
    """Download one small file of a Hub repo into ``folder`` and return its path: one GET per attempt, each with
    the policy's timeout, and refused once it passes ``max_bytes`` (before, if the Hub announces its size).
    Errors are ``huggingface_hub``'s own (``RepositoryNotFoundError``, ``EntryNotFoundError``, ...) for
    ``call_hub`` to explain; offline mode refuses at once."""
    policy = retry or HUB_RETRY
    if hub_constants.is_offline_mode():
        raise OfflineModeIsEnabled(f"cannot download {filename} from '{repo_id}': offline mode is on")
    # hf_hub_url's template is fixed at import; the endpoint is read now (HF_ENDPOINT, or a test's stand-in).
    repo = repo_id if repo_type == "model" else f"{repo_type}s/{repo_id}"
    url = f"{hub_constants.ENDPOINT.rstrip('/')}/{repo}/resolve/{quote(revision or 'main', safe='')}/{quote(filename)}"
    headers = build_hf_headers(token=token, library_name=LIBRARY_NAME)
    target = folder / filename
    started = time.monotonic()
    with get_session().stream("GET", url, headers=headers, timeout=policy.timeout_s, follow_redirects=True) as answer:
        if answer.status_code >= 400:
            answer.read()  # an error's body is the Hub's message: small, and what hf_raise_for_status reads
            hf_raise_for_status(answer)
        announced = int(answer.headers.get("Content-Length") or 0)
        if announced > max_bytes:
            raise HubError(f"{filename} of '{repo_id}' is {announced:,} bytes; a classifier's is at most {max_bytes:,}")
        written = 0
        with target.open("wb") as out:
            for chunk in answer.iter_bytes():
                written += len(chunk)
                if written > max_bytes:
                    raise HubError(f"{filename} of '{repo_id}' is over {max_bytes:,} bytes, too big for a classifier")
                if time.monotonic() - started > policy.timeout_s * 2:
                    raise TimeoutError(f"{filename} of '{repo_id}' did not arrive within {policy.timeout_s * 2:g} s")
                out.write(chunk)
    return target


def create_repo(
    api: HfApi, *, private: bool, exist_ok: bool, repo_type: str, repo_id: str, **calls: Any
) -> tuple[Any, str]:
    """``create_repo`` through ``call_hub``; returns (its answer, the final repo id: a bare name lands in the token
    owner's namespace). ``calls`` are ``call_hub``'s keyword arguments."""
    # If an attempt fails without an answer, the repo may have been created anyway: a retry must accept it.
    created_maybe = False

    def create() -> Any:
        nonlocal created_maybe
        try:
            return api.create_repo(
                repo_id=repo_id, repo_type=repo_type, private=private, exist_ok=exist_ok or created_maybe
            )
        except Exception as err:
            created_maybe = created_maybe or _is_transient(err)
            raise

    what = f"creating the repository '{repo_id}'"
    repo_url = call_hub(create, what=what, repo_id=repo_id, repo_type=repo_type, **calls)
    return repo_url, getattr(repo_url, "repo_id", None) or repo_id


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


# ------------------------------------------------------------------------------------------------------- errors
def _is_hub_failure(err: BaseException) -> bool:
    """Failures of the Hub or of the way to it, as opposed to bugs, which propagate unchanged."""
    return isinstance(err, (httpx2.HTTPError, OfflineModeIsEnabled, EntryNotFoundError, *_NETWORK_ERRORS))


def _is_transient(err: BaseException) -> bool:
    if isinstance(err, OfflineModeIsEnabled):
        return False
    if isinstance(err, HfHubHTTPError):
        return _status(err) in _RETRY_STATUSES
    if isinstance(err, LocalEntryNotFoundError):  # a download that could not reach the Hub says why in its cause
        return err.__cause__ is not None and _is_transient(err.__cause__)
    return isinstance(err, _NETWORK_ERRORS)


def _status(err: HfHubHTTPError) -> int | None:
    response = getattr(err, "response", None)
    return getattr(response, "status_code", None)


def _retry_after(err: BaseException) -> float | None:
    response = getattr(err, "response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _summary(err: BaseException) -> str:
    first_line = str(err).strip().split("\n")[0]
    return f"{type(err).__name__}: {first_line}" if first_line else type(err).__name__


def _leaks(err: BaseException, token: str | None) -> bool:
    """Whether chaining ``err`` would show a token: then the HubError is raised without its cause."""
    seen: BaseException | None = err
    while seen is not None:
        text = str(seen)
        if scrub(text, token) != text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _explain(
    err: BaseException, *, what: str, repo_id: str, token: str | None, attempts: int, note: str, repo_type: str
) -> HubError:
    """One actionable message per kind of failure. Every bit of text taken from the error is scrubbed."""
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    offline = isinstance(err, OfflineModeIsEnabled) or isinstance(err.__cause__, OfflineModeIsEnabled)
    # Offline, a download that is not cached fails before any request, with no cause attached.
    offline = offline or (isinstance(err, LocalEntryNotFoundError) and hub_constants.is_offline_mode())
    if offline:
        message = f"Cannot reach the Hub while {what}: offline mode is on (HF_HUB_OFFLINE=1). Unset it and retry."
    elif isinstance(err, HfHubHTTPError):
        status = _status(err)
        server = scrub(err.server_message or _summary(err), token)
        if isinstance(err, RepositoryNotFoundError):
            message = (
                f"No {repo_type} repository '{repo_id}' on the Hub, or it is private or gated and this sign-in cannot "
                f"read it (while {what}). Check the name, or {SIGN_IN_MESSAGE[0].lower()}{SIGN_IN_MESSAGE[1:]}."
            )
        elif isinstance(err, EntryNotFoundError):
            content = _REPO_CONTENT.get(repo_type, repo_type)
            message = f"'{repo_id}' is not a Concept Trainer {content}: a file is missing (while {what})."
        elif status == 404:
            message = f"'{repo_id}' was not found on the Hub (HTTP 404) while {what}; it may have been deleted."
        elif status == 401:
            message = (
                f"The Hub did not accept the token while {what} (HTTP 401): it may have expired or been revoked. "
                f"{SIGN_IN_MESSAGE}."
            )
        elif status == 403 and what.startswith("downloading"):
            message = (
                f"No access to '{repo_id}' (HTTP 403) while {what}: it may be gated or private ({server}). "
                f"{SIGN_IN_MESSAGE} with an account that can read it."
            )
        elif status == 403:
            message = (
                f"No permission to write '{repo_id}' (HTTP 403). Push to your own account or to an organisation "
                "you can write to, with a token that has write access."
            )
        elif status == 409:
            message = (
                f"A repository named '{repo_id}' already exists (HTTP 409). Choose another name, or, if it is "
                "yours, allow updating it (exist_ok=True; CLI: --exist-ok)."
            )
        elif status in _RETRY_STATUSES:
            message = (
                f"The Hub is busy or unavailable (HTTP {status}){tries} while {what}: {server}. "
                "Try again in a few minutes."
            )
        else:
            message = f"The Hub refused {what} (HTTP {status}): {server}"
    elif isinstance(err, LocalEntryNotFoundError) and not _is_transient(err):
        message = f"Could not download from '{repo_id}' while {what}: {scrub(_summary(err), token)}"
    elif _is_transient(err):
        message = (
            f"Could not reach the Hugging Face Hub{tries} while {what} ({scrub(_summary(err), token)}). "
            "Check your internet connection and try again."
        )
    else:
        message = f"The Hub request failed while {what}: {scrub(_summary(err), token)}"
    return HubError(scrub(message + note, token))
