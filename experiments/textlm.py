"""A small language model on text every Python ships: the standard library's own source, read
by characters, and a two-layer transformer to train on it. Nothing is downloaded.

Used by the token-rows benchmark (every token of a probe set a row) and meant for the
induction-heads replay (Olsson et al. 2022's smallest model is two attention-only layers).
"""

from __future__ import annotations

import math
import re
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import IterableDataset

from tracker.text import CharTokenizer, TextProbe, text_probe

ALPHABET = "\n" + "".join(chr(c) for c in range(32, 127))
"""Newline and printable ASCII: 96 characters; anything else is read as '?'."""
UNKNOWN = re.compile(r"[^\n\x20-\x7e]")
"""Anything but the newline and printable ASCII, the characters of ALPHABET."""
PROBE_FILES = ("textwrap.py", "shlex.py")
"""Held out of training: probe sets are cut from them."""


@dataclass(frozen=True)
class LMConfig:
    d_model: int = 64
    n_heads: int = 4
    mlp: bool = True
    """An MLP after each attention layer; attention-only (False) is the induction model."""
    seq_len: int = 128
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.01
    seed: int = 0


def clean(text: str) -> str:
    """Tabs as four spaces and every character outside ALPHABET as '?' (a regex: a loop over
    the 4.7M characters of the library took 10 s)."""
    return UNKNOWN.sub("?", text.replace("\t", "    "))


def corpus() -> tuple[str, str]:
    """(training text, probe text): every top-level module of the standard library but the
    probe files, and the probe files."""
    train: list[str] = []
    probe: list[str] = []
    for file in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        text = clean(file.read_text(errors="replace"))
        (probe if file.name in PROBE_FILES else train).append(text)
    if not probe or not train:
        raise FileNotFoundError(f"no standard-library source found beside {PROBE_FILES}")
    return "\n".join(train), "\n".join(probe)


def tokenizer() -> CharTokenizer:
    return CharTokenizer(ALPHABET)


def encode(text: str) -> Tensor:
    return torch.tensor(tokenizer().encode(text), dtype=torch.long)


def probe(text: str, seq_len: int, n: int) -> TextProbe:
    """The first `n` sequences of `seq_len` characters of the probe text."""
    return text_probe(text, tokenizer(), seq_len, n)


class Windows(IterableDataset[Tensor]):
    """Endless batches of random windows of seq_len + 1 characters (inputs and next-character
    targets) from a seeded generator, so a run repeats exactly."""

    def __init__(self, ids: Tensor, cfg: LMConfig) -> None:
        self.ids, self.cfg = ids, cfg

    def __iter__(self) -> Iterator[Tensor]:
        g = torch.Generator().manual_seed(self.cfg.seed + 1)
        span = self.cfg.seq_len + 1
        while True:
            start = torch.randint(0, len(self.ids) - span, (self.cfg.batch_size,), generator=g)
            yield self.edit(torch.stack([self.ids[s : s + span] for s in start.tolist()]), g)

    def edit(self, batch: Tensor, g: torch.Generator) -> Tensor:
        """A subclass's change to each batch [batch_size, seq_len + 1], drawing from `g`."""
        return batch


class Attention(nn.Module):
    """Causal multi-head attention."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads, self.d_head = heads, d // heads
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        pattern, v = self._pattern_values(x)
        return self.out((pattern @ v).transpose(1, 2).reshape(b, t, d))

    def pattern(self, x: Tensor) -> Tensor:
        """The attention pattern [batch, head, query, key] on this layer's input `x`."""
        return self._pattern_values(x)[0]

    def _pattern_values(self, x: Tensor) -> tuple[Tensor, Tensor]:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, self.d_head).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.d_head)
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
        return scores.masked_fill(causal, float("-inf")).softmax(-1), v


class Block(nn.Module):
    def __init__(self, d: int, heads: int, mlp: bool) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.attn = Attention(d, heads)
        self.mlp = (
            nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
            if mlp
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln(x))
        return x + self.mlp(x) if self.mlp is not None else x


class CharLM(L.LightningModule):
    """Embeddings, two blocks, a final layer norm and the unembedding. Module names to watch:
    `blocks.<i>.attn` (what attention writes to the residual stream), `blocks.<i>.mlp`, or
    `blocks.<i>` (the residual stream after the block)."""

    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        vocab, d = len(ALPHABET), cfg.d_model
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(cfg.seq_len, d)
        self.blocks = nn.ModuleList([Block(d, cfg.n_heads, cfg.mlp) for _ in range(2)])
        self.ln_f = nn.LayerNorm(d)
        self.unembed = nn.Linear(d, vocab, bias=False)

    def forward(self, ids: Tensor) -> Tensor:
        x = self.embed(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))
        for block in self.blocks:
            x = block(x)
        return self.unembed(self.ln_f(x))

    def token_losses(self, batch: Tensor) -> Tensor:
        """[batch, seq_len] next-character losses of windows of seq_len + 1 characters."""
        logits = self(batch[:, :-1])
        return F.cross_entropy(logits.transpose(1, 2), batch[:, 1:], reduction="none")

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        loss = self.token_losses(batch).mean()
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> Any:
        cfg = self.cfg
        return torch.optim.AdamW(self.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
