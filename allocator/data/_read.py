"""Reading raw rows from a source: local files of the usual kinds, saved datasets, hub names.

JSON Lines (``.jsonl``, ``.jsonl.gz``) are read line by line here, so that
every problem is reported at its 1-based line: invalid JSON, a non-object, bytes
that are not UTF-8, a line longer than the configured limit. JSON arrays,
Parquet and CSV files, folders written by ``Dataset.save_to_disk`` and hub
dataset names go through Hugging Face ``datasets``; their rows are numbered
from 1 in file order (for CSV, the first row after the header is row 1).
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from allocator.data._formats import DataError
from allocator.errors import first_line

__all__ = ["read_rows"]

_GZIP_MAGIC = b"\x1f\x8b"


def _open_lines(path: Path, max_line_chars: int) -> Iterator[bytes]:
    """The file's lines as bytes; a line longer than any of ``max_line_chars`` characters could
    be (4 bytes each in UTF-8) stops the read there, never loaded whole (a file of one 10 GB line)."""
    limit = 4 * max_line_chars + 2
    for n, line in enumerate(_raw_lines(path, limit), start=1):
        if len(line) >= limit and not line.endswith(b"\n"):
            raise DataError(f"{path}: line {n}: more than {max_line_chars:,} characters, over the limit")
        yield line


def _raw_lines(path: Path, limit: int) -> Iterator[bytes]:
    with path.open("rb") as raw:
        head = raw.read(2)
    gz = path.name.endswith(".gz")
    if gz and head != _GZIP_MAGIC:
        raise DataError(f"{path}: named .gz but not gzip-compressed")
    if not gz and head == _GZIP_MAGIC:
        raise DataError(f"{path}: gzip-compressed but not named .gz (rename it to {path.name}.gz)")
    opener = gzip.open if gz else open
    try:
        with opener(path, "rb") as f:
            while line := f.readline(limit):
                yield line
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot decompress: {e}") from None


def _jsonl(path: Path, max_line_chars: int) -> Iterator[tuple[int, Any]]:
    n = 0
    for n, raw in enumerate(_open_lines(path, max_line_chars), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(
                f"{path}: line {n}: not UTF-8 (byte {e.start} of the line is {raw[e.start]:#04x})"
            ) from None
        if len(line) > max_line_chars:
            raise DataError(f"{path}: line {n}: {len(line):,} characters, over the limit of {max_line_chars:,}")
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: line {n}: invalid JSON: {e.msg} at column {e.colno}") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}: line {n}: expected a JSON object, got {type(obj).__name__}")
        yield n, obj
    if n == 0:
        raise DataError(f"{path}: empty file (expected one JSON object a line)")


def _json_document_rows(path: Path, data: Any) -> Iterator[tuple[int, Any]]:
    if isinstance(data, dict):  # {"data": [...]} style wrappers are common; accept one list value
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise DataError(f"{path}: expected a JSON array of objects (or JSON Lines)")
        data = lists[0]
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON array of objects, got {type(data).__name__}")
    if not data:
        raise DataError(f"{path}: empty (no rows)")
    yield from enumerate(data, start=1)


def _csv_as_text(path: Path) -> dict[str, Any]:
    """Loader options that keep every CSV column text: "4" is an answer, not an int,
    and an empty cell is "" (an empty text), not a missing value."""
    import csv

    import datasets

    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        header = next(csv.reader(f), [])
    features = datasets.Features({name: datasets.Value("string") for name in header})
    return {"features": features, "keep_default_na": False, "na_filter": False}


def _hf_rows(ds: Any, name: str) -> Iterator[tuple[int, Any]]:
    if len(ds) == 0:
        raise DataError(f"{name}: empty (no rows)")
    yield from enumerate(ds, start=1)


def _one_json_document(path: Path) -> Any | None:
    """The parsed content of a ``.json`` file holding one document (an array, or an
    object wrapping one); ``None`` for anything else, which is read as JSON Lines
    so that its errors are reported by line."""
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def read_rows(path_or_name: str, *, max_line_chars: int = 1_000_000) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(row, record)`` for a local file or folder, or a hub dataset name."""
    path = Path(path_or_name)
    if path.is_dir():
        import datasets

        try:
            ds = datasets.load_from_disk(str(path))
        except (FileNotFoundError, ValueError) as e:
            raise DataError(f"{path}: not a dataset saved with save_to_disk ({e})") from None
        if isinstance(ds, datasets.DatasetDict):
            if "train" not in ds:
                raise DataError(f"{path}: a DatasetDict without a 'train' split (has {', '.join(ds)})")
            ds = ds["train"]
        yield from _hf_rows(ds, str(path))
        return
    if path.is_file():
        if path.stat().st_size == 0:
            raise DataError(f"{path}: empty file")
        name = path.name.lower()
        if name.endswith((".jsonl", ".jsonl.gz", ".ndjson", ".json.gz")):
            yield from _jsonl(path, max_line_chars)
        elif name.endswith(".json"):
            doc = _one_json_document(path)
            yield from (_jsonl(path, max_line_chars) if doc is None else _json_document_rows(path, doc))
        elif name.endswith((".parquet", ".csv")):
            import datasets

            kind = "parquet" if name.endswith(".parquet") else "csv"
            try:
                extra = _csv_as_text(path) if kind == "csv" else {}
                ds = datasets.load_dataset(kind, data_files=str(path), split="train", **extra)
            except Exception as e:  # pyarrow / pandas parse errors
                first = first_line(e)
                raise DataError(f"{path}: cannot read as {kind}: {first}") from None
            yield from _hf_rows(ds, str(path))
        else:
            raise DataError(f"{path}: unknown file type (expected .jsonl, .jsonl.gz, .json, .parquet or .csv)")
        return
    data_suffixes = (".jsonl", ".json", ".gz", ".parquet", ".csv", ".ndjson")
    hub_like = path_or_name.count("/") == 1 and not path_or_name.startswith((".", "/"))
    if hub_like and not path_or_name.lower().endswith(data_suffixes):
        import datasets

        try:
            ds = datasets.load_dataset(path_or_name, split="train")
        except Exception as e:
            first = first_line(e)
            raise DataError(
                f"{path_or_name}: not a local path, and the Hugging Face hub dataset could not be loaded "
                f"(no network here?): {first}"
            ) from None
        yield from _hf_rows(ds, path_or_name)
        return
    raise DataError(f"{path}: file not found")
