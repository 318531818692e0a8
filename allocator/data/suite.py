"""The built-in ability suite: the embedded default data, generated, deterministic.

Seven abilities, each scored by exact match of a short answer, chosen to differ
in complexity and to share sub-skills, so that the mixture matters:

========  ==========================  =====================================
ability   example                     why it is there
========  ==========================  =====================================
first     first letter of qmzt -> q   one copied letter: a few dozen examples
                                      teach the format, then it saturates
copy      repeat: qmzt -> qmzt        copying; the base has seen quoting
upper     uppercase: qmzt -> QMZT     copying plus a 26-letter mapping
sort      sort: dbca -> abcd          copying plus ordering: needs more data
count     count a in: abca -> 2       scanning and digit output (shared with add)
add       add 37+58 -> 95             carries: keeps improving for thousands
reverse   reverse: qmzt -> tzmq       position arithmetic: a tiny model barely
                                      learns it (measured on this model family)
========  ==========================  =====================================

First, copy, upper, sort and reverse share "emit the letters of the input",
count and add share digit output: data of one helps the others (transference).
The pace column is what the default proxy shows (docs/BENCHMARKS.md), not a
promise: it depends on the model and the training length.

Everything is derived from ``seed`` through ``random.Random`` with stable
per-ability seeds (never Python's salted ``hash``). The held-out set of an
ability is drawn first; no training example has the instruction of a held-out
one. The training pool is in a fixed random order, so taking its first n
examples is nested sampling: a larger count always contains a smaller one.
"""

from __future__ import annotations

import random
import string
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from allocator.data._formats import Turn

__all__ = ["ABILITIES", "Example", "SuitePool", "build_suite"]


@dataclass(frozen=True)
class Example:
    instruction: str
    response: str
    ability: str

    @property
    def turns(self) -> tuple[Turn, Turn]:
        """The conversation form every tokenizer and hash reads (allocator.data.Turn)."""
        return (Turn("user", self.instruction), Turn("assistant", self.response))


@dataclass(frozen=True)
class SuitePool:
    """Per-ability training pools (in their fixed order) and held-out sets."""

    train: dict[str, list[Example]]
    heldout: dict[str, list[Example]]

    @property
    def abilities(self) -> list[str]:
        return list(self.train)

    def sizes(self) -> dict[str, int]:
        return {a: len(xs) for a, xs in self.train.items()}


_LOWER = string.ascii_lowercase


def _word(rng: random.Random, lo: int, hi: int) -> str:
    return "".join(rng.choice(_LOWER) for _ in range(rng.randint(lo, hi)))


def _first(rng: random.Random) -> tuple[str, str]:
    w = _word(rng, 3, 8)
    return f"first letter of {w}", w[0]


def _copy(rng: random.Random) -> tuple[str, str]:
    w = _word(rng, 3, 8)
    return f"repeat: {w}", w


def _upper(rng: random.Random) -> tuple[str, str]:
    w = _word(rng, 3, 8)
    return f"uppercase: {w}", w.upper()


def _sort(rng: random.Random) -> tuple[str, str]:
    w = _word(rng, 3, 6)
    return f"sort: {w}", "".join(sorted(w))


def _count(rng: random.Random) -> tuple[str, str]:
    c = rng.choice("abcde")
    w = "".join(rng.choice("abcde") for _ in range(rng.randint(4, 10)))
    return f"count {c} in: {w}", str(w.count(c))


def _add(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(0, 99), rng.randint(0, 99)
    return f"add {a}+{b}", str(a + b)


def _reverse(rng: random.Random) -> tuple[str, str]:
    w = _word(rng, 3, 8)
    return f"reverse: {w}", w[::-1]


_GENERATORS: dict[str, Callable[[random.Random], tuple[str, str]]] = {
    "first": _first,
    "copy": _copy,
    "upper": _upper,
    "sort": _sort,
    "count": _count,
    "add": _add,
    "reverse": _reverse,
}

ABILITIES: tuple[str, ...] = ("first", "copy", "upper", "sort", "count", "add", "reverse")


def _ability_seed(seed: int, ability: str) -> int:
    return zlib.crc32(f"{seed}:{ability}".encode())


def _draw(ability: str, seed: int, n_heldout: int, n_train: int) -> tuple[list, list]:
    rng = random.Random(_ability_seed(seed, ability))
    gen = _GENERATORS[ability]
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    # finite spaces (count, short words) run dry long before this bound
    for _ in range(50 * (n_heldout + n_train)):
        if len(out) == n_heldout + n_train:
            break
        ins, resp = gen(rng)
        if ins not in seen:
            seen.add(ins)
            out.append((ins, resp))
    return out[:n_heldout], out[n_heldout:]


def build_suite(
    abilities: list[str] | tuple[str, ...] = ABILITIES,
    *,
    seed: int = 0,
    pool_size: int = 2000,
    heldout_size: int = 48,
) -> SuitePool:
    """Generate the suite: ``heldout_size`` held-out and up to ``pool_size`` training
    examples per ability (fewer only where an ability has fewer distinct ones)."""
    train: dict[str, list[Example]] = {}
    heldout: dict[str, list[Example]] = {}
    for ab in abilities:
        if ab not in ABILITIES:
            raise ValueError(f"unknown built-in ability {ab!r}")
        h, t = _draw(ab, seed, heldout_size, pool_size)
        heldout[ab] = [Example(i, r, ab) for i, r in h]
        train[ab] = [Example(i, r, ab) for i, r in t]
    return SuitePool(train=train, heldout=heldout)
