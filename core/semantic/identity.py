"""What a function does, as a stable string: the identity of a callable that shapes a model's
input (a prompt formatter, a model-group function) for cache keys.

A function's name says nothing about what it does: two closures made by one factory, or two
lambdas, share a ``__qualname__`` and may format prompts differently. ``callable_identity``
hashes its code (bytecode, constants, names, nested code) together with every value it can read
that is not code: default arguments, closure cells and the module globals it names, each as
plain data (None, bool, numbers, str, bytes, containers of them, pydantic models by their
fields), functions by their own identity. Anything it cannot turn into plain data (an object
with state, a C extension callable other than a builtin) makes it answer None: the caller must
then not cache, since a key could match an answer made under other behaviour. The result is
the same in every process running the same code on the same Python version.
"""

from __future__ import annotations

import builtins
import enum
import functools
import hashlib
import json
import types
from typing import Any

__all__ = ["callable_identity"]

_MAX_DEPTH = 8  # functions calling functions: deeper than this is not worth keying


class _Unknown(Exception):
    """A value the identity cannot be told from."""


def callable_identity(fn: Any) -> str | None:
    """A hex digest of what ``fn`` does (see the module docstring), or None when it cannot tell."""
    try:
        data = _callable(fn, set(), 0)
    except (_Unknown, RecursionError, ValueError, TypeError):
        return None
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def _callable(fn: Any, seen: set[int], depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise _Unknown("too deep")
    if isinstance(fn, types.MethodType):
        return ["method", _callable(fn.__func__, seen, depth + 1), _value(fn.__self__, seen, depth + 1)]
    if isinstance(fn, functools.partial):
        return ["partial", _callable(fn.func, seen, depth + 1), _value(list(fn.args), seen, depth + 1),
                _value(dict(fn.keywords), seen, depth + 1)]
    if isinstance(fn, (types.BuiltinFunctionType, types.BuiltinMethodType, types.WrapperDescriptorType,
                       types.MethodDescriptorType, types.MethodWrapperType)):
        owner = getattr(fn, "__self__", None)
        if owner is not None and not isinstance(owner, types.ModuleType) and not isinstance(owner, type):
            return ["builtin-bound", getattr(fn, "__qualname__", repr(fn)), _value(owner, seen, depth + 1)]
        return ["builtin", getattr(fn, "__module__", None) or "", getattr(fn, "__qualname__", repr(fn))]
    if isinstance(fn, type):
        return ["class", fn.__module__, fn.__qualname__]
    if not isinstance(fn, types.FunctionType):
        raise _Unknown(f"callable object of type {type(fn).__name__}")
    if id(fn) in seen:  # recursion: the name is enough, the code is keyed once
        return ["recursive", fn.__module__, fn.__qualname__]
    seen = seen | {id(fn)}
    code = fn.__code__
    cells = [c.cell_contents if _filled(c) else ["empty-cell"] for c in (fn.__closure__ or ())]
    return ["function", fn.__module__, fn.__qualname__, _code(code),
            _value(list(fn.__defaults__ or ()), seen, depth + 1),
            _value(dict(fn.__kwdefaults__ or {}), seen, depth + 1),
            _value(cells, seen, depth + 1),
            _globals(code, fn.__globals__, seen, depth + 1)]


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def _code(code: types.CodeType) -> Any:
    consts = [_code(c) if isinstance(c, types.CodeType) else _const(c) for c in code.co_consts]
    return [code.co_code.hex(), consts, list(code.co_names), code.co_argcount, code.co_kwonlyargcount,
            code.co_flags]


def _const(c: Any) -> Any:
    if isinstance(c, (tuple, frozenset)):
        return [type(c).__name__, [_const(x) for x in (sorted(c, key=repr) if isinstance(c, frozenset) else c)]]
    if c is None or isinstance(c, (bool, int, float, str)):
        return [type(c).__name__, repr(c)]
    if isinstance(c, bytes):
        return ["bytes", c.hex()]
    return [type(c).__name__, repr(c)]  # Ellipsis, complex: their repr is their value


def _names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names |= _names(c)
    return names


def _globals(code: types.CodeType, env: dict[str, Any], seen: set[int], depth: int) -> Any:
    """The module-level values the code names (attributes share the name table: a name that is
    not a global is skipped, a name read from builtins is keyed by name only)."""
    out = {}
    for name in sorted(_names(code)):
        if name in env:
            v = env[name]
            out[name] = ["module", v.__name__] if isinstance(v, types.ModuleType) else _value(v, seen, depth)
        elif hasattr(builtins, name):
            out[name] = ["builtin-name"]
    return out


def _value(v: Any, seen: set[int], depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise _Unknown("too deep")
    if isinstance(v, enum.Enum):
        return ["enum", type(v).__module__, type(v).__qualname__, _value(v.value, seen, depth + 1)]
    if v is None or isinstance(v, (bool, int, float, str)):
        return [type(v).__name__, repr(v)]
    if isinstance(v, bytes):
        return ["bytes", v.hex()]
    if isinstance(v, (list, tuple)):
        return [type(v).__name__, [_value(x, seen, depth + 1) for x in v]]
    if isinstance(v, (set, frozenset)):
        return [type(v).__name__, sorted((_value(x, seen, depth + 1) for x in v), key=repr)]
    if isinstance(v, dict):
        return ["dict", sorted(([_value(k, seen, depth + 1), _value(x, seen, depth + 1)] for k, x in v.items()),
                               key=repr)]
    if callable(v) and not _is_model(v):
        return _callable(v, seen, depth + 1)
    if _is_model(v):
        try:
            return ["model", type(v).__module__, type(v).__qualname__, _value(v.model_dump(mode="json"), seen,
                                                                             depth + 1)]
        except Exception as exc:
            raise _Unknown(f"model {type(v).__name__}") from exc
    raise _Unknown(f"value of type {type(v).__name__}")


def _is_model(v: Any) -> bool:
    return callable(getattr(v, "model_dump", None)) and not isinstance(v, type)
