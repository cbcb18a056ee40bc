"""The sparsity sweep of the paper's figure, trained without the tracker, and its pictures."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import polars as pl

from experiments.toy.config import SWEEP, ToyConfig
from experiments.toy.model import train_plain
from experiments.toy.truth import geometry


def sweep(cfg: ToyConfig, sparsities: tuple[float, ...] = SWEEP) -> pl.DataFrame:
    """Final geometry per sparsity: which features are represented, their dimensionality,
    antipodal pairs, and dimensions per feature m / ‖W‖²_F (the paper's Figure). Trained as
    the paper does, from a Xavier-normal W and for at least 10k steps: the small init of the
    demo is for watching features form, and at S = 0.999 it leaves features unlearnt."""
    rows = []
    xavier = (2 / (cfg.n + cfg.m)) ** 0.5
    for s in sparsities:
        W = train_plain(replace(cfg, sparsity=s, steps=max(cfg.steps, 10_000), init_std=xavier))
        g = geometry(W)
        rep = g["norm"] >= cfg.represented
        unit = W / g["norm"].clamp_min(1e-12)
        cos = unit.t() @ unit
        antipodal = int(((cos < -0.9) & rep[:, None] & rep[None, :]).triu(1).sum())
        for i in range(cfg.n):
            rows.append(
                {
                    "sparsity": s,
                    "feature": i,
                    "norm": float(g["norm"][i]),
                    "represented": bool(rep[i]),
                    "dimensionality": float(g["dim"][i]),
                    "antipodal_pairs": antipodal,
                    "dims_per_feature": cfg.m / float((W**2).sum()),
                    "wtw": g["wtw"][i].tolist(),
                }
            )
    return pl.DataFrame(rows)


def draw_sweep(table: pl.DataFrame, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    levels = table["sparsity"].unique().sort().to_list()
    fig, axes = plt.subplots(1, len(levels), figsize=(2.2 * len(levels), 2.6))
    for ax, s in zip(axes, levels, strict=True):
        wtw = table.filter(pl.col("sparsity") == s).sort("feature")["wtw"].to_list()
        ax.imshow(wtw, cmap="RdBu", vmin=-1, vmax=1)
        n_rep = int(table.filter((pl.col("sparsity") == s) & pl.col("represented")).height)
        ax.set_title(f"1-S = {1 - s:.3g}\n{n_rep} represented", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("WᵀW after training (20 features, 5 dimensions)", fontsize=10)
    fig.tight_layout()
    wtw_path = out / "toy_wtw.png"
    fig.savefig(wtw_path, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.4))
    x = [1 / (1 - s) if s < 1 else math.inf for s in table["sparsity"].to_list()]
    ax.scatter(x, table["dimensionality"], s=12, alpha=0.6, c="tab:blue", label="D_i, each feature")
    per = table.unique("sparsity").sort("sparsity")
    ax.plot(
        [1 / (1 - s) for s in per["sparsity"]], per["dims_per_feature"], "k-", label="m / ‖W‖²_F"
    )
    for frac in (1, 3 / 4, 2 / 3, 1 / 2, 2 / 5):
        ax.axhline(frac, color="grey", lw=0.5, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("1 / (1 - S)")
    ax.set_ylabel("dimensions per feature")
    ax.set_ylim(-0.05, 1.1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    dim_path = out / "toy_dimensionality.png"
    fig.savefig(dim_path, dpi=110)
    plt.close(fig)
    return [wtw_path, dim_path]


def print_sweep(table: pl.DataFrame) -> None:
    print("\nSparsity sweep (final geometry):")
    print(f"  {'S':>6} {'represented':>12} {'antipodal':>10} {'m/‖W‖²':>8}  D_i of represented")
    for s in table["sparsity"].unique().sort().to_list():
        t = table.filter(pl.col("sparsity") == s)
        rep = t.filter(pl.col("represented"))
        dims = " ".join(f"{d:.2f}" for d in rep["dimensionality"].to_list())
        print(
            f"  {s:>6} {rep.height:>12} {t['antipodal_pairs'][0]:>10} "
            f"{t['dims_per_feature'][0]:>8.2f}  {dims}"
        )
