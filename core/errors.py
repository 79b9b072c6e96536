"""One error tree for cachemux: every message names the bad value and the valid choices."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "CacheMuxError",
    "ConfigError",
    "CorruptEntryError",
    "ForgedEntryError",
    "InvariantError",
    "MissingCostError",
    "StoreError",
    "UnknownNameError",
    "check_cost",
    "check_nonnegative",
    "check_positive",
]


class CacheMuxError(Exception):
    """Base of every error raised by cachemux."""


class ConfigError(CacheMuxError, ValueError):
    """A bad argument or configuration value."""


class UnknownNameError(ConfigError, KeyError):
    """A name (policy, selector, store, suite...) that is not registered."""

    def __init__(self, kind: str, name: object, choices: Iterable[str]) -> None:
        self.kind, self.name, self.choices = kind, name, sorted(choices)
        super().__init__(f"unknown {kind} {name!r}; valid choices: {', '.join(self.choices)}")

    def __str__(self) -> str:  # KeyError would repr() the message otherwise
        return str(self.args[0])


class MissingCostError(ConfigError):
    """A cost-aware policy or selector was given a request without a cost."""


class InvariantError(CacheMuxError, AssertionError):
    """An internal invariant does not hold (raised by ``check_invariants``)."""


class StoreError(CacheMuxError):
    """A storage backend failed; callers degrade it to a cache miss."""


class CorruptEntryError(StoreError):
    """One stored entry cannot be decoded (a damaged or planted row); the rest of the store is fine."""


class ForgedEntryError(CorruptEntryError):
    """A stored value fails its signature check (a store opened with ``signing_key``): written
    without the key, altered, or copied from another key. Reads treat it as a miss."""


def check_positive(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite number > 0, else raise ConfigError."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a positive number, got {value!r}") from None
    if not (v > 0.0) or v == float("inf"):
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def check_nonnegative(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite number >= 0 (NaN fails), else raise ConfigError."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not (v >= 0.0) or v == float("inf"):  # catches NaN too
        raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def check_cost(key: object, cost: object) -> float:
    """Validate one request's cost: a finite number >= 0 (NaN, negatives and None are errors)."""
    if cost is None:
        raise MissingCostError(
            f"request for key {key!r} has no cost, but this policy is cost-aware; "
            "pass cost=... or use a cost-oblivious policy (lru, fifo, lfu)"
        )
    return check_nonnegative(f"cost for key {key!r}", cost)
