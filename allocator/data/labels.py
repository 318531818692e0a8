"""Ability labels as real datasets carry them: any Unicode, kept as the user wrote them.

A label is the ability's name everywhere a person reads it (tables, JSON results, plots).
Where a library restricts names, the label's *key* stands in for it: MLflow metric and param
names (``score/<key>``, ``mixture.<key>``; MLflow accepts ``[/\\w.\\- :]`` and at most 250
characters) and Ray Tune's search-space names (``u_<key>``; Tune refuses a ``/`` in them).
The key of an ordinary label (letters of any script, digits, ``_ . - :`` and single inner
spaces, at most 64 characters) is the label itself, so most datasets never see a key; any
other label gets a readable slug of itself plus 8 hex digits of its hash, stable across runs
and machines, so the same label always lands on the same MLflow metric.

Two labels that differ only by Unicode compatibility forms, whitespace or case ("Math" and
"math ", or "math" in fullwidth letters) are almost always one ability written two ways, but treating them as one
silently would merge data the user may have kept apart on purpose: they are refused
(``check_labels``), and ``ability_map`` merges or renames them. Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Mapping

__all__ = ["ability_key", "canonical", "check_labels", "param_name"]

MAX_KEY = 64  # a key leaves room for the longest prefix within MLflow's 250 characters
_SAFE = re.compile(r"[\w.\-:]+(?: [\w.\-:]+)*")  # \w is Unicode: any script's letters and digits
_UNSAFE_RUN = re.compile(r"[^\w.\-:]+")


def ability_key(label: str) -> str:
    """The name that stands for ``label`` where names are restricted (module doc)."""
    if (
        len(label) <= MAX_KEY
        and _SAFE.fullmatch(label)
        and label.strip(".")
        and unicodedata.is_normalized("NFC", label)
    ):
        return label
    slug = _UNSAFE_RUN.sub("_", unicodedata.normalize("NFKC", label)).strip("_.")[: MAX_KEY - 9].rstrip("_.")
    digest = hashlib.sha256(label.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{slug or 'ability'}-{digest}"


def param_name(label: str) -> str:
    """The search-space name of an ability's coordinate (Tune and Optuna)."""
    return f"u_{ability_key(label)}"


def canonical(label: str) -> str:
    """What two labels written differently but meant alike share: NFKC, every run of
    whitespace (any Unicode space) as one space, stripped, case folded."""
    return " ".join(unicodedata.normalize("NFKC", label).split()).casefold()


def check_labels(labels: Iterable[str], where: Mapping[str, str] | None = None) -> str | None:
    """The problem with a set of ability labels, or None: two that become equal after
    normalization (``canonical``), or two whose keys collide. ``where`` says where a label
    was first seen (``file:row``) for the message."""
    seen: dict[str, str] = {}
    keys: dict[str, str] = {}
    at = where or {}

    def named(label: str) -> str:
        return f"{label!r}" + (f" ({at[label]})" if label in at else "")

    for label in sorted(set(labels)):
        bad = next((ch for ch in label if _unprintable(ch)), None)
        if bad is not None:  # an escape sequence would reach the terminal; a lone surrogate cannot be written
            code = f"U+{ord(bad):04X}"
            return f"ability label {named(label)} contains the control character {code}; rename it with ability_map"
        c = canonical(label)
        if c in seen:
            return (
                f"ability labels {named(seen[c])} and {named(label)} differ only in case, spaces or "
                "Unicode form; map them to one ability (or to two distinct names) with the source's ability_map"
            )
        seen[c] = label
        k = ability_key(label)
        if k in keys:  # 8 hex digits of a hash: practically never, but never silently
            return (
                f"ability labels {named(keys[k])} and {named(label)} share the key {k!r}; rename one with ability_map"
            )
        keys[k] = label
    return None


def _unprintable(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return (cat == "Cc" and not ch.isspace()) or cat == "Cs"
