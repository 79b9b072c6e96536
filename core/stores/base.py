"""The store contract: entries plus their eviction state, shared by every process that opens it."""

from __future__ import annotations

import base64
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cachemux.errors import ConfigError, CorruptEntryError

__all__ = ["CHANGES_RESET", "Entry", "PutResult", "Store", "check_key"]

# The op ``changes()`` returns when the caller's cursor is outside the retained change log
# (trimmed, taken on another or a recreated store, or 0 on first use): drop the derived index and
# rebuild it from ``keys()``/``peek()``, then continue from the returned cursor.
CHANGES_RESET = "reset"


@dataclass(frozen=True)
class Entry:
    """One cached answer. ``value`` is text the adapter produced (LangChain ``dumps``, JSON...);
    the store never unpickles anything. ``cost`` is what a miss would cost again (latency in
    seconds, tokens, $...), ``size`` what it occupies (1, or tokens/bytes). ``partition`` keeps
    model configurations and tenants apart: semantic matches never cross it. ``embedding``, if
    any, is a finite 1-D vector (a stored row with NaN/inf reads as a corrupt entry). ``expires``:
    the wall-clock time (``time.time()``) after which the entry is stale (None: never); a store
    that must evict to admit a newcomer removes stale entries before any policy victim."""

    value: str
    cost: float
    size: float = 1.0
    partition: str = ""
    prompt: str = ""
    embedding: np.ndarray | None = None
    created: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    expires: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.value, str):
            raise ConfigError(f"entry value must be str (serialise it first), got {type(self.value).__name__}")
        for name in ("cost", "size"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or math.isnan(v) or math.isinf(v) or v < 0 or (name == "size" and v <= 0):
                raise ConfigError(f"entry {name} must be a finite number {'> 0' if name == 'size' else '>= 0'}, got {v!r}")
        x = self.expires
        if x is not None and (isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x < 0):
            raise ConfigError(f"entry expires must be a finite time >= 0 or None, got {x!r}")
        if self.embedding is not None:
            # a NaN/inf vector matches nothing and poisons whatever index loads it: never stored
            e = self.embedding
            if not isinstance(e, np.ndarray) or e.ndim != 1 or not e.size or not np.all(np.isfinite(e)):
                shape = getattr(e, "shape", type(e).__name__)
                raise ConfigError(f"entry embedding must be a finite 1-D numpy vector, got {shape}"
                                  f"{' with NaN/inf' if isinstance(e, np.ndarray) and e.size else ''}")

    def to_json(self) -> str:
        d = {"value": self.value, "cost": self.cost, "size": self.size, "partition": self.partition,
             "prompt": self.prompt, "created": self.created, "meta": self.meta,
             "embedding": None if self.embedding is None else
             base64.b64encode(np.asarray(self.embedding, dtype="<f4").tobytes()).decode("ascii")}
        if self.expires is not None:
            d["expires"] = self.expires
        return json.dumps(d, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Entry:
        try:
            d = json.loads(text)
            emb = d.get("embedding")
            vec = None if emb is None else np.frombuffer(base64.b64decode(emb), dtype="<f4").copy()
            return cls(value=d["value"], cost=float(d["cost"]), size=float(d["size"]),
                       partition=d.get("partition", ""), prompt=d.get("prompt", ""), embedding=vec,
                       created=float(d.get("created", 0.0)), meta=d.get("meta") or {},
                       expires=None if d.get("expires") is None else float(d["expires"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptEntryError(f"corrupt cache entry: {exc}") from exc


@dataclass(frozen=True)
class PutResult:
    """``evicted``: every key the put removed, the ``expired`` ones (past ``Entry.expires``,
    removed before any policy victim) first."""

    admitted: bool
    evicted: tuple[str, ...] = ()
    expired: int = 0


class Store(ABC):
    """Entries keyed by string, bounded by ``capacity`` (size units) under an eviction policy.

    Every method is atomic with respect to other users of the same store (threads, processes,
    hosts for Redis). ``get`` counts a request for the key (a hit updates its priority; a miss
    feeds history-keeping policies such as LEC). ``put`` runs admission and eviction. Backend
    failures raise ``StoreError``; the cache layer turns them into misses.
    """

    @abstractmethod
    def get(self, key: str) -> Entry | None: ...

    @abstractmethod
    def put(self, key: str, entry: Entry) -> PutResult: ...

    @abstractmethod
    def delete(self, key: str) -> bool: ...

    @abstractmethod
    def clear(self) -> None: ...

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def keys(self) -> Iterator[str]: ...

    @abstractmethod
    def peek(self, key: str) -> Entry | None:
        """Read an entry without counting a request (index rebuilds, inspection)."""

    def peek_many(self, keys: list[str]) -> dict[str, Entry | None]:
        """``peek`` of many keys (a change-log replay); stores with a batch read override it.
        A corrupt entry raises ``CorruptEntryError`` as ``peek`` does."""
        return {k: self.peek(k) for k in keys}

    @abstractmethod
    def check_invariants(self) -> None: ...

    def changes(self, since: int) -> tuple[int, list[tuple[str, str]]]:
        """``(cursor, [(op, key), ...])`` of admissions ("add") and removals ("del") after
        ``since``, so each process can keep its semantic index in step with a shared store.
        Single-process stores may return ``(since, [])`` and rely on their own callbacks.

        Shared stores keep a bounded log: when ``since`` is outside it they return
        ``(cursor, [(CHANGES_RESET, "")])``; the caller rebuilds from ``keys()`` and continues
        from ``cursor`` (changes made during the rebuild are replayed; apply them idempotently).
        Replacing a cached key is logged as "del" then "add"."""
        return since, []

    def lease(self, key: str, seconds: float) -> bool:
        """Claim the generation of ``key``'s answer for ``seconds`` among the processes sharing
        this store (``SemanticCache(lease=...)``): True if the caller holds the claim now, False
        while another holds it. A store of one process grants every claim: the cache's
        in-process flight already coalesces its callers."""
        check_key(key)
        return True

    def close(self) -> None:  # noqa: B027 - optional
        pass

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_key(key: object) -> None:
    """Store keys are str (the cache's hashed keys); anything else is a caller's bug."""
    if type(key) is not str:
        raise ConfigError(f"store keys must be str, got {type(key).__name__}")
