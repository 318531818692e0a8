"""Tokenizers and the conversation template: token ids plus a loss mask per example.

Three kinds, chosen by ``model.tokenizer``:

- ``char`` (the built-in suite's default): a fixed character vocabulary.
  Character level because the suite's answers are exact strings of letters and
  digits; a BPE vocabulary splits digits irregularly, which hides arithmetic
  from a tiny model (../shared/PLATFORM.md).
- ``bpe``: a byte-level BPE of ``model.vocab_size`` tokens trained (by the
  ``tokenizers`` library, offline) on the base model's corpus, digits split
  one by one. For real text, where characters make sequences 4x longer.
- a local folder holding a Hugging Face tokenizer (``tokenizer.json`` or what
  ``AutoTokenizer`` reads); ``model.trust_remote_code`` is off by default.

A pretrained model (``model.name_or_path``) always brings its own tokenizer, loaded
from its folder or hub commit; token budgets count with it.

**Template.** A tokenizer with a chat template renders conversations with it;
the loss mask covers the characters each assistant message adds after the
generation prompt, found by rendering the conversation prefix by prefix (a
template that does not render prefixes as prefixes of the whole is an error).
Every other tokenizer uses the default template, the same for all kinds::

    <bos> system "\\n" user "\\n" assistant <eos> user "\\n" assistant <eos>

(no ``<bos>`` where the tokenizer has none): loss on each assistant turn and
its ``<eos>``, never on system or user turns. ``encode_turns`` returns
``(ids, mask)``; ``prompt_length`` says where the last assistant turn starts, so
evaluation generates from the exact context training saw.

All kinds travel to Ray workers as a small JSON-able ``spec()`` (the tokenizer
file's text, never a pickle) and come back with ``tokenizer_from_spec``.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol

from trainers.errors import TrainerError, first_line

__all__ = [
    "BOS",
    "EOS",
    "PAD",
    "UNK",
    "CharTokenizer",
    "HFTokenizer",
    "Tokenizer",
    "encode_many",
    "encode_texts",
    "load_tokenizer_dir",
    "prompt_length",
    "tokenizer_from_spec",
    "train_bpe",
    "truncate",
]

PAD, BOS, EOS, UNK = 0, 1, 2, 3  # the char and bpe vocabularies put their specials here
_SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]


class _Turn(NamedTuple):
    role: str
    content: str


class Tokenizer(Protocol):
    pad_id: int
    eos_id: int

    @property
    def vocab_size(self) -> int: ...
    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: Sequence[int]) -> str: ...
    def encode_turns(self, turns: Sequence[Any]) -> tuple[list[int], list[int]]: ...
    def stop_ids(self) -> set[int]: ...
    def spec(self) -> dict[str, Any]: ...


def _default_template(tok: Any, turns: Sequence[Any]) -> tuple[list[int], list[int]]:
    ids: list[int] = [] if tok.bos_id is None else [tok.bos_id]
    mask = [0] * len(ids)
    for t in turns:
        if t.role == "assistant":
            part = [*tok.encode(t.content), tok.eos_id]
            ids += part
            mask += [1] * len(part)
        else:
            part = tok.encode(t.content + "\n")
            ids += part
            mask += [0] * len(part)
    return ids, mask


_CHARS = " \n" + string.ascii_lowercase + string.ascii_uppercase + string.digits + ".,:;?!'\"-+=()/*%&#@"


class CharTokenizer:
    """Fixed vocabulary: 4 special tokens, then printable characters; unknown -> <unk>."""

    pad_id, bos_id, eos_id = PAD, BOS, EOS

    def __init__(self) -> None:
        self.itos = _SPECIALS + list(_CHARS)
        self.stoi = {c: i for i, c in enumerate(self.itos)}

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(c, UNK) for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        out = []
        for i in ids:
            if i == EOS:
                break
            if i >= len(_SPECIALS):
                out.append(self.itos[i])
        return "".join(out)

    def encode_example(self, instruction: str, response: str) -> tuple[list[int], list[int]]:
        """Token ids and the loss mask (1 on response tokens and <eos>)."""
        return self.encode_turns([_Turn("user", instruction), _Turn("assistant", response)])

    def encode_turns(self, turns: Sequence[Any]) -> tuple[list[int], list[int]]:
        """Token ids and loss mask of a conversation (objects with ``role`` and ``content``)."""
        return _default_template(self, turns)

    def encode_prompt(self, instruction: str) -> list[int]:
        return [BOS, *self.encode(instruction), *self.encode("\n")]

    def stop_ids(self) -> set[int]:
        return {EOS}

    def spec(self) -> dict[str, Any]:
        return {"kind": "char"}


class HFTokenizer:
    """A Hugging Face fast tokenizer with this project's template rules (module doc)."""

    def __init__(self, tok: Any, name: str, stops: Sequence[int] | None = None) -> None:
        if tok.eos_token_id is None:
            raise TrainerError(f"tokenizer {name}: has no eos_token (needed to end assistant turns)")
        self.tok, self.name = tok, name
        self.eos_id: int = tok.eos_token_id
        self.bos_id: int | None = tok.bos_token_id
        # no pad token (many base checkpoints): pad with <eos>; padding is masked out everywhere
        self.pad_id: int = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.chat_template: str | None = getattr(tok, "chat_template", None) or None
        # fixed where the tokenizer was loaded: a tokenizer rebuilt from its JSON on a worker
        # knows only the specials it was given by name
        self._stops = set(stops) if stops is not None else self._find_stops()

    @property
    def vocab_size(self) -> int:
        return len(self.tok)

    def encode(self, text: str) -> list[int]:
        return list(self.tok.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        stops = self.stop_ids()
        cut = next((k for k, i in enumerate(ids) if i in stops), len(ids))
        return self.tok.decode(list(ids[:cut]), skip_special_tokens=True)

    def _find_stops(self) -> set[int]:
        if self.chat_template is None:
            return {self.eos_id}
        special = set(self.tok.all_special_ids)
        special |= {i for i, t in getattr(self.tok, "added_tokens_decoder", {}).items() if getattr(t, "special", False)}
        return special - {self.pad_id} | {self.eos_id}

    def stop_ids(self) -> set[int]:
        """Generation ends at ``<eos>``, and with a chat template at any special token
        (templates close a turn with their own, e.g. ``<|im_end|>``)."""
        return set(self._stops)

    def _render(self, messages: list[dict[str, str]], generation_prompt: bool) -> str:
        try:
            return self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
        except Exception as e:  # a template raising on a conversation is a property of the user's template
            raise TrainerError(f"tokenizer {self.name}: its chat template failed: {str(e).splitlines()[0]}") from None

    def encode_turns(self, turns: Sequence[Any]) -> tuple[list[int], list[int]]:
        if self.chat_template is None:
            return _default_template(self, turns)
        msgs = [{"role": t.role, "content": t.content} for t in turns]
        full = self._render(msgs, False)
        spans = []
        for i, t in enumerate(turns):
            if t.role != "assistant":
                continue
            start_text = self._render(msgs[:i], True)
            end_text = self._render(msgs[: i + 1], False)
            if not (full.startswith(start_text) and full.startswith(end_text)) or len(start_text) > len(end_text):
                raise TrainerError(
                    f"tokenizer {self.name}: its chat template does not render a conversation's prefixes as "
                    "prefixes of the whole, so the assistant tokens cannot be located (use a tokenizer without "
                    "a chat template for the default template)"
                )
            spans.append((len(start_text), len(end_text)))
        enc = self.tok(full, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        # a token belongs to an assistant message when it starts inside one (its closing tokens included)
        mask = [int(any(s <= a < e for s, e in spans)) for a, _ in enc["offset_mapping"]]
        return ids, mask

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "hf",
            "name": self.name,
            "tokenizer_json": self.tok.backend_tokenizer.to_str(),
            "chat_template": self.chat_template,
            "bos_token": self.tok.bos_token,
            "eos_token": self.tok.eos_token,
            "pad_token": self.tok.pad_token,
            "stop_ids": sorted(self._stops),
        }


def encode_many(tok: Any, conversations: Sequence[Sequence[Any]]) -> list[tuple[list[int], list[int]]]:
    """``encode_turns`` over many conversations; the default template of a Hugging Face
    tokenizer encodes all turn texts in one batch call (the same ids, much faster)."""
    if not isinstance(tok, HFTokenizer) or tok.chat_template is not None:
        return [tok.encode_turns(c) for c in conversations]
    texts = [t.content if t.role == "assistant" else t.content + "\n" for c in conversations for t in c]
    pieces = iter(tok.tok(texts, add_special_tokens=False)["input_ids"]) if texts else iter(())
    out = []
    for c in conversations:
        ids: list[int] = [] if tok.bos_id is None else [tok.bos_id]
        mask = [0] * len(ids)
        for t in c:
            part = list(next(pieces))
            if t.role == "assistant":
                ids += [*part, tok.eos_id]
                mask += [1] * (len(part) + 1)
            else:
                ids += part
                mask += [0] * len(part)
        out.append((ids, mask))
    return out


def encode_texts(tok: Any, texts: Sequence[str]) -> list[list[int]]:
    """Plain texts to ids, no specials (batched for Hugging Face tokenizers)."""
    if isinstance(tok, HFTokenizer):
        return [list(x) for x in tok.tok(list(texts), add_special_tokens=False)["input_ids"]] if texts else []
    return [tok.encode(t) for t in texts]


def _fast(tokenizer_json: str, **special: Any) -> Any:
    from tokenizers import Tokenizer as RawTokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=RawTokenizer.from_str(tokenizer_json), **special)


def tokenizer_from_spec(spec: dict[str, Any]) -> CharTokenizer | HFTokenizer:
    if spec["kind"] == "char":
        return CharTokenizer()
    specials = {k: spec[k] for k in ("bos_token", "eos_token", "pad_token") if spec.get(k) is not None}
    tok = _fast(spec["tokenizer_json"], **specials)
    if spec.get("chat_template"):
        tok.chat_template = spec["chat_template"]
    return HFTokenizer(tok, spec["name"], stops=spec.get("stop_ids"))


def train_bpe(texts: Iterable[str], vocab_size: int, name: str = "bpe") -> HFTokenizer:
    """A byte-level BPE trained on ``texts``, digits split one by one; specials at ids 0-3."""
    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    raw = RawTokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(_SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(texts, trainer)
    tok = _fast(raw.to_str(), pad_token="<pad>", bos_token="<bos>", eos_token="<eos>", unk_token="<unk>")
    return HFTokenizer(tok, name)


def load_tokenizer_dir(
    path: str,
    *,
    trust_remote_code: bool = False,
    revision: str | None = None,
    field: str = "model.tokenizer",
    local: bool = True,
) -> HFTokenizer:
    """A tokenizer saved in a local folder, or (``local=False``) a hub model's at ``revision``."""
    p = Path(path)
    if local and not p.is_dir():
        raise TrainerError(f"{field}: {path}: not 'char', 'bpe' or a local tokenizer folder")
    from transformers import AutoTokenizer

    from trainers.hub import hub_offline

    try:
        tok = AutoTokenizer.from_pretrained(
            str(p) if local else path,
            trust_remote_code=trust_remote_code,
            local_files_only=local or hub_offline(),
            **({} if local or revision is None else {"revision": revision}),
        )
    except Exception as e:
        raise TrainerError(f"{field}: {path}: cannot load a tokenizer: {first_line(e)}") from None
    if not getattr(tok, "is_fast", False):
        raise TrainerError(f"{field}: {path}: a fast tokenizer (tokenizer.json) is required")
    return HFTokenizer(tok, path)


def truncate(
    ids: list[int], mask: list[int], max_length: int, side: Literal["right", "left"] = "right"
) -> tuple[list[int], list[int]] | None:
    """Cut to ``max_length`` tokens; ``None`` when no loss token is left (the caller drops
    and counts the example: it must never be trained on silently).

    ``right`` keeps the start; ``left`` keeps the end (the response and the end of a
    long prompt) and the first token (``<bos>``), for data whose prompts are long."""
    if len(ids) > max_length:
        if side == "right":
            ids, mask = ids[:max_length], mask[:max_length]
        else:
            keep = max_length - 1
            ids, mask = ids[:1] + ids[-keep:], mask[:1] + mask[-keep:]
    return (ids, mask) if any(mask) else None


def prompt_length(mask: Sequence[int]) -> int:
    """Where the last assistant turn starts: the first position of the last run of loss tokens."""
    k = len(mask)
    while k > 0 and not mask[k - 1]:
        k -= 1
    while k > 0 and mask[k - 1]:
        k -= 1
    return k
