"""In-process store: a dict of entries under any ``cachemux.policies`` policy (thread-safe)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from cachemux.errors import InvariantError
from cachemux.policies import Policy, make_policy
from cachemux.stores.base import Entry, PutResult, Store

__all__ = ["MemoryStore"]


class MemoryStore(Store):
    def __init__(self, capacity: float = 10_000, policy: str | Policy = "gdsf", **policy_options: Any) -> None:
        self.policy = make_policy(policy, capacity, **policy_options) if isinstance(policy, str) else policy
        self._entries: dict[str, Entry] = {}
        self._lock = threading.RLock()

    def get(self, key: str) -> Entry | None:
        with self._lock:
            if self.policy.lookup(key):
                return self._entries.get(key)
            return None

    def peek(self, key: str) -> Entry | None:
        with self._lock:
            return self._entries.get(key)

    def put(self, key: str, entry: Entry) -> PutResult:
        with self._lock:
            evicted = self.policy.admit(key, entry.cost, entry.size)
            for k in evicted:
                self._entries.pop(k, None)
            if key in self.policy:
                self._entries[key] = entry
                return PutResult(True, tuple(evicted))
            self._entries.pop(key, None)
            return PutResult(False, tuple(evicted))

    def delete(self, key: str) -> bool:
        with self._lock:
            self._entries.pop(key, None)
            return self.policy.remove(key)

    def clear(self) -> None:
        with self._lock:
            for k in list(self._entries):
                self.delete(k)

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._entries))

    def check_invariants(self) -> None:
        with self._lock:
            self.policy.check_invariants()
            if set(self._entries) != set(self.policy):
                raise InvariantError("memory store: entries and policy disagree")
