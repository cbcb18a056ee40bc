"""Probe sets from text: token sequences for a language model, and what each row is.

`text_probe(text, tokenizer, seq_len)` cuts the tokenised text into sequences of `seq_len`
tokens (the probe inputs, [n, seq_len]) and describes the rows a selector makes of them:
with select="tokens" every token is a row (row i·seq_len + t), labelled with its context and
the token itself marked ⟦so⟧, as feature dashboards show a feature's top activations; with a
position, one row per sequence marked at that token. `FeatureTracker(probe=a TextProbe)` and
`capture_checkpoints` store the description, and the viewer's Feature page lists a feature's
top rows with it.

A tokenizer is `CharTokenizer(vocabulary)` (a character-level model's alphabet), a
transformers tokenizer, or the path of a saved one (loaded locally, never downloaded).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import torch
from torch import Tensor

from tracker.capture import Selector

CONTEXT = 12
"""Tokens of context shown on each side of a marked token."""


class Tokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


class CharTokenizer:
    """One id per character of `vocabulary`, in its order (a character-level model's)."""

    def __init__(self, vocabulary: str) -> None:
        if not vocabulary or len(set(vocabulary)) != len(vocabulary):
            raise ValueError("a character vocabulary must be non-empty, each character once")
        self.vocabulary = vocabulary
        self.ids = {c: i for i, c in enumerate(vocabulary)}

    def encode(self, text: str) -> list[int]:
        unknown = next((i for i, c in enumerate(text) if c not in self.ids), None)
        if unknown is not None:
            raise ValueError(
                f"the text has a character the tokenizer does not know: {text[unknown]!r} "
                f"(first at offset {unknown}); its vocabulary has {len(self.ids)} characters"
            )
        return [self.ids[c] for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.vocabulary[i] for i in ids)


@dataclass(frozen=True)
class TextProbe:
    """Token sequences [n, seq_len] and the text of each token."""

    tokens: Tensor
    pieces: list[list[str]]
    """pieces[i][t]: token t of sequence i as text."""

    def __len__(self) -> int:
        return len(self.tokens)

    def rows(self, select: Selector) -> list[dict[str, Any]]:
        """The probe table's rows (probe_index, label, payload) for the rows `select` makes."""
        marks: list[tuple[int, int | None]]
        if select == "tokens":
            marks = [(i, t) for i in range(len(self.pieces)) for t in range(len(self.pieces[i]))]
        elif isinstance(select, int):
            marks = [(i, select % len(p)) for i, p in enumerate(self.pieces)]
        else:
            marks = [(i, None) for i in range(len(self.pieces))]
        return [
            {
                "probe_index": row,
                "label": self._label(i, t),
                "payload": json.dumps({"sequence": i, "position": t}),
            }
            for row, (i, t) in enumerate(marks)
        ]

    def _label(self, i: int, t: int | None) -> str:
        pieces = self.pieces[i]
        if t is None:
            return "".join(pieces)
        left = "".join(pieces[max(t - CONTEXT, 0) : t])
        right = "".join(pieces[t + 1 : t + 1 + CONTEXT])
        return f"{left}⟦{pieces[t]}⟧{right}".replace("\n", "⏎")


def load_tokenizer(tokenizer: Tokenizer | str | Path) -> Tokenizer:
    """`tokenizer` itself, or a transformers tokenizer saved in that directory."""
    if not isinstance(tokenizer, (str, Path)):
        return tokenizer
    path = Path(tokenizer)
    if not path.is_dir():
        raise FileNotFoundError(f"tokenizer directory {path} does not exist")
    from transformers import AutoTokenizer

    return cast(Tokenizer, AutoTokenizer.from_pretrained(path, local_files_only=True))


def text_probe(
    text: str | Path | Sequence[str],
    tokenizer: Tokenizer | str | Path,
    seq_len: int,
    n: int | None = None,
) -> TextProbe:
    """The first `n` (default: all) whole sequences of `seq_len` tokens of `text` (a string, a
    file's Path, or a list of documents, each tokenised on its own and joined)."""
    if seq_len < 1:
        raise ValueError(f"seq_len must be positive, got {seq_len}")
    if isinstance(text, Path):
        text = text.read_text()
    documents = [text] if isinstance(text, str) else list(text)
    tok = load_tokenizer(tokenizer)
    ids = [i for doc in documents for i in tok.encode(doc)]
    count = len(ids) // seq_len if n is None else n
    if count < 1 or count * seq_len > len(ids):
        raise ValueError(
            f"the text gives {len(ids)} tokens: too few for {count or 1} sequences of {seq_len}"
        )
    tokens = torch.tensor(ids[: count * seq_len], dtype=torch.long).reshape(count, seq_len)
    pieces = [[tok.decode([int(i)]) for i in row] for row in tokens.tolist()]
    return TextProbe(tokens, pieces)
