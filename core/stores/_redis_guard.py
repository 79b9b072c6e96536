"""How every ``RedisStore`` operation reaches the server: through its ``CircuitBreaker``, with the
breaker's probe a ``PING`` on a connection of its own bounded by ``probe_timeout`` (a hung server
costs that, not ``socket_timeout``), and redis-py's errors turned into the store's: network
faults -> ``Unavailable``, other redis-py errors -> ``StoreError``. ``RedisStore`` binds these
functions as its ``_ping`` and ``_guard`` methods."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cachemux.stores.breaker import Unavailable

if TYPE_CHECKING:
    from cachemux.stores.redis import RedisStore


def ping(store: RedisStore) -> None:
    """The probe: PING on its own connection with ``probe_timeout`` (a hung server costs that,
    not ``socket_timeout``); the same connection class and address as the client's pool."""
    conn = store._probe_conn
    if conn is None:
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        conn = store._probe_conn = store.client.connection_pool.make_connection()
        conn.socket_timeout = conn.socket_connect_timeout = store.probe_timeout
        conn.retry = Retry(NoBackoff(), 0)
    try:
        conn.send_command("PING")
        conn.read_response()
    except BaseException:
        conn.disconnect()
        raise


def guard(store: RedisStore, fn: Callable[..., Any], *args: Any, urgent: bool = False) -> Any:
    """Run ``fn`` against the server through the breaker (connecting first if needed);
    network faults -> ``Unavailable``, other redis-py errors -> ``StoreError``. ``urgent``:
    a write, which probes whenever the breaker is open and no probe is running."""
    breaker = store.breaker
    probe = breaker.before(urgent) if breaker is not None else False
    t = time.monotonic()
    fault: BaseException | None = None
    try:
        if probe:
            store._ping()
        if not store._ready:
            store._init()
        return fn(*args)
    except (store._redis.ConnectionError, store._redis.TimeoutError) as exc:
        fault = exc
        raise Unavailable(f"{store._where}: {type(exc).__name__}: {exc}") from exc
    except store._redis.ResponseError:
        raise
    except store._redis.RedisError as exc:
        raise store._error(exc) from exc
    finally:
        if breaker is not None:
            breaker.after(probe, fault, time.monotonic() - t)
