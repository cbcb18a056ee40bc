"""Capture a finished run: the probe activations of every saved checkpoint, after the fact.

Most runs worth asking "how did these features form?" already exist as a folder of
checkpoints. `capture_checkpoints` loads each one into a freshly built model, runs the probe
set through it exactly as `FeatureTracker` does (`tracker.capture`), and writes the same run
directory (`tracker.snapshots`), so `tracker fit RUN_DIR` and the viewer work unchanged.

Checkpoints, and where their step comes from:
- Lightning `.ckpt`: `global_step`; the weights under `state_dict`.
- `.pt` / `.pth` / `.bin` (a state_dict, or one under "state_dict" or "model") and
  `.safetensors`: the step from the name (`step1000`, `step=1000`, `checkpoint-1000`, or a
  bare number `1000.pt`).
- A transformers model directory (config.json and weights): `trainer_state.json`'s
  `global_step`, else its name; built with `AutoModelForCausalLM.from_pretrained(dir,
  local_files_only=True)` unless a factory is given. Its `log_history` becomes metrics.

Nothing is unpickled beyond tensors (`torch.load(weights_only=True)`, safetensors). A
re-run skips the checkpoints whose snapshots are already there.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from lightning.pytorch.utilities import move_data_to_device
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from tracker.activations import read_tensors
from tracker.capture import Selector, capture, resolve_modules
from tracker.checks import resolve_device
from tracker.config import MatchConfig, SAEConfig
from tracker.lock import RunLock
from tracker.probe import ProbeSet, first_tensor
from tracker.saved import Build, SavedCheckpoint, build_model, find_checkpoints
from tracker.snapshots import DTYPES, RunDir, check_layer_names
from tracker.text import TextProbe

log = logging.getLogger(__name__)


class Captured(NamedTuple):
    run_dir: RunDir
    captured: list[int]
    """Steps captured now."""
    skipped: list[int]
    """Steps whose snapshots were already there (a re-run)."""


def capture_checkpoints(
    source: str | Path | Sequence[str | Path],
    build: Build | None,
    layers: Sequence[str],
    probe: Tensor | Dataset[Any] | DataLoader[Any] | TextProbe,
    run: str,
    root: str | Path = "data",
    *,
    select: Selector = "flatten",
    dtype: str = "float16",
    probe_batch_size: int = 256,
    probe_forward: Callable[[nn.Module, Any], Any] | None = None,
    device: str = "auto",
    sae: SAEConfig | dict[str, Any] | None = None,
    match: MatchConfig | dict[str, Any] | None = None,
    progress: bool = False,
) -> Captured:
    """Snapshot the probe activations of `layers` (module names) at every checkpoint in `source` to
    `root/run` (see the module docstring); says which steps it captured and skipped.

    Args:
        build: a model factory (`package.module:name` or a callable; a Lightning checkpoint's
            hyper_parameters are passed to a class), or None for transformers directories.
        select: as `FeatureTracker`'s, for every layer.
        sae, match: the configs `tracker fit RUN_DIR` will use (kept in run.json).
    """
    sae_config, match_config = SAEConfig.given(sae, "sae"), MatchConfig.given(match, "match")
    layers = check_layer_names(list(layers) if not isinstance(layers, str) else layers)
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    saved = find_checkpoints(source)
    probe_set = ProbeSet(probe, probe_batch_size)
    run_dir = RunDir(Path(root) / run)
    target = resolve_device(device)
    forward = probe_forward or (lambda model, batch: model(first_tensor(batch)))
    todo = [c for c in saved if not _captured(run_dir, layers, c.step)]
    if len(todo) < len(saved):
        log.info("%d of %d checkpoints already captured", len(saved) - len(todo), len(saved))
    lock = RunLock(run_dir.path, run)
    try:
        for ckpt in tqdm(todo, desc="checkpoints", disable=not progress):
            acts = _probe(build, ckpt, layers, probe_set, select, forward, target)
            widths = {name: x.shape[1] for name, x in acts.items()}
            run_dir.check_compatible(run, len(probe_set), widths)
            for name, d in widths.items():  # what `tracker fit` could not fit fails now
                sae_config.check_width(d, f"module {name!r}")
            if not lock.held:  # first write: a checkpoint that fails to load writes nothing
                lock.acquire()
                per_input = max(x.shape[0] for x in acts.values()) // len(probe_set)
                rows = probe_set.rows(dict.fromkeys(layers, select), per_input)
                if rows:
                    run_dir.write_probe(rows)
            run_dir.write_manifest(
                run,
                len(probe_set),
                widths,
                steps=[c.step for c in saved],
                dtype=dtype,
                fit="defer",
                sae=sae_config.to_dict(),
                match=match_config.to_dict(),
                source=[str(c.path) for c in saved],
            )
            for name, x in acts.items():
                run_dir.write_activations(name, ckpt.step, x, dtype)
            before = [c.step for c in saved if c.step < ckpt.step]
            run_dir.append_metrics(_metrics(ckpt, after=max(before, default=-1)))
    finally:
        lock.release()
    done = {c.step for c in todo}
    return Captured(run_dir, sorted(done), [c.step for c in saved if c.step not in done])


def _probe(
    build: Build | None,
    ckpt: SavedCheckpoint,
    layers: Sequence[str],
    probe_set: ProbeSet,
    select: Selector,
    forward: Callable[[nn.Module, Any], Any],
    device: torch.device,
) -> dict[str, Tensor]:
    """One checkpoint's probe activations {module: [n, d]}."""
    model = build_model(build, ckpt).to(device)
    hooks = resolve_modules(model, list(layers))
    batches = (move_data_to_device(batch, device) for batch in probe_set.batches())
    return capture(
        model, hooks, dict.fromkeys(layers, select), batches, lambda b: forward(model, b)
    )


def _captured(run_dir: RunDir, layers: Iterable[str], step: int) -> bool:
    return all(run_dir.activation_path(name, step).is_file() for name in layers)


def _metrics(saved: SavedCheckpoint, after: int) -> list[dict[str, Any]]:
    """A transformers checkpoint's logged numbers at its steps after `after` (the previous
    checkpoint's step: its own trainer_state.json held those)."""
    state = saved.path / "trainer_state.json"
    if saved.kind != "transformers" or not state.is_file():
        return []
    rows = []
    for entry in json.loads(state.read_text()).get("log_history", []):
        step = entry.get("step")
        for name, value in entry.items():
            if name == "step" or not isinstance(step, int) or step <= after:
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                rows.append({"step": step, "name": name, "value": float(value)})
    return rows


def load_probe(path: str | Path) -> Tensor:
    """Probe inputs [n, ...] from a file: `.npy`, `.pt` (a tensor, read with
    `weights_only=True`) or `.safetensors` (its one tensor, or the one named "probe")."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"probe file {file} does not exist")
    if file.suffix not in (".npy", ".pt", ".safetensors"):
        raise ValueError(f"{file}: unknown probe file type, expected .npy, .pt or .safetensors")
    value = read_tensors(file, "the probe inputs", "save the probe inputs as a tensor")
    if isinstance(value, dict):  # safetensors: its one tensor, or the one named "probe"
        value = value.get("probe", next(iter(value.values())) if len(value) == 1 else None)
    if not isinstance(value, Tensor) or value.ndim == 0 or len(value) == 0:
        raise ValueError(f"{file}: expected one tensor of probe inputs [n, ...]")
    return value
