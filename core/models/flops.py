"""Forward-pass FLOPs of a decoder-only transformer, from its config (what a generation costs).

What is counted (multiply-add = 2 FLOPs, the convention of Kaplan et al. 2020, "C ~ 2N"):

* every weight matrix a token passes through: per layer the attention projections
  (q, k, v, o; grouped-query attention shrinks k and v) and the MLP (three matrices for the
  gated SiLU/GELU MLPs of Llama, Mistral, Qwen, Gemma...; two for a plain MLP): ``2 * body``;
* the output layer (LM head, hidden x vocab, counted even when tied to the input embedding,
  because it is a real matmul): ``2 * head`` per *logit row computed*. During generation
  transformers computes logits for the last position only, so a prompt of n tokens pays the
  head once, not n times;
* attention scores and the weighted sum over the keys a token attends to:
  ``4 * heads * head_dim * keys`` per layer, with keys capped by the sliding window on
  sliding-window layers (Gemma 3, Mistral).

Not counted: the embedding lookup (a gather), norms, rotary embeddings, activations, softmax:
O(hidden) per token, under 1% of the total for these models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cachemux.errors import ConfigError

__all__ = ["FlopsProfile"]

# Model families whose MLP is gated (gate_proj, up_proj, down_proj: 3 matrices).
_GATED = frozenset({
    "llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma", "gemma2",
    "gemma3", "gemma3_text", "phi3", "smollm3", "olmo", "olmo2", "granite", "cohere",
})


@dataclass(frozen=True)
class FlopsProfile:
    """Per-token matmul parameter counts of one model, and its attention shape.

    ``body``: weights every processed token multiplies (all layers). ``head``: the LM head.
    ``windows``: per layer, the sliding window (None = full attention).
    """

    body: int
    head: int
    layers: int
    attn_width: int  # heads * head_dim (the query width)
    windows: tuple[int | None, ...] = ()
    source: str = "config"

    @property
    def per_token(self) -> float:
        """Headline FLOPs per generated token: 2 * (body + head), attention excluded."""
        return 2.0 * (self.body + self.head)

    def attention(self, new: int, past: int = 0) -> float:
        """Attention FLOPs for ``new`` tokens appended after ``past`` (causal, exact sum)."""
        if new <= 0:
            return 0.0
        total = 0
        windows = self.windows or (None,) * self.layers
        for w in windows:
            for i in range(past + 1, past + new + 1):  # the token at position i sees i keys
                total += i if w is None else min(i, w)
        return 4.0 * self.attn_width * total

    def forward(self, new: int, past: int = 0, logits: int = 1) -> float:
        """One forward pass over ``new`` tokens after ``past`` cached ones, ``logits`` rows out."""
        return 2.0 * self.body * new + 2.0 * self.head * logits + self.attention(new, past)

    def generation(self, tokens_in: int, tokens_out: int) -> float:
        """A greedy generation with a KV cache: one prefill pass over the prompt (logits for the
        last position only), then one single-token pass per further generated token."""
        if tokens_out <= 0:
            return 0.0
        # the prefill emits token 1; tokens 2..n each need a pass over the previous one
        decode_tokens = tokens_out - 1
        return (2.0 * self.body * (tokens_in + decode_tokens) + 2.0 * self.head * tokens_out
                + self.attention(tokens_in + decode_tokens, 0))

    # ---- construction ---------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: Any) -> FlopsProfile:
        """From a transformers config (or a dict with the same fields) of a decoder-only model."""
        c = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        c = c.get("text_config") or c  # multimodal wrappers keep the LM under text_config
        try:
            d = int(c["hidden_size"])
            n_layers = int(c["num_hidden_layers"])
            heads = int(c["num_attention_heads"])
            inter = int(c["intermediate_size"])
            vocab = int(c["vocab_size"])
        except (KeyError, TypeError):
            raise ConfigError(
                f"cannot count FLOPs from a {c.get('model_type', '?')!r} config: it lacks hidden_size, "
                "num_hidden_layers, num_attention_heads, intermediate_size or vocab_size; "
                "use FlopsProfile.from_model(model)") from None
        model_type = str(c.get("model_type", ""))
        if model_type not in _GATED:
            raise ConfigError(f"unknown MLP shape for model_type {model_type!r}; gated families: "
                              f"{', '.join(sorted(_GATED))}; use FlopsProfile.from_model(model)")
        kv = int(c.get("num_key_value_heads") or heads)
        head_dim = int(c.get("head_dim") or d // heads)
        q_width, kv_width = heads * head_dim, kv * head_dim
        attn = d * q_width + 2 * d * kv_width + q_width * d
        mlp = 3 * d * inter
        return cls(body=n_layers * (attn + mlp), head=d * vocab, layers=n_layers,
                   attn_width=q_width, windows=_windows(c, n_layers), source="config")

    @classmethod
    def from_model(cls, model: Any) -> FlopsProfile:
        """Count the weights of every ``nn.Linear`` in a loaded model (any architecture); the
        attention shape still comes from its config."""
        from torch import nn

        head_mod = model.get_output_embeddings()
        head = int(head_mod.weight.numel()) if head_mod is not None else 0
        body = sum(int(m.weight.numel()) for m in model.modules()
                   if isinstance(m, nn.Linear) and m is not head_mod)
        c = model.config.to_dict()
        c = c.get("text_config") or c
        n_layers = int(c.get("num_hidden_layers") or c.get("n_layer") or 0)
        heads = int(c.get("num_attention_heads") or c.get("n_head") or 0)
        d = int(c.get("hidden_size") or c.get("n_embd") or 0)
        head_dim = int(c.get("head_dim") or (d // heads if heads else 0))
        return cls(body=body, head=head, layers=n_layers, attn_width=heads * head_dim,
                   windows=_windows(c, n_layers), source="model")

    def as_dict(self) -> dict[str, Any]:
        return {"body_params": self.body, "head_params": self.head, "layers": self.layers,
                "attn_width": self.attn_width, "flops_per_token": self.per_token,
                "sliding_layers": sum(w is not None for w in self.windows), "source": self.source}


def _windows(c: dict[str, Any], n_layers: int) -> tuple[int | None, ...]:
    window = c.get("sliding_window")
    types: Sequence[str] | None = c.get("layer_types")
    if not window:
        return (None,) * n_layers
    if types:
        return tuple(int(window) if t == "sliding_attention" else None for t in types)
    if c.get("use_sliding_window") is False:
        return (None,) * n_layers
    return (int(window),) * n_layers  # Mistral-style: every layer slides
