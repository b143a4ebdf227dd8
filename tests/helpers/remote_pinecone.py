"""The in-memory Pinecone double, reachable from Ray workers: it lives in one Ray actor, and every process that holds
a :class:`RemotePinecone` (pickled into a Ray stage) calls it there, so all writers fill the same namespaces and the
test can look at what they wrote."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ray

from tests.helpers.fake_pinecone import FakePinecone


@dataclass(frozen=True)
class _Handle:
    key: int  # an object the host keeps (a FakeIndex), named by this key


@ray.remote(num_cpus=0)
class _Host:
    def __init__(self) -> None:
        self.objects: dict[int | None, Any] = {None: FakePinecone()}

    def call(self, target: int | None, name: str, args: tuple, kwargs: dict) -> Any:
        result = getattr(self.objects[target], name)(*args, **kwargs)
        if name == "Index":  # the data-plane object: kept here, a handle goes back
            self.objects[len(self.objects)] = result
            return _Handle(len(self.objects) - 1)
        return result

    def fake(self) -> FakePinecone:
        return self.objects[None]


class RemotePinecone:
    """A picklable stand-in for the SDK's ``Pinecone`` client (and, through ``Index``, its data-plane ``Index``)."""

    def __init__(self, host: Any = None, target: int | None = None) -> None:
        self._host = host if host is not None else _Host.remote()
        self._target = target

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # pickling and copying look up dunders; the two fields are in __dict__
            raise AttributeError(name)

        def call(*args: Any, **kwargs: Any) -> Any:
            result = ray.get(self._host.call.remote(self._target, name, args, kwargs))
            return RemotePinecone(self._host, result.key) if isinstance(result, _Handle) else result

        return call

    def snapshot(self) -> FakePinecone:
        """A copy of the double as it is now: its stores, their records and their request logs."""
        return ray.get(self._host.fake.remote())
