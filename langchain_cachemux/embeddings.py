"""A LangChain ``Embeddings`` as the semantic cache's embedder.

``CacheMuxCache(embedder=OpenAIEmbeddings())`` (or any ``langchain_core.embeddings.Embeddings``)
wraps it in ``LangChainEmbedder``: cached prompts and lookups are both embedded with
``embed_documents`` (one function on both sides, so a prompt always meets its own vector),
L2-normalised. The entries carry the embedder's id (``model_name``: by default the class and its
``model``/``model_name`` field), so a cache never compares vectors of another model; pass
``model_name=`` for an id that stays stable across versions. The shipped verifier is fitted for
MiniLM only: with another model the cache matches by plain cosine at ``threshold`` (default
``DEFAULT_THRESHOLD``) unless given ``matcher=``. A model that raises is a fault: the lookup
becomes an exact-only miss, logged, and the chain goes on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

from cachemux.errors import ConfigError

__all__ = ["LangChainEmbedder", "as_embedder"]


class LangChainEmbedder:
    """``cachemux.semantic.TextEmbedder`` over a LangChain ``Embeddings``."""

    def __init__(self, embeddings: Embeddings, *, model_name: str | None = None) -> None:
        if not isinstance(embeddings, Embeddings):
            raise ConfigError(f"expected a langchain_core Embeddings, got {type(embeddings).__name__}")
        self.embeddings = embeddings
        if model_name is None:
            kind = type(embeddings)
            inner = getattr(embeddings, "model", None) or getattr(embeddings, "model_name", None) or ""
            model_name = f"langchain:{kind.__module__}.{kind.__qualname__}:{inner}"
        if not isinstance(model_name, str) or not model_name:
            raise ConfigError(f"model_name must be a non-empty str, got {model_name!r}")
        self.model_name = model_name
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        """The vectors' dimension (the first call embeds one word if nothing was embedded yet)."""
        if self._dim is None:
            self._dim = int(self.embed(["dimension"]).shape[1])
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        vecs: np.ndarray = np.asarray(self.embeddings.embed_documents(list(texts)), dtype=np.float32)
        if vecs.ndim != 2 or len(vecs) != len(texts) or not vecs.shape[1]:
            raise ValueError(f"{self.model_name}: embed_documents gave shape {vecs.shape} for {len(texts)} texts")
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        vecs = vecs / np.where(norms > 0, norms, 1.0)
        if self._dim is None:
            self._dim = int(vecs.shape[1])
        return vecs

    def fits(self, text: str) -> bool:
        return True  # the model's window is unknown here: what it truncates, it truncates

    def __repr__(self) -> str:
        return f"LangChainEmbedder({self.model_name!r})"


def as_embedder(embedder: Any) -> Any:
    """A LangChain ``Embeddings`` wrapped for the cache; anything else as it is."""
    return LangChainEmbedder(embedder) if isinstance(embedder, Embeddings) else embedder
