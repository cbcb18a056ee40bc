"""Replay 2: grokking on modular addition (Power et al. 2022; Nanda et al. 2023), tracked.

The published setup: `a + b mod p` with p = 113, 30% of the p² pairs for training, a
one-layer transformer without layer norm (d_model 128, 4 heads of 32, d_mlp 512, ReLU), input
`a b =` read out at `=`, full-batch AdamW (lr 1e-3, 10 warm-up steps, weight decay 1.0, betas
0.9/0.98). `FeatureTracker` watches the MLP hidden activations at `=` (`--layer resid` for
the residual stream after the MLP) on every pair, at log-spaced steps plus a dense window
around the transition; the SAEs are warm-started from the previous checkpoint.

Because the probe set is every pair, each SAE feature is a p × p map over (a, b). Its 2-D
Fourier spectrum gives it a label: the frequency holding most of its (non-constant) power.
The key frequencies are read from the trained embedding, as the paper does, and compared with
the frequencies the SAE features carry. Progress measures are computed from weights recorded
every `eval_every` steps: train and test loss and accuracy, the paper's restricted loss (the
logits kept only along the key frequencies' cos/sin(w(a+b)) directions) and excluded loss
(those directions removed, on the training pairs), and the total squared weight.

    python experiments/grokking.py               # p = 113, the published run (~20 minutes)
    python experiments/grokking.py --p 53        # a smaller modulus, same schedule
    python experiments/grokking.py --report      # redo report and figures from the DB
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import polars as pl
import replay
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, IterableDataset

from tracker import FeatureTracker, MatchConfig, SAEConfig
from tracker.activations import load_activation_file
from tracker.pipeline import fit_run
from tracker.reader import open_db
from tracker.store import Writer

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT / "experiments" / "figures"
LAYERS = {"mlp": "mlp", "resid": "resid"}
PAPER = {"memorisation": 1_400, "circuit formation": 9_400, "cleanup": 14_000}
"""Nanda et al. (2023): where each phase ends, in steps, for p = 113."""
CHANCE = 3.0
"""A map is labelled with its dominant frequency when that frequency holds at least this many
times the share of power it would in white noise."""


@dataclass(frozen=True)
class GrokConfig:
    p: int = 113
    train_fraction: float = 0.3
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 512
    lr: float = 1e-3
    weight_decay: float = 1.0
    betas: tuple[float, float] = (0.9, 0.98)
    warmup: int = 10
    steps: int = 15_000
    seed: int = 0
    layer: str = "mlp"
    """"mlp": the ReLU hidden layer at `=` ([p², d_mlp]); "resid": the residual stream at `=`
    after the MLP ([p², d_model])."""
    log_snapshots: int = 14
    """Log-spaced snapshots over the whole run (step 0 and the last step included)..."""
    dense: tuple[int, int, int] = (6_000, 14_000, 17)
    """...plus this many evenly spaced ones from the first to the second step: circuit
    formation and the clean-up, where test accuracy jumps (at ~13k with seed 0, as in the
    paper; every 500 steps)."""
    eval_every: int = 100
    """Record the weights (and so every progress measure) this often."""
    d_sae: int = 256
    k: int = 8
    sae_steps: int = 300
    sae_batch: int = 2048
    fit: str = "defer"
    """SAEs after training (the tracker's `defer` mode). Fitting in the background shares
    the two cores with training, which changes float reductions in their last bits, and the
    step at which the network groks is sensitive to that: runs of one seed then differ."""
    run: str = "grokking"
    root: Path = field(default=ROOT / "data")

    @property
    def db(self) -> Path:
        return self.root / self.run / "lineage.duckdb"

    def schedule(self) -> list[int]:
        """Step 0, `log_snapshots` geometric steps, the dense window, the last step."""
        n = max(self.log_snapshots - 1, 1)
        logs = {round(self.steps ** (i / n)) for i in range(n + 1)}
        first, last, count = self.dense
        dense = {round(first + i * (last - first) / max(count - 1, 1)) for i in range(count)}
        return sorted({0, self.steps} | {s for s in logs | dense if 0 <= s <= self.steps})


TINY = dict(
    p=37,
    train_fraction=0.5,
    d_model=32,
    d_mlp=64,
    lr=1e-2,
    steps=1200,
    log_snapshots=6,
    dense=(200, 1000, 5),
    eval_every=50,
    d_sae=32,
    k=4,
    sae_steps=200,
    sae_batch=512,
)
"""A configuration small enough for the tests (~20 s): with seed 0 it memorises by step 150
and groks (test accuracy >= 95%) at step 1000."""


# --- data and model ------------------------------------------------------------------------


def split(cfg: GrokConfig) -> tuple[Tensor, Tensor]:
    """All p² pairs (row a·p + b) and a boolean mask of the training pairs."""
    p = cfg.p
    pairs = torch.cartesian_prod(torch.arange(p), torch.arange(p))
    order = torch.randperm(p * p, generator=torch.Generator().manual_seed(cfg.seed))
    train = torch.zeros(p * p, dtype=torch.bool)
    train[order[: int(cfg.train_fraction * p * p)]] = True
    return pairs, train


class FullBatch(IterableDataset[tuple[Tensor, Tensor]]):
    """The whole training set as one batch, forever: full-batch gradient descent."""

    def __init__(self, x: Tensor, y: Tensor) -> None:
        self.x, self.y = x, y

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        while True:
            yield self.x, self.y


class Transformer(L.LightningModule):
    """One layer, no layer norm, read out at `=`, initialised like Nanda et al.'s code.

    Only the `=` position reaches the logits in one layer, and its query is the same for
    every input, so `forward` computes just that path: keys, values and their output
    projection per token (p rows, not p² inputs), then attention, MLP and unembedding at `=`.
    `forward_sequence` is the textbook three-position forward; the tests check they agree.
    The hooks: `mlp` (ReLU output, [n, d_mlp]) and `resid` (residual after the MLP, [n, d]).
    """

    def __init__(self, cfg: GrokConfig) -> None:
        super().__init__()
        self.cfg = cfg
        p, d, h, m = cfg.p, cfg.d_model, cfg.n_heads, cfg.d_mlp
        self.d_head = d // h
        g = torch.Generator().manual_seed(cfg.seed)

        def param(*shape: int, fan_in: int = d) -> nn.Parameter:
            return nn.Parameter(torch.randn(*shape, generator=g) / math.sqrt(fan_in))

        self.W_E = param(p + 1, d)  # token p is `=`
        self.W_pos = param(3, d)
        self.W_Q = param(h, d, self.d_head)
        self.W_K = param(h, d, self.d_head)
        self.W_V = param(h, d, self.d_head)
        self.W_O = param(h, self.d_head, d)
        self.W_in = param(d, m)
        self.b_in = nn.Parameter(torch.zeros(m))
        self.W_out = param(m, d)
        self.b_out = nn.Parameter(torch.zeros(d))
        self.W_U = param(d, p + 1, fan_in=p + 1)  # the paper's code unembeds to p + 1 tokens
        self.mlp = nn.ReLU()
        self.resid = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """Logits [n, p + 1] (the last is `=`, never the answer) for pairs x [n, 2] of (a, b)."""
        p = self.cfg.p
        a, b = x[:, 0], x[:, 1]
        eq = self.W_E[p] + self.W_pos[2]  # the `=` token at position 2
        q_HE = torch.einsum("d,hde->he", eq, self.W_Q) / math.sqrt(self.d_head)
        tokens = torch.stack([self.W_E[:p] + self.W_pos[0], self.W_E[:p] + self.W_pos[1]])
        rows = torch.cat([tokens.reshape(2 * p, -1), eq[None]])  # [2p + 1, d]
        score_RH = torch.einsum("rd,hde,he->rh", rows, self.W_K, q_HE)
        out_RHD = torch.einsum("rd,hde,hef->rhf", rows, self.W_V, self.W_O)
        pick = torch.stack([a, p + b, torch.full_like(a, 2 * p)], 1)  # [n, 3] rows
        # F.embedding rather than indexing: its CPU backward sums rows in a fixed order, where
        # indexing's scatter-add is not deterministic on more than one thread.
        attn_NHS = F.embedding(pick, score_RH).transpose(1, 2).softmax(-1)
        out_NHD = F.embedding(pick, out_RHD.flatten(1)).unflatten(-1, out_RHD.shape[1:])
        mid_ND = eq + (attn_NHS[..., None] * out_NHD.transpose(1, 2)).sum((1, 2))
        hidden = self.mlp(mid_ND @ self.W_in + self.b_in)
        post = self.resid(mid_ND + hidden @ self.W_out + self.b_out)
        return post @ self.W_U

    def forward_sequence(self, x: Tensor) -> Tensor:
        """The same logits from a plain causal transformer over all three positions."""
        p = self.cfg.p
        tokens = torch.cat([x, torch.full_like(x[:, :1], p)], 1)
        res = self.W_E[tokens] + self.W_pos  # [n, 3, d]
        q = torch.einsum("nsd,hde->nhse", res, self.W_Q)
        k = torch.einsum("nsd,hde->nhse", res, self.W_K)
        v = torch.einsum("nsd,hde->nhse", res, self.W_V)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.d_head)
        causal = torch.ones(3, 3, dtype=torch.bool).triu(1)
        pattern = scores.masked_fill(causal, float("-inf")).softmax(-1)
        res = res + torch.einsum("nhse,hed->nsd", pattern @ v, self.W_O)
        res = res + F.relu(res @ self.W_in + self.b_in) @ self.W_out + self.b_out
        return res[:, -1] @ self.W_U

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        logits = self(x)
        # float64 cross-entropy, as the paper's code: float32 loses the tiny late losses.
        loss = F.cross_entropy(logits.double(), y)
        self.log("train_loss", loss.float(), prog_bar=True)
        return loss

    def configure_optimizers(self) -> Any:
        cfg = self.cfg
        opt = torch.optim.AdamW(
            self.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas
        )
        warm = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / cfg.warmup, 1.0))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": warm, "interval": "step"}}


class RecordWeights(L.Callback):
    """Keeps a copy of the weights every `every` steps and at the tracker's snapshot steps."""

    def __init__(self, every: int, tracker: FeatureTracker) -> None:
        self.every = every
        self.tracker = tracker
        self.states: dict[int, dict[str, Tensor]] = {}

    def _record(self, trainer: L.Trainer, model: L.LightningModule) -> None:
        step = trainer.global_step
        if step % self.every == 0 or step in (self.tracker.steps or ()):
            self.states[step] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record(trainer, pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *_: Any) -> None:
        self._record(trainer, pl_module)


# --- Fourier analysis ----------------------------------------------------------------------


def fourier_basis(p: int) -> Tensor:
    """[p, p] orthonormal rows: the constant, then cos and sin of frequencies 1 … p // 2."""
    x = torch.arange(p, dtype=torch.float64)
    rows = [torch.ones(p, dtype=torch.float64)]
    for k in range(1, p // 2 + 1):
        rows += [torch.cos(2 * math.pi * k * x / p), torch.sin(2 * math.pi * k * x / p)]
    basis = torch.stack(rows[:p])
    return basis / basis.norm(dim=1, keepdim=True)


def embedding_power(W_E: Tensor, p: int) -> Tensor:
    """[p // 2] power of the token embedding W_E[:p] at each frequency 1 … p // 2."""
    coef = fourier_basis(p) @ W_E[:p].double()  # [p, d]
    power = coef.pow(2).sum(1)
    return power[1::2] + power[2::2] if p % 2 else power[1:-1:2] + power[2::2]


def key_frequencies(power: Tensor) -> list[int]:
    """The frequencies an embedding concentrates on, from its power per frequency 1 … p // 2:
    of those holding at least twice the uniform share, the strongest down to the largest
    drop in power (Nanda et al. read the key frequencies off the same spectrum)."""
    share = power / power.sum()
    order = torch.argsort(share, descending=True)
    candidates = int((share >= 2 / len(share)).sum())
    top = share[order[: candidates + 1]]
    if candidates == 0:
        return []
    cut = int(torch.argmax(top[:-1] / top[1:].clamp_min(1e-30))) + 1
    return sorted(int(f) + 1 for f in order[:cut])


def map_spectrum(maps: Tensor) -> Tensor:
    """[f, p // 2 + 1] power of p × p maps per frequency (index 0: the cross terms).

    The 2-D DFT coefficient at (i, j) belongs to frequency k when its folded indices
    (min(i, p - i), likewise j) are (k, 0), (0, k) or (k, k): the terms in a, in b, and in
    a ± b that the network's trig identities use. Other coefficients mix two frequencies
    and are pooled at index 0; the constant is left out.
    """
    f, p, _ = maps.shape
    power = torch.fft.fft2(maps.double()).abs().pow(2)
    fold = torch.minimum(torch.arange(p), p - torch.arange(p))
    fi, fj = fold[:, None].expand(p, p), fold[None, :].expand(p, p)
    label = torch.where(fi == 0, fj, torch.where((fj == 0) | (fi == fj), fi, 0))
    label[0, 0] = -1  # the constant
    out = torch.zeros(f, p // 2 + 1, dtype=torch.float64)
    keep = label >= 0
    out.index_add_(1, label[keep], power[:, keep])
    return out


def label_spectrum(spectrum: Tensor, p: int) -> tuple[Tensor, Tensor, Tensor]:
    """From `map_spectrum`'s rows: the label, the dominant frequency and the share of the
    non-constant power it holds. The label is the dominant frequency, or 0 when it holds less
    than CHANCE times what it would in white noise (8 of the p² − 1 non-constant
    coefficients belong to each frequency)."""
    share, dominant = spectrum[:, 1:].max(1)
    dominant = dominant + 1
    share = share / spectrum.sum(1).clamp_min(1e-30)
    return torch.where(share >= CHANCE * 8 / (p * p - 1), dominant, 0), dominant, share


# --- progress measures ---------------------------------------------------------------------


def progress_measures(
    model: Transformer, states: dict[int, dict[str, Tensor]], keys: list[int], train: Tensor
) -> pl.DataFrame:
    """Per recorded step: train/test loss and accuracy, restricted and excluded loss, and the
    total squared weight. Restricted keeps the logits' components along cos and sin of
    w(a + b) for the key frequencies (plus the mean over pairs); excluded removes them and is
    measured on the training pairs, where it rises as the circuit replaces memorisation."""
    p = model.cfg.p
    pairs = torch.cartesian_prod(torch.arange(p), torch.arange(p))
    y = pairs.sum(1) % p
    s = (pairs.sum(1) % p).double() * 2 * math.pi / p
    dirs = torch.stack([f(k * s) for k in keys for f in (torch.cos, torch.sin)], 1)  # [p², 2K]
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    rows = []
    for step in sorted(states):
        model.load_state_dict(states[step])
        with torch.no_grad():
            logits = model(pairs).double()
        along = dirs @ (dirs.T @ logits)
        restricted = logits.mean(0, keepdim=True) + along
        excluded = logits - along
        correct = logits.argmax(1) == y
        rows.append(
            {
                "step": step,
                "train_loss": F.cross_entropy(logits[train], y[train]).item(),
                "test_loss": F.cross_entropy(logits[~train], y[~train]).item(),
                "train_acc": correct[train].double().mean().item(),
                "test_acc": correct[~train].double().mean().item(),
                "restricted_loss": F.cross_entropy(restricted, y).item(),
                "excluded_loss": F.cross_entropy(excluded[train], y[train]).item(),
                "weight_norm": sum(v.double().pow(2).sum() for v in states[step].values()).item(),
            }
        )
    return pl.DataFrame(rows)


def first_step(progress: pl.DataFrame, column: str, at_least: float) -> int | None:
    """The first recorded step from which `column` stays >= `at_least` to the end."""
    rows = progress.sort("step")
    below = rows.filter(pl.col(column) < at_least)
    after = rows if below.is_empty() else rows.filter(pl.col("step") > below["step"].max())
    return None if after.is_empty() else int(after["step"][0])


def phases(progress: pl.DataFrame) -> dict[str, int | None]:
    """Phase boundaries measured on this run's curves, after Nanda et al.'s reading of theirs.

    memorised: train accuracy reaches 99% (and stays). Memorisation ends where the test
    loss peaks. Clean-up is the stretch where weight decay shrinks the weights fastest: the
    steps around the steepest fall of log(total squared weight) (after the test-loss peak)
    where it falls at least half as fast. grokked: test accuracy reaches 95% (and stays).
    """
    rows = progress.sort("step")
    memorised = first_step(rows, "train_acc", 0.99)
    grokked = first_step(rows, "test_acc", 0.95)
    peak_at = int(rows["test_loss"].arg_max() or 0)
    peak = int(rows["step"][peak_at])
    after = rows.slice(peak_at)
    steps = after["step"].to_numpy()
    log_norm = np.log(after["weight_norm"].to_numpy())
    start = end = None
    if len(steps) > 2:
        fall = -np.diff(log_norm) / np.diff(steps)  # per step, between recorded steps
        top = int(np.argmax(fall))
        if fall[top] > 0:
            lo = hi = top
            while lo > 0 and fall[lo - 1] >= fall[top] / 2:
                lo -= 1
            while hi < len(fall) - 1 and fall[hi + 1] >= fall[top] / 2:
                hi += 1
            start, end = int(steps[lo]), int(steps[hi + 1])
    return {
        "memorised": memorised,
        "memorisation_end": peak,
        "cleanup_start": start,
        "cleanup_end": end,
        "grokked": grokked,
    }


PHASES = ("memorisation", "circuit formation", "cleanup", "after cleanup")


def phase_of(step: int, bounds: dict[str, int | None]) -> str:
    """The phase a checkpoint belongs to (a boundary step closes its phase)."""
    ends = [bounds["memorisation_end"], bounds["cleanup_start"], bounds["cleanup_end"]]
    for name, end in zip(PHASES, ends, strict=False):
        if end is None or step <= end:
            return name
    return PHASES[-1]


# --- the run -------------------------------------------------------------------------------


def feature_maps(db: Path, cfg: GrokConfig, steps: list[int]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """For every live SAE feature at every checkpoint: its p × p activation map, stored as
    bytes (uint8, scaled by its maximum), and its Fourier label."""
    reader = open_db(db)
    p = cfg.p
    labels, maps = [], []
    layer = LAYERS[cfg.layer]
    folder = cfg.root / cfg.run / "activations" / layer
    for step in steps:
        features = reader.features(cfg.run, layer, step)
        if features.is_empty():
            continue
        sae = reader.sae(cfg.run, layer, step)
        x = load_activation_file(folder / f"{step}.safetensors").float()
        with torch.no_grad():
            acts = sae.encode(x).T.reshape(-1, p, p)  # [d_sae, a, b], raw units
        live = features["feature"].to_list()  # the table holds live features only
        spectrum = map_spectrum(acts[live])
        freq, dominant, share = label_spectrum(spectrum, p)
        for i, feature in enumerate(live):
            top = acts[feature].max().clamp_min(1e-12)
            labels.append(
                {
                    "step": step,
                    "feature": feature,
                    "frequency": int(freq[i]),
                    "dominant": int(dominant[i]),
                    "share": float(share[i]),
                    "spectrum": (spectrum[i] / spectrum[i].sum().clamp_min(1e-30)).tolist(),
                }
            )
            scaled = (acts[feature] / top * 255).round().to(torch.uint8).numpy().tobytes()
            maps.append({"step": step, "feature": feature, "scale": float(top), "map": scaled})
    return pl.DataFrame(labels), pl.DataFrame(maps, schema_overrides={"map": pl.Binary})


def events_by_phase(db: Path, cfg: GrokConfig, bounds: dict[str, int | None]) -> pl.DataFrame:
    """Births, deaths, splits and merges per phase, all and confident (>= 0.5; an event
    touching a feature the seed noise floor calls unstable has confidence 0.25). An event
    belongs to the phase of the checkpoint where it is seen; a birth or death counts each
    feature."""
    events = open_db(db).events(cfg.run, LAYERS[cfg.layer])
    kinds = ("birth", "death", "split", "merge")
    counts = {(ph, kind): [0, 0] for ph in PHASES for kind in kinds}
    for step, kind, sources, targets, confidence in events.select(
        "step", "kind", "sources", "targets", "confidence"
    ).iter_rows():
        n = len(targets) if kind == "birth" else len(sources) if kind == "death" else 1
        counts[(phase_of(step, bounds), kind)][0] += n
        counts[(phase_of(step, bounds), kind)][1] += n if confidence >= 0.5 else 0
    return pl.DataFrame(
        [
            {"phase": ph, "kind": kind, "count": n, "confident": c}
            for (ph, kind), (n, c) in counts.items()
        ]
    )


def cleanup_deaths(
    db: Path, cfg: GrokConfig, bounds: dict[str, int | None], labels: pl.DataFrame, keys: list[int]
) -> dict[str, int]:
    """Confident deaths in the clean-up, and how many of them were memorising features: not
    on a key frequency at the checkpoint where they were last seen."""
    events = open_db(db).events(cfg.run, LAYERS[cfg.layer], min_confidence=0.5)
    label = {(s, f): k for s, f, k in labels.select("step", "feature", "frequency").iter_rows()}
    dying = [
        label.get((prev_step, feature))
        for step, prev_step, kind, sources in events.select(
            "step", "prev_step", "kind", "sources"
        ).iter_rows()
        if kind == "death" and phase_of(step, bounds) == "cleanup"
        for feature in sources
    ]
    return {"deaths": len(dying), "memorising": sum(k not in keys for k in dying)}


def settled(
    labels: pl.DataFrame,
    features: pl.DataFrame,
    keys: list[int],
    bounds: dict[str, int | None],
) -> pl.DataFrame:
    """Lineages alive at the end on a key frequency, and the checkpoint from which their
    dominant frequency stays that one: "born" when that is the lineage's first checkpoint,
    "changed" when the lineage was there before on another map (the warm-started latent
    followed the network from memory to circuit). `features` holds the features table's
    step, feature and lineage."""
    joined = labels.join(features, on=["step", "feature"]).sort("lineage", "step")
    last = int(joined["step"].max())
    rows = []
    for (lineage,), group in joined.group_by("lineage"):
        freqs, steps = group["frequency"].to_list(), group["step"].to_list()
        if steps[-1] != last or freqs[-1] not in keys:
            continue
        i = len(freqs) - 1
        while i > 0 and freqs[i - 1] == freqs[-1]:
            i -= 1
        rows.append(
            {
                "lineage": lineage,
                "frequency": freqs[-1],
                "step": steps[i],
                "how": "born" if i == 0 else "changed",
                "phase": phase_of(steps[i], bounds),
            }
        )
    schema = {
        "lineage": pl.Int64,
        "frequency": pl.Int64,
        "step": pl.Int64,
        "how": pl.String,
        "phase": pl.String,
    }
    return pl.DataFrame(rows, schema=schema).sort("step", "lineage")


def run(cfg: GrokConfig, progress: bool = True) -> dict[str, Any]:
    """Train with the tracker; store progress measures, the embedding's spectrum, Fourier
    labels and feature maps beside the lineage; return `analyse`'s report."""
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    run_dir = cfg.root / cfg.run
    if (run_dir / "run.json").is_file():  # a replay's run is replaced, never appended to
        shutil.rmtree(run_dir)
    pairs, train = split(cfg)
    y = pairs.sum(1) % cfg.p
    layer = LAYERS[cfg.layer]
    tracker = FeatureTracker(
        modules=[layer],
        probe=pairs,
        schedule=cfg.schedule(),
        run=cfg.run,
        root=cfg.root,
        sae=SAEConfig(
            d_sae=cfg.d_sae,
            k=cfg.k,
            steps=cfg.sae_steps,
            batch_size=cfg.sae_batch,
            seed=cfg.seed,
            init="previous",
        ),
        match=MatchConfig(),
        fit=cfg.fit,  # type: ignore[arg-type]
        probe_batch_size=4096,
        metrics_every=cfg.eval_every,
    )
    weights = RecordWeights(cfg.eval_every, tracker)
    trainer = replay.trainer(cfg.steps, [tracker, weights], progress)
    model = Transformer(cfg)
    trainer.fit(model, DataLoader(FullBatch(pairs[train], y[train]), batch_size=None))
    if cfg.fit == "defer":
        fit_run(run_dir, progress=progress)
    trained = time.perf_counter() - start

    model = model.cpu()
    final = weights.states[max(weights.states)]
    power = embedding_power(final["W_E"], cfg.p)
    keys = key_frequencies(power)
    measures = progress_measures(model, weights.states, keys, train)
    labels, maps = feature_maps(cfg.db, cfg, sorted(tracker.steps or []))

    writer = Writer(cfg.db)
    config = {**open_db(cfg.db).run_config(cfg.run), "renderer": "grokking"}
    config["grokking"] = {**asdict(cfg), "root": str(cfg.root), "key_frequencies": keys}
    writer.write_run(cfg.run, config)
    writer.write_metrics(
        cfg.run, measures.unpivot(index="step", variable_name="name").sort("step", "name")
    )
    writer.write_probe(
        cfg.run,
        pl.DataFrame(
            {
                "probe_index": list(range(len(pairs))),
                "label": [f"{a} + {b} = {(a + b) % cfg.p}" for a, b in pairs.tolist()],
                "payload": [
                    json.dumps({"a": a, "b": b, "train": t})
                    for (a, b), t in zip(pairs.tolist(), train.tolist(), strict=True)
                ],
            }
        ),
    )
    writer.write_table(
        "grok_embedding",
        cfg.run,
        pl.DataFrame(
            {
                "frequency": list(range(1, cfg.p // 2 + 1)),
                "power": (power / power.sum()).tolist(),
                "key": [k in keys for k in range(1, cfg.p // 2 + 1)],
            }
        ),
    )
    writer.write_table("grok_features", cfg.run, labels.with_columns(pl.lit(layer).alias("layer")))
    writer.write_table("grok_maps", cfg.run, maps.with_columns(pl.lit(layer).alias("layer")))
    report = analyse(cfg)
    report["seconds"] = {"total": time.perf_counter() - start, "training_and_sae": trained}
    return report


def analyse(cfg: GrokConfig) -> dict[str, Any]:
    """The report, from the run's DB alone (so it can be redone without training): phases,
    key frequencies, events per phase, how many SAE features sit on a key frequency at each
    checkpoint, and where lineages settled on one. Writes grok_phases and grok_live."""
    reader = open_db(cfg.db)
    measures = reader.metrics(cfg.run).pivot(on="name", index="step", values="value")
    bounds = phases(measures)
    embedding = reader.table("grok_embedding", cfg.run).sort("frequency")
    keys = embedding.filter(pl.col("key"))["frequency"].to_list()
    labels = reader.table("grok_features", cfg.run).drop("run")
    steps = reader.checkpoints(cfg.run, LAYERS[cfg.layer])["step"].to_list()
    features = reader.sql(
        "SELECT step, feature, lineage, stable FROM features WHERE run = ? AND layer = ?",
        [cfg.run, LAYERS[cfg.layer]],
    )
    live = (
        labels.join(features, on=["step", "feature"])
        .group_by("step")
        .agg(
            pl.len().alias("live"),
            (pl.col("frequency") > 0).sum().alias("labelled"),
            pl.col("frequency").is_in(keys).sum().alias("on_key"),
            pl.col("stable").sum().alias("stable"),
        )
        .sort("step")
    )
    by_phase = events_by_phase(cfg.db, cfg, bounds)
    writer = Writer(cfg.db)
    writer.write_table("grok_live", cfg.run, live)
    writer.write_table("grok_phases", cfg.run, by_phase)
    here = labels.filter(pl.col("step") == steps[-1])
    return {
        "keys": keys,
        "chance": len(keys) / (cfg.p // 2),
        "bounds": bounds,
        "final": measures.sort("step").row(-1, named=True),
        "coverage": {k: here.filter(pl.col("frequency") == k).height for k in keys},
        "phases": by_phase,
        "live": live,
        "settled": settled(labels, features.drop("stable"), keys, bounds),
        "cleanup_deaths": cleanup_deaths(cfg.db, cfg, bounds, labels, keys),
        "steps": steps,
    }


def print_report(report: dict[str, Any], cfg: GrokConfig) -> None:
    b = report["bounds"]
    final = report["final"]
    print(f"grokking p={cfg.p}: {len(report['steps'])} checkpoints, layer {cfg.layer}")
    print(
        f"  memorised (train acc >= 99%) at step {b['memorised']}, grokked (test acc >= 95%) "
        f"at step {b['grokked']}"
    )
    print(
        f"  phases: memorisation to {b['memorisation_end']} (test-loss peak), circuit "
        f"formation to {b['cleanup_start']}, clean-up (fastest weight decay) to {b['cleanup_end']}"
    )
    print("  paper (p=113): memorisation to ~1.4k, circuit formation to ~9.4k, clean-up to ~14k")
    print(
        f"  final: train acc {final['train_acc']:.3f}, test acc {final['test_acc']:.3f}, "
        f"test loss {final['test_loss']:.2e}, restricted {final['restricted_loss']:.2e}, "
        f"excluded {final['excluded_loss']:.2e}"
    )
    print(f"  key frequencies (embedding): {report['keys']}")
    print(f"  live features per key frequency at the last step: {report['coverage']}")
    live = report["live"]
    print(
        "  share of live SAE features whose dominant frequency is a key one "
        f"(chance {report['chance']:.2f}):"
    )
    print(
        "    "
        + ", ".join(
            f"{s}: {k / n:.2f}" for s, k, n in live.select("step", "on_key", "live").iter_rows()
        )
    )
    print(
        "  share of live SAE features stable across two seeds: "
        + ", ".join(
            f"{s}: {k / n:.2f}" for s, k, n in live.select("step", "stable", "live").iter_rows()
        )
    )
    print("  events per phase (confident ones in brackets):")
    for phase in PHASES:
        rows = report["phases"].filter(pl.col("phase") == phase)
        print(f"    {phase}: " + ", ".join(f"{k} {n} ({c})" for _, k, n, c in rows.iter_rows()))
    dead = report["cleanup_deaths"]
    share = dead["memorising"] / dead["deaths"] if dead["deaths"] else float("nan")
    print(
        f"  confident deaths in the clean-up: {dead['deaths']}, of them memorising features "
        f"(not on a key frequency when last seen): {dead['memorising']} ({share:.2f})"
    )
    onset = report["settled"].group_by("phase", "how").agg(pl.len().alias("n"))
    print("  lineages ending on a key frequency, by the phase they settled on it in:")
    for phase in PHASES:
        here = dict(onset.filter(pl.col("phase") == phase).select("how", "n").iter_rows())
        print(f"    {phase}: {here.get('born', 0)} born so, {here.get('changed', 0)} changed")
    if "seconds" in report:
        s = report["seconds"]
        print(f"  {s['training_and_sae']:.0f} s training + SAEs, {s['total']:.0f} s in all")


def draw(cfg: GrokConfig, report: dict[str, Any], out: Path = FIGURES) -> list[Path]:
    """Curves and event counts on one step axis, and a grid of feature maps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    reader = open_db(cfg.db)
    metrics = reader.metrics(cfg.run).pivot(on="name", index="step", values="value").sort("step")
    events = reader.events(cfg.run, LAYERS[cfg.layer])
    counts = (
        events.filter(pl.col("kind").is_in(["birth", "death"]))
        .with_columns(
            pl.when(pl.col("kind") == "birth")
            .then(pl.col("targets").list.len())
            .otherwise(pl.col("sources").list.len())
            .cast(pl.Int64)
            .alias("n")
        )
        .group_by("step", "kind")
        .agg(
            pl.col("n").sum().alias("all"),
            pl.col("n").filter(pl.col("confidence") >= 0.5).sum().alias("confident"),
        )
    )
    b = report["bounds"]
    fig, (top, mid, low) = plt.subplots(
        3, 1, figsize=(9, 8.5), sharex=True, gridspec_kw={"height_ratios": [3, 1.4, 2]}
    )
    for name, style in [
        ("train_loss", "C0-"),
        ("test_loss", "C1-"),
        ("restricted_loss", "C2--"),
        ("excluded_loss", "C3--"),
    ]:
        top.plot(metrics["step"], metrics[name], style, label=name.replace("_", " "), lw=1.2)
    top.set_yscale("log")
    top.set_ylabel("loss")
    top.legend(loc="lower left", fontsize=8, ncol=2)
    mid.plot(metrics["step"], metrics["train_acc"], "C0-", label="train accuracy")
    mid.plot(metrics["step"], metrics["test_acc"], "C1-", label="test accuracy")
    live = report["live"]
    mid.plot(
        live["step"],
        live["on_key"] / live["live"],
        "C2.-",
        label="SAE features on a key frequency",
    )
    mid.axhline(report["chance"], color="C2", lw=0.8, ls=":", label="... by chance")
    mid.plot(live["step"], live["stable"] / live["live"], "C7.-", label="... stable across seeds")
    mid.set_ylabel("share")
    mid.legend(loc="center right", fontsize=7)
    width = max(cfg.steps / 150, 1)
    for kind, sign, colour in [("birth", 1, "C2"), ("death", -1, "C3")]:
        rows = counts.filter(pl.col("kind") == kind).sort("step")
        low.bar(
            rows["step"],
            sign * rows["all"],
            width=width,
            color=colour,
            alpha=0.35,
            label=f"{kind}s",
        )
        low.bar(
            rows["step"],
            sign * rows["confident"],
            width=width,
            color=colour,
            label=f"confident {kind}s",
        )
    low.axhline(0, color="k", lw=0.5)
    low.set_ylabel("births ↑  deaths ↓")
    low.set_yscale("symlog", linthresh=10)
    low.set_xlabel("training step")
    low.legend(loc="upper left", fontsize=8)
    for ax in (top, mid, low):
        if b["cleanup_start"] is not None and b["cleanup_end"] is not None:
            ax.axvspan(b["cleanup_start"], b["cleanup_end"], color="C4", alpha=0.08)
        for name, step in [
            ("memorisation ends", b["memorisation_end"]),
            ("clean-up", b["cleanup_start"]),
            ("grokked", b["grokked"]),
        ]:
            if step is not None:
                ax.axvline(step, color="k", lw=0.8, ls=":")
                if ax is mid:
                    ax.text(step, 0.3, f" {name}", fontsize=7, rotation=90, va="bottom")
        if cfg.p == 113:
            for step in PAPER.values():
                ax.axvline(step, color="grey", lw=0.8, ls="--", alpha=0.5)
    top.set_title(
        f"Grokking a + b mod {cfg.p}: dotted = this run's phases (clean-up shaded), "
        "dashed grey = the paper's"
    )
    fig.tight_layout()
    curves = out / "grokking_curves.png"
    fig.savefig(curves, dpi=110)
    plt.close(fig)

    labels = reader.table("grok_features", cfg.run)
    chosen = pick_maps(labels, report)
    # Only the two checkpoints drawn: the whole table holds every live feature's map.
    maps = pl.concat(
        [reader.table("grok_maps", cfg.run, step=step) for step in sorted({s for s, _ in chosen})]
    )
    fig, axes = plt.subplots(2, 4, figsize=(10, 5.8))
    for ax, (step, feature) in zip(axes.flat, chosen, strict=False):
        row = maps.filter((pl.col("step") == step) & (pl.col("feature") == feature)).row(
            0, named=True
        )
        image = np.frombuffer(row["map"], dtype=np.uint8).reshape(cfg.p, cfg.p)
        info = labels.filter((pl.col("step") == step) & (pl.col("feature") == feature)).row(
            0, named=True
        )
        ax.imshow(image, cmap="viridis", origin="lower")
        tag = f"freq {info['frequency']}" if info["frequency"] else "mixed"
        ax.set_title(f"step {step}, feature {feature}: {tag} ({info['share']:.0%})", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(chosen) :]:
        ax.axis("off")
    fig.suptitle(
        "SAE features as p × p maps (a up, b right): top row after memorisation, bottom row "
        f"at the end (key frequencies {report['keys']})",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.96), h_pad=1.8)
    grid = out / "grokking_maps.png"
    fig.savefig(grid, dpi=110)
    plt.close(fig)
    return [curves, grid]


def pick_maps(labels: pl.DataFrame, report: dict[str, Any]) -> list[tuple[int, int]]:
    """Four features where memorisation ends, the least Fourier-like (lowest share), and four
    of the last checkpoint, the most Fourier-like of each key frequency first."""
    steps = report["steps"]
    memorised = report["bounds"]["memorisation_end"]
    early = min((s for s in steps if s >= memorised), default=steps[0])
    chosen = [
        (early, int(f))
        for f in labels.filter(pl.col("step") == early).sort("share")["feature"].head(4)
    ]
    last = labels.filter(pl.col("step") == steps[-1]).sort("share", descending=True)
    late: list[int] = []
    for k in report["keys"]:
        hit = last.filter(pl.col("frequency") == k)["feature"].head(1).to_list()
        late += hit
    late += [f for f in last["feature"].to_list() if f not in late]
    return chosen + [(steps[-1], int(f)) for f in late[:4]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--p", type=int, default=113, help="the modulus (default 113)")
    parser.add_argument("--steps", type=int, help="training steps (default 16000)")
    parser.add_argument("--layer", choices=sorted(LAYERS), default="mlp")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="the tests' configuration")
    parser.add_argument("--root", type=Path, default=ROOT / "data")
    parser.add_argument("--run", default="grokking")
    parser.add_argument(
        "--report", action="store_true", help="redo the report and figures from the run's DB"
    )
    parser.add_argument(
        "--figures", type=Path, default=FIGURES, help=f"where the pictures go (default {FIGURES})"
    )
    args = parser.parse_args()
    cfg = GrokConfig(**TINY) if args.tiny else GrokConfig()  # type: ignore[arg-type]
    cfg = replace(
        cfg,
        p=args.p if not args.tiny else cfg.p,
        layer=args.layer,
        seed=args.seed,
        root=args.root,
        run=args.run,
    )
    if args.steps:
        cfg = replace(cfg, steps=args.steps)
    report = analyse(cfg) if args.report else run(cfg)
    print_report(report, cfg)
    for path in draw(cfg, report, args.figures):
        print(f"  figure: {path}")
    print(f"  viewer: tracker app {cfg.db}")


if __name__ == "__main__":
    main()
