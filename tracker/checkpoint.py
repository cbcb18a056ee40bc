"""One checkpoint: its SAE, fitted on its probe activations, and the seed noise floor."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from tracker.calibration import activation_rows, cross_seed_stable, resolve_signal
from tracker.checks import as_activations
from tracker.config import MatchConfig, SAEConfig
from tracker.fit import train_sae
from tracker.sae import SAE

NOISE_SEED_OFFSET = 1_000_003


@dataclass
class Checkpoint:
    step: int
    sae: SAE
    acts: Tensor
    stable: Tensor | None = None
    """Bool [d_sae]: live features most of the checkpoint's seeds find (`SAEConfig.seeds`)."""
    stable_share: float | None = None
    """Share of live features that are stable: the seed noise floor of this checkpoint."""


def fit_checkpoint(
    step: int,
    acts: object,
    config: SAEConfig,
    match_config: MatchConfig,
    previous: SAE | None = None,
) -> Checkpoint:
    """One checkpoint's SAE (warm-started from `previous` when config.init == "previous")
    and, with config.seeds > 1, its stable features: those most of the other seeds' SAEs
    also have."""
    x = as_activations(acts, name=f"activations at step {step}")
    init_from = previous if config.init == "previous" else None
    sae = train_sae(x, config, init_from=init_from)
    checkpoint = Checkpoint(step, sae, x)
    if config.seeds > 1:
        live = sae.live(match_config.min_frequency, match_config.min_activation)
        signal = resolve_signal(match_config, sae.d, int(live.sum()), have_acts=True)

        def rows(of: SAE) -> Tensor:
            """Its live features as compared across seeds: activations on the same inputs,
            or decoder directions."""
            keep = of.live(match_config.min_frequency, match_config.min_activation)
            if signal == "activation":
                return activation_rows(of.latents(x, columns=keep.nonzero().flatten()))
            return of.W_dec.detach()[keep].cpu()

        mine = rows(sae)
        found = torch.zeros(int(live.sum()), dtype=torch.long)
        for i in range(1, config.seeds):
            other = train_sae(
                x, replace(config, seed=config.seed + i * NOISE_SEED_OFFSET, progress=False)
            )
            found += cross_seed_stable(mine, rows(other), match_config.tau_match).long()
        stable = torch.zeros(sae.d_sae, dtype=torch.bool)
        stable[live] = found >= config.seeds // 2  # with itself, a majority of the seeds
        checkpoint.stable = stable
        checkpoint.stable_share = float(stable[live].float().mean()) if live.any() else 0.0
    return checkpoint
