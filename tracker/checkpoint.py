"""One checkpoint: its SAE, fitted on its probe activations, and the seed noise floor."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from tracker.calibration import cross_seed_stable
from tracker.checks import as_activations
from tracker.config import MatchConfig, SAEConfig
from tracker.fit import train_sae
from tracker.match import activation_rows, resolve_signal
from tracker.sae import SAE

NOISE_SEED_OFFSET = 1_000_003


@dataclass
class Checkpoint:
    step: int
    sae: SAE
    acts: Tensor
    stable: Tensor | None = None
    """Bool [d_sae]: live features the independent other-seed SAE also has (cos >= tau)."""
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
    and, with config.noise_floor, its stable features against an independent other seed."""
    x = as_activations(acts, name=f"activations at step {step}")
    init_from = previous if config.init == "previous" else None
    sae = train_sae(x, config, init_from=init_from)
    checkpoint = Checkpoint(step, sae, x)
    if config.noise_floor:
        other = train_sae(x, replace(config, seed=config.seed + NOISE_SEED_OFFSET, progress=False))
        live, other_live = match_config.live(sae), match_config.live(other)
        signal = resolve_signal(match_config, sae.d, int(live.sum()), have_acts=True)
        if signal == "activation":  # the two seeds' features, compared on the same inputs
            mine = activation_rows(sae.latents(x, columns=live.nonzero().flatten()))
            theirs = activation_rows(other.latents(x, columns=other_live.nonzero().flatten()))
        else:
            mine, theirs = sae.W_dec.detach()[live].cpu(), other.W_dec.detach()[other_live].cpu()
        stable = torch.zeros(sae.d_sae, dtype=torch.bool)
        stable[live] = cross_seed_stable(mine, theirs, match_config.tau_match)
        checkpoint.stable = stable
        checkpoint.stable_share = float(stable[live].float().mean()) if live.any() else 0.0
    return checkpoint
