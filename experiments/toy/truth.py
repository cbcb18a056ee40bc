"""Ground truth: which true features the model represents at each checkpoint, and how each
SAE feature lines up with them."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import torch
from torch import Tensor

from experiments.toy.config import LAYER, ToyConfig
from tracker.activations import load_activation_file
from tracker.reader import open_db


def geometry(W: Tensor) -> dict[str, Tensor]:
    """Per true feature: norm ‖W_i‖, dimensionality D_i = ‖W_i‖² / Σ_j (Ŵ_i·W_j)², and WᵀW."""
    norms = W.norm(dim=0)
    unit = W / norms.clamp_min(1e-12)
    overlap = ((unit.t() @ W) ** 2).sum(1)
    return {"norm": norms, "dim": norms**2 / overlap.clamp_min(1e-12), "wtw": W.t() @ W}


def represented_states(norms: list[Tensor], threshold: float) -> list[Tensor]:
    """Bool [n] per checkpoint: on at `threshold`, off below threshold / 2."""
    states, now = [], torch.zeros_like(norms[0], dtype=torch.bool)
    for norm in norms:
        now = torch.where(now, norm >= threshold / 2, norm >= threshold)
        states.append(now.clone())
    return states


def truth_table(steps: list[int], Ws: dict[int, Tensor], cfg: ToyConfig) -> pl.DataFrame:
    states = represented_states([Ws[s].norm(dim=0) for s in steps], cfg.represented)
    rows = []
    for step, state in zip(steps, states, strict=True):
        g = geometry(Ws[step])
        for i in range(cfg.n):
            rows.append(
                {
                    "step": step,
                    "feature": i,
                    "importance": cfg.importance**i,
                    "norm": float(g["norm"][i]),
                    "represented": bool(state[i]),
                    "dimensionality": float(g["dim"][i]),
                    "wtw": g["wtw"][i].tolist(),
                }
            )
    return pl.DataFrame(rows)


def alignment_table(db: Path, cfg: ToyConfig, Ws: dict[int, Tensor], probe: Tensor) -> pl.DataFrame:
    """Every live SAE feature against every true feature: decoder cosine with W_i and the
    correlation of its activations with x_i over the probe set."""
    reader = open_db(db)
    run_dir = Path(cfg.root) / cfg.run
    xc = probe - probe.mean(0)
    xc = xc / xc.norm(dim=0).clamp_min(1e-12)
    frames = []
    for step in reader.checkpoints(cfg.run, LAYER)["step"].to_list():
        live = reader.features(cfg.run, LAYER, step)["feature"].to_list()
        if not live:
            continue
        sae = reader.sae(cfg.run, LAYER, step)
        unit = Ws[step] / Ws[step].norm(dim=0).clamp_min(1e-12)
        cos = sae.W_dec.detach()[live] @ unit  # [F, n]
        acts = load_activation_file(run_dir / "activations" / LAYER / f"{step}.safetensors")
        z = sae.latents(acts, columns=torch.tensor(live))
        z = z - z.mean(0)
        corr = (z / z.norm(dim=0).clamp_min(1e-12)).t() @ xc
        frames.append(
            pl.DataFrame(
                {
                    "step": step,
                    "feature": [f for f in live for _ in range(cfg.n)],
                    "true_feature": list(range(cfg.n)) * len(live),
                    "cosine": cos.flatten().tolist(),
                    "act_corr": corr.flatten().tolist(),
                }
            )
        )
    return pl.concat(frames) if frames else pl.DataFrame()
