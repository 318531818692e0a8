"""Which model a trainer starts from, and loading it.

Today one kind: the built-in Llama-style decoder of a ``ModelSpec``, with its weights as
safetensors bytes (bytes rather than a path, so that a Ray worker needs no disk shared with
the driver; the tiny base is well under a MB). ``ModelRef`` is the one reference a trainer
call takes, so another source (a Hugging Face checkpoint) is one more kind here, not a new
argument everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from safetensors.torch import load as load_safetensors
from transformers import LlamaConfig, LlamaForCausalLM

from trainers.config import ModelSpec
from trainers.errors import TrainerError

__all__ = ["ModelRef", "load_model", "make_llama_config"]


def make_llama_config(spec: ModelSpec, tok: Any) -> LlamaConfig:
    """The transformers config of the built-in decoder for tokenizer ``tok``."""
    return LlamaConfig(
        vocab_size=tok.vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_heads,
        max_position_embeddings=spec.max_length,
        tie_word_embeddings=True,
        pad_token_id=tok.pad_id,
        bos_token_id=getattr(tok, "bos_id", None),
        eos_token_id=tok.eos_id,
    )


def load_model(spec: ModelSpec, weights: bytes, tok: Any) -> LlamaForCausalLM:
    """A fresh model of ``spec`` with the given safetensors weights."""
    model = LlamaForCausalLM(make_llama_config(spec, tok))
    state = load_safetensors(weights)
    # tied embeddings: the file stores embed_tokens only
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        raise TrainerError(f"base weights do not fit the model: missing {missing}, unexpected {unexpected}")
    return model


@dataclass(frozen=True)
class ModelRef:
    """A model to start from: the built-in decoder of ``spec`` with ``weights`` (safetensors)."""

    spec: ModelSpec
    weights: bytes

    def load(self, tok: Any) -> LlamaForCausalLM:
        return load_model(self.spec, self.weights, tok)
