"""Decoder-cosine neighbours and one-to-one assignment between two dictionaries.

Small dictionaries use scipy's dense Hungarian (`linear_sum_assignment`). Large ones use a
sparse graph of each feature's top-c neighbours (`min_weight_full_bipartite_matching`),
computed block by block so memory stays bounded; one dummy partner per row keeps a full
matching possible when the graph has none. Both maximise the summed cosine over pairs at or
above the threshold, so they agree wherever both apply.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching
from torch import Tensor

BLOCK = 2048


class Neighbours(NamedTuple):
    """Top-c decoder-cosine neighbours in both directions."""

    of_prev: Tensor
    """[Fa, c] indices into B of each A row's nearest rows."""
    of_prev_cos: Tensor
    """[Fa, c] their cosines, descending."""
    of_next: Tensor
    """[Fb, c] indices into A of each B row's nearest rows."""
    of_next_cos: Tensor
    """[Fb, c] their cosines, descending."""


class Assignment(NamedTuple):
    prev: np.ndarray
    """Row indices into A of the matched pairs."""
    next: np.ndarray
    """Row indices into B."""
    cosine: np.ndarray


def neighbours(A_FD: Tensor, B_FD: Tensor, c: int) -> Neighbours:
    """Top-c cosine neighbours of every row of A in B and of B in A, in blocks of rows of A."""
    c_prev, c_next = min(c, B_FD.shape[0]), min(c, A_FD.shape[0])
    of_prev, of_prev_cos, col_best, col_best_idx = [], [], [], []
    for start in range(0, A_FD.shape[0], BLOCK):
        cos = A_FD[start : start + BLOCK] @ B_FD.t()
        top = cos.topk(c_prev, dim=1)
        of_prev.append(top.indices)
        of_prev_cos.append(top.values)
        down = cos.topk(min(c_next, cos.shape[0]), dim=0)
        col_best.append(down.values)
        col_best_idx.append(down.indices + start)
    cand_cos, cand_idx = torch.cat(col_best), torch.cat(col_best_idx)
    down = cand_cos.topk(c_next, dim=0)
    return Neighbours(
        torch.cat(of_prev),
        torch.cat(of_prev_cos),
        cand_idx.gather(0, down.indices).t().contiguous(),
        down.values.t().contiguous(),
    )


def assign_dense(cos_AB: np.ndarray, tau: float) -> Assignment:
    """Hungarian on the cosine matrix [Fa, Fb]; pairs below `tau` count as unmatched."""
    if cos_AB.size == 0:
        return Assignment(np.zeros(0, int), np.zeros(0, int), np.zeros(0))
    gain = np.where(cos_AB >= tau, cos_AB, 0.0)
    rows, cols = linear_sum_assignment(gain, maximize=True)
    keep = cos_AB[rows, cols] >= tau
    return Assignment(rows[keep], cols[keep], cos_AB[rows, cols][keep])


def assign_sparse(
    nb: Neighbours,
    n_prev: int,
    n_next: int,
    tau: float,
    free_prev: np.ndarray | None = None,
    free_next: np.ndarray | None = None,
) -> Assignment:
    """Min-weight matching on the top-c graph: the same objective as `assign_dense`.
    Rows of A or B outside `free_prev` / `free_next` (bool masks) take no part.

    Real edges cost 2 − cos and row i's dummy partner costs 2, so matching a real pair
    instead of leaving the row out gains exactly its cosine; costs stay positive because
    scipy reads a stored zero as no edge.
    """
    rows = [np.repeat(np.arange(n_prev), nb.of_prev.shape[1]), nb.of_next.t().reshape(-1).numpy()]
    cols = [nb.of_prev.reshape(-1).numpy(), np.tile(np.arange(n_next), nb.of_next.shape[1])]
    cos = [nb.of_prev_cos.reshape(-1).numpy(), nb.of_next_cos.t().reshape(-1).numpy()]
    r, c, s = np.concatenate(rows), np.concatenate(cols), np.concatenate(cos).astype(np.float64)
    keep = s >= tau
    if free_prev is not None:
        keep &= free_prev[r]
    if free_next is not None:
        keep &= free_next[c]
    r, c, s = r[keep], c[keep], s[keep]
    # The union of both neighbour lists repeats pairs; keep one of each.
    key = np.unique(r.astype(np.int64) * n_next + c, return_index=True)[1]
    r, c, s = r[key], c[key], s[key]
    if r.size == 0:
        return Assignment(np.zeros(0, int), np.zeros(0, int), np.zeros(0))
    dummy = np.arange(n_prev)
    graph = csr_matrix(
        (
            np.concatenate([2.0 - s, np.full(n_prev, 2.0)]),
            (np.concatenate([r, dummy]), np.concatenate([c, n_next + dummy])),
        ),
        shape=(n_prev, n_next + n_prev),
    )
    row_ind, col_ind = min_weight_full_bipartite_matching(graph)
    real = col_ind < n_next
    row_ind, col_ind = row_ind[real], col_ind[real]
    cosine = 2.0 - np.asarray(graph[row_ind, col_ind]).ravel()
    return Assignment(row_ind, col_ind, cosine)
