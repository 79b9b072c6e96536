"""The store contract: entries plus their eviction state, shared by every process that opens it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cachemux.errors import ConfigError, CorruptEntryError, ForgedEntryError

__all__ = ["CHANGES_RESET", "Entry", "PutResult", "Signer", "Store", "check_key", "parse_entry", "read_entry"]

log = logging.getLogger(__name__)

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
            if isinstance(d, dict) and "sig" in d and "entry" in d and "value" not in d:
                raise CorruptEntryError("the value is signed: open the store with its signing_key")
            emb = d.get("embedding")
            vec = None if emb is None else np.frombuffer(base64.b64decode(emb), dtype="<f4").copy()
            return cls(value=d["value"], cost=float(d["cost"]), size=float(d["size"]),
                       partition=d.get("partition", ""), prompt=d.get("prompt", ""), embedding=vec,
                       created=float(d.get("created", 0.0)), meta=d.get("meta") or {},
                       expires=None if d.get("expires") is None else float(d["expires"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptEntryError(f"corrupt cache entry: {exc}") from exc


class Signer:
    """HMAC-SHA256 of every stored value under a secret key, so that whoever can write the
    backend (a shared Redis, the cache directory) but lacks the key cannot have an answer served:
    a value written without the key, with one byte altered, or copied from another store key
    (the key is in the MAC) fails ``open``. A signed value stays JSON:
    ``{"sig":"<64 hex>","entry":<Entry.to_json()>}``. The key is never logged or shown.
    ``rejected`` counts (``forged``) and logs, at most one warning per 10 s, the failures that
    reads served as misses. (``MemoryStore`` takes no key: its values never leave the process.)"""

    _HEAD, _MID = '{"sig":"', '","entry":'
    _WARN_EVERY_S = 10.0

    def __init__(self, key: bytes | str) -> None:
        if isinstance(key, str):
            key = key.encode("utf-8")
        if not isinstance(key, bytes) or not key:
            what = "an empty key" if isinstance(key, bytes) else type(key).__name__
            raise ConfigError(f"signing_key must be non-empty bytes or str, got {what}")
        self._key = key
        self.forged = 0
        self._lock = threading.Lock()
        self._last_warning = -math.inf
        self._suppressed = 0

    def __repr__(self) -> str:
        return "Signer(<key hidden>)"

    def _mac(self, key: str, entry: str) -> bytes:
        k = key.encode("utf-8")
        msg = b"cachemux-entry-v1\0%d:%s%s" % (len(k), k, entry.encode("utf-8"))
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest().encode("ascii")

    def seal(self, key: str, entry: str) -> str:
        """The stored text of ``entry`` (``Entry.to_json()``) under store key ``key``."""
        return f"{self._HEAD}{self._mac(key, entry).decode('ascii')}{self._MID}{entry}}}"

    def open(self, key: str, text: str | bytes) -> str:
        """The ``Entry.to_json()`` text sealed for ``key``; ``ForgedEntryError`` if ``text`` is
        unsigned or its signature does not verify."""
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        start = len(self._HEAD) + 64
        body = text[start + len(self._MID):-1]
        if not (text.startswith(self._HEAD) and text.startswith(self._MID, start) and text.endswith("}")):
            raise ForgedEntryError("the value is not signed")
        if not hmac.compare_digest(text[len(self._HEAD):start].encode("utf-8"), self._mac(key, body)):
            raise ForgedEntryError("the value's signature does not verify")
        return body

    def rejected(self, exc: ForgedEntryError) -> None:
        """Count a value a read served as a miss for failing ``open``; warn (rate-limited)."""
        with self._lock:
            self.forged += 1
            now = time.monotonic()
            if now - self._last_warning < self._WARN_EVERY_S:
                self._suppressed += 1
                return
            suppressed, self._suppressed, self._last_warning = self._suppressed, 0, now
        more = f" ({suppressed} more since the last warning)" if suppressed else ""
        log.warning("%s; served as a miss%s", exc, more)


def parse_entry(signer: Signer | None, where: str, key: str, text: str | bytes) -> Entry:
    """A stored value as an ``Entry``, opened by ``signer`` when the store signs: a corrupt one
    raises ``CorruptEntryError`` naming the store (``where``) and ``key``, an unsigned or altered
    one ``ForgedEntryError`` (a ``CorruptEntryError`` too)."""
    try:
        return Entry.from_json(text if signer is None else signer.open(key, text))
    except CorruptEntryError as exc:
        raise type(exc)(f"{where}: entry {key!r}: {exc}") from None


def read_entry(signer: Signer | None, where: str, key: str, text: str | bytes) -> Entry | None:
    """``parse_entry`` for reads: a value failing its signature check is a miss (counted, logged)."""
    try:
        return parse_entry(signer, where, key, text)
    except ForgedEntryError as exc:
        assert signer is not None
        signer.rejected(exc)
        return None


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
