"""The induction-heads replay's configuration, and a tiny one for the tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from experiments.common import ROOT, RunFiles, geometric
from experiments.textlm import LMConfig

LAYERS = ("blocks.0.attn", "blocks.1.attn", "blocks.1")
"""The watched layers: what each attention layer writes to the residual stream, and the
residual stream after both (the unembedding's input, before its layer norm)."""


@dataclass(frozen=True)
class InductionConfig(RunFiles):
    d_model: int = 64
    n_heads: int = 4
    seq_len: int = 128
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.01
    repeat: float = 1.0
    """Share of training windows holding a span of random characters that appears twice, at
    an offset that varies. On plain text a small model forms induction heads after billions
    of tokens (Olsson et al. 2022); where a random span repeats, only copying from its first
    occurrence predicts the second, and the phase change comes within minutes on a CPU
    (here at ~2 300 steps; in prototypes none by 4 000 with copied spans of text, nor by 2 400
    with random spans an eighth to a quarter of the window)."""
    span: tuple[float, float] = (0.25, 0.5)
    """The repeated span's length, as shares of the window (drawn uniformly between)."""
    steps: int = 4000
    seed: int = 0
    log_snapshots: int = 6
    """Geometric snapshots up to `every` (early training changes fastest)..."""
    every: int = 200
    """...and one every this many steps, so the phase change, wherever it falls, lies
    between checkpoints a few hundred steps apart."""
    eval_every: int = 50
    """The progress measures (in-context loss, prefix-matching scores) this often."""
    probe_sequences: int = 128
    """Held-out sequences of `seq_len` characters (half of them with a repeated random span,
    as in training); every token is a probe row: 16 384 rows. With 48 sequences (6 144 rows)
    `tracker suggest` found no size that a second seed reproduces (best: 128 latents, k 4,
    stable share 0.41); rows cost the fits nothing, which see `sae_batch` rows a step."""
    d_sae: int = 128
    k: int = 4
    """128 latents and k 4: `tracker suggest`'s best on the attention outputs (k 16 gave a
    stable share of 0.01-0.04 at every width, as on the token-rows benchmark)."""
    sae_steps: int = 200
    sae_batch: int = 2048
    """Rows per SAE step: 300 steps of 4 096 took 15-20 s per checkpoint and layer (the
    replay 20 min on two layers); 200 of 2 048 keep three layers within 15 min."""
    fit: str = "defer"
    """SAEs after training: background fits would share the two cores with training."""
    run: str = "induction"
    root: Path = field(default=ROOT / "data")

    def schedule(self) -> list[int]:
        """Step 0, the geometric steps up to `every`, every `every` steps, the last step."""
        logs = geometric(self.every, self.log_snapshots)
        return sorted({0, self.steps} | logs | set(range(0, self.steps, self.every)))

    @property
    def lm(self) -> LMConfig:
        """The attention-only two-layer model of Olsson et al., by characters."""
        return LMConfig(
            d_model=self.d_model,
            n_heads=self.n_heads,
            mlp=False,
            seq_len=self.seq_len,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            seed=self.seed,
        )


TINY = dict(
    d_model=32,
    seq_len=32,
    batch_size=16,
    steps=120,
    log_snapshots=3,
    every=40,
    eval_every=20,
    probe_sequences=8,
    d_sae=64,
    k=4,
    sae_steps=60,
)
"""Small enough for the tests (seconds); too short for induction heads to form."""
