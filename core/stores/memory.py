"""In-process store: a dict of entries under any ``cachemux.policies`` policy (thread-safe).

With ``shares={namespace: fraction}`` each listed namespace (``Entry.meta["ns"]``, which
``SemanticCache`` sets) gets its own policy over ``fraction * capacity`` and the other namespaces
share the rest: an entry is only ever evicted by a newcomer of its own share. A lookup of a key
the store does not hold is counted by every share's policy (the store cannot tell whose key it
is), as ``DiskStore`` counts it once in its store-wide request history.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from cachemux.errors import ConfigError, InvariantError
from cachemux.policies import Policy, admit_value, make_policy
from cachemux.stores._expiry import ExpiryQueue
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
        self._expiry: dict[str, ExpiryQueue] = {part: ExpiryQueue() for part in self._policies}
        self._expired = 0
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
            if key in self._part_of:  # re-offering a cached key replaces it (as Policy.admit does)
                self.delete(key)
            policy, part_of, expiry = self._policies[part], self._part_of, self._expiry[part]

            def forget(k: str) -> None:  # the rest of what the store keeps per key
                part_of.pop(k, None)
                expiry.discard(k)

            expired = self._drop_expired(part, entry.size)  # already out of the policy
            for k in expired:
                self._entries.pop(k, None)
                forget(k)
            evicted = expired + admit_value(policy, self._entries, key, entry, entry.cost, entry.size,
                                            drop=forget)  # type: ignore[arg-type]
            if key in policy:
                part_of[key] = part
                expiry.set(key, entry.expires)
                return PutResult(True, tuple(evicted), len(expired))
            return PutResult(False, tuple(evicted), len(expired))

    def _drop_expired(self, part: str, size: float) -> list[str]:
        """Remove ``part``'s entries past their expiry, oldest first, while the newcomer does not fit."""
        policy, queue = self._policies[part], self._expiry[part]
        if not len(queue) or size > policy.capacity:
            return []
        out: list[str] = []
        now = time.time()
        while policy.used + size > policy.capacity:
            k = queue.pop_expired(now)
            if k is None:
                break
            policy.remove(k)
            out.append(k)
        self._expired += len(out)
        return out

    def delete(self, key: str) -> bool:
        with self._lock:
            self._entries.pop(key, None)
            part = self._part_of.pop(key, None)
            if part is None:
                return False
            self._expiry[part].discard(key)
            return self._policies[part].remove(key)

    def clear(self) -> None:
        with self._lock:
            for k in list(self._entries):
                self.delete(k)

    def __len__(self) -> int:
        return len(self._entries)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            p = self.policy
            return {"store": "memory", "policy": p.name, "capacity": float(p.capacity),
                    "entries": len(self._entries), "used": sum(q.used for q in self._policies.values()),
                    "expired": self._expired}

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
                if self._expiry[self._part_of[k]].expiry(k) != e.expires:
                    raise InvariantError(f"memory store: {k!r} is queued under another expiry than its entry's")
                if self.shares and share_part(self.shares, e) != self._part_of[k]:
                    raise InvariantError(f"memory store: {k!r} is not in its namespace's share")
