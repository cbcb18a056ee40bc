"""Typed, validated configuration for fitting sparse autoencoders."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Literal, Self

from tracker.checks import ConfigDict

DEVICES = ("auto", "cpu", "cuda")
SIGNALS = ("auto", "decoder", "activation")
ARCHITECTURES: dict[str, tuple[str, ...]] = {
    "topk": ("k", "k_aux", "aux_coef", "dead_after"),
    "relu": ("l1_coef",),
}
"""Names `SAEConfig.arch` accepts, each with the `SAEConfig` fields only it reads (as SAELens
keeps `k` with its TopK config): the built-in architectures, and any that
`tracker.sae.registry.register` adds (config does not import the SAEs: they import it)."""
Init = Literal["random", "previous"]
Signal = Literal["auto", "decoder", "activation"]


def _positive(name: str, value: int | float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"SAEConfig.{name} must be positive, got {value!r}")


@dataclass(frozen=True)
class SAEConfig(ConfigDict):
    """How to fit one sparse autoencoder to one checkpoint's activations [n, d]."""

    arch: str = "topk"
    """Architecture, a key of `tracker.sae.ARCHITECTURES`: "topk" (Gao et al. 2024, the default:
    L0 is set directly, no sparsity coefficient to tune) or "relu" (ReLU + L1)."""

    d_sae: int | None = None
    """Number of latents. None means `expansion * d`."""

    expansion: int = 8
    """Latents per input dimension when `d_sae` is None."""

    k: int = 32
    """TopK: active latents per sample. Must be smaller than `d_sae`."""

    k_aux: int | None = None
    """TopK: dead latents used by the AuxK loss. None means d // 2, as Gao et al. (2024, A.2)."""

    aux_coef: float = 1 / 32
    """TopK: weight of the AuxK loss; 1/32 is the value of Gao et al. (2024, A.2)."""

    dead_after: int | None = None
    """Samples a latent may go without firing before AuxK treats it as dead.
    None means one pass over the data (the data here are small probe sets, not 10M tokens)."""

    l1_coef: float = 0.1
    """ReLU: weight of the L1 penalty (weighted by decoder row norm) against the FVU loss, on
    inputs of unit mean squared norm. 0.1 recovers a planted dictionary with MMCS 0.99."""

    lr: float | None = None
    """Adam learning rate. None means 2e-4 / sqrt(d_sae / 2**14), the scaling of Gao et al."""

    batch_size: int = 4096
    """Samples per step (capped at n)."""

    steps: int = 1000
    """Optimiser steps."""

    seed: int = 0
    """Seeds initialisation and batch order: the same seed gives the same weights on CPU."""

    device: str = "auto"
    """"auto" (CUDA when present, else CPU), "cpu", "cuda" or "cuda:N"."""

    init: Init = "random"
    """In a sequence of checkpoints: "random" fits each SAE from scratch; "previous"
    warm-starts it from the last checkpoint's (as SAE-Track does). On planted data, with the
    same steps, "random" found events at least as well (death F1 1.00 vs 0.98) and its
    features were more often found by another seed (1.00 vs 0.95): a warm start carries
    directions forward that the data no longer pins down. Prefer "previous" where seeds
    barely agree (grokking at d_model 128) or to fit in fewer steps."""

    seeds: int = 2
    """In a sequence of checkpoints: SAEs fitted per checkpoint, each from its own seed (the
    seed noise floor). The first is the checkpoint's SAE; a feature of it is `stable` when
    most of them find it (itself and at least half of the others, at cosine >= tau_match).
    1 turns the noise floor off. Each seed is one more fit per checkpoint. On the toy replay
    (seeds 0-4, with `MatchConfig.confirm`) 3 and 5 seeds gave the same events as each other
    and one more right birth and one more false death than 2 over five runs (birth recall
    0.96 vs 0.94, precision 0.88 both), for 1.5x and 2.5x the fits: 2 is the default."""

    normalize: bool = True
    """Scale each checkpoint's activations to unit mean squared norm before fitting, so that
    activation scale, which drifts a lot during training, does not leak into the features."""

    progress: bool = False
    """Show a progress bar while fitting."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        if "noise_floor" in data and "seeds" not in data:  # written before `seeds`
            data = {**data, "seeds": 2 if data["noise_floor"] else 1}
        return super().from_dict(data)

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(
                f"SAEConfig.arch must be one of {sorted(ARCHITECTURES)}, got {self.arch!r}"
            )
        for name in (
            "d_sae",
            "expansion",
            "k",
            "k_aux",
            "dead_after",
            "lr",
            "batch_size",
            "steps",
            "seeds",
        ):
            _positive(name, getattr(self, name))
        for name in ("aux_coef", "l1_coef"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"SAEConfig.{name} must be finite and >= 0, got {value!r}")
        if self.init not in ("previous", "random"):
            raise ValueError(f"SAEConfig.init must be 'previous' or 'random', got {self.init!r}")
        if not (self.device in DEVICES or self.device.startswith("cuda:")):
            raise ValueError(
                f"SAEConfig.device must be one of {list(DEVICES)} or 'cuda:N', got {self.device!r}"
            )
        if self.d_sae is not None and self.arch == "topk" and self.k >= self.d_sae:
            raise ValueError(f"SAEConfig.k must be smaller than d_sae={self.d_sae}, got k={self.k}")
        self._check_arch_fields()

    def _check_arch_fields(self) -> None:
        """A field another architecture reads, set away from its default, is a mistake
        (`SAEConfig(arch="relu", k=8)` would fit a ReLU SAE and ignore k): one clear error."""
        own = ARCHITECTURES[self.arch]
        for arch, names in ARCHITECTURES.items():
            for name in names:
                field = SAE_FIELDS[name]
                if name not in own and getattr(self, name) != field.default:
                    raise ValueError(
                        f"SAEConfig.{name} is a field of arch={arch!r}, not of "
                        f"arch={self.arch!r} (its own: {list(own) or 'none'})"
                    )

    def latents(self, d: int) -> int:
        """The number of latents for inputs of width `d`."""
        return self.d_sae if self.d_sae is not None else self.expansion * d

    def check_width(self, d: int, what: str) -> None:
        """Refuse inputs of width `d` (of `what`, for the message) this SAE cannot be fitted
        to: TopK needs fewer active latents than latents."""
        d_sae = self.latents(d)
        if self.arch == "topk" and self.k >= d_sae:
            raise ValueError(
                f"SAEConfig.k={self.k} must be smaller than the {d_sae} latents of {what} "
                f"(width {d}): lower k or raise d_sae/expansion"
            )

    def learning_rate(self, d_sae: int) -> float:
        # Gao et al. (2024) fit lr ∝ 1/sqrt(n_latents); 2e-4 at 2**14 latents is their anchor.
        return self.lr if self.lr is not None else 2e-4 / math.sqrt(d_sae / 2**14)


SAE_FIELDS = {field.name: field for field in fields(SAEConfig)}


@dataclass(frozen=True)
class MatchConfig(ConfigDict):
    """How features of consecutive checkpoints are matched and read as events.

    Cosines are between unit decoder rows. Every threshold below is chosen on planted data
    with known events (experiments/bench/planted_events.py), not by eye.
    """

    signal: Signal = "auto"
    """What similarity features are matched on. "decoder": cosine of unit decoder rows.
    "activation": Pearson correlation of their activations over the shared probe set (the
    cosine of centred activation columns), which needs the probe activations. "auto":
    activation when activations are given and decoder cosine is no better than chance at this
    width (chance quantile above `tau_match`: d <= ~16 for a few dozen features; the toy
    model's d = 5 scores 0.98 by chance), decoder otherwise. Every threshold below then reads
    "similarity" for "cosine"."""

    tau_match: float = 0.7
    """Least cosine for a continuation. Raised to the chance level (`chance_quantile` of the
    best-match cosine of a random dictionary of the same shape) where that is higher."""

    chance_quantile: float = 0.99
    """Which quantile of the random best-match cosine counts as chance."""

    candidates: int = 8
    """Nearest neighbours per feature considered for splits, merges and sparse matching."""

    hungarian_max: int = 4096
    """Largest dictionary matched with scipy's dense Hungarian; larger ones use a sparse
    top-`candidates` graph (Hungarian takes ~30 s and 2 GB at 16k features)."""

    split_min_r2: float = 0.65
    """A split parent (merge child) must be rebuilt by its children (parents) with at least
    this R² (1 − squared residual of its unit row on the matching signal, non-negative least
    squares); each child (parent) must also have it as its nearest feature across the
    checkpoint, or it continues elsewhere. A rebuild across a checkpoint carries the model's
    own change too: a toy latent mixing two features that separate rebuilds at R² ≈ 0.71,
    and at 0.85 its children were a false death and a false birth (toy seeds 0–4: 1.0 false
    deaths per run at 0.85, 0.6 at 0.65)."""

    split_min_gain: float = 0.15
    """...and this much better R² than by its best single child (parent)."""

    split_min_share: float = 0.15
    """...with every child (parent) carrying at least this share of the NNLS weight."""

    candidate_min_cos: float = 0.3
    """Least cosine for a split child (merge parent) candidate; raised to chance like tau."""

    min_containment: float = 0.6
    """Activation witness: a split child must fire on a subset of its parent's support (this
    share of its firing inputs inside the parent's), and a merge parent inside the child's."""

    min_frequency: float = 5e-3
    """Features firing on at most this share of the probe set (1 input in 200) count as dead:
    a latent firing on a handful of probe inputs gives no evidence about lineage. On planted
    data every false confident event came from latents firing on 1 to 8 of 4096 inputs,
    while the rarest true features fire on ~2%."""

    min_activation: float = 0.0
    """Features whose mean activation where they fire is below this, in the layer's own
    units, count as dead too. Off by default: SAEs see each checkpoint scaled to unit mean
    squared norm, so a layer whose activations are all tiny (a freshly initialised model)
    still yields features. Set it where the layer's scale means something; the toy
    superposition replay sets 0.25, the mean activation of a feature of norm 0.5 on inputs
    uniform on [0, 1]."""

    margin: float = 0.1
    """Birth/death confidence ramps from 0 at a best cosine of tau to 1 at tau − margin: a
    feature just short of a match is more likely drift than an event."""

    min_confidence: float = 0.5
    """Events below this confidence are kept but not reported as confident."""

    unstable_confidence: float = 0.25
    """Confidence cap for an event involving a feature with no cross-seed match, and for an
    event the activations contradict (see `witness_corr`)."""

    witness_corr: float = 0.8
    """Activation witness. The probe set is the same at every checkpoint, so a feature's own
    encoder can be run on the other checkpoint's activations. It is *present* there when the
    activations it gives correlate with its own (Pearson over the probe set) at least this
    much and reach `witness_strength` of its own on the inputs where it fires (and
    `min_activation`, when set). A death is reported only when the dead feature is absent
    from the later checkpoint's activations (else the later SAE missed it: a `missed` edge),
    a birth only when the born feature is absent from the earlier one; splits and merges
    likewise for their children and parents. On the toy replay, features an SAE dropped and
    refound score 0.85-1.0 here; true births (a feature forming) score below 0.5."""

    witness_strength: float = 0.5
    """...and this share of its own activation on its own support (a feature growing from
    nothing to full size over one checkpoint interval scores 0; one an SAE merely missed ~1)."""

    witness_carried: float | None = 1.0
    """...or, whatever its own encoder reads, when the other checkpoint's layer carries its
    pattern at least this strongly, in any direction, as a share of its own (see
    `witness.carried`): a death whose pattern the layer carries as strongly afterwards is
    the SAE's, not the model's, and so is a birth it carried as strongly before. On the toy
    replay the encoder test's false deaths carried 1.2-1.4, true births at most 0.82. None
    turns it off."""

    trust_witness: bool = False
    """Whether an event the activations witness escapes the seed noise floor's cap. The
    witness cannot tell a real direction from an SAE's junk latent (mixing or cutting true
    features) that appears or vanishes: on planted data (d=32, SAEs 2x wide) trusting it let
    8 junk-latent events through, all of features no second seed found. Off by default."""

    confirm: bool = True
    """Track confirmation, as multi-object trackers hold a new track tentative until it is
    detected again. A witnessed birth or death of a feature no second seed found is capped
    by the noise floor only until another seed finds the born lineage at the next checkpoint
    (`confirmed` gives that step) or found the dying one at the checkpoint before its last:
    a feature that forms or fades slowly is weak, so seed dependent, where it is born or dies."""

    max_gap: int = 2
    """Checkpoints in a row a lineage may go unseen while the activations still show its
    feature (an SAE missed it) and still be continued when a later SAE finds it again, as
    multi-object trackers keep a lost track; past that it ends with an unwitnessed death
    (low confidence). A feature found already present at the last checkpoint whose encoder
    reads a lost (or just dead) feature's pattern there (correlation >= tau) continues it:
    the model kept it in another direction (a death is taken back). 0 turns gaps off."""

    def __post_init__(self) -> None:
        for name in (
            "tau_match",
            "chance_quantile",
            "split_min_r2",
            "candidate_min_cos",
            "min_containment",
            "min_confidence",
            "unstable_confidence",
            "witness_corr",
            "witness_strength",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"MatchConfig.{name} must be in [0, 1], got {value!r}")
        carried = self.witness_carried
        if carried is not None and not (carried > 0 and math.isfinite(carried)):
            raise ValueError(
                f"MatchConfig.witness_carried must be finite and > 0 (or None), got {carried!r}"
            )
        if not (self.min_activation >= 0 and math.isfinite(self.min_activation)):
            raise ValueError(
                f"MatchConfig.min_activation must be finite and >= 0, got {self.min_activation!r}"
            )
        for name in ("split_min_gain", "split_min_share", "min_frequency", "margin"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"MatchConfig.{name} must be in [0, 1), got {value!r}")
        if self.signal not in SIGNALS:
            raise ValueError(
                f"MatchConfig.signal must be one of {list(SIGNALS)}, got {self.signal!r}"
            )
        for name in ("candidates", "hungarian_max"):
            if getattr(self, name) < 1:
                raise ValueError(f"MatchConfig.{name} must be positive, got {getattr(self, name)}")
        if not (isinstance(self.max_gap, int) and self.max_gap >= 0):
            raise ValueError(f"MatchConfig.max_gap must be an integer >= 0, got {self.max_gap!r}")
