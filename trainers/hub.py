"""Where a pretrained model comes from: a local ``save_pretrained`` folder or a hub id,
checked and pinned once on the driver, loaded by each worker itself.

``resolve_model(spec)`` runs on the driver before anything is written. It refuses, with one
line naming the model and the reason:

- a folder without ``config.json``, whose architecture is not a causal LM, or whose model
  type needs its own code while ``trust_remote_code`` is off;
- a folder (or hub repository) with pickled weights only (``.bin``, ``.pt``): weights load
  as safetensors, never by unpickling;
- a hub id when the hub cannot be reached (offline here) and the model is not in the local
  Hugging Face cache.

A hub id's ``revision`` (a branch or tag, default ``main``) is resolved to its commit, so
every trial loads the same weights even if the branch moves during the job.

Workers load the model themselves (``trainers.models``) from the folder or the hub: a
multi-GB checkpoint never travels through the driver or Ray's object store. A local folder
must therefore be at the same path on every node (a shared file system or the same copy);
``check_local`` says so on a worker that does not see it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainers.config import ModelSpec
from trainers.errors import TrainerError, first_line

__all__ = ["PretrainedBase", "check_local", "hub_offline", "is_local", "resolve_model"]

_PICKLED = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def is_local(name_or_path: str) -> bool:
    """A path (it exists, or is written as one: absolute, ``./``, ``../``, ``~``) rather than a hub id."""
    p = Path(name_or_path).expanduser()
    return p.exists() or name_or_path.startswith(("/", "./", "../", "~", ".\\")) or name_or_path in (".", "..")


def hub_offline() -> bool:
    """Whether the Hugging Face hub is switched off here (``HF_HUB_OFFLINE``)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def check_local(path: str) -> Path:
    """The folder, or a ``TrainerError`` that says this machine does not see it."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise TrainerError(
            f"model.name_or_path {path}: no such folder on {socket.gethostname()} (a local model folder must be "
            "at the same path on every node of the cluster)"
        )
    return p


def _weights(files: list[str], where: str) -> list[str]:
    safe = [f for f in files if f.endswith(".safetensors")]
    if safe:
        return safe
    pickled = [f for f in files if f.endswith(_PICKLED)]
    if pickled:
        raise TrainerError(
            f"model.name_or_path {where}: only pickled weights ({', '.join(sorted(pickled)[:3])}); allocator loads "
            "safetensors only (convert: model.save_pretrained(folder, safe_serialization=True))"
        )
    raise TrainerError(f"model.name_or_path {where}: no model weights (*.safetensors)")


def _check_config(config: Any, where: str, trust_remote_code: bool, max_length: int) -> None:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if not isinstance(config, dict):
        raise TrainerError(f"model.name_or_path {where}: config.json is not a JSON object")
    model_type = config.get("model_type")
    # an auto_map next to a model type transformers knows (Phi-3, Falcon...) loads natively
    custom = "AutoModelForCausalLM" in (config.get("auto_map") or {}) and model_type not in CONFIG_MAPPING_NAMES
    if custom and not trust_remote_code:
        raise TrainerError(
            f"model.name_or_path {where}: its model runs its own code (auto_map in config.json); set "
            "model.trust_remote_code: true only if you trust that code"
        )
    if not custom and model_type not in CONFIG_MAPPING_NAMES:
        raise TrainerError(f"model.name_or_path {where}: unknown model_type {model_type!r} in config.json")
    causal = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    archs = config.get("architectures") or []
    if custom:
        return
    if archs and not any(a in causal for a in archs):
        raise TrainerError(f"model.name_or_path {where}: {', '.join(archs)} is not a causal language model")
    if not archs and model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise TrainerError(f"model.name_or_path {where}: model_type {model_type!r} has no causal language model")
    positions = config.get("max_position_embeddings") or config.get("n_positions")
    if isinstance(positions, int) and max_length > positions:
        raise TrainerError(
            f"model.max_length {max_length} exceeds the {positions} positions of {where} (max_position_embeddings)"
        )


def _count_params(paths: list[Path]) -> int:
    """Parameters in safetensors files, from their headers alone (no weights read)."""
    total = 0
    for p in paths:
        try:
            with p.open("rb") as f:
                (size,) = struct.unpack("<Q", f.read(8))
                if size > 100 * 2**20:
                    raise ValueError(f"a header of {size} bytes")
                header = json.loads(f.read(size))
        except (OSError, ValueError, struct.error) as e:
            raise TrainerError(f"model.name_or_path: {p} is not a readable safetensors file ({e})") from None
        for name, info in header.items():
            if name != "__metadata__":
                n = 1
                for d in info["shape"]:
                    n *= d
                total += n
    return total


@dataclass(frozen=True)
class PretrainedBase:
    """A pretrained base as a job records it: where, which weights (``digest``), how large."""

    spec: ModelSpec  # revision pinned to a commit for a hub id
    meta: dict[str, Any]

    @property
    def path(self) -> str:
        return str(self.spec.name_or_path)


def _local(spec: ModelSpec, where: str) -> PretrainedBase:
    folder = Path(where).expanduser()
    if not folder.is_dir():
        raise TrainerError(f"model.name_or_path {where}: no such folder")
    cfg_file = folder / "config.json"
    if not cfg_file.is_file():
        raise TrainerError(f"model.name_or_path {where}: not a model folder (no config.json)")
    try:
        config = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise TrainerError(f"model.name_or_path {where}: config.json is not valid JSON ({e})") from None
    _check_config(config, where, spec.trust_remote_code, spec.max_length)
    files = sorted(p.name for p in folder.iterdir() if p.is_file())
    weights = [folder / f for f in _weights(files, where)]
    # which weights: the config and each weight file's name, size and modification time (hashing
    # many GB would take longer than a trial)
    h = hashlib.sha256(cfg_file.read_bytes())
    for p in weights:
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    resolved = dataclasses.replace(spec, name_or_path=str(folder.resolve()), revision=None)
    meta = {"digest": h.hexdigest()[:16], "params": _count_params(weights), "build_seconds": 0.0, "source": "folder"}
    return PretrainedBase(resolved, meta)


def _hub(spec: ModelSpec, repo: str) -> PretrainedBase:
    from huggingface_hub import HfApi, snapshot_download

    revision = spec.revision or "main"
    if hub_offline():
        try:  # the local Hugging Face cache still serves a model downloaded before
            folder = snapshot_download(repo, revision=revision, local_files_only=True)
        except Exception:
            raise TrainerError(
                f"model.name_or_path {repo}: not a local folder, and the Hugging Face hub is offline "
                "(HF_HUB_OFFLINE=1) with no copy in the local cache; download it where a network exists, "
                "or give a local save_pretrained folder"
            ) from None
        base = _local(dataclasses.replace(spec, name_or_path=folder), folder)
        commit = Path(folder).name
        return PretrainedBase(
            dataclasses.replace(spec, revision=commit), {**base.meta, "source": "hub-cache", "commit": commit}
        )
    try:
        info = HfApi().model_info(repo, revision=revision, files_metadata=False)
    except Exception as e:
        raise TrainerError(
            f"model.name_or_path {repo} (revision {revision}): cannot be found on the hub: {first_line(e)}"
        ) from None
    files = [s.rfilename for s in info.siblings or []]
    if "config.json" not in files:
        raise TrainerError(f"model.name_or_path {repo}: not a model repository (no config.json)")
    _weights(files, repo)
    try:
        config_path = HfApi().hf_hub_download(repo, "config.json", revision=info.sha)
        config = json.loads(Path(config_path).read_text(encoding="utf-8"))
    except Exception as e:  # a network failure, a gated repository, a broken file
        raise TrainerError(f"model.name_or_path {repo}: cannot read its config.json: {first_line(e)}") from None
    _check_config(config, repo, spec.trust_remote_code, spec.max_length)
    params = info.safetensors.total if getattr(info, "safetensors", None) else None
    meta = {"digest": str(info.sha)[:16], "params": params, "build_seconds": 0.0, "source": "hub", "commit": info.sha}
    return PretrainedBase(dataclasses.replace(spec, revision=info.sha), meta)


def resolve_model(spec: ModelSpec) -> PretrainedBase:
    """Check the pretrained model ``spec.name_or_path`` names and pin it (module doc)."""
    where = spec.name_or_path
    if where is None:
        raise TrainerError("resolve_model: the spec names no pretrained model (name_or_path is None)")
    if is_local(where):
        return _local(spec, where)
    return _hub(spec, where)
