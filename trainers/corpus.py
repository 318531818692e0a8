"""A generic pretraining corpus, deliberately *not* the ability tasks.

LoRA adapts a base that already knows something; a randomly initialised base
learns little through low-rank updates. The base therefore reads synthetic
prose first: sentences over a made-up lexicon with capitalised and upper-case
words, numbers, punctuation, repeated phrases, and letter strings that recur
later in the sentence as they were or in capitals ("the code qzkf, QZKF").
Like natural text, it thus teaches general sub-skills (copying, letter case)
that instruction tuning later elicits; it never contains the suite's
instruction formats ("repeat:", "sort:", "add", ...), sorting, reversal,
counting or sums, so what the proxy shows of those came from the mixture.
"""

from __future__ import annotations

import random

__all__ = ["generic_documents"]

_CONS, _VOWS = "bcdfghjklmnpqrstvwxyz", "aeiou"
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_PUNCT = [".", ".", ".", "!", "?", ";"]
_SYMBOLS = ["(", ")", "-", "/", "'", '"', "*", "%", "&", "#", "@", "=", "+", ":", ","]


def _lexicon(rng: random.Random, n: int) -> list[str]:
    words = set()
    while len(words) < n:
        k = rng.randint(1, 3)
        w = "".join(rng.choice(_CONS) + rng.choice(_VOWS) for _ in range(k))
        if rng.random() < 0.3:
            w += rng.choice(_CONS)
        words.add(w)
    return sorted(words)


def _sentence(rng: random.Random, lexicon: list[str], recent: list[str]) -> str:
    words: list[str] = []
    for _ in range(rng.randint(3, 9)):
        r = rng.random()
        if r < 0.08:
            words.append(str(rng.randint(0, 999)))
        elif r < 0.12:
            words.append(rng.choice(lexicon).upper())
        elif r < 0.15 and recent:
            words.extend(rng.choice(recent).split()[:3])  # an echo of an earlier phrase
        else:
            words.append(rng.choice(lexicon))
    if rng.random() < 0.15:
        words.insert(rng.randrange(len(words) + 1), rng.choice(_SYMBOLS))
    if rng.random() < 0.35:
        # a letter string that recurs, as it was or in capitals: copying in the wild
        code = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 8)))
        again = code.upper() if rng.random() < 0.4 else code
        at = rng.randrange(len(words) + 1)
        words[at:at] = [code, *rng.sample(lexicon, rng.randint(0, 3)), again]
    s = " ".join(words)
    return s[0].upper() + s[1:] + rng.choice(_PUNCT)


def generic_documents(n_chars: int, seed: int = 0, echo: float = 0.6) -> list[str]:
    """Short documents of generic prose, about ``n_chars`` characters in all.

    A document is one or two lines; the second line often picks up letter
    strings of the first (as they were or in capitals), the way a reply quotes
    what it answers. Framed as ``<bos> document <eos>`` in pretraining, like the
    fine-tuning template, so the base knows where texts start and end.
    """
    rng = random.Random(f"corpus:{seed}")
    lexicon = _lexicon(rng, 400)
    docs: list[str] = []
    recent: list[str] = []
    size = 0
    while size < n_chars:
        first = _sentence(rng, lexicon, recent)
        recent = ([*recent, first])[-5:]
        if rng.random() < echo:
            # letter strings that can only be predicted by looking back: this is what
            # grows induction (copying) heads. A short line of them among a few words,
            # and a second line that quotes them, in order, as they were or in capitals
            codes = ["".join(rng.choice(_LETTERS) for _ in range(rng.randint(2, 8))) for _ in range(rng.randint(1, 4))]
            words = codes + rng.sample(lexicon, rng.randint(0, 2))
            rng.shuffle(words)
            quote = " ".join(w for w in words if w in codes)
            doc = " ".join(words) + "\n" + (quote.upper() if rng.random() < 0.3 else quote)
        else:
            doc = first
        docs.append(doc)
        size += len(doc) + 2
    return docs
