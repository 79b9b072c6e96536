"""The embedding gate of a ``SemanticCache``: which prompts are compared by meaning, and their vectors.

A prompt is embedded only when its embedding keeps all of it (``cachemux.semantic.fidelity``,
measured with the embedder's own tokenizer): one the model would cut, one with an unknown token
or one that is not valid Unicode is matched exactly only (counted per reason, logged once per
reason). The vector is computed on the prompt's embedded form (``embed_form``) and is tagged
``vector_id`` (the model and the form) so vectors of another model or form are never compared.
A vector with NaN/inf (a broken model) is never searched nor stored.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import numpy as np

from cachemux.errors import ConfigError
from cachemux.semantic.embed_form import EMBED_FORM, embed_form
from cachemux.semantic.embedder import Embedder, TextEmbedder, default_embedder, is_text_embedder
from cachemux.semantic.fidelity import embedding_loss, tokenizer_of
from cachemux.semantic.stats import CacheStats, FaultSink

__all__ = ["EmbeddingGate", "make_embedder"]

log = logging.getLogger("cachemux.cache")

_UNSET: Any = object()


def make_embedder(embedder: object, semantic: bool) -> TextEmbedder | None:
    """The embedder a cache uses: None for an exact-only cache, the packaged one for None, an
    ``Embedder`` for a model name/path, or the given text embedder."""
    if not semantic:
        return None
    if embedder is None:
        return default_embedder()
    if isinstance(embedder, (str, os.PathLike)):
        return Embedder(embedder)
    if is_text_embedder(embedder):
        return embedder  # type: ignore[return-value]
    raise ConfigError(f"embedder must be an Embedder, a model name/path or None, got {type(embedder).__name__}")


class EmbeddingGate:
    """Decides whether a text is embedded (``loss``) and embeds it (``vector``)."""

    def __init__(self, embedder: TextEmbedder | None, stats: CacheStats, fault: FaultSink) -> None:
        self.embedder = embedder
        self.stats = stats
        self.fault = fault
        self.embedder_id = "" if embedder is None else str(getattr(embedder, "model_name", type(embedder).__name__))
        # the id stored with each vector: the model and the form of the text it embedded
        self.vector_id = f"{self.embedder_id}|{EMBED_FORM}" if self.embedder_id else ""
        self._tokenizer: Any = _UNSET  # the embedder's tokenizer, looked up on first use
        self._logged: set[str] = set()
        self._lock = threading.Lock()

    def loss(self, text: str | None) -> str | None:
        """Why ``text`` is matched exactly only ("off": no text to embed; else a
        ``cachemux.semantic.fidelity`` reason), or None if its embedding keeps all of it."""
        if text is None:
            return "off"
        emb = self.embedder
        assert emb is not None
        try:
            if self._tokenizer is _UNSET:
                self._tokenizer = tokenizer_of(emb)
            if self._tokenizer is not None:
                return embedding_loss(self._tokenizer, text, int(getattr(emb, "max_tokens", 0) or 0))
            text.encode("utf-8")  # a lone surrogate: no embedder can take it
            return None if emb.fits(text) else "truncated"
        except ConfigError:
            raise  # the model cannot be loaded: a configuration problem the user must see
        except UnicodeEncodeError:
            return "unencodable"
        except Exception as exc:
            self.fault("embedding check", exc)
            return "unencodable"

    def embeddable(self, text: str | None) -> bool:
        return self.loss(text) is None

    def embed(self, text: str) -> np.ndarray | None:
        """The vector of ``text``'s embedded form; None on a fault (logged)."""
        assert self.embedder is not None
        try:
            return np.asarray(self.embedder.embed([embed_form(text)])[0], dtype=np.float32)
        except ConfigError:
            raise  # the model cannot be loaded: a configuration problem the user must see
        except Exception as exc:
            self.fault("embedding", exc)
            return None

    def vector(self, text: str) -> np.ndarray | None:
        """``embed``, with a vector that is not finite counted and dropped (a broken model)."""
        vec = self.embed(text)
        if vec is not None and not usable(vec):
            self.stats.add(bad_embeddings=1)
            return None
        return vec

    def exact_only(self, loss: str) -> None:
        """Count a lookup matched exactly only because of ``loss`` (logged once per reason)."""
        if loss == "off":
            self.stats.add(exact_only=1)
            return
        self.stats.add(**{"exact_only": 1, f"exact_only_{loss}": 1})
        with self._lock:
            first = loss not in self._logged
            self._logged.add(loss)
        if first:
            log.info("cachemux: a prompt is matched exactly only (%s: its embedding would lose part "
                     "of it); counted in stats()['exact_only_%s'], logged once", loss, loss)


def usable(vec: np.ndarray) -> bool:
    """A 1-D, non-empty, finite vector."""
    return vec.ndim == 1 and bool(vec.size) and bool(np.all(np.isfinite(vec)))
