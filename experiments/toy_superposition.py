"""Replay 1: toy models of superposition (Elhage et al. 2022), tracked against ground truth.

The model is `x' = ReLU(WᵀW x + b)` with n = 20 features squeezed into m = 5 hidden
dimensions, importance 0.7^i, each feature zero with probability S and else uniform on [0, 1],
and importance-weighted MSE. `FeatureTracker` watches the hidden layer `h = W x` on a fixed
probe set; the true feature directions are the columns of W at every checkpoint, so every
lineage event can be checked.

W starts small (std 0.01), so features form from nothing during training, most important
first. The SAEs see each checkpoint scaled to unit size, and a tiny random W is still a
random projection in which they find directions; `MatchConfig.min_activation = 0.25` (the
mean activation of a feature of norm 0.5 on inputs uniform on [0, 1]) makes features count
only once they have the size the ground truth calls represented. Decoder cosine means little
in 5 dimensions (chance ≈ 0.98), so matching runs on activation correlation (`signal="auto"`).

    python experiments/toy_superposition.py                 # the demo: S = 0.9, ~1 minute
    python experiments/toy_superposition.py --sweep         # + the sparsity sweep and figures
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import lightning as L
import polars as pl
import replay
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, IterableDataset

from tracker import FeatureTracker, MatchConfig, SAEConfig
from tracker.activations import load_activation_file
from tracker.reader import open_db
from tracker.store import Writer

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT / "experiments" / "figures"
LAYER = "hidden"
SWEEP = (0.0, 0.7, 0.9, 0.97, 0.99, 0.997, 0.999)


@dataclass(frozen=True)
class ToyConfig:
    n: int = 20
    m: int = 5
    sparsity: float = 0.9
    importance: float = 0.7
    steps: int = 5000
    batch_size: int = 1024
    lr: float = 1e-3
    init_std: float = 0.01
    n_probe: int = 4096
    snapshots: int = 16
    """Log-spaced snapshots (step 0 and the last step included)."""
    sae_steps: int = 500
    sae_init: str = "random"
    d_sae: int = 20
    k: int = 1
    """Active SAE latents per input: at S = 0.9 most inputs hold at most one represented
    feature; wider k lets latents share a feature and blur its birth (measured: recall 0.6)."""
    represented: float = 0.5
    """A true feature is represented once its column norm ‖W_i‖ reaches this, and stops
    being so when it falls below half of it (hysteresis: norms wobble around a threshold)."""
    min_activation: float = 0.25
    min_frequency: float = 0.03
    """Latents firing on under 3% of the probe set are not features of this model: a true
    feature fires on 10% of inputs (1 - S), and a 20-latent k = 1 SAE gives latents of their
    own to pairs of true features, which co-occur on ~1%. Those pair latents come and go
    between checkpoints; measured over seeds 0-4 with the activation witness, at the default
    0.5% they gave 9.2 false confident deaths per run and birth precision 0.31, at 3% 1.6
    and 0.82 (experiments/bench/toy_events.py)."""
    min_align: float = 0.9
    """An SAE feature stands for true feature i when its decoder has cosine >= this with W_i
    (true directions in superposition sit at cosine <= 0.81 from each other: pentagon 0.31,
    antipodal -1)."""
    match: dict[str, Any] = field(default_factory=dict)
    """MatchConfig fields to override (benchmarks try thresholds through this)."""
    sae: dict[str, Any] = field(default_factory=dict)
    """SAEConfig fields to override (as `seeds`, which benchmarks try through this)."""
    fit: str = "background"
    seed: int = 0
    run: str = "toy"
    root: str = "data"

    @property
    def db(self) -> Path:
        return Path(self.root) / self.run / "lineage.duckdb"


# -- the model and its data ----------------------------------------------------------------


def sparse_features(n_rows: int, n: int, sparsity: float, generator: torch.Generator) -> Tensor:
    """[n_rows, n]: each feature zero with probability `sparsity`, else uniform on [0, 1]."""
    x = torch.rand(n_rows, n, generator=generator)
    return x * (torch.rand(n_rows, n, generator=generator) >= sparsity)


class SparseFeatures(IterableDataset[Tensor]):
    """An endless stream of fresh batches, as the paper trains."""

    def __init__(self, cfg: ToyConfig) -> None:
        self.cfg = cfg

    def __iter__(self) -> Iterator[Tensor]:
        g = torch.Generator().manual_seed(self.cfg.seed + 1)
        while True:
            yield sparse_features(self.cfg.batch_size, self.cfg.n, self.cfg.sparsity, g)


class ToyModel(L.LightningModule):
    """x' = ReLU(WᵀW x + b); `hidden` is the linear map h = W x (W = hidden.weight, [m, n])."""

    def __init__(self, cfg: ToyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.hidden = nn.Linear(cfg.n, cfg.m, bias=False)
        nn.init.normal_(self.hidden.weight, std=cfg.init_std)
        self.b = nn.Parameter(torch.zeros(cfg.n))
        self.register_buffer("importance", cfg.importance ** torch.arange(cfg.n).float())

    @property
    def W(self) -> Tensor:
        return self.hidden.weight

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.hidden(x) @ self.W + self.b)

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        loss = (self.importance * (batch - self(batch)) ** 2).mean()
        self.log("loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.cfg.lr)


class RecordW(L.Callback):
    """Keeps W at every step the tracker snapshots: the ground truth of each checkpoint."""

    def __init__(self, tracker: FeatureTracker) -> None:
        self.tracker = tracker
        self.W: dict[int, Tensor] = {}

    def _record(self, trainer: L.Trainer, model: L.LightningModule) -> None:
        step = trainer.global_step
        if self.tracker.steps is not None and step in self.tracker.steps:
            self.W[step] = model.W.detach().cpu().clone()  # type: ignore[operator]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record(trainer, pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *_: Any) -> None:
        self._record(trainer, pl_module)


def train_plain(cfg: ToyConfig) -> Tensor:
    """The same model trained in a bare loop (no tracker): for the sparsity sweep."""
    torch.manual_seed(cfg.seed)
    model = ToyModel(cfg)
    opt = model.configure_optimizers()
    for x, _ in zip(SparseFeatures(cfg), range(cfg.steps), strict=False):
        loss = (model.importance * (x - model(x)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.W.detach().clone()


# -- ground truth -------------------------------------------------------------------------


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


# -- validation -----------------------------------------------------------------------------


def _truth_events(truth: pl.DataFrame, steps: list[int], kind: str) -> list[tuple[int, int]]:
    """(true feature, checkpoint index) where it becomes (birth) or stops being (death)
    represented."""
    state = {
        s: set(truth.filter((pl.col("step") == s) & pl.col("represented"))["feature"])
        for s in steps
    }
    out = []
    for c in range(1, len(steps)):
        before, now = state[steps[c - 1]], state[steps[c]]
        changed = now - before if kind == "birth" else before - now
        out += [(i, c) for i in sorted(changed)]
    return out


def validate(db: Path, cfg: ToyConfig) -> dict[str, Any]:
    """Births and deaths of the lineage against the truth, checkpoint by checkpoint.

    An SAE feature stands for true feature i at a checkpoint when its decoder is within
    `min_align` of W_i (the best such feature if several). A true birth (feature i becomes
    represented at checkpoint c) is found when the lineage carrying i at c or c + 1 started
    by a confident event (birth, split or merge) at a checkpoint within one of c. A reported
    confident birth is right when the true feature its lineage comes to stand for (first
    alignment, at most one checkpoint later) is born within one checkpoint of it. Deaths
    mirror births.
    """
    reader = open_db(db)
    run = cfg.run
    truth = reader.table("toy_truth", run)
    align = reader.table("toy_alignment", run)
    steps = reader.checkpoints(run, LAYER)["step"].to_list()
    index = {s: c for c, s in enumerate(steps)}
    fmap = reader.feature_map(run, LAYER)
    events = reader.events(run, LAYER, min_confidence=MatchConfig().min_confidence)
    spans = fmap.group_by("lineage").agg(
        pl.col("step").min().alias("start"), pl.col("step").max().alias("end")
    )
    best = (
        align.filter(pl.col("cosine") >= cfg.min_align)
        # Ties (a latent mixing two true features that point the same way aligns with both)
        # are broken by index, not by the order rows come back from the store.
        .sort(["cosine", "feature", "true_feature"], descending=[True, False, False])
        .unique(["step", "true_feature"], keep="first", maintain_order=True)
        .join(fmap.select("step", "feature", "lineage"), on=["step", "feature"])
    )
    carried = {(r["step"], r["true_feature"]): r["lineage"] for r in best.iter_rows(named=True)}
    # lineage -> (true feature, checkpoint index) of its first alignment
    stands_for = {
        r["lineage"]: (r["true_feature"], index[r["step"]])
        for r in best.sort(["step", "cosine", "true_feature"], descending=[False, True, False])
        .unique("lineage", keep="first", maintain_order=True)
        .iter_rows(named=True)
    }
    lineage_start = {r["lineage"]: index[r["start"]] for r in spans.iter_rows(named=True)}
    lineage_end = {r["lineage"]: index[r["end"]] for r in spans.iter_rows(named=True)}
    feature_lineage = {(r["step"], r["feature"]): r["lineage"] for r in fmap.iter_rows(named=True)}
    event_lineages = {
        feature_lineage[(r["step"], t)]
        for r in events.iter_rows(named=True)
        if r["kind"] != "death"
        for t in r["targets"]
        if (r["step"], t) in feature_lineage
    }

    report: dict[str, Any] = {}
    for kind in ("birth", "death"):
        true = _truth_events(truth, steps, kind)
        rows = []
        for i, c in true:
            lineage, hit = None, False
            probe_at = (c, c + 1) if kind == "birth" else (c - 1, c - 2)
            for cc in probe_at:
                if 0 <= cc < len(steps) and (steps[cc], i) in carried:
                    lineage = carried[(steps[cc], i)]
                    if kind == "birth":
                        at = lineage_start[lineage]
                        hit = lineage in event_lineages and at > 0 and abs(at - c) <= 1
                    else:
                        at = lineage_end[lineage]
                        hit = at < len(steps) - 1 and abs(at + 1 - c) <= 1
                    break
            rows.append({"true_feature": i, "step": steps[c], "lineage": lineage, "found": hit})
        reported = events.filter(pl.col("kind") == kind)
        right = 0
        for r in reported.iter_rows(named=True):
            c = index[r["step"]]
            feats = r["targets"] if kind == "birth" else r["sources"]
            at_step = r["step"] if kind == "birth" else r["prev_step"]  # a gap's is further back
            lin = feature_lineage.get((at_step, feats[0])) if feats else None
            if lin in stands_for:
                i, first = stands_for[lin]
                ok_time = first <= c + 1 if kind == "birth" else True
                right += ok_time and any(t == i and abs(tc - c) <= 1 for t, tc in true)
        recall = sum(r["found"] for r in rows) / len(rows) if rows else float("nan")
        precision = right / len(reported) if len(reported) else float("nan")
        report[kind] = {
            "true": len(rows),
            "reported": len(reported),
            "recall": recall,
            "precision": precision,
            "detail": rows,
        }
    final = truth.filter(pl.col("step") == steps[-1])
    report["final_represented"] = sorted(final.filter(pl.col("represented"))["feature"].to_list())
    return report


# -- the run ----------------------------------------------------------------------------------


def run(cfg: ToyConfig, progress: bool = True) -> dict[str, Any]:
    """Train with the tracker, write the truth beside the lineage, validate. Returns the report."""
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    db = cfg.db
    if db.exists():
        db.unlink()
    probe = sparse_features(
        cfg.n_probe, cfg.n, cfg.sparsity, torch.Generator().manual_seed(10_000 + cfg.seed)
    )
    tracker = FeatureTracker(
        modules=[LAYER],
        probe=probe,
        schedule=f"log:{cfg.snapshots}",
        run=cfg.run,
        root=cfg.root,
        sae=SAEConfig(
            d_sae=cfg.d_sae,
            k=cfg.k,
            steps=cfg.sae_steps,
            batch_size=1024,
            seed=cfg.seed,
            init=cfg.sae_init,
            **cfg.sae,
        ),
        match=MatchConfig(
            min_activation=cfg.min_activation, min_frequency=cfg.min_frequency, **cfg.match
        ),
        fit=cfg.fit,  # type: ignore[arg-type]
        dtype="float32",
        metrics_every=max(cfg.steps // 100, 1),
    )
    record = RecordW(tracker)
    trainer = replay.trainer(cfg.steps, [tracker, record], progress)
    trainer.fit(ToyModel(cfg), DataLoader(SparseFeatures(cfg), batch_size=None))
    trained = time.perf_counter() - start

    steps = sorted(record.W)
    writer = Writer(db)
    reader = open_db(db)
    config = {**reader.run_config(cfg.run), "renderer": "toy", "toy": asdict(cfg)}
    writer.write_run(cfg.run, config)
    writer.write_probe(
        cfg.run,
        pl.DataFrame(
            {
                "probe_index": list(range(cfg.n_probe)),
                "label": [
                    " ".join(f"x{i}={v:.2f}" for i, v in enumerate(row) if v > 0) or "(all zero)"
                    for row in probe.tolist()
                ],
                "payload": [
                    json.dumps({"x": [round(v, 4) for v in row]}) for row in probe.tolist()
                ],
            }
        ),
    )
    writer.write_table("toy_truth", cfg.run, truth_table(steps, record.W, cfg))
    writer.write_table("toy_alignment", cfg.run, alignment_table(db, cfg, record.W, probe))
    report = validate(db, cfg)
    report["seconds"] = {"total": time.perf_counter() - start, "training_and_sae": trained}
    summary = [
        {"metric": f"{kind}_{key}", "value": float(report[kind][key])}
        for kind in ("birth", "death")
        for key in ("true", "reported", "recall", "precision")
    ]
    writer.write_table("toy_validation", cfg.run, pl.DataFrame(summary))
    return report


def print_report(report: dict[str, Any], cfg: ToyConfig) -> None:
    print(f"\nToy superposition, S = {cfg.sparsity}: {cfg.n} features in {cfg.m} dimensions")
    print(f"  represented at the end: {report['final_represented']}")
    for kind in ("birth", "death"):
        r = report[kind]
        wrong = r["reported"] - round(r["precision"] * r["reported"]) if r["reported"] else 0
        print(
            f"  {kind}s: {r['true']} true, {r['reported']} reported (confident, witnessed by "
            f"the activations); recall {r['recall']:.2f}, precision {r['precision']:.2f}, "
            f"{wrong} false"
        )
        for row in r["detail"]:
            mark = "found" if row["found"] else "MISSED"
            print(f"    true feature {row['true_feature']:>2} at step {row['step']:>5}: {mark}")
    s = report["seconds"]
    print(f"  {s['total']:.0f} s in all ({s['training_and_sae']:.0f} s training with SAEs)")
    print(f"  lineage database: {cfg.db}")


# -- the sparsity sweep and its figures --------------------------------------------------------


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", type=float, default=ToyConfig.sparsity)
    parser.add_argument("--steps", type=int, default=ToyConfig.steps)
    parser.add_argument("--snapshots", type=int, default=ToyConfig.snapshots)
    parser.add_argument("--seed", type=int, default=ToyConfig.seed)
    parser.add_argument("--root", default=ToyConfig.root)
    parser.add_argument("--run", default=ToyConfig.run)
    parser.add_argument(
        "--sweep", action="store_true", help="also run the sparsity sweep and draw figures"
    )
    args = parser.parse_args()
    cfg = ToyConfig(
        sparsity=args.sparsity,
        steps=args.steps,
        snapshots=args.snapshots,
        seed=args.seed,
        root=args.root,
        run=args.run,
    )
    report = run(cfg)
    print_report(report, cfg)
    if args.sweep:
        table = sweep(cfg)
        print_sweep(table)
        for path in draw_sweep(table, FIGURES):
            print(f"  wrote {path}")


if __name__ == "__main__":
    main()
