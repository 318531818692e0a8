"""``allocator export``: a strategy's exact training examples, for the trainer a user already runs.

The strategy's run holds the resolved config and the mixture; the pool is rebuilt from them
exactly as the confirmation built it (the target's, for a target-confirmed strategy: its
tokenizer decides which examples survive truncation), and the selection (the first n
examples of each ability's fixed order, cycled past its end: the nested selection every
trial trains on) is checked against the strategy's data hash before a byte is written: data
that changed since is an error, not a silent other mixture.

Written to a new folder (made next to it, then renamed: nothing half-written):

- ``data.jsonl``: one example a line, ``{"messages": [{"role", "content"}...], "ability"}``
  (OpenAI-style messages, which ``datasets`` reads as JSON);
- ``llamafactory``: plus ``dataset_info.json``, a LLaMA-Factory dataset entry (sharegpt
  formatting, OpenAI-style tags) to put in its ``data/`` folder or point ``dataset_dir`` at;
- ``axolotl``: plus ``axolotl_datasets.yaml``, the ``datasets:`` entry (``chat_template``) to
  paste into an axolotl config.

Those trainers apply their own chat template and truncation (``cutoff_len``,
``sequence_len``): the tokens they train on are theirs, the examples are the strategy's.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from allocator.errors import UserError

__all__ = ["Exported", "export"]

FORMATS = ("jsonl", "llamafactory", "axolotl")


@dataclass(frozen=True)
class Exported:
    folder: Path
    files: list[str]
    counts: dict[str, int]
    data_hash: str
    version: str | None

    def lines(self) -> list[str]:
        which = f"version {self.version}" if self.version else "its run"
        return [
            f"exported {sum(self.counts.values()):,} examples of the strategy ({which}, data hash "
            f"{self.data_hash[:12]}) to {self.folder}: {', '.join(self.files)}",
            "  per ability: " + ", ".join(f"{a}={n}" for a, n in self.counts.items()),
            "  (the trainer applies its own chat template and truncation to these examples)",
        ]


def _check_output(output: Path) -> None:
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UserError(f"--output {output}: exists and is not an empty folder")
    if not output.parent.is_dir():
        raise UserError(f"--output {output}: folder {output.parent} does not exist")


def export(
    strategy: str,
    fmt: str,
    output: str | Path,
    *,
    tracking_uri: str | None = None,
    experiment: str = "allocator",
) -> Exported:
    """Write the exact examples of ``strategy`` (``champion``, a version, or a run id) to
    ``output`` in ``fmt`` (module doc). Raises ``UserError`` for bad input."""
    from allocator.config import load_config
    from allocator.data.pools import prepare_pools
    from allocator.report.registry import resolve_strategy
    from allocator.report.tracking import check_uri, default_tracking_uri

    if fmt not in FORMATS:
        raise UserError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    out = Path(output).absolute()
    _check_output(out)
    uri = tracking_uri or default_tracking_uri()
    check_uri(uri)
    found = resolve_strategy(uri, experiment, strategy)
    st = found["strategy"]
    cfg = load_config(None, found["config"])
    if st["confirmed_on"] == "target":
        cfg = cfg.for_target()
    pools, _, _ = prepare_pools(cfg, None, cfg.model.spec())
    mixture = {a: int(n) for a, n in st["mixture"].items()}
    if set(mixture) != set(pools.abilities):
        raise UserError(f"strategy {strategy}: its abilities ({', '.join(mixture)}) are not the pool's now")
    if pools.data_hash(mixture) != st["data_hash"]:
        raise UserError(
            f"strategy {strategy}: the data its config names changed since it was confirmed (the examples hash "
            f"to {pools.data_hash(mixture)[:12]}, not {st['data_hash'][:12]}): nothing written"
        )
    records = [r for rs in pools.selected(mixture).values() for r in rs]  # in the pool's ability order
    name = f"allocator_{st['name']}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        with open(tmp / "data.jsonl", "w", encoding="utf-8") as f:
            for r in records:
                messages = [{"role": t.role, "content": t.content} for t in r.turns]
                f.write(json.dumps({"messages": messages, "ability": r.ability}, ensure_ascii=False) + "\n")
        files = ["data.jsonl"]
        if fmt == "llamafactory":
            entry = {
                "file_name": "data.jsonl",
                "formatting": "sharegpt",
                "columns": {"messages": "messages"},
                "tags": {
                    "role_tag": "role",
                    "content_tag": "content",
                    "user_tag": "user",
                    "assistant_tag": "assistant",
                    "system_tag": "system",
                },
            }
            (tmp / "dataset_info.json").write_text(json.dumps({name: entry}, indent=2) + "\n")
            files.append("dataset_info.json")
        elif fmt == "axolotl":
            entry = {
                "path": str(out / "data.jsonl"),
                "ds_type": "json",
                "type": "chat_template",
                "field_messages": "messages",
                "message_property_mappings": {"role": "role", "content": "content"},
                "roles_to_train": ["assistant"],
            }
            (tmp / "axolotl_datasets.yaml").write_text(yaml.safe_dump({"datasets": [entry]}, sort_keys=False))
            files.append("axolotl_datasets.yaml")
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    counts = {a: int(mixture.get(a, 0)) for a in pools.abilities}
    return Exported(out, files, counts, st["data_hash"], found["version"])
