"""Single flight: identical misses in one process wait for one call instead of each making it.

``SemanticCache`` keys a flight by the exact key (namespace, model configuration or its group,
normalised prompt). The first lookup that misses *leads*: it returns the miss and its caller runs
the model. An identical lookup that misses while the flight is open *waits* for the leader's
answer (``publish``: ``SemanticCache.update``, or ``release`` when the answer is not stored) and
is served it; it gives up at the flight's deadline (``timeout`` seconds after the leader's miss)
and gets a miss. A flight released without an answer (the leader's call failed) lets its waiters
go at once, each to its own call.

Waiting never blocks on oneself: a caller that already leads the key's flight (the same asyncio
task, else the same thread: ``caller()``) gets a miss again at once. Async callers wait in the
event loop (``Flight.wait_async``), never in a worker thread, so 200 waiting tasks hold no
thread the leader's own update would need.

A lookup that missed just before the leader's answer was published (it read the store before
the answer was put, and joined after the flight closed) is served that answer too: the last
``RECENT`` published answers are kept with their publication number, and a joiner is served one
published after its lookup began (``mark``). Only answers made for the same exact key are ever
served.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from typing import Any

__all__ = ["ANY", "RECENT", "Flight", "SingleFlight", "caller"]

RECENT = 128  # published answers kept for lookups that missed just before their publication

LEAD, WAIT, DONE = "lead", "wait", "done"
ANY: object = object()  # ``abandon``'s owner for "whoever leads it" (an update that refused its answer)


def caller() -> object:
    """Who is asking: the running asyncio task, else the thread (its ident)."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no event loop running in this thread
        task = None
    return task if task is not None else threading.get_ident()


class Flight:
    """One key's call in progress: its leader (``owner``), its deadline (``time.monotonic()``) and
    the answer it publishes (None: none; waiters make their own call)."""

    __slots__ = ("deadline", "future", "owner")

    def __init__(self, owner: object, deadline: float) -> None:
        self.owner = owner
        self.deadline = deadline
        self.future: Future[Any] = Future()

    def settle(self, answer: Any) -> None:
        if not self.future.done():
            self.future.set_result(answer)

    def wait(self) -> Any:
        """The published answer, or None at the deadline or when released without one."""
        try:
            return self.future.result(max(0.0, self.deadline - time.monotonic()))
        except TimeoutError:
            return None

    async def wait_async(self) -> Any:
        """``wait`` in the event loop (no thread held); the shared future is never cancelled."""
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(self.future)),
                                          max(0.0, self.deadline - time.monotonic()))
        except TimeoutError:
            return None


class SingleFlight:
    """The open flights of one cache, keyed by exact key (thread-safe; no I/O under its lock)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = float(timeout)
        self._lock = threading.Lock()
        self._flights: dict[str, Flight] = {}
        self._recent: OrderedDict[str, tuple[int, Any]] = OrderedDict()  # key -> (number, answer)
        self._published = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._flights)

    def mark(self) -> int:
        """Taken when a lookup begins, before it reads the store (see ``join``). A plain read: an
        int attribute is read whole, and a publication it misses is one ``join`` then sees."""
        return self._published

    def join(self, key: str, owner: object, since: int) -> tuple[str, Any]:
        """After a miss: ``(DONE, answer)`` for an answer published since ``since``, ``(WAIT,
        flight)`` while another caller leads the key, else ``(LEAD, None)``: the caller leads (a
        new flight, or the one it already leads, or one past its deadline, which is replaced)."""
        with self._lock:
            got = self._recent.get(key)
            if got is not None and got[0] > since:
                return DONE, got[1]
            flight = self._flights.get(key)
            now = time.monotonic()
            if flight is not None and now < flight.deadline:
                return (LEAD, None) if flight.owner == owner else (WAIT, flight)
            self._flights[key] = Flight(owner, now + self.timeout)
        if flight is not None:  # past its deadline: its waiters have given up already
            flight.settle(None)
        return LEAD, None

    def publish(self, key: str, answer: Any) -> None:
        """Serve ``answer`` (made for ``key``) to the key's waiters and close its flight."""
        with self._lock:
            self._published += 1
            self._recent[key] = (self._published, answer)
            self._recent.move_to_end(key)
            if len(self._recent) > RECENT:
                self._recent.popitem(last=False)
            flight = self._flights.pop(key, None)
        if flight is not None:
            flight.settle(answer)

    def abandon(self, key: str, owner: object) -> bool:
        """Close the key's flight with no answer if ``owner`` leads it (``ANY``: whoever does);
        True if it did."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is None or (owner is not ANY and flight.owner != owner):
                return False
            del self._flights[key]
        flight.settle(None)
        return True
