"""Semantic keys: exact-key hashing, a lazy sentence-transformers embedder, a vector index."""

from __future__ import annotations

from cachemux.semantic.embedder import DEFAULT_MODEL, Embedder, TextEmbedder, default_model_path
from cachemux.semantic.index import PartitionedIndex, VectorIndex
from cachemux.semantic.keys import exact_key, normalize_prompt, partition_id
from cachemux.semantic.threshold import DEFAULT_THRESHOLD

__all__ = ["DEFAULT_MODEL", "DEFAULT_THRESHOLD", "Embedder", "PartitionedIndex", "TextEmbedder",
           "VectorIndex", "default_model_path", "exact_key", "normalize_prompt", "partition_id"]
