"""Split and merge candidates: a feature rebuilt by two or more features of the other
checkpoint clearly better than by its best one alone (non-negative least squares over its
nearest neighbours)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from scipy.optimize import nnls
from torch import Tensor

from tracker.assign import Neighbours
from tracker.config import MatchConfig


class Candidate(NamedTuple):
    kind: str
    """"split" (an earlier feature rebuilt by later ones) or "merge" (the mirror)."""
    row: int
    """Live row of the rebuilt feature on its own side."""
    parts: list[int]
    """Live rows of the rebuilding features on the other side."""
    gain: float
    """R² of the rebuild minus R² of the best single part."""


def candidates(
    prev_S: Tensor, next_S: Tensor, nb: Neighbours, cfg: MatchConfig, cand_min: float
) -> list[Candidate]:
    """Every split and merge candidate, the largest gain first. `prev_S`, `next_S`: unit
    rows compared by dot product; `cand_min`: the least similarity of a part."""
    found = []
    for kind, own, other, idx, cos, nearest in (
        ("split", prev_S, next_S, nb.of_prev, nb.of_prev_cos, nb.of_next[:, 0]),
        ("merge", next_S, prev_S, nb.of_next, nb.of_next_cos, nb.of_prev[:, 0]),
    ):
        # Only rows with two candidates and no single neighbour that already explains
        # too much can qualify; finding them first keeps NNLS off most rows.
        can = ((cos >= cand_min).sum(1) >= 2) & (
            cos[:, 0].clamp_min(0) ** 2 <= 1 - cfg.split_min_gain
        )
        for row in can.nonzero().flatten().tolist():
            # A part whose nearest feature across the checkpoint is another one continues
            # there: it is no child of this split (parent of this merge).
            mine = nearest[idx[row]] == row
            if int((mine & (cos[row] >= cand_min)).sum()) < 2:
                continue  # fewer than two parts left: NNLS with none would abort
            best = float(cos[row, 0])  # the gain is over the best single part of all
            fit = rebuild(own[row], other, idx[row][mine], cos[row][mine], cfg, cand_min, best)
            if fit is not None:
                found.append(Candidate(kind, row, *fit))
    found.sort(key=lambda f: -f.gain)
    return found


def rebuild(
    target: Tensor,
    other: Tensor,
    idx: Tensor,
    cos: Tensor,
    cfg: MatchConfig,
    cand_min: float,
    best: float,
) -> tuple[list[int], float] | None:
    """(parts, R² gain) when `target` is rebuilt by >= 2 of its neighbours `idx` (cosines
    `cos`, best first) clearly better than by its best one alone (`best`: the best single
    cosine among all neighbours, those `idx` leaves out included); None otherwise."""
    r2_single = max(best, 0.0) ** 2
    parts = idx[cos >= cand_min]
    for _ in range(2):  # fit, drop minor parts, refit
        w, residual = nnls(other[parts].double().numpy().T, target.double().numpy())
        share = w / max(w.sum(), 1e-12)
        if (share >= cfg.split_min_share).all():
            break
        parts = parts[torch.from_numpy(share >= cfg.split_min_share)]
        if len(parts) < 2:
            return None
    r2 = 1.0 - residual**2
    if len(parts) < 2 or r2 < cfg.split_min_r2 or r2 - r2_single < cfg.split_min_gain:
        return None
    return parts.tolist(), r2 - r2_single
