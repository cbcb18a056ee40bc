"""Matching time and peak memory against dictionary size (1k, 4k, 16k, 65k features, d=512).

Recall: the share of each feature's exact top-c decoder-cosine neighbours that the neighbour
search returns (c = MatchConfig.candidates), on 2048 sampled features each way; it is 1 where
the search is exact and measures the bfloat16 search where it is not (`assign.APPROX_FROM`).

Two dictionaries: the second is the first drifted, with 1% of features dying, 1% born, 0.5%
split in two and 0.5% of pairs merged. Each size runs in its own process so its peak resident
memory (above the process's memory after imports and data set-up) is its own.

    python experiments/bench/match_scale.py [--sizes 1024 4096 16384 65536]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from tracker import SAEConfig
from tracker.assign import neighbours
from tracker.config import MatchConfig
from tracker.match import match
from tracker.sae import TopKSAE

D = 512


def dictionary(W: torch.Tensor) -> TopKSAE:
    sae = TopKSAE(D, W.shape[0], SAEConfig(d_sae=W.shape[0], k=8))
    with torch.no_grad():
        sae.W_dec.copy_(W / W.norm(dim=1, keepdim=True))
        sae.frequency.fill_(0.05)
    return sae


def pair(n: int, seed: int = 0) -> tuple[TopKSAE, TopKSAE]:
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, D, generator=g)
    A /= A.norm(dim=1, keepdim=True)
    B = A + 0.3 * torch.randn(n, D, generator=g) / D**0.5
    n_event = max(n // 100, 2)
    order = torch.randperm(n, generator=g)
    die, born = order[:n_event], order[n_event : 2 * n_event]
    split = order[2 * n_event : 2 * n_event + n_event // 2]
    merge = order[-2 * (n_event // 2) :]  # pairs
    B[born] = torch.randn(len(born), D, generator=g)
    u = torch.randn(len(split), D, generator=g)
    u -= (u * A[split]).sum(1, keepdim=True) * A[split]
    u /= u.norm(dim=1, keepdim=True)
    children = torch.cat([0.75 * A[split] + 0.66 * u, 0.75 * A[split] - 0.66 * u])
    B[split] = children[: len(split)]
    merged = A[merge[0::2]] + A[merge[1::2]]
    B[merge[0::2]] = merged
    keep = torch.ones(n, dtype=torch.bool)
    keep[die] = False
    keep[merge[1::2]] = False
    B = torch.cat([B[keep], children[len(split) :]])
    return dictionary(A), dictionary(B)


def one(n: int) -> dict[str, float]:
    prev, nxt = pair(n)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    result = match(prev, nxt, MatchConfig())
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    counts = result.events["kind"].value_counts()
    return {
        "n": n,
        "seconds": seconds,
        "peak_mb": peak - base,
        "base_mb": base,
        "edges": len(result.edges),
        "recall": recall(prev, nxt, MatchConfig().candidates),
        **{row["kind"]: row["count"] for row in counts.iter_rows(named=True)},
    }


def recall(prev: TopKSAE, nxt: TopKSAE, c: int, sample: int = 2048) -> float:
    """Share of the exact top-c neighbours that the neighbour search returns (bfloat16 with
    exact re-ranking from `assign.APPROX_FROM` on), both ways, on `sample` rows of each."""
    A, B = prev.W_dec.detach(), nxt.W_dec.detach()
    nb = neighbours(A, B, c)
    g = torch.Generator().manual_seed(1)
    found = []
    for X, Y, got in ((A, B, nb.of_prev), (B, A, nb.of_next)):
        rows = torch.randperm(X.shape[0], generator=g)[:sample]
        exact = (X[rows] @ Y.t()).topk(min(c, Y.shape[0]), dim=1).indices
        found.append((got[rows].unsqueeze(2) == exact.unsqueeze(1)).any(2).float().mean())
    return float(torch.stack(found).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096, 16384, 65536])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one)))
        return
    print(f"d={D}, {torch.get_num_threads()} threads; memory is peak RSS above the set-up's")
    print(f"{'features':>9}{'seconds':>9}{'peak MB':>9}{'edges':>8}{'recall':>8}  events")
    for n in args.sizes:
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(n)], capture_output=True, text=True, check=True
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        events = ", ".join(f"{k} {r[k]}" for k in ("birth", "death", "split", "merge") if k in r)
        print(
            f"{r['n']:>9}{r['seconds']:>9.2f}{r['peak_mb']:>9.0f}{r['edges']:>8}"
            f"{r['recall']:>8.4f}  {events}"
        )


if __name__ == "__main__":
    main()
