"""A fine-tuned model written to a folder, as safetensors only: what a target run keeps.

``save_weights`` writes what ``save_pretrained`` writes (the config and ``model.safetensors``
of a full fine-tune; ``adapter_config.json`` and ``adapter_model.safetensors`` of a LoRA or
QLoRA one, whose base is the run's base), plus the tokenizer spec the run used
(``allocator_tokenizer.json``, trainers.tokenizer), so the folder says how its ids were made.
Never a pickle: a strategy's weights may be downloaded and loaded by someone else.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["TOKENIZER_FILE", "folder_bytes", "save_weights"]

TOKENIZER_FILE = "allocator_tokenizer.json"


def save_weights(net: Any, folder: str | Path, tokenizer: Mapping[str, Any]) -> Path:
    """Write ``net`` (a transformers model, or a peft model: its adapter only) to ``folder``
    in safetensors, with ``tokenizer`` (a spec); returns the folder."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    net.save_pretrained(str(out), safe_serialization=True)
    (out / TOKENIZER_FILE).write_text(json.dumps(dict(tokenizer)))
    unsafe = [p.name for p in out.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl")]
    if unsafe:  # a guard: save_pretrained of these libraries writes safetensors, and must keep doing so
        raise RuntimeError(f"{out}: pickled weights written ({', '.join(unsafe)}); safetensors only")
    return out


def folder_bytes(folder: str | Path) -> int:
    """The bytes of every file under ``folder``."""
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(folder) for f in fs)
