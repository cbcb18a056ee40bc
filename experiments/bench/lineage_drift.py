"""How far do lineages drift between two checkpoints, by the model's activations?

For every lineage alive at both steps, its feature's activations over the probe set at the
first step (that checkpoint's SAE on its activations) against the later feature's at the
second: their correlation, and the activation witness both ways (is the later feature
present in the earlier activations, the earlier one in the later?). A lineage whose pattern
changed and whose two ends are each absent from the other's activations is a turnover the
events could claim; one whose pattern held is a feature that grew or rotated in place.
On a grokking run (a `grok_features` table) the lineages whose label moved onto a key
frequency are counted apart. Also prints, for each checkpoint in between, the median
correlation with the checkpoint before. Reads a finished run directory:

    python experiments/bench/lineage_drift.py RUN_DIR --from 1631 --to 9500 [--layer mlp]
"""

from __future__ import annotations

import argparse
import sys
from itertools import pairwise
from pathlib import Path

import numpy as np
import polars as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from tracker.activations import load_activation_file
from tracker.calibration import activation_rows
from tracker.config import MatchConfig
from tracker.reader import open_db
from tracker.snapshots import RunDir
from tracker.witness import check


def ends(db, run, layer, step, path):
    """(SAE, activations, {lineage: feature}) of one checkpoint."""
    sae = db.sae(run, layer, step)
    acts = load_activation_file(path.activation_path(layer, step)).float()
    live = db.features(run, layer, step)
    return sae, acts, dict(zip(live["lineage"].to_list(), live["feature"].to_list(), strict=True))


def drift(first, later, cfg):
    """Lineages alive at both checkpoints (each an `ends` triple): their features there,
    the correlation of their activation patterns, and each end's presence in the other's
    activations."""
    (sae0, x0, l0), (sae1, x1, l1) = first, later
    both = sorted(set(l0) & set(l1))
    f0, f1 = [l0[i] for i in both], [l1[i] for i in both]
    z0 = sae0.latents(x0, columns=torch.tensor(f0, dtype=torch.long))
    z1 = sae1.latents(x1, columns=torch.tensor(f1, dtype=torch.long))
    corr = (activation_rows(z0) * activation_rows(z1)).sum(1).numpy()
    return both, f0, f1, corr, check(sae1, f1, z1, x0, cfg, x1), check(sae0, f0, z0, x1, cfg, x0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--from", dest="start", type=int, required=True)
    parser.add_argument("--to", dest="end", type=int, required=True)
    parser.add_argument("--layer", default=None)
    args = parser.parse_args()
    path = RunDir(args.run_dir)
    db = open_db(args.run_dir / "lineage.duckdb")
    run = db.runs()["run"][0]
    layer = args.layer or db.layers(run)[0]
    cfg = MatchConfig.from_dict(db.run_config(run).get("match", {}))
    steps = [s for s in db.checkpoints(run, layer)["step"].to_list() if args.start <= s <= args.end]
    # Every checkpoint in between is loaded once: the two ends and the neighbouring pairs.
    loaded = {s: ends(db, run, layer, s, path) for s in {args.start, args.end, *steps}}
    with torch.no_grad():
        both, f0, f1, corr, new, old = drift(loaded[args.start], loaded[args.end], cfg)
    changed = corr < cfg.witness_corr
    turnover = changed & ~new.present & ~old.present
    q = np.quantile(corr, [0.1, 0.25, 0.5, 0.75, 0.9])
    print(f"{run}/{layer}: {len(both)} lineages alive at both {args.start} and {args.end}")
    print("  pattern correlation, 10/25/50/75/90th percentiles: " + " ".join(f"{v:.2f}" for v in q))
    print(
        f"  changed pattern (corr < {cfg.witness_corr}): {changed.sum()}; of them both ends absent"
        f" from the other's activations (a turnover): {turnover.sum()}"
    )
    print(
        f"  later feature absent at {args.start}: {(~new.present).sum()} "
        f"(by correlation alone {(new.corr < cfg.witness_corr).sum()}); earlier feature absent "
        f"at {args.end}: {(~old.present).sum()} (by correlation alone "
        f"{(old.corr < cfg.witness_corr).sum()})"
    )
    print(
        f"  carried (how strongly the other end's layer carries a feature's pattern), median: "
        f"earlier features at {args.end} {np.median(old.carried):.2f}, later features at "
        f"{args.start} {np.median(new.carried):.2f}; a turnover's earlier feature "
        f"{np.median(old.carried[turnover]) if turnover.any() else float('nan'):.2f}"
    )
    found = db.sql("SELECT table_name FROM information_schema.tables")["table_name"].to_list()
    if "grok_features" in found:
        labels = db.table("grok_features", run)
        freq = dict(
            zip(
                zip(labels["step"].to_list(), labels["feature"].to_list(), strict=True),
                labels["frequency"].to_list(),
                strict=True,
            )
        )
        keys = db.table("grok_embedding", run).filter(pl.col("key"))["frequency"].to_list()
        k0 = np.array([freq.get((args.start, f), -1) in keys for f in f0])
        k1 = np.array([freq.get((args.end, f), -1) in keys for f in f1])
        moved = ~k0 & k1
        print(
            f"  label moved onto a key frequency: {moved.sum()}; median pattern correlation "
            f"{np.median(corr[moved]):.2f}; a turnover: {(turnover & moved).sum()}"
        )
    medians = []
    for a, b in pairwise(steps):
        with torch.no_grad():
            c = drift(loaded[a], loaded[b], cfg)[3]
        medians.append(f"{b}: {np.median(c):.3f}")
    print("  median correlation with the checkpoint before: " + ", ".join(medians))


if __name__ == "__main__":
    main()
