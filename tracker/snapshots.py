"""The snapshot store: one activation file per (layer, step) in a run directory.

    RUN_DIR/run.json                          manifest: run name, probe size, layer widths
    RUN_DIR/activations/<layer>/<step>.safetensors   tensor "activations" [n_probe, d]
    RUN_DIR/snapshots.jsonl                   one line per file written, in order
    RUN_DIR/metrics.jsonl                     training metrics {step, name, value}
    RUN_DIR/probe.jsonl                       what each probe row is (text probes)

`RUN_DIR/activations` is an activation directory of the documented contract, so
`tracker analyze RUN_DIR/activations` reads it like any user's own directory. Every file is
written under a temporary name and renamed, so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor

from tracker.activations import SUFFIXES, TENSOR_KEY

log = logging.getLogger(__name__)

MANIFEST = "run.json"
MANIFEST_KEYS: dict[str, type] = {"run": str, "n_probe": int, "layers": dict}
MANIFEST_KINDS = {str: "a string", int: "an integer", dict: "an object"}
FLOAT16_MAX = 65504.0
DTYPES = {"float16": torch.float16, "float32": torch.float32}


def check_layer_name(layer: str) -> str:
    """A layer's name is a folder of the run directory: a module path ("blocks.0.mlp"),
    never a path that leads out of it."""
    if not isinstance(layer, str) or layer in ("", ".", "..") or any(c in layer for c in "/\\\0"):
        raise ValueError(f"layer name must be a module name (no '/', '\\' or '..'), got {layer!r}")
    return layer


def check_layer_names(layers: object) -> list[str]:
    """A non-empty list of distinct layer names (see `check_layer_name`)."""
    if isinstance(layers, str) or not isinstance(layers, (list, tuple)) or not layers:
        raise ValueError(f"layers must be a non-empty list of module names, got {layers!r}")
    if not all(isinstance(name, str) for name in layers):
        raise ValueError(f"layers must be a non-empty list of module names, got {layers!r}")
    for name in layers:
        check_layer_name(name)
    if len(set(layers)) != len(layers):
        raise ValueError(f"layers lists a name twice: {list(layers)}")
    return list(layers)


def watched_layers(layers: object, modules: object) -> list[str]:
    """The layers to watch, given as `layers=` or by the name it had in 0.1, `modules=`
    (still accepted, with a DeprecationWarning)."""
    if modules is not None:
        if layers is not None:
            raise ValueError(
                "give the layers to watch once: layers=[...] (modules= is its old name)"
            )
        warnings.warn(
            "modules= is now layers= (the same module names); modules= will be removed",
            DeprecationWarning,
            stacklevel=3,
        )
        layers = modules
    return check_layer_names(layers)


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


class RunDir:
    """A run directory of snapshots (see the module docstring for the layout)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.activations = self.path / "activations"

    def activation_path(self, layer: str, step: int) -> Path:
        return self.activations / check_layer_name(layer) / f"{step}.safetensors"

    def read_manifest(self) -> dict[str, Any] | None:
        """run.json, or None when there is none; ValueError naming the file when it is not
        a manifest (invalid JSON, not an object, a key missing or of the wrong type)."""
        file = self.path / MANIFEST
        if not file.is_file():
            return None
        try:
            manifest = json.loads(file.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{file} is not valid JSON ({err})") from err
        if not isinstance(manifest, dict):
            raise ValueError(f"{file} must hold a JSON object, found {type(manifest).__name__}")
        for key, kind in MANIFEST_KEYS.items():
            if key not in manifest:
                raise ValueError(
                    f"{file}: {key!r} is missing (a run.json the tracker wrote has it)"
                )
            if not isinstance(manifest[key], kind) or isinstance(manifest[key], bool):
                raise ValueError(
                    f"{file}: {key!r} must be {MANIFEST_KINDS[kind]}, found {manifest[key]!r}"
                )
        return manifest

    def check_compatible(self, run: str, n_probe: int, widths: dict[str, int]) -> None:
        """Refuse a directory whose snapshots another probe set or model width wrote."""
        manifest = self.read_manifest()
        if manifest is None:
            return
        where = f"run directory {self.path} (run {manifest.get('run')!r})"
        if manifest.get("n_probe") != n_probe:
            raise ValueError(
                f"{where} holds snapshots of {manifest.get('n_probe')} probe inputs, "
                f"this run has {n_probe}; use another run name or directory"
            )
        for layer, d in widths.items():
            previous = manifest.get("layers", {}).get(layer)
            if previous is not None and previous != d:
                raise ValueError(
                    f"{where} holds snapshots of layer {layer!r} with width {previous}, "
                    f"this run's is {d}; use another run name or directory"
                )

    def write_manifest(self, run: str, n_probe: int, widths: dict[str, int], **extra: Any) -> None:
        manifest = self.read_manifest() or {"created_at": time.time()}
        layers = {**manifest.get("layers", {}), **widths}
        manifest.update(run=run, n_probe=n_probe, layers=layers, **extra)
        self.path.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.path / MANIFEST, lambda tmp: tmp.write_text(json.dumps(manifest)))

    def write_activations(self, layer: str, step: int, x_ND: Tensor, dtype: str) -> Path:
        """Write one snapshot atomically and log it; returns its path.

        float16 halves the disk but overflows past 65504: such a snapshot is kept in float32
        with a warning rather than silently turned into Inf.
        """
        x_ND = x_ND.detach().cpu()
        if dtype == "float16" and float(x_ND.abs().max()) > FLOAT16_MAX:
            log.warning("layer %s step %d exceeds the float16 range: kept as float32", layer, step)
            dtype = "float32"
        path = self.activation_path(layer, step)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensor = {TENSOR_KEY: x_ND.to(DTYPES[dtype]).contiguous()}
        _atomic_write(path, lambda tmp: save_file(tensor, str(tmp)))
        self._append("snapshots.jsonl", [{"layer": layer, "step": step, "time": time.time()}])
        return path

    def write_probe(self, rows: list[dict[str, Any]]) -> None:
        """What each probe row is (probe_index, label, payload), replacing any before: the
        store's `probe` table is filled from it when the run is fitted."""
        self.path.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(row) + "\n" for row in rows)
        _atomic_write(self.path / "probe.jsonl", lambda tmp: tmp.write_text(text))

    def probe_rows(self) -> list[dict[str, Any]]:
        return _read_jsonl(self.path / "probe.jsonl")

    def append_metrics(self, rows: list[dict[str, Any]]) -> None:
        self._append("metrics.jsonl", rows)

    def _append(self, name: str, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.path.mkdir(parents=True, exist_ok=True)
            with open(self.path / name, "a") as f:
                f.write("".join(json.dumps(row) + "\n" for row in rows))

    def written(self) -> list[tuple[str, int]]:
        """(layer, step) of every snapshot written, in order (repeats show rewrites)."""
        return [(row["layer"], row["step"]) for row in _read_jsonl(self.path / "snapshots.jsonl")]

    def metrics(self) -> list[dict[str, Any]]:
        """Training metrics rows; for a step recorded twice (a resumed run) the last wins."""
        latest = {(r["step"], r["name"]): r for r in _read_jsonl(self.path / "metrics.jsonl")}
        return sorted(latest.values(), key=lambda r: (r["step"], r["name"]))


def _read_jsonl(file: Path) -> list[dict[str, Any]]:
    if not file.is_file():
        return []
    rows = []
    for line in file.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a crash
    return rows


def scan_activation_dir(path: str | Path) -> dict[str, dict[int, Path]]:
    """{layer: {step: file}} of an activation directory: `DIR/<step>.<ext>` (one layer, named
    "") or `DIR/<layer>/<step>.<ext>`. Files whose stem is not a step number are ignored.

    Raises:
        FileNotFoundError: the directory does not exist.
        ValueError: it holds no activation files, or one step twice in different formats.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"activation directory {root} does not exist")
    layers: dict[str, dict[int, Path]] = {}
    for file in sorted(root.glob("*")) + sorted(root.glob("*/*")):
        if file.suffix not in SUFFIXES or not file.stem.isdigit() or not file.is_file():
            continue
        layer = "" if file.parent == root else file.parent.name
        steps = layers.setdefault(layer, {})
        step = int(file.stem)
        if step in steps:
            raise ValueError(f"{root}: step {step} of layer {layer!r} is stored twice")
        steps[step] = file
    if not layers:
        raise ValueError(
            f"{root} holds no activation files (<step>.npy, <step>.safetensors or <layer>/<step>.*)"
        )
    return layers


class MetricsBuffer:
    """Training metrics (`trainer.callback_metrics`'s scalars) held until the next snapshot,
    then appended to the run's metrics.jsonl: one write per snapshot, not per step."""

    def __init__(self, run_dir: RunDir) -> None:
        self.run_dir = run_dir
        self.pending: list[dict[str, Any]] = []
        self.step: int | None = None

    def record(self, step: int, metrics: Mapping[str, Any]) -> None:
        if step == self.step:  # once per step (accumulation repeats a step's batches)
            return
        self.step = step
        for name, value in metrics.items():
            if isinstance(value, Tensor) and value.numel() == 1:
                self.pending.append({"step": step, "name": name, "value": float(value)})

    def flush(self, write: bool) -> None:
        """Append what is pending (`write`: on the global-zero rank only), then forget it."""
        if write:
            self.run_dir.append_metrics(self.pending)
        self.pending = []
