"""Activation witnesses on the shared probe set: basis-free evidence beside decoder cosine.

Two checkpoints see the same probe inputs in the same order, so a feature's activations over
the probe set can be compared across checkpoints directly, whatever its decoder direction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from tracker.checks import as_activations
from tracker.config import MatchConfig
from tracker.sae import SAE

CHUNK = 1024

# What the activations say of an event (the `witness` column).
WITNESSED = "absent"
"""The event's feature(s) are absent from the other checkpoint's activations: the model
changed, as the event says."""
CONTRADICTED = "present"
"""They are present there with their own pattern and strength: an SAE re-carved or missed
them; the event's confidence is capped."""


def event_confidence(
    match_confidence: float, witness: str | None, seeds: int | None, cfg: MatchConfig
) -> float:
    """An event's confidence from what matching alone gave it: capped at
    `unstable_confidence` where the activations contradict it, or where one of its features
    has no cross-seed match and the activations do not witness it (with `trust_witness`, a
    witnessed event is not capped by the noise floor, which only stands in for evidence the
    witness gives directly)."""
    contradicted = witness == CONTRADICTED
    unstable = seeds == 1 and not (witness == WITNESSED and cfg.trust_witness)
    if contradicted or unstable:
        return min(match_confidence, cfg.unstable_confidence)
    return match_confidence


@dataclass(frozen=True)
class Codes:
    """Activations [n, F_live] of an SAE's live features on the probe set."""

    z: Tensor

    @classmethod
    @torch.no_grad()
    def of(cls, sae: SAE, acts: object, ids: np.ndarray, name: str) -> Codes:
        x = as_activations(acts, name=f"activations for {name}", min_samples=2)
        if x.shape[1] != sae.d:
            raise ValueError(f"activations for {name} must be [n, {sae.d}], got {tuple(x.shape)}")
        return cls(sae.latents(x, columns=torch.from_numpy(ids)))


@dataclass(frozen=True)
class Presence:
    """How a checkpoint's features show in another checkpoint's activations of the same
    probe inputs, each measured with the feature's own encoder."""

    corr: np.ndarray
    """[F] Pearson correlation over the probe set between the feature's activations at its
    own checkpoint and at the other (0 where either is constant)."""
    strength: np.ndarray
    """[F] its mean activation at the other checkpoint over the inputs it fires on at its
    own, as a share of its mean activation there (1: as strong; 0: gone)."""
    present: np.ndarray
    """Bool [F]: corr and strength clear their thresholds, and its mean activation where it
    fires at its own checkpoint, times the strength, clears `min_activation`; or `carried`
    clears its own."""
    carried: np.ndarray
    """[F] how strongly the other checkpoint's activations carry the feature's pattern, in
    any direction, as a share of how strongly its own do (NaN where its own activations
    were not given; see `carried`)."""

    def part(self, index: slice) -> Presence:
        """The same measures for the features at `index` only."""
        return Presence(
            self.corr[index], self.strength[index], self.present[index], self.carried[index]
        )


@torch.no_grad()
def presence(
    sae: SAE,
    ids: Sequence[int],
    z_own_NF: Tensor,
    acts_other: Tensor,
    *,
    min_corr: float,
    min_strength: float,
    min_activation: float = 0.0,
    acts_own: Tensor | None = None,
    min_carried: float = float("inf"),
) -> Presence:
    """Run features `ids` of `sae` (whose activations on their own checkpoint are the
    columns of `z_own_NF`) on another checkpoint's activations `acts_other` [n, d]. With
    the feature's own checkpoint's activations `acts_own`, it is also present where the
    other activations carry its pattern at least `min_carried` as strongly as its own.

    No firing-frequency test: a rare feature near `min_frequency` drifts across it between
    checkpoints while firing on the same inputs as strongly (on the toy replay such
    features gave confident false deaths)."""
    if len(ids) == 0:
        empty = np.zeros(0)
        return Presence(empty, empty, np.zeros(0, bool), empty)
    z_other = sae.latents(acts_other, columns=torch.as_tensor(list(ids)))
    own = z_own_NF > 0
    on_support = (z_other * own).sum(0) / (z_own_NF * own).sum(0).clamp_min(1e-12)
    a, b = z_own_NF - z_own_NF.mean(0), z_other - z_other.mean(0)
    denom = a.norm(dim=0) * b.norm(dim=0)
    corr = torch.where(denom > 0, (a * b).sum(0) / denom.clamp_min(1e-30), 0.0)
    # The statistic `SAE.live` holds to min_activation (mean activation where it fires, in
    # the layer's units), carried over at the measured strength. Measured afresh on the
    # other activations it would count weak stray firings (TopK fills its k slots) and
    # fall below min_activation for a feature as strong as before on its own inputs.
    own_mean = (sae.mean_activation.cpu() * sae.input_scale.cpu())[list(ids)]
    strong = own_mean * on_support >= min_activation
    present = (corr >= min_corr) & (on_support >= min_strength) & strong
    share = torch.full_like(corr, torch.nan)
    if acts_own is not None:
        share = carried(z_own_NF, acts_own, acts_other)
        present |= share >= min_carried
    return Presence(
        corr.double().numpy(), on_support.double().numpy(), present.numpy(), share.double().numpy()
    )


@torch.no_grad()
def carried(z_own_NF: Tensor, acts_own: Tensor, acts_other: Tensor) -> Tensor:
    """[F] how strongly `acts_other` carry each column's pattern of `z_own_NF` (its
    activations over the probe set at its own checkpoint) as a share of how strongly
    `acts_own` do: the norm of the activations' covariance with the pattern, Xᵀ(z − z̄),
    at the other checkpoint over that at its own. Basis-free: whatever direction, or
    several, the model moved the feature to, the layer's response to the same inputs is
    measured in the layer's units; 1 where it is as strong, near 0 where no direction of
    the layer varies with the pattern (0 for a constant pattern)."""
    z = z_own_NF.float()
    z = z - z.mean(0)
    own = (acts_own.float().t() @ z).norm(dim=0)
    other = (acts_other.float().t() @ z).norm(dim=0)
    return torch.where(own > 0, other / own.clamp_min(1e-30), 0.0)


def check(
    sae: SAE,
    ids: Sequence[int],
    z_own_NF: Tensor,
    acts_other: Tensor,
    cfg: MatchConfig,
    acts_own: Tensor | None = None,
) -> Presence:
    """`presence` at the thresholds of `cfg` (witness_corr, witness_strength,
    min_activation, witness_carried)."""
    return presence(
        sae,
        ids,
        z_own_NF,
        acts_other,
        min_corr=cfg.witness_corr,
        min_strength=cfg.witness_strength,
        min_activation=cfg.min_activation,
        acts_own=acts_own,
        min_carried=float("inf") if cfg.witness_carried is None else cfg.witness_carried,
    )


class Verdict(NamedTuple):
    """What the activations say about an event whose features should be absent."""

    witness: str | None
    """WITNESSED, CONTRADICTED, or None when there were no activations to look at."""
    strength: float
    corr: float
    carried: float
    """Presence strength, pattern correlation and carried share of the least present
    feature."""


NO_VERDICT = Verdict(None, float("nan"), float("nan"), float("nan"))


def verdict(found: Presence) -> Verdict:
    """The verdict on an event whose features should all be absent where `found` looked:
    contradicted when every one is present there; the evidence is that of the least
    present one."""
    weakest = int(np.argmin(found.strength))
    witness = CONTRADICTED if found.present.all() else WITNESSED
    return Verdict(
        witness,
        float(found.strength[weakest]),
        float(found.corr[weakest]),
        float(found.carried[weakest]),
    )


def act_corr(a: Codes, b: Codes, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """Pearson correlation over the probe set of a's column p and b's column q, per pair;
    NaN where a feature is constant on the probe set."""
    out = np.full(len(pairs), np.nan)
    for start in range(0, len(pairs), CHUNK):
        chunk = pairs[start : start + CHUNK]
        za = a.z[:, [p for p, _ in chunk]]
        zb = b.z[:, [q for _, q in chunk]]
        za = za - za.mean(0)
        zb = zb - zb.mean(0)
        denom = za.norm(dim=0) * zb.norm(dim=0)
        corr = (za * zb).sum(0) / denom
        out[start : start + len(chunk)] = torch.where(denom > 0, corr, torch.nan).numpy()
    return out


def containment(inner: Codes, rows: Sequence[int], outer: Codes, row: int) -> np.ndarray:
    """For each of `rows` in `inner`: the share of its activation mass that falls on probe
    inputs where `outer`'s feature `row` fires (1.0 for a feature that never fires).

    Mass, not a count of firings: a TopK latent with a spare slot fires weakly on foreign
    inputs, and those small activations should not outvote where it really lives.
    """
    z_inner = inner.z[:, list(rows)]
    fires_outer = (outer.z[:, row] > 0).unsqueeze(1)
    total = z_inner.sum(0)
    inside = (z_inner * fires_outer).sum(0)
    return torch.where(total > 0, inside / total.clamp_min(1e-12), 1.0).numpy()
