"""What the replays share: a quiet Trainer, a callback keeping the weights they analyse, and
the run directory they replace."""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
from torch import Tensor

from tracker import FeatureTracker, SAEConfig

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT / "experiments" / "figures"
"""Where the replays' pictures go (the README shows them)."""


class RunFiles:
    """For a replay's config dataclass with `root` and `run` fields: where its run lives."""

    root: Path | str
    run: str

    @property
    def run_dir(self) -> Path:
        return Path(self.root) / self.run

    @property
    def db(self) -> Path:
        return self.run_dir / "lineage.duckdb"


def geometric(last: int, count: int) -> set[int]:
    """`count` steps from 1 to `last` spread geometrically (early training changes fastest)."""
    n = max(count - 1, 1)
    return {round(last ** (i / n)) for i in range(n + 1)}


def feature_tracker(
    cfg: Any,
    layer: str | Sequence[str],
    probe: Any,
    schedule: Any,
    sae: dict[str, Any],
    **options: Any,
) -> FeatureTracker:
    """A replay's tracker on a layer (or several): run, root, fit mode and the SAE's size, steps and
    seed from the replay's config `cfg`; `sae` holds the other SAEConfig fields and
    `options` the other FeatureTracker arguments."""
    return FeatureTracker(
        layers=[layer] if isinstance(layer, str) else list(layer),
        probe=probe,
        schedule=schedule,
        run=cfg.run,
        root=cfg.root,
        sae=SAEConfig(d_sae=cfg.d_sae, k=cfg.k, steps=cfg.sae_steps, seed=cfg.seed, **sae),
        fit=cfg.fit,
        **options,
    )


def trainer(steps: int, callbacks: Sequence[L.Callback], progress: bool) -> L.Trainer:
    """Runs `steps` optimiser steps on one device (CUDA when present), with no logger,
    checkpoints or model summary: the tracker records what the replays need."""
    return L.Trainer(
        max_steps=steps,
        callbacks=list(callbacks),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        accelerator="auto",
        devices=1,
    )


class RecordWeights(L.Callback):
    """Keeps a CPU copy of the weights at the tracker's snapshot steps (the ground truth of
    each checkpoint) and every `every` steps (progress measures; 0: only at snapshots).

    `keep` names the state-dict entries to copy (default: all): `states[step][name]`.
    """

    def __init__(
        self, tracker: FeatureTracker, every: int = 0, keep: Sequence[str] | None = None
    ) -> None:
        self.tracker = tracker
        self.every = every
        self.keep = None if keep is None else set(keep)
        self.states: dict[int, dict[str, Tensor]] = {}

    def _record(self, trainer: L.Trainer, model: L.LightningModule) -> None:
        step = trainer.global_step
        if (self.every and step % self.every == 0) or step in (self.tracker.steps or ()):
            self.states[step] = {
                k: v.detach().cpu().clone()
                for k, v in model.state_dict().items()
                if self.keep is None or k in self.keep
            }

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record(trainer, pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *_: Any) -> None:
        self._record(trainer, pl_module)


def fresh(run_dir: Path) -> None:
    """A replay's run is replaced, never appended to: remove a previous run's directory (one
    the tracker wrote: it holds run.json or a lineage database)."""
    if (run_dir / "run.json").is_file() or (run_dir / "lineage.duckdb").is_file():
        shutil.rmtree(run_dir)


def replay_parser(name: str, description: str, run: str, steps: int) -> argparse.ArgumentParser:
    """`python -m experiments.<name>`'s arguments shared by the replays: --steps, --seed,
    --tiny, --root, --run, --report and --figures; a replay adds its own."""
    parser = argparse.ArgumentParser(prog=f"python -m experiments.{name}", description=description)
    parser.add_argument("--steps", type=int, help=f"training steps (default {steps})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="the tests' configuration")
    parser.add_argument("--root", type=Path, default=ROOT / "data")
    parser.add_argument("--run", default=run)
    parser.add_argument(
        "--report", action="store_true", help="redo the report and figures from the run's DB"
    )
    parser.add_argument(
        "--figures", type=Path, default=FIGURES, help=f"where the pictures go (default {FIGURES})"
    )
    return parser


def replay_main(
    args: argparse.Namespace,
    cfg: Any,
    run: Callable[[Any], dict[str, Any]],
    analyse: Callable[[Any], dict[str, Any]],
    report: Callable[[dict[str, Any], Any], None],
    draw: Callable[[Any, dict[str, Any], Path], list[Path]],
) -> None:
    """Run the replay `cfg` (with the shared arguments applied), or only `analyse` its DB
    with --report; print the report, draw the figures and say how to open the viewer."""
    cfg = replace(cfg, seed=args.seed, root=args.root, run=args.run)
    if args.steps:
        cfg = replace(cfg, steps=args.steps)
    result = analyse(cfg) if args.report else run(cfg)
    report(result, cfg)
    for path in draw(cfg, result, args.figures):
        print(f"  figure: {path}")
    print(f"  viewer: tracker app {cfg.db}")
