"""Decoder-cosine neighbours and one-to-one assignment between two dictionaries.

Small dictionaries use scipy's dense Hungarian (`linear_sum_assignment`). Large ones use a
sparse graph of each feature's top-c neighbours (`min_weight_full_bipartite_matching`),
computed block by block so memory stays bounded; one dummy partner per row keeps a full
matching possible when the graph has none. Both maximise the summed cosine over pairs at or
above the threshold, so they agree wherever both apply.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching
from torch import Tensor

ROWS, COLS = 2048, 4096
"""Tile of the cosine matrix computed at once (32 MiB in float32)."""
APPROX_FROM = 16_384 * 16_384
"""Cosine matrices from this many entries on are searched in bfloat16 and re-ranked."""
WIDEN = 2
"""Candidates kept per feature by the bfloat16 search, as a multiple of the c returned."""
RERANK_ROWS = 1024
"""Rows re-ranked at once ([rows, WIDEN c, d] gathered: 32 MiB at c 8, d 512)."""


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
    """Top-c cosine neighbours of every row of A in B and of B in A.

    Exact below `APPROX_FROM` entries. From there, where bfloat16 products are fast
    (`bf16_fast`), each side's `WIDEN` x c candidates are found in bfloat16 (products at 2.4x
    float32's speed on this project's CPUs) and re-ranked
    exactly in float32, so every cosine returned is exact and only a neighbour that bfloat16
    ranked below the wider cut can be missed (recall against the exact search in
    experiments/bench/match_scale.py).
    """
    small = A_FD.shape[0] * B_FD.shape[0] < APPROX_FROM
    if small or A_FD.dtype != torch.float32 or not bf16_fast(A_FD.device.type):
        return _search(A_FD, B_FD, c)
    rough = _search(A_FD.bfloat16(), B_FD.bfloat16(), WIDEN * c)
    return Neighbours(
        *_rerank(A_FD, B_FD, rough.of_prev, c), *_rerank(B_FD, A_FD, rough.of_next, c)
    )


@functools.cache
def bf16_fast(device_type: str) -> bool:
    """Whether this machine multiplies bfloat16 in hardware: a CUDA GPU that supports it, or
    an x86 CPU with AVX512-BF16 or AMX (elsewhere bfloat16 products are emulated, and slower
    than float32's: float16 ran at a fifth of float32's speed on this project's CPUs)."""
    if device_type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _search(A_FD: Tensor, B_FD: Tensor, c: int) -> Neighbours:
    """Top-c neighbours both ways, exact in A's dtype, tile by tile.

    Each [ROWS, COLS] tile of A @ Bᵀ is written into one buffer reused for every tile (a
    fresh 512 MB block per row band cost page faults worth half the matmul at 65k features)
    and small enough to stay in cache while its top-c are taken: along its rows, and along
    its columns from a transposed copy in a second buffer (top-k along the strided axis cost
    1.5x the copy and a contiguous one). Per-tile winners are merged at the end.
    """
    n_a, n_b = A_FD.shape[0], B_FD.shape[0]
    c_prev, c_next = min(c, n_b), min(c, n_a)
    size = min(ROWS, n_a) * min(COLS, n_b)
    buf = torch.empty(size, dtype=A_FD.dtype, device=A_FD.device)
    buf_t = torch.empty(size, dtype=A_FD.dtype, device=A_FD.device)
    Bt = B_FD.t()
    of_prev: list[tuple[Tensor, Tensor]] = []
    col_val: list[list[Tensor]] = [[] for _ in range(0, n_b, COLS)]
    col_idx: list[list[Tensor]] = [[] for _ in range(0, n_b, COLS)]
    for r0 in range(0, n_a, ROWS):
        A = A_FD[r0 : r0 + ROWS]
        row_val, row_idx = [], []
        for t, c0 in enumerate(range(0, n_b, COLS)):
            B = Bt[:, c0 : c0 + COLS]
            rows, cols = A.shape[0], B.shape[1]
            cos = torch.mm(A, B, out=buf[: rows * cols].view(rows, cols))
            top = cos.topk(min(c_prev, cols), dim=1)
            row_val.append(top.values)
            row_idx.append(top.indices + c0)
            cos_t = buf_t[: rows * cols].view(cols, rows).copy_(cos.t())
            down = cos_t.topk(min(c_next, rows), dim=1)
            col_val[t].append(down.values)
            col_idx[t].append(down.indices + r0)
        of_prev.append(_best(row_val, row_idx, c_prev))
    of_next = [_best(vals, idx, c_next) for vals, idx in zip(col_val, col_idx, strict=True)]
    return Neighbours(
        torch.cat([i for i, _ in of_prev]),
        torch.cat([v for _, v in of_prev]),
        torch.cat([i for i, _ in of_next]),
        torch.cat([v for _, v in of_next]),
    )


def _best(vals: list[Tensor], idx: list[Tensor], c: int) -> tuple[Tensor, Tensor]:
    """The top c of per-tile winners laid side by side: (indices, values)."""
    v, i = torch.cat(vals, 1), torch.cat(idx, 1)
    best = v.topk(c, dim=1)
    return i.gather(1, best.indices), best.values


def _rerank(X_FD: Tensor, Y_FD: Tensor, cand: Tensor, c: int) -> tuple[Tensor, Tensor]:
    """Each row of X's exact float32 cosines with its candidate rows of Y, the best c first:
    (indices, values)."""
    out_idx, out_val = [], []
    for r0 in range(0, X_FD.shape[0], RERANK_ROWS):
        idx = cand[r0 : r0 + RERANK_ROWS]
        x = X_FD[r0 : r0 + RERANK_ROWS].unsqueeze(2)
        cos = torch.bmm(Y_FD[idx], x).squeeze(2)
        best = cos.topk(min(c, cos.shape[1]), dim=1)
        out_idx.append(idx.gather(1, best.indices))
        out_val.append(best.values.to(X_FD.dtype))
    return torch.cat(out_idx), torch.cat(out_val)


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
    # The matching splits over connected components of the graph. A component of one edge
    # (a feature whose only candidate has it as its only candidate: most of them, between
    # neighbouring checkpoints) is that pair; the solver gets the rest (at 65k features the
    # whole graph took it 12.8 s).
    lone = _lone_edges(r, c, n_prev, n_next)
    pairs = [(r[lone], c[lone], s[lone])]
    r, c, s = r[~lone], c[~lone], s[~lone]
    if r.size:
        row_ids, r = np.unique(r, return_inverse=True)
        col_ids, c = np.unique(c, return_inverse=True)
        n_r, n_c = len(row_ids), len(col_ids)
        dummy = np.arange(n_r)
        graph = csr_matrix(
            (
                np.concatenate([2.0 - s, np.full(n_r, 2.0)]),
                (np.concatenate([r, dummy]), np.concatenate([c, n_c + dummy])),
            ),
            shape=(n_r, n_c + n_r),
        )
        row_ind, col_ind = min_weight_full_bipartite_matching(graph)
        real = col_ind < n_c
        row_ind, col_ind = row_ind[real], col_ind[real]
        cosine = 2.0 - np.asarray(graph[row_ind, col_ind]).ravel()
        pairs.append((row_ids[row_ind], col_ids[col_ind], cosine))
    prev, nxt, cosine = (np.concatenate(part) for part in zip(*pairs, strict=True))
    order = np.argsort(prev, kind="stable")
    return Assignment(prev[order], nxt[order], cosine[order])


def _lone_edges(r: np.ndarray, c: np.ndarray, n_prev: int, n_next: int) -> np.ndarray:
    """Bool mask of the edges (r, c) that are their row's only edge and their column's."""
    return (np.bincount(r, minlength=n_prev)[r] == 1) & (np.bincount(c, minlength=n_next)[c] == 1)
