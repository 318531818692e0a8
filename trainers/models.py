"""Which model a trainer starts from, and loading it (on the machine that trains it).

Two kinds behind one ``ModelRef``:

- the built-in Llama-style decoder of a ``ModelSpec``, with its weights as safetensors bytes
  (bytes rather than a path, so that a Ray worker needs no disk shared with the driver; the
  tiny base is well under a MB);
- a pretrained Hugging Face causal LM, ``spec.name_or_path`` (a folder or a hub id pinned to
  a commit by trainers.hub): the worker loads it itself, safetensors only, with
  ``trust_remote_code`` as the spec says (off by default), in the spec's dtype and attention
  implementation, 4-bit NF4 when a QLoRA proxy asks for it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from transformers import LlamaConfig, LlamaForCausalLM

from trainers.config import ModelSpec
from trainers.errors import TrainerError, first_line

__all__ = ["ModelRef", "load_model", "make_llama_config", "torch_dtype"]


def torch_dtype(name: str, device: torch.device) -> torch.dtype:
    """The dtype ``name`` means on ``device``: ``auto`` is bfloat16 on a GPU that supports it,
    float32 elsewhere (a CPU's bfloat16 matmuls are slower than float32 ones and less exact)."""
    if name == "auto":
        # natively: an emulated bfloat16 (a T4, a V100) is slower than float32
        cuda = device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
        return torch.bfloat16 if cuda else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


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
    """A fresh built-in model of ``spec`` with the given safetensors weights (float32)."""
    model = LlamaForCausalLM(make_llama_config(spec, tok))
    state = load_safetensors(weights)
    # tied embeddings: the file stores embed_tokens only
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        raise TrainerError(f"base weights do not fit the model: missing {missing}, unexpected {unexpected}")
    return model


def _from_pretrained(
    where: str, spec: ModelSpec, dtype: torch.dtype, quantization: Any, device: torch.device, token: str | None = None
) -> Any:
    from transformers import AutoModelForCausalLM

    from trainers.hub import check_local, hub_offline, is_local

    local = is_local(where)
    if local:
        check_local(where)
    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "attn_implementation": spec.attn_implementation,
        "trust_remote_code": spec.trust_remote_code,
        "use_safetensors": True,  # never unpickle weights
        "local_files_only": local or hub_offline(),
    }
    if not local and spec.revision:
        kwargs["revision"] = spec.revision
    if not local and token:
        kwargs["token"] = token
    if quantization is not None:  # bitsandbytes quantizes while loading, on the device it will run on
        kwargs["quantization_config"] = quantization
    if device.type == "cuda":  # straight onto the GPU Ray gave this worker: no full copy in host memory
        kwargs["device_map"] = {"": device.index if device.index is not None else torch.cuda.current_device()}
    elif quantization is not None:
        kwargs["device_map"] = {"": "cpu"}
    try:
        model = AutoModelForCausalLM.from_pretrained(where, **kwargs)
    except (TrainerError, torch.OutOfMemoryError):
        raise
    except (OSError, ValueError, ImportError, RuntimeError) as e:  # RuntimeError: e.g. shapes that do not fit
        raise TrainerError(f"model.name_or_path {spec.name_or_path}: cannot be loaded: {first_line(e)}") from None
    # greedy decoding means greedy: a checkpoint's generation_config (repetition penalty, banned
    # n-grams, a minimum length, sampling) would otherwise fill in what evaluation leaves unset
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(
        bos_token_id=model.config.bos_token_id, eos_token_id=model.config.eos_token_id
    )
    return model


@dataclass(frozen=True)
class ModelRef:
    """A model to start from: the built-in decoder of ``spec`` with ``weights`` (safetensors), or
    (``weights`` None) the pretrained model ``spec.name_or_path``."""

    spec: ModelSpec
    weights: bytes | None = None
    token: str | None = field(default=None, repr=False)  # the hub's, for gated or private models; never shown

    def __post_init__(self) -> None:
        if (self.weights is None) == (self.spec.name_or_path is None):
            raise TrainerError("ModelRef: give the built-in decoder's weights or a spec with name_or_path, not both")

    def load(
        self,
        tok: Any,
        *,
        dtype: torch.dtype = torch.float32,
        quantization: Any = None,
        device: torch.device | None = None,
    ) -> Any:
        """The model in ``dtype`` on ``device`` (default CPU; a pretrained model loads straight onto
        a GPU), quantized by a bitsandbytes ``quantization`` config when one is given."""
        device = device or torch.device("cpu")
        if self.spec.name_or_path is not None:
            model = _from_pretrained(self.spec.name_or_path, self.spec, dtype, quantization, device, self.token)
        elif quantization is None:
            assert self.weights is not None
            model = load_model(self.spec, self.weights, tok).to(device=device, dtype=dtype)
        else:
            # bitsandbytes quantizes while loading a checkpoint: the built-in decoder goes through a
            # temporary save_pretrained folder (safetensors) so both kinds share that path
            assert self.weights is not None
            built = load_model(self.spec, self.weights, tok)
            with tempfile.TemporaryDirectory(prefix="allocator-builtin-") as tmp:
                built.save_pretrained(tmp, safe_serialization=True)
                del built
                model = _from_pretrained(tmp, self.spec, dtype, quantization, device)
        # a pad token for batched training and generation when the checkpoint names none
        if getattr(model.config, "pad_token_id", None) is None and getattr(tok, "pad_id", None) is not None:
            model.config.pad_token_id = tok.pad_id
        return model
