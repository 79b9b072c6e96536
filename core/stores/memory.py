"""In-process store: a dict of entries under any ``cachemux.policies`` policy (thread-safe).

With ``shares={namespace: fraction}`` each listed namespace (``Entry.meta["ns"]``, which
``SemanticCache`` sets) gets its own policy over ``fraction * capacity`` and the other namespaces
share the rest: an entry is only ever evicted by a newcomer of its own share. A lookup of a key
the store does not hold is counted by every share's policy (the store cannot tell whose key it
is), as ``DiskStore`` counts it once in its store-wide request history.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from cachemux.errors import ConfigError, InvariantError
from cachemux.policies import Policy, make_policy
from cachemux.stores.base import Entry, PutResult, Store
from cachemux.stores._shares import REST as _REST
from cachemux.stores._shares import check_shares, share_capacity, share_part

__all__ = ["MemoryStore"]


class MemoryStore(Store):
    def __init__(self, capacity: float = 10_000, policy: str | Policy = "gdsf", *,
                 shares: dict[str, float] | None = None, **policy_options: Any) -> None:
        self.shares = check_shares(shares)
        if self.shares and not isinstance(policy, str):
            raise ConfigError("shares= needs the policy by name (one policy object per share is made)")
        self.policy = make_policy(policy, capacity, **policy_options) if isinstance(policy, str) else policy
        # the policy of each share (without shares: the one policy for everything)
        self._policies: dict[str, Policy] = {_REST: self.policy}
        if self.shares:
            cap = float(self.policy.capacity)
            self._policies = {part: make_policy(policy, max(share_capacity(self.shares, cap, part), 1e-300),  # type: ignore[arg-type]
                                                **policy_options)
                              for part in ["=" + ns for ns in self.shares] + [_REST]}
        self._part_of: dict[str, str] = {}
        self._entries: dict[str, Entry] = {}
        self._lock = threading.RLock()

    def get(self, key: str) -> Entry | None:
        with self._lock:
            part = self._part_of.get(key)
            if part is not None:
                return self._entries.get(key) if self._policies[part].lookup(key) else None
            for policy in self._policies.values():  # a miss: whose key it is, nobody knows
                policy.lookup(key)
            return None

    def peek(self, key: str) -> Entry | None:
        with self._lock:
            return self._entries.get(key)

    def put(self, key: str, entry: Entry) -> PutResult:
        with self._lock:
            part = share_part(self.shares, entry) if self.shares else _REST
            old = self._part_of.get(key)
            if old is not None and old != part:  # re-offered under another namespace: moves
                self.delete(key)
            policy = self._policies[part]
            evicted = policy.admit(key, entry.cost, entry.size)
            for k in evicted:
                self._entries.pop(k, None)
                self._part_of.pop(k, None)
            if key in policy:
                self._entries[key] = entry
                self._part_of[key] = part
                return PutResult(True, tuple(evicted))
            self._entries.pop(key, None)
            self._part_of.pop(key, None)
            return PutResult(False, tuple(evicted))

    def delete(self, key: str) -> bool:
        with self._lock:
            self._entries.pop(key, None)
            part = self._part_of.pop(key, None)
            return self._policies[part].remove(key) if part is not None else False

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
            held: set = set()
            for part, policy in self._policies.items():
                policy.check_invariants()
                mine = set(policy)
                if any(self._part_of.get(k) != part for k in mine):
                    raise InvariantError(f"memory store: share {part!r} holds keys placed elsewhere")
                held |= mine
            if set(self._entries) != held or set(self._part_of) != held:
                raise InvariantError("memory store: entries and policy disagree")
            for k, e in self._entries.items():
                if self.shares and share_part(self.shares, e) != self._part_of[k]:
                    raise InvariantError(f"memory store: {k!r} is not in its namespace's share")
