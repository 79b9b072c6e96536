"""A selector for adapter tests: large for queries that say "hard", small otherwise."""

from __future__ import annotations

from collections.abc import Hashable

from cachemux import Selector


class KeywordSelector(Selector):
    """A stand-in for a trained selector; records every query it was asked to route."""

    name = "keyword"

    def __init__(self) -> None:
        super().__init__([("small",), ("large",)])
        self.seen: list[Hashable] = []

    def choose(self, query: Hashable) -> tuple[str, ...]:
        self.seen.append(query)
        return ("large",) if "hard" in str(query) else ("small",)
