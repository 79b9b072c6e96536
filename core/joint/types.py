"""What flows through the joint engine: a request, one model's generation, a cache hit, the outcome."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cachemux.multiplexer.routes import Route

__all__ = ["Attempt", "Generation", "Hit", "Request", "Served"]


@dataclass(frozen=True, slots=True)
class Request:
    """One query as the engine sees it.

    ``query``: what the selector routes on (a query id in the simulator, the question text in an
    application). ``prompt``: the text the cache keys on (None: ``query`` is the key).
    ``config``: the model configuration *and* the call's options (stop, max tokens, temperature,
    bound kwargs, tools), serialised: part of the exact key and of the partition, so an answer is
    never served to a call with other options. ``embed_text``: the text compared by meaning
    (None: the prompt; False: exact only); ``scope``: the rest of the prompt, which a semantic
    match must share exactly (a chat's system prompt and earlier turns). ``payload``: whatever the
    generate port needs to call the models (the framework's input and call options).
    ``cacheable=False``: the configuration cannot be told apart from others (a prompt formatter
    whose behaviour cannot be keyed), so the request neither reads nor fills the cache.
    """

    query: Hashable
    prompt: str | None = None
    config: str = ""
    embed_text: str | bool | None = None
    scope: str = ""
    payload: Any = None
    cacheable: bool = True


@dataclass(frozen=True, slots=True)
class Generation:
    """One model's answer to one request.

    ``cost``: what the run cost in the engine's unit, or None to let the engine's cost model price
    it (a table, the latency, a usage field). ``success=None``: unknown (no verdict yet; the
    engine's judge is asked if it has one; with none the answer is accepted and a cascade stops).
    ``size``: what the answer occupies in the cache. ``text``: the answer as text, for the judge
    (default: ``str(answer)``). ``latency``: seconds (measured by the engine when None).
    ``usage``: figures a cost model may read (``{"flops": ..., "tokens": ...}``).
    """

    answer: Any
    cost: float | None = None
    success: bool | None = None
    size: float = 1
    text: str | None = None
    latency: float | None = None
    usage: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One model run as the engine accounted it: priced and judged."""

    model: str
    answer: Any
    cost: float
    success: bool | None
    latency: float


@dataclass(frozen=True, slots=True)
class Hit:
    """A cached answer: ``kind`` "exact" or "semantic", the cosine ``similarity`` (1.0 exact),
    the ``price`` the cache ranks the entry by, and who produced it at what cost (``model``,
    ``paid``) when the cache kept that. ``verify``: the cache asks for this hit to be checked by
    running the model anyway (error-bounded mode's verification draw; ``JointEngine`` does it).
    ``p_wrong``: for a semantic hit, the probability that it answers another question
    (error-bounded mode's learned estimate, else a verifier matcher's calibrated 1 - P(same));
    None when the cache gives none. The engine prices serving it at ``p_wrong x
    semantic_penalty``."""

    answer: Any
    kind: str = "exact"
    similarity: float = 1.0
    price: float = 0.0
    model: str | None = None
    paid: float | None = None
    verify: bool = False
    p_wrong: float | None = None


@dataclass(frozen=True, slots=True)
class Lookup:
    """What a placing cache port found for a request: the ``hit`` (None: a miss) and ``place``,
    where the request lives in that cache (its exact key, partition and compared text), computed
    once and handed back to the port's ``admit``/``feedback``/``candidate``/``release`` so the
    request is never keyed twice. Opaque to the engine."""

    hit: Hit | None
    place: Any = None


@dataclass(frozen=True, slots=True)
class Served:
    """The outcome of one request.

    ``hit``: served from the cache (``kind`` says how); ``cost``: what this request cost (0 on a
    hit); ``route``: the models the selector chose, ``attempts`` those that ran; ``price``: what
    the cache was offered the entry at (the cost of a miss under the selector); ``admitted``:
    whether the cache kept it (None: no cache); ``expected_cost``: the selector's estimate before
    routing; ``route_costs``: its per-route estimates after; ``saved``: on a hit, what producing
    the cached answer cost; ``streamed``: the answer went out as chunks (``JointEngine.stream``);
    ``checked``: a cached neighbour's answer was compared with this run's (a hit drawn for
    verification, one the route pricing declined, or the candidate an error-bounded cache
    considered): True if they agreed, False if not, None if no comparison was made.
    """

    answer: Any
    hit: bool
    cost: float
    route: Route | None = None
    models: tuple[str, ...] = ()
    attempts: tuple[Attempt, ...] = ()
    kind: str | None = None
    similarity: float | None = None
    model: str | None = None
    price: float | None = None
    admitted: bool | None = None
    expected_cost: float | None = None
    route_costs: Mapping[str, float | None] = field(default_factory=dict)
    saved: float | None = None
    streamed: bool = False
    checked: bool | None = None

    def metadata(self) -> dict[str, Any]:
        """The routing record adapters attach to their outputs (JSON-ready).

        ``model``: who answered (on a hit: who produced the cached answer); ``route``;
        ``models_run``; ``cost`` (0 on a hit); ``expected_cost``; ``route_costs``
        (``"small>large"`` for a cascade); ``model_costs``, ``latency``, ``success`` per model run;
        ``cache_hit``: False, "exact" or "semantic" (None without a cache); ``entry_cost``: the
        price the cache ranks the entry by; ``cached``: admitted or not; ``similarity`` and
        ``saved`` on hits; ``verified`` (True/False) when a cached neighbour's answer was compared
        with this run's (``checked``)."""
        m: dict[str, Any] = {
            "model": self.model,
            "route": list(self.route) if self.route else None,
            "models_run": list(self.models),
            "cost": self.cost,
            "expected_cost": self.expected_cost,
            "route_costs": dict(self.route_costs),
            "model_costs": {a.model: a.cost for a in self.attempts},
            "latency": {a.model: a.latency for a in self.attempts},
            "success": {a.model: a.success for a in self.attempts},
            "cache_hit": self.kind if self.hit else (None if self.admitted is None else False),
            "cached": self.admitted,
            "entry_cost": self.price,
        }
        if self.hit:
            m["similarity"] = self.similarity
            m["saved"] = self.saved
        if self.checked is not None:
            m["verified"] = self.checked
        return m
