"""Training windows and probe sequences: held-out standard-library source, by characters, with
a span of random characters repeated later in a share of the windows."""

from __future__ import annotations

import torch
from torch import Tensor

from experiments import textlm
from experiments.induction.config import InductionConfig
from experiments.textlm import ALPHABET, tokenizer
from tracker.text import TextProbe

PRINTABLE = len(ALPHABET) - 1
"""Random spans draw from every character but the newline (index 0), so they read as text."""


def repeat_span(
    window: Tensor, g: torch.Generator, shares: tuple[float, float] = (0.25, 0.5)
) -> tuple[int, int, int]:
    """Write a span of random characters, `shares` of the window long, into `window` twice,
    the second copy at a random later place (the offset varies, so no fixed-distance head
    can copy it), in place. Returns (first, later, length)."""
    n = len(window)
    m = int(torch.randint(int(n * shares[0]), int(n * shares[1]) + 1, (1,), generator=g))
    first = int(torch.randint(0, n - 2 * m + 1, (1,), generator=g))
    later = int(torch.randint(first + m, n - m + 1, (1,), generator=g))
    span = torch.randint(1, PRINTABLE + 1, (m,), generator=g)
    window[first : first + m] = span
    window[later : later + m] = span
    return first, later, m


class Windows(textlm.Windows):
    """Endless batches of random windows of seq_len + 1 characters (inputs and targets) from a
    seeded generator, a share `cfg.repeat` of them with a repeated random span."""

    def __init__(self, ids: Tensor, cfg: InductionConfig) -> None:
        super().__init__(ids, cfg.lm)
        self.repeat, self.span = cfg.repeat, cfg.span

    def edit(self, batch: Tensor, g: torch.Generator) -> Tensor:
        for row in (torch.rand(len(batch), generator=g) < self.repeat).nonzero():
            repeat_span(batch[int(row)], g, self.span)
        return batch


def probe(ids: Tensor, cfg: InductionConfig) -> tuple[TextProbe, Tensor]:
    """The first `cfg.probe_sequences` sequences of the held-out text, every other one with a
    repeated random span (a fixed generator: the same probe in every run), and a bool mask
    [n, seq_len] of the tokens in a second copy (what only an induction head predicts)."""
    n, t = cfg.probe_sequences, cfg.seq_len
    if len(ids) < n * t:
        raise ValueError(f"the probe text gives {len(ids)} characters, fewer than {n} x {t}")
    tokens = ids[: n * t].reshape(n, t).clone()
    second = torch.zeros(n, t, dtype=torch.bool)
    g = torch.Generator().manual_seed(12345)
    for row in range(1, n, 2):
        _, later, m = repeat_span(tokens[row], g, cfg.span)
        second[row, later : later + m] = True
    tok = tokenizer()
    pieces = [[tok.decode([int(i)]) for i in row] for row in tokens.tolist()]
    return TextProbe(tokens, pieces), second


def repeated_random(n: int, half: int, seed: int) -> Tensor:
    """[n, 2 * half + 1] sequences of `half` random characters, then the same again (and one
    more to predict): the prefix-matching and in-context measures of Olsson et al."""
    g = torch.Generator().manual_seed(seed)
    span = torch.randint(1, PRINTABLE + 1, (n, half), generator=g)
    return torch.cat([span, span, span[:, :1]], dim=1)
