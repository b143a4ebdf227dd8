"""Calling Pinecone: the SDK client, and every call under one retry policy with its failure explained.

Rate limits (429) and server errors (5xx) are retried with exponential backoff and jitter, a bounded number of times,
on top of the SDK's own short retries; client errors (4xx) never are, since the same request fails the same way.
Whatever cannot be retried away becomes :class:`~trainer.index.IndexUnavailable` with a message that says what to do
and never contains the API key. ``pinecone`` is imported inside the functions that talk to it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, TypeVar

from . import IndexUnavailable

__all__ = ["Caller", "RetryPolicy", "explain", "make_client"]

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and full jitter, for rate limits (429) and server errors (5xx).

    Retry ``k`` (0-based) waits ``uniform(0, min(max_delay, base_delay * 2**k))`` seconds, but never less than a
    ``Retry-After`` the server sent. Jitter keeps parallel upload workers that were throttled together from coming
    back together. The defaults wait at most 1 + 2 + 4 + 8 = 15 s in all (longer only when the server asks for it with
    Retry-After), short enough for a visitor waiting on a round.
    """

    attempts: int = 5  # tries in all, the first included
    base_delay: float = 1.0
    max_delay: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base_delay < 0 or self.max_delay < 0:
            raise ValueError(f"invalid retry policy {self}: attempts must be >= 1 and delays >= 0")

    def delay(self, retry: int, rng: random.Random, retry_after: float | None = None) -> float:
        wait = rng.uniform(0.0, min(self.max_delay, self.base_delay * 2**retry))
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_delay))
        return wait


class Caller:
    """Runs one SDK call with the retry policy, and turns SDK errors into IndexUnavailable messages."""

    def __init__(
        self, policy: RetryPolicy, sleep: Callable[[float], None], rng: random.Random, secret: str | None
    ) -> None:
        self._policy, self._sleep, self._rng, self._secret = policy, sleep, rng, secret

    def __call__(self, what: str, fn: Callable[[], T], *, tolerate: Collection[int] = ()) -> T:
        from pinecone.errors.exceptions import ApiError, PineconeConnectionError, PineconeTimeoutError

        for attempt in range(self._policy.attempts):
            try:
                return fn()
            except ApiError as err:
                status = err.status_code
                if status in tolerate:
                    return None  # type: ignore[return-value]
                transient = status == 429 or 500 <= status <= 599
                if not transient or attempt + 1 == self._policy.attempts:
                    # from None: the SDK error adds nothing the message lacks, and nothing of it can leak
                    raise IndexUnavailable(self._redact(explain(what, err, attempt + 1))) from None
                delay = self._policy.delay(attempt, self._rng, getattr(err, "retry_after", None))
                log.warning("Pinecone answered %d to %s; retry %d in %.1f s", status, what, attempt + 1, delay)
                self._sleep(delay)
            except PineconeTimeoutError:
                raise IndexUnavailable(
                    f"Pinecone did not answer in time to {what}, after the SDK's own retries. "
                    "The service may be slow or unreachable from here; try again later or choose backend=local."
                ) from None
            except PineconeConnectionError as err:
                raise IndexUnavailable(
                    self._redact(f"cannot reach Pinecone to {what} ({err}); check the network or choose backend=local")
                ) from None
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text


def explain(what: str, err: Any, attempts: int) -> str:
    """What a Pinecone API error means for ``what``, and what to do about it (no secret in it)."""
    status = err.status_code
    said = err.message or err.reason or "no details"
    if err.request_id:
        said += f" (request id {err.request_id})"
    if status == 401:
        return (
            f"Pinecone rejected the API key (401 Unauthorized) when asked to {what}. Check PINECONE_API_KEY "
            "(environment variable or Space secret), or choose backend=local."
        )
    if status == 402:
        return f"Pinecone refused to {what}: the project's billing blocks it (402: {said})."
    if status == 403:
        return (
            f"Pinecone refused to {what} (403 Forbidden: {said}). The API key may lack permission for this "
            "project, or a plan limit such as the number of indexes is reached."
        )
    if status == 404:
        return f"Pinecone found nothing to {what} (404: {said}). Check CT_PINECONE_INDEX."
    if status == 429:
        return (
            f"Pinecone kept rate-limiting requests (429) to {what}, {attempts} attempts in a row: {said}. "
            "Try again later; on the Starter plan the monthly read or write units may be used up."
        )
    if 500 <= status <= 599:
        return f"Pinecone failed to {what} with server error {status}, {attempts} attempts in a row: {said}. Try later."
    return f"Pinecone refused to {what} ({status}: {said})."


def make_client(api_key: str) -> Any:
    """The Pinecone SDK client for ``api_key``; IndexUnavailable if the SDK is missing or the key is malformed."""
    try:
        from pinecone import Pinecone
    except ImportError:
        raise IndexUnavailable(
            "backend=pinecone needs the 'pinecone' package (pip install pinecone); or choose backend=local"
        ) from None
    try:
        return Pinecone(api_key=api_key, source_tag="concept_trainer")
    except ValueError:
        # The SDK refuses a key that is not a valid HTTP header value without echoing it; neither do we.
        raise IndexUnavailable(
            "PINECONE_API_KEY is not a valid API key (is it blank, or does it end in a newline or a space?)"
        ) from None
