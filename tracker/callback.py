"""`FeatureTracker`: the Lightning callback that snapshots activations during training."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import move_data_to_device
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from typing_extensions import override

from tracker.capture import Selector, capture, gather_rows, resolve_modules, selectors_for
from tracker.checks import (
    check_choice,
    check_options,
    check_rows,
    check_share,
    check_threads,
    usable_cores,
)
from tracker.config import MatchConfig, SAEConfig
from tracker.fitter import SnapshotFitter
from tracker.lock import RunLock
from tracker.pipeline import Executor
from tracker.probe import ProbeSet, first_tensor
from tracker.schedule import Schedule
from tracker.snapshots import DTYPES, MetricsBuffer, RunDir, watched_layers
from tracker.text import TextProbe

log = logging.getLogger(__name__)

FitMode = Literal["inline", "background", "defer"]
STATE_VERSION = 1


def _default_forward(module: LightningModule, batch: Any) -> Any:
    return module(first_tensor(batch))


class FeatureTracker(Callback):
    """Snapshot the activations of chosen layers on a fixed probe set during training.

    At every scheduled step (after that many optimiser updates; step 0 is before any) the
    probe set runs through the model under `torch.no_grad()` in eval mode, and each watched
    module's output is saved as `<root>/<run>/activations/<layer>/<step>.safetensors`
    [n_probe, d]. The callback never changes training: it draws no random numbers from
    training's generators, touches no gradient and restores every module's train/eval mode.

    Args:
        layers: names from `model.named_modules()` to watch (`modules=` in 0.1, still taken).
        probe: a tensor [n, ...], a map-style Dataset, a non-shuffling DataLoader, or a
            `TextProbe` (token sequences whose rows the viewer shows as text in context).
        schedule: `"log:N"` (N steps spread geometrically), `N` / `"every:N"`, or a list of
            steps. Step 0 and the last step are always included.
        run: the run's name; its files go to `root/run`.
        root: the directory that holds runs.
        select: how an output becomes rows [n, d]: "tokens" (every token a row), "flatten", a
            token position (int, -1 the last) or a function; one for all layers or a mapping
            per layer.
        sae: the SAE config used when the snapshots are fitted (or a dict of its fields).
        fit: "defer" saves snapshots only (fit them later with `tracker fit RUN_DIR`);
            "inline" fits, matches and stores each snapshot at once, in the training loop;
            "background" does it in a worker thread fed by a bounded queue, so training
            never waits (a failed fit is logged and recorded, and training goes on).
            All three write the same tables to `root/run/lineage.duckdb`.
        match: the matching config for inline and background fitting (or a dict).
        queue_size: background mode: snapshots waiting for the worker before later ones
            wait in order until training ends.
        dtype: "float16" (default, half the disk) or "float32".
        probe_batch_size: probe inputs per forward (a DataLoader's own batch size wins).
        probe_forward: `f(module, batch)` to feed the model a probe batch; by default the
            batch (or its first element for (input, target) pairs) is passed to the module.
        metrics_every: also record `trainer.callback_metrics` every this many steps, for the
            training curves; they are always recorded at snapshots.
        threads: CPU threads for fitting (default: background fitting takes half the cores
            this process may use, at least one; inline fitting uses training's).
        share: background mode: the worker's share of its threads' time while training
            runs (it sleeps between SAE steps; 1.0 on a GPU or spare cores); flat out after.
        at_end: background mode: "wait" (default) fits what is left before `trainer.fit`
            returns; "leave" returns within seconds, leaving it for `tracker fit RUN_DIR`.
        executor, address: background mode: "ray" runs the fits as Ray tasks (on the cluster
            at `address`, or on Ray started here; `share` and `threads` do not apply to them).

    Raises:
        ValueError: at construction for bad arguments; before training starts for an unknown
            module (naming close matches), a selector giving the wrong shape, or a run
            directory holding snapshots of another width or probe size.

    Example:
        >>> tracker = FeatureTracker(layers=["mlp.0"], probe=probe_x, schedule="log:20",
        ...                          run="toy", root="data")
        >>> Trainer(callbacks=[tracker], max_steps=5000).fit(model, loader)
    """

    def __init__(
        self,
        *,
        layers: Sequence[str] | None = None,
        probe: Tensor | Dataset[Any] | DataLoader[Any] | TextProbe,
        schedule: int | str | Sequence[int] | Schedule = "log:20",
        run: str = "run",
        root: str | Path = "data",
        select: Selector | Mapping[str, Selector] = "flatten",
        sae: SAEConfig | dict[str, Any] | None = None,
        fit: FitMode = "defer",
        match: MatchConfig | dict[str, Any] | None = None,
        queue_size: int = 64,
        dtype: Literal["float16", "float32"] = "float16",
        probe_batch_size: int = 256,
        probe_forward: Callable[[LightningModule, Any], Any] | None = None,
        metrics_every: int = 50,
        threads: int | None = None,
        share: float = 0.25,
        at_end: Literal["wait", "leave"] = "wait",
        executor: Executor = "local",
        address: str | None = None,
        modules: Sequence[str] | None = None,
    ) -> None:
        names = watched_layers(layers, modules)
        if not run or "/" in run or run in (".", ".."):
            raise ValueError(f"run must be a plain name (no '/'), got {run!r}")
        check_options(fit, at_end, executor, queue_size, metrics_every)
        check_choice("dtype", dtype, sorted(DTYPES))
        background_threads = max(1, usable_cores() // 2) if fit == "background" else None
        self.fit_threads = check_threads(threads) or background_threads
        self.at_end = at_end
        self._fitting: dict[str, Any] = dict(queue_size=queue_size, executor=executor)
        self._fitting |= dict(share=check_share("share", share), address=address)
        selectors = selectors_for(names, select)
        self.layers = names
        """The watched layers: module names from `model.named_modules()`."""
        self.probe = ProbeSet(probe, probe_batch_size)
        self.n_probe = len(self.probe)
        self.schedule = Schedule.parse(schedule)
        self.run = run
        self.run_dir = RunDir(Path(root) / run)
        self.selectors: dict[str, Selector] = selectors
        self.sae = SAEConfig.given(sae, "sae")
        self.fit_mode = fit
        self.match = MatchConfig.given(match, "match")
        self._fitter: SnapshotFitter | None = None
        self._lock = RunLock(self.run_dir.path, run)
        self.dtype = dtype
        self.forward = probe_forward or _default_forward
        self.metrics_every = metrics_every
        self.taken: set[int] = set()
        self.steps: list[int] | None = None
        self._modules: dict[str, torch.nn.Module] = {}
        self.rows: dict[str, int] = dict.fromkeys(names, 1)
        """Rows each probe input gives per layer (its tokens with select="tokens")."""
        self._metrics = MetricsBuffer(self.run_dir)

    # -- set-up: every check that can run before training does ---------------------------

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            self._modules = resolve_modules(pl_module, self.layers)

    @override
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        total = trainer.estimated_stepping_batches
        last = None if math.isinf(total) else int(total)
        self.steps = self.schedule.resolve(last)
        widths = self._dry_run(trainer, pl_module)
        self.run_dir.check_compatible(self.run, self.n_probe, widths)
        for layer, d in widths.items():  # an SAE that cannot be fitted fails now, not per snapshot
            self.sae.check_width(d, f"layer {layer!r}")
        rows = self.probe.rows(self.selectors, max(self.rows.values()))
        if trainer.is_global_zero:
            self._lock.acquire()  # before anything is written: one writer per run
            if rows:
                self.run_dir.write_probe(rows)
            self.run_dir.write_manifest(
                self.run,
                self.n_probe,
                widths,
                schedule=str(self.schedule),
                steps=self.steps,
                dtype=self.dtype,
                fit=self.fit_mode,
                sae=self.sae.to_dict(),
                match=self.match.to_dict(),
            )
            if self.fit_mode != "defer":
                self._fitter = SnapshotFitter(
                    self.run_dir,
                    self.run,
                    self.layers,
                    self.sae,
                    self.match,
                    background=self.fit_mode == "background",
                    threads=self.fit_threads,
                    **self._fitting,
                )

    def _dry_run(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, int]:
        """One probe batch through the model: checks the selectors, finds each width and the
        rows each probe input gives (1, or its tokens with select="tokens")."""
        n_first = min(self.probe.batch_size, self.n_probe)
        first = next(iter(self.probe.batches(range(n_first))))
        acts = self._capture(trainer, pl_module, iter([first]))
        for name, x in acts.items():
            check_rows(name, x.shape[0], n_first, None)
            self.rows[name] = x.shape[0] // n_first
        return {name: x.shape[1] for name, x in acts.items()}

    # -- the hooks that snapshot -------------------------------------------------------------

    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Step 0 before any update; after a resume, the step the checkpoint was saved at if
        # that snapshot was not yet taken when it was saved.
        self._maybe_snapshot(trainer, pl_module)

    @override
    def on_train_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        step = trainer.global_step
        if step % self.metrics_every == 0:
            self._metrics.record(step, trainer.callback_metrics)
        self._maybe_snapshot(trainer, pl_module)
        self._log_fitted(trainer)

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._maybe_snapshot(trainer, pl_module, final=True)
        self._metrics.flush(write=trainer.is_global_zero)
        self._finish(trainer, wait=self.at_end == "wait")

    @override
    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        self._finish(trainer, wait=False)  # Ctrl-C or an error: stop within seconds

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._finish(trainer)

    def _finish(self, trainer: Trainer, wait: bool = True) -> None:
        """Close the fitter (finishing its queue, unless told not to wait), then let go of
        the run."""
        try:
            if self._fitter is not None:
                self._fitter.close(wait=wait)
                self._log_fitted(trainer)
                self._fitter = None
        finally:
            self._lock.release()

    def _maybe_snapshot(self, trainer: Trainer, pl_module: LightningModule, final: bool = False):
        step = trainer.global_step
        if step in self.taken or not (final or self.schedule.due(step, self.steps)):
            return
        self.snapshot(trainer, pl_module, step)

    def snapshot(self, trainer: Trainer, pl_module: LightningModule, step: int) -> None:
        """Capture and (on global rank 0) write every watched module's activations."""
        if len(self.probe) != self.n_probe:
            raise ValueError(
                f"probe set size changed from {self.n_probe} to {len(self.probe)} between "
                "snapshots: the probe set must stay fixed"
            )
        world, rank = trainer.world_size, trainer.global_rank
        rows = self.probe.shard(rank, world)
        acts = self._capture(trainer, pl_module, self.probe.batches(rows))
        if world > 1:
            acts = {
                name: gather_rows(trainer.strategy, world, x, self.n_probe, self.rows[name])
                for name, x in acts.items()
            }
        for name, x in acts.items():
            check_rows(name, x.shape[0], self.n_probe, self.rows[name])
        self.taken.add(step)
        self._metrics.record(step, trainer.callback_metrics)
        if trainer.is_global_zero:
            for name, x in acts.items():
                self.run_dir.write_activations(name, step, x, self.dtype)
            self._metrics.flush(write=trainer.is_global_zero)
            if self._fitter is not None:
                self._fitter.submit(step)
        log.info("snapshot of %d layers at step %d", len(acts), step)

    def _capture(
        self, trainer: Trainer, pl_module: LightningModule, batches: Any
    ) -> dict[str, Tensor]:
        """The probe pass under the trainer's precision, as training computes: inputs
        converted (bf16-true) and the forward in its context (autocast under bf16-mixed)."""
        device, plugin = pl_module.device, trainer.precision_plugin
        moved = (plugin.convert_input(move_data_to_device(b, device)) for b in batches)
        forward = partial(self.forward, pl_module)
        with plugin.forward_context():
            return capture(pl_module, self._modules, self.selectors, moved, forward)

    # -- metrics ------------------------------------------------------------------------------

    def _log_fitted(self, trainer: Trainer) -> None:
        """Checkpoints fitted since the last call, through the trainer's loggers (from the
        training thread only: the fitter hands them over a queue)."""
        if self._fitter is not None:
            self._fitter.log(trainer.loggers if trainer.is_global_zero else [])

    # -- resume -------------------------------------------------------------------------------

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "run": self.run, "taken": sorted(self.taken)}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("run") != self.run:
            log.warning(
                "resuming run %r from a checkpoint of run %r", self.run, state_dict.get("run")
            )
        self.taken = set(state_dict.get("taken", []))
