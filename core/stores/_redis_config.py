"""The configuration of a ``RedisStore`` namespace: the hash a new namespace is created with
(``_redis_lua.INIT``), and the checks of a stored one against what a client asked for. Policy,
capacity, options and shares are fixed when the namespace is created; a different explicit
value is a ``ConfigError``."""

from __future__ import annotations

import json

from cachemux.errors import ConfigError, StoreError
from cachemux.stores import _redis_lua as lua
from cachemux.stores._policy import StorePolicy, resolve_policy
from cachemux.stores._shares import REST, check_shares, share_capacity

FORMAT_VERSION = 1


def namespace_config(req: StorePolicy, log_size: int, shares: dict[str, float]) -> dict[str, str]:
    """The configuration fields of a namespace created for ``req``, ``log_size`` and ``shares``."""
    cfg = {"format": lua.FORMAT, "version": str(FORMAT_VERSION), "policy": req.name,
           "family": req.family, "capacity": repr(req.capacity),
           "hit_moves": "1" if req.hit_moves else "0", "use_freq": "1" if req.use_freq else "0",
           "use_cost": "1" if req.use_cost else "0", "history": "1" if req.history else "0",
           "admission": "1" if req.admission else "0", "growth": repr(req.growth),
           "options": req.options_json(), "log_size": str(log_size),
           "shares": json.dumps(shares, sort_keys=True) if shares else ""}
    if shares:  # each part's capacity, computed once here, as DiskStore computes it
        for part in ["=" + ns for ns in shares] + [REST]:
            cfg[f"cap:{part}"] = repr(share_capacity(shares, req.capacity, part))
    return cfg


def stored_config(where: str, got: dict[str, str], given: dict[str, bool],
                  shares: dict[str, float]) -> tuple[StorePolicy, dict[str, float]]:
    """The stored (policy, shares) of the namespace whose configuration is ``got``, after
    checking its format and, when ``shares`` were given, that they are the stored ones."""
    if got.get("format") != lua.FORMAT or got.get("version") != str(FORMAT_VERSION):
        raise StoreError(f"{where}: not a cachemux store of format {lua.FORMAT!r} "
                         f"version {FORMAT_VERSION} (found {got.get('format')!r} {got.get('version')!r})")
    stored = resolve_policy(got["policy"], float(got["capacity"]), json.loads(got["options"]))
    stored_shares = json.loads(got["shares"]) if got.get("shares") else {}
    if given["shares"] and stored_shares != shares:
        raise ConfigError(f"{where} was created with shares={stored_shares or None}; got "
                          f"shares={shares}. Pass shares=None (the stored ones) or use another namespace")
    return stored, check_shares(stored_shares or None)


def check_policy(where: str, stored: StorePolicy, req: StorePolicy, given: dict[str, bool]) -> None:
    """A ``ConfigError`` unless the policy, capacity and options explicitly ``given`` are the stored ones."""
    if ((given["policy"] and req.name != stored.name) or (given["capacity"] and req.capacity != stored.capacity)
            or (given["options"] and req.options != stored.options)):
        raise ConfigError(
            f"{where} was created with policy={stored.name!r}, capacity={stored.capacity:g}, "
            f"options={stored.options}; got policy={req.name!r}, capacity={req.capacity:g}, "
            f"options={req.options}. Pass capacity=None, policy=None (the stored ones) or "
            "use another namespace")
