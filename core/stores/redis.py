"""Shared store in Redis: entries, frequencies and priorities live in Redis; Lua makes each op atomic.

Several processes and hosts can share one cache: every ``get``/``put``/``delete``/``clear`` is a
single Lua script (``EVALSHA``, reloaded on ``NOSCRIPT``), so admission and eviction are atomic
and capacity holds under any concurrency. Data layout and arithmetic: ``_redis_lua``. Per
operation: O(log n) sorted-set and O(1) hash commands (plus O(k log n) for k evictions or,
with LEC admission control, k previewed victims); ``clear`` and LEC's rare decay rescale are O(n).

Faults: every redis-py error (connection refused, timeout, server error) becomes a
``StoreError`` (``Unavailable`` for network faults); the cache layer degrades it to a miss. The
client is built with ``socket_timeout``/``socket_connect_timeout`` (seconds) and no retries, so
an operation against a dead or hung server fails within about that time, and a
``CircuitBreaker`` (``cachemux.stores.breaker``) then makes every operation fail at once, with no
network round trip, until a probe gets an answer: a hung server costs one timeout, not one per
operation. A probe is a ``PING`` on a connection of its own with the short ``probe_timeout``
(not ``socket_timeout``; ``_redis_guard``), then the operation: once per ``breaker_reset`` second for reads, and
for every write (``put``/``delete``/``clear``) that finds no probe running, so while the server
hangs a probe costs at most ``probe_timeout``, and the first write after it answers again goes
through instead of being dropped. The store connects lazily:
``RedisStore(url)`` builds while the server is down (a logged warning) and reads or creates its
namespace on the first operation that reaches it. If the namespace vanished (a server restarted without
persistence, ``FLUSHALL``), the next operation re-creates it empty with this store's
configuration (a logged warning): a cache, not a database.

Needs Redis >= 5 (streams) and redis-py (``pip install 'cachemux[redis]'``). Give the cache a
server (or database) with ``maxmemory-policy noeviction``: Redis evicting one of the store's
keys on its own would tear the entries from their eviction state (``check_invariants`` reports
it); capacity is what bounds the store.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Iterator
from typing import Any

from cachemux.errors import ConfigError, InvariantError, StoreError
from cachemux.stores import _redis_guard
from cachemux.stores import _redis_lua as lua
from cachemux.stores._redis_config import FORMAT_VERSION, check_policy, namespace_config, stored_config
from cachemux.stores._policy import StorePolicy, resolve_policy
from cachemux.stores._shares import REST, check_share_state, check_shares, share_part
from cachemux.stores.base import CHANGES_RESET, Entry, PutResult, Signer, Store, check_key, parse_entry, read_entry
from cachemux.stores.breaker import CircuitBreaker, Unavailable

__all__ = ["RedisStore"]

log = logging.getLogger(__name__)

_DEFAULT_CAPACITY = 10_000.0
_DEFAULT_POLICY = "gdsf"
_DEFAULT_LOG_SIZE = 100_000
_KEY_NAMES = ("cfg", "st", "v", "m", "z", "h", "log", "x", "p", "kp")


def _import_redis() -> Any:
    try:
        import redis
    except ImportError as exc:
        raise ImportError("RedisStore needs redis-py: pip install 'cachemux[redis]'") from exc
    return redis


def _s(x: Any) -> str:
    return x.decode("utf-8") if isinstance(x, bytes) else str(x)


class RedisStore(Store):
    """A store in Redis under a GDSF, GDS, LEC, LFU, LRU or FIFO policy, shared by every client
    that uses the same server, ``prefix`` and ``namespace``.

    Pass ``url`` (``redis://host:port/db``) or a ready ``client`` (``redis.Redis``; its own
    timeouts and retry policy then apply). ``capacity``/``policy``/options are fixed when the
    namespace is created; ``None`` uses the stored ones and a different explicit value is a
    ``ConfigError``. Decisions match ``MemoryStore(capacity, policy, **options)`` on the same
    sequence of operations.

    ``breaker``: a ``CircuitBreaker`` (default: one opening after a fault that cost >= 50 ms and
    probing after ``breaker_reset`` = 1 s), or False to send every operation to the server.
    ``probe_timeout``: seconds a probe's ``PING`` waits (default 0.1 s; raise it for a server
    whose round trip is not well under that, or probes never succeed).

    ``shares={namespace: fraction}`` (fixed when the namespace is created; None = the stored
    ones): each listed cache namespace (``Entry.meta["ns"]``) holds at most its fraction of
    ``capacity`` and is evicted only by its own newcomers, the others share the rest, making the
    decisions ``DiskStore(shares=...)`` makes. Entries with ``Entry.expires`` (``ttl=``) whose
    time passed leave before any policy victim when room is needed (``stats()["expired"]``),
    judged by the writing client's clock.

    ``signing_key`` (bytes or str, the same for every client of the namespace): values are
    HMAC-signed on write and checked on read (``base.Signer``); one written by anyone without the
    key, altered or moved to another key is a miss, counted in this client's ``stats()["forged"]``
    and logged (the server's hit counters still count the read).
    """

    def __init__(self, url: str | None = None, *, client: Any = None, namespace: str = "default",
                 prefix: str = "cachemux", capacity: float | None = None, policy: str | None = None,
                 socket_timeout: float = 1.0, socket_connect_timeout: float = 1.0,
                 log_size: int | None = None, breaker: CircuitBreaker | bool = True,
                 breaker_reset: float = 1.0, probe_timeout: float = 0.1, shares: Any = None,
                 signing_key: bytes | str | None = None, **policy_options: Any) -> None:
        self.shares = check_shares(shares)
        self._signer = None if signing_key is None else Signer(signing_key)
        redis = _import_redis()
        for name, v in (("socket_timeout", socket_timeout), ("socket_connect_timeout", socket_connect_timeout),
                        ("probe_timeout", probe_timeout)):
            if not isinstance(v, (int, float)) or not (v > 0) or math.isinf(v):
                raise ConfigError(f"{name} must be a finite number of seconds > 0, got {v!r}")
        for name, v in (("namespace", namespace), ("prefix", prefix)):
            if not isinstance(v, str) or not v or any(c in v for c in "{}"):
                raise ConfigError(f"{name} must be a non-empty str without braces, got {v!r}")
        if log_size is not None and (not isinstance(log_size, int) or log_size < 1):
            raise ConfigError(f"log_size must be an int >= 1, got {log_size!r}")
        self._requested = resolve_policy(_DEFAULT_POLICY if policy is None else policy,
                                         _DEFAULT_CAPACITY if capacity is None else capacity,
                                         policy_options)
        self._given = {"policy": policy is not None, "capacity": capacity is not None,
                       "options": bool(policy_options), "shares": shares is not None}
        self._log_size = log_size or _DEFAULT_LOG_SIZE
        self._redis = redis
        self._own_client = client is None
        if client is None:
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            # no retries: a hung server costs one socket_timeout per operation, not a multiple,
            # and a script whose reply was lost is never run twice. (A pooled socket the server
            # closed while idle is detected and reopened by the pool before use.)
            retry = Retry(NoBackoff(), 0)
            try:
                client = redis.Redis.from_url(
                    url or "redis://127.0.0.1:6379/0", socket_timeout=socket_timeout,
                    socket_connect_timeout=socket_connect_timeout, retry=retry)
            except ValueError as exc:
                raise ConfigError(f"bad redis url: {exc}") from None
        elif url is not None:
            raise ConfigError("pass either url or client, not both")
        self.client = client
        self.namespace = namespace
        kw = client.connection_pool.connection_kwargs
        self._where = (f"redis store {kw.get('host', kw.get('path', '?'))}:{kw.get('port', '')}"
                       f"/{kw.get('db', 0)} {prefix}:{{{namespace}}}")
        self._keys = [f"{prefix}:{{{namespace}}}:{n}" for n in _KEY_NAMES]
        self._scripts = {name: client.register_script(getattr(lua, name))
                         for name in ("GET", "PUT", "DELETE", "CLEAR", "CHANGES", "CHECK")}
        self._init_script = client.register_script(lua.INIT)
        if breaker is True:
            breaker = CircuitBreaker(breaker_reset, name=self._where)
        elif breaker is not False and not isinstance(breaker, CircuitBreaker):
            raise ConfigError(f"breaker must be a CircuitBreaker, True or False, got {breaker!r}")
        self.breaker: CircuitBreaker | None = breaker or None
        self.probe_timeout = float(probe_timeout)
        self._probe_conn: Any = None  # one probe at a time (the breaker's rule): one connection
        self.spec = self._requested  # until the namespace is read from the server
        self._ready = False
        try:
            self._guard(lambda: None)
        except Unavailable as exc:  # down at start: connect on the first operation that gets through
            log.warning("%s; the store connects when the server answers", exc)

    # ---- plumbing -------------------------------------------------------------------------
    def _error(self, exc: Exception) -> StoreError:
        return StoreError(f"{self._where}: {type(exc).__name__}: {exc}")

    def _init(self) -> StorePolicy:
        """Create the namespace if absent (else read it) and adopt its stored configuration."""
        cfg = namespace_config(self._requested, self._log_size, self.shares)
        args = [str(secrets.randbelow(2**40) + 1)] + [x for kv in cfg.items() for x in kv]
        try:
            raw = self._init_script(keys=self._keys, args=args)
        except self._redis.ResponseError as exc:
            raise StoreError(f"{self._where}: {exc}") from exc
        got = {_s(raw[i]): _s(raw[i + 1]) for i in range(0, len(raw), 2)}
        stored, self.shares = stored_config(self._where, got, self._given, self.shares)
        check_policy(self._where, stored, self._requested, self._given)
        self._requested = stored  # a re-creation after a flush uses the stored configuration
        self.spec = stored
        self._ready = True
        return stored

    _ping = _redis_guard.ping  # the breaker's probe and every operation's path to the server
    _guard = _redis_guard.guard

    def _run(self, name: str, *args: Any) -> Any:
        """Run one script; on a vanished namespace re-create it once; errors -> StoreError."""
        script = self._scripts[name]

        def run() -> Any:
            for attempt in (0, 1):
                try:
                    return script(keys=self._keys, args=args)
                except self._redis.ResponseError as exc:
                    if "CACHEMUX_MISSING" in str(exc) and attempt == 0:
                        log.warning("%s: namespace vanished (server restarted without persistence or "
                                    "flushed?); re-creating it empty", self._where)
                        self._init()
                        continue
                    raise self._error(exc) from exc
            raise AssertionError("unreachable")  # pragma: no cover

        return self._guard(run, urgent=name in ("PUT", "DELETE", "CLEAR"))

    def _plain(self, fn: Any, *args: Any, urgent: bool = False) -> Any:
        try:
            return self._guard(fn, *args, urgent=urgent)
        except self._redis.ResponseError as exc:
            raise self._error(exc) from exc

    def _parse(self, key: str, text: Any) -> Entry:
        return parse_entry(self._signer, self._where, key, text)

    def _entry(self, key: str, text: Any) -> Entry | None:
        return read_entry(self._signer, self._where, key, text)

    # ---- the Store API --------------------------------------------------------------------
    def get(self, key: str) -> Entry | None:
        check_key(key)
        out = self._run("GET", key)
        if int(out[0]) == 0:
            return None
        return self._entry(key, out[1])

    def peek(self, key: str) -> Entry | None:
        check_key(key)
        text = self._plain(self.client.hget, self._keys[2], key)
        return None if text is None else self._entry(key, text)

    def put(self, key: str, entry: Entry) -> PutResult:
        check_key(key)
        if not isinstance(entry, Entry):
            raise ConfigError(f"put() needs an Entry, got {type(entry).__name__}")
        if not self._ready:  # the shares are known once the namespace is read
            self._plain(lambda: None, urgent=True)
        part = share_part(self.shares, entry) if self.shares else REST
        text = entry.to_json() if self._signer is None else self._signer.seal(key, entry.to_json())
        out = self._run("PUT", key, text, repr(float(entry.cost)), repr(float(entry.size)), part,
                        "" if entry.expires is None else repr(float(entry.expires)), repr(time.time()))
        return PutResult(int(out[0]) == 1, tuple(_s(k) for k in out[2:]), int(out[1]))

    def delete(self, key: str) -> bool:
        check_key(key)
        return int(self._run("DELETE", key)) == 1

    def clear(self) -> None:
        """Remove every entry (logged as deletions); the GDSF clock and LEC's request history
        stay, as ``MemoryStore.clear`` keeps its policy's. ``destroy()`` drops everything."""
        self._run("CLEAR")

    def destroy(self) -> None:
        """Delete every key of this namespace, configuration included."""
        self._plain(self.client.delete, *self._keys)

    def __len__(self) -> int:
        n = self._plain(self.client.hget, self._keys[1], "count")
        return 0 if n is None else int(float(_s(n)))

    def keys(self) -> Iterator[str]:
        return iter([_s(k) for k in self._plain(self.client.hkeys, self._keys[3])])

    def changes(self, since: int) -> tuple[int, list[tuple[str, str]]]:
        """Changes after cursor ``since``; ``[("reset", "")]`` when ``since`` is outside the
        retained window (trimmed, from another store, or 0 on first use): rebuild from keys()."""
        if isinstance(since, bool) or not isinstance(since, int):
            raise ConfigError(f"changes() needs an int cursor, got {since!r}")
        out = self._run("CHANGES", str(since))
        head = int(_s(out[0]))
        if len(out) == 2 and _s(out[1]) == CHANGES_RESET:
            return head, [(CHANGES_RESET, "")]
        return head, [(_s(out[i]), _s(out[i + 1])) for i in range(1, len(out), 2)]

    def lease(self, key: str, seconds: float) -> bool:
        """Claim ``key`` for ``seconds`` (``Store.lease``): ``SET <namespace>:lease:<key> NX PX``,
        a key of its own that expires by itself (``destroy`` leaves live ones to expire)."""
        check_key(key)
        name = f"{self._keys[0].rsplit(':', 1)[0]}:lease:{key}"
        ms = max(1, int(seconds * 1000))
        return bool(self._plain(lambda: self.client.set(name, "1", nx=True, px=ms)))

    def _state(self) -> dict[str, float]:
        raw = self._plain(self.client.hgetall, self._keys[1])
        return {_s(k): float(_s(v)) for k, v in raw.items()}

    def stats(self) -> dict[str, Any]:
        st = self._state()
        hits, misses = int(st.get("hits", 0)), int(st.get("misses", 0))
        total = hits + misses
        out: dict[str, Any] = {"store": "redis", "where": self._where, "policy": self.spec.name,
                               "capacity": self.spec.capacity, "entries": int(st.get("count", 0)),
                               "used": st.get("used", 0.0), "hits": hits, "misses": misses,
                               "hit_ratio": hits / total if total else 0.0}
        for k in ("admissions", "rejections", "evictions", "deletes", "replaced", "expired"):
            out[k] = int(st.get(k, 0))
        out["clock"] = st.get("clock", 0.0)
        if self._signer is not None:
            out["forged"] = self._signer.forged
        if self.shares:
            used = {_s(k): float(_s(v).split()[0]) for k, v in
                    self._plain(self.client.hgetall, self._keys[8]).items()}
            out["shares"] = dict(self.shares)
            out["share_used"] = {p: used.get(p, 0.0) for p in self._parts()}
        return out

    def _parts(self) -> list[str]:
        return ["=" + ns for ns in self.shares] + [REST] if self.shares else [REST]

    def check_invariants(self) -> None:
        """Size <= capacity, entries == values == sorted set, priorities follow from stored
        freq/cost/size/clock, every value parses and agrees with its metadata."""
        spec, where = self.spec, self._where
        if not self._ready:
            self._plain(lambda: None)
        parts = self._parts()
        st_raw, m_raw, z_raw, v_raw, h_raw, x_raw, p_raw, kp_raw = self._run("CHECK", *parts)
        pairs = lambda xs: {_s(xs[i]): xs[i + 1] for i in range(0, len(xs), 2)}  # noqa: E731
        st = {k: float(_s(v)) for k, v in pairs(st_raw).items()}
        meta = {k: [float(x) for x in _s(v).split()] for k, v in pairs(m_raw).items()}
        values = pairs(v_raw)
        history = {k: float(_s(v)) for k, v in pairs(h_raw).items()}
        part_of = {k: _s(v) for k, v in pairs(kp_raw).items()} if self.shares else dict.fromkeys(meta, REST)
        if set(values) != set(meta):
            raise InvariantError(f"{where}: values for {len(values)} keys, state for {len(meta)}")
        if set(part_of) != set(meta):
            raise InvariantError(f"{where}: parts recorded for {len(part_of)} keys, state for {len(meta)}")
        for part, z, x in zip(parts, z_raw, x_raw):
            mine = {k: m for k, m in meta.items() if part_of[k] == part}
            want_members = {f"{int(m[5]):016x}{k}": (k, m[4]) for k, m in mine.items()}
            zset = {k: float(_s(v)) for k, v in pairs(z).items()}
            if set(zset) != set(want_members):
                raise InvariantError(f"{where}: the sorted set of part {part!r} and its entries disagree")
            for member, score in zset.items():
                k, prio = want_members[member]
                if score != prio:
                    raise InvariantError(f"{where}: {k!r} scores {score} in the sorted set, {prio} in its state")
            xset = {k: float(_s(v)) for k, v in pairs(x).items()}
            if xset != {k: m[7] for k, m in mine.items() if len(m) > 7}:
                raise InvariantError(f"{where}: the expiry order of part {part!r} and its entries disagree")
        rows = [(k, *m[:7]) for k, m in meta.items()]
        for k, m in meta.items():
            if self._parse(k, values[k]).expires != (m[7] if len(m) > 7 else None):
                raise InvariantError(f"{where}: {k!r} is ranked by another expiry than its entry's")
        clock = st["clock"]
        if self.shares:
            part_rows = [(p, *(float(x) for x in _s(v).split())) for p, v in pairs(p_raw).items()]
            check_share_state(where, self.shares, spec.capacity, spec.family == "greedy-dual", rows, part_of,
                              part_rows, lambda k: self._parse(k, values[k]))  # type: ignore[arg-type]
            clock = max([clock] + [r[3] for r in part_rows])
        spec.check_entries(where, rows, values, history, count=st["count"], used=st["used"], seq=st["seq"],
                           clock=clock, parse=self._parse)

    def close(self) -> None:
        if self._probe_conn is not None:
            self._probe_conn.disconnect()
        if self._own_client:
            try:
                self.client.close()
            except self._redis.RedisError:  # pragma: no cover - closing a dead connection
                pass

    def __repr__(self) -> str:
        return f"RedisStore({self._where!r}, policy={self.spec.name!r}, capacity={self.spec.capacity:g})"
