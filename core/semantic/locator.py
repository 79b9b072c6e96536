"""Where a request lives in a ``SemanticCache``: its exact key, its partition and the text compared
by meaning, computed once per call.

A partition is (namespace, llm_string), or (namespace, group) when ``model_groups`` lets several
model configurations share answers, plus the request's ``scope`` (a chat's system prompt and
earlier turns, which a semantic match must share exactly): nothing is ever served across
partitions. A group is keyed by what decides its members (its members, or the behaviour of the
function that names them), so two apps that each call a group "G" share answers only if their
"G" is the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from cachemux.errors import ConfigError
from cachemux.semantic.identity import callable_identity
from cachemux.semantic.keys import check_text, exact_key, model_id, normalize_prompt, partition_id

__all__ = ["KEEP_CHARS", "Locator", "Prepared", "llm_id", "model_groups", "written_by"]

KEEP_CHARS = 2_000  # of each prompt and llm_string kept in an entry, for inspection only

Groups = Mapping[str, Iterable[str]] | Callable[[str], "str | None"] | None


class Prepared(NamedTuple):
    """A request's place: exact ``key``, the ``text`` to embed (None: exact only), and what its
    partition is made of (``part``, computed when a semantic lookup or a write needs it: an
    exact hit never does)."""

    key: str
    text: str | None
    namespace: str
    model: str
    scope: str

    @property
    def part(self) -> str:
        return partition_id(self.namespace, self.model, self.scope)


class Locator:
    """Keys requests for one cache: its ``namespace``, ``casefold``, model groups, semantic or not."""

    def __init__(self, namespace: str = "", *, casefold: bool = False, groups: Groups = None,
                 semantic: bool = True) -> None:
        self.namespace = check_text("namespace", namespace)
        self.casefold = bool(casefold)
        self.semantic = bool(semantic)
        self._group_of = model_groups(groups)

    def model(self, llm_string: str) -> str:
        """The model part of keys and partitions: ``llm_string``, or its group's id."""
        group = self._group_of(llm_string) if self._group_of is not None else None
        return model_id(llm_string, group)  # injective: an llm_string cannot forge a group's key

    def key_for(self, prompt: str, llm_string: str) -> str:
        """The exact key ``prompt`` is stored under for ``llm_string`` in this namespace."""
        return exact_key(prompt, self.model(check_text("llm_string", llm_string)), self.namespace,
                         casefold=self.casefold)

    def prepare(self, prompt: object, llm_string: object, embed_text: object = None, scope: object = ""
                ) -> Prepared:
        """Validate and place a request. ``embed_text``: the text compared by meaning (None: the
        normalised prompt; False: exact only)."""
        check_text("prompt", prompt)
        check_text("llm_string", llm_string)
        model = self.model(llm_string)  # type: ignore[arg-type]
        normalized = normalize_prompt(prompt, casefold=self.casefold)  # type: ignore[arg-type]
        key = exact_key(normalized, model, self.namespace, normalized=True, casefold=self.casefold)
        check_text("scope", scope)
        if embed_text is None:
            text: str | None = normalized
        elif embed_text is False:
            text = None
        else:
            text = check_text("embed_text", embed_text).strip()
        if not self.semantic or not text:
            text = None
        return Prepared(key, text, self.namespace, model, scope)  # type: ignore[arg-type]


def model_groups(groups: Groups) -> Callable[[str], str | None] | None:
    """``llm_string -> group id`` (the group's name and what keys it), or None without groups."""
    if groups is None:
        return None
    if callable(groups) and not isinstance(groups, Mapping):
        fn = groups
        # a group is keyed by what decides its members: the function's behaviour, not its name
        ident = callable_identity(fn)
        if ident is None:
            raise ConfigError(f"model_groups function {fn!r:.80} cannot be keyed by what it does (it reads "
                              "objects that are not plain data); pass {group: [llm_string, ...]} instead")

        def group_of(llm_string: str) -> str | None:
            group = fn(llm_string)
            if group is not None and not isinstance(group, str):
                raise ConfigError(f"model_groups function must return a group name (str) or None, got {group!r}")
            return None if group is None else f"{group}\x00{ident}"

        return group_of
    if not isinstance(groups, Mapping):
        raise ConfigError(f"model_groups must be {{group: [llm_string, ...]}} or a function, got {groups!r}")
    member: dict[str, str] = {}
    for group, llms in groups.items():
        check_text("model group name", group)
        if isinstance(llms, str):
            raise ConfigError(f"model group {group!r} must list llm_strings, got the single string {llms!r:.80}")
        for llm in llms:
            check_text(f"member of model group {group!r}", llm)
            if llm in member and member[llm] != group:
                raise ConfigError(f"llm_string {llm!r:.80} is in two model groups: {member[llm]!r} and {group!r}")
            member[llm] = group
    # keyed by its members: two apps' groups "G" share answers only if they hold the same configurations
    tag = {g: hashlib.blake2b("\x00".join(sorted(m for m, h in member.items() if h == g)).encode(
        "utf-8", "surrogatepass"), digest_size=12).hexdigest() for g in set(member.values())}
    keyed = {llm: f"{g}\x00{tag[g]}" for llm, g in member.items()}
    return keyed.get


def llm_id(llm_string: str) -> str:
    # entries keep only the head of a long llm_string for inspection: clear(llm_string=) matches this
    return hashlib.blake2b(llm_string.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def written_by(meta: Mapping[str, Any], llm_string: str, llm_id: str) -> bool:
    if "llm_id" in meta:
        return meta["llm_id"] == llm_id
    # an entry from before llm_id: its "llm" is exact only when it was not cut
    return len(llm_string) < KEEP_CHARS and meta.get("llm") == llm_string
