"""The checkpoints of a finished run: where they are, which step each is, and a model with
their weights. Nothing is unpickled beyond tensors (`torch.load(weights_only=True)`,
safetensors); see `tracker.posthoc` for the formats."""

from __future__ import annotations

import glob
import importlib
import inspect
import json
import pickle
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

WEIGHT_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".safetensors")
STEP_IN_NAME = re.compile(r"(?:^|[^a-z])(?:step|checkpoint)[-_=]?(\d+)(?!.*\d)", re.IGNORECASE)
Build = Callable[..., nn.Module] | str


@dataclass(frozen=True)
class SavedCheckpoint:
    """One checkpoint of a finished run."""

    path: Path
    step: int
    kind: str
    """"lightning", "state_dict" or "transformers"."""


def find_checkpoints(source: str | Path | Sequence[str | Path]) -> list[SavedCheckpoint]:
    """Every checkpoint under `source` (a directory, a glob, or a list of files/directories),
    in step order. Raises ValueError naming what is wrong (nothing found, a step that cannot
    be read, two checkpoints of one step)."""
    items = [source] if isinstance(source, (str, Path)) else list(source)
    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir() and not (path / "config.json").is_file():
            paths += sorted(
                p
                for p in path.iterdir()
                if p.suffix in WEIGHT_SUFFIXES or (p / "config.json").is_file()
            )
        elif path.exists():
            paths.append(path)
        else:
            matched = sorted(glob.glob(str(item)))
            if not matched:
                raise FileNotFoundError(f"no checkpoint at {item} (not a file, directory or glob)")
            paths += [Path(m) for m in matched]
    if not paths:
        raise ValueError(
            f"no checkpoints under {source}: expected {WEIGHT_SUFFIXES} files or "
            "transformers model directories"
        )
    found = sorted((_describe(p) for p in paths), key=lambda c: c.step)
    steps = [c.step for c in found]
    twice = sorted({s for s in steps if steps.count(s) > 1})
    if twice:
        raise ValueError(
            f"two checkpoints of the same step {twice[0]}: "
            + ", ".join(str(c.path) for c in found if c.step == twice[0])
        )
    return found


def _describe(path: Path) -> SavedCheckpoint:
    if path.is_dir():
        state = path / "trainer_state.json"
        if state.is_file():
            step = json.loads(state.read_text()).get("global_step")
            if isinstance(step, int):
                return SavedCheckpoint(path, step, "transformers")
        return SavedCheckpoint(path, _step_from_name(path), "transformers")
    if path.suffix not in WEIGHT_SUFFIXES:
        raise ValueError(f"{path}: not a checkpoint (expected one of {WEIGHT_SUFFIXES})")
    if path.suffix == ".ckpt":
        step = _load(path).get("global_step")
        if not isinstance(step, int):
            raise ValueError(f"{path}: a Lightning checkpoint without an integer global_step")
        return SavedCheckpoint(path, step, "lightning")
    return SavedCheckpoint(path, _step_from_name(path), "state_dict")


def _step_from_name(path: Path) -> int:
    stem = path.stem if path.is_file() else path.name
    if stem.isdigit():
        return int(stem)
    found = STEP_IN_NAME.search(stem)
    if found is None:
        raise ValueError(
            f"cannot read the step of {path}: name it step<N>, step=<N>, checkpoint-<N> or <N>"
        )
    return int(found.group(1))


def _load(path: Path) -> dict[str, Any]:
    """A checkpoint file's top-level dict, tensors only."""
    try:
        if path.suffix == ".safetensors":
            return dict(load_file(str(path)))
        value = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        named = re.search(r"GLOBAL ([\w.]+)", str(err))
        what = f" ({named.group(1)})" if named else ""
        raise ValueError(
            f"{path}: holds objects other than tensors{what}, and loading them would run code; "
            "save the model's state_dict (torch.save(model.state_dict(), path))"
        ) from err
    except (OSError, RuntimeError, SafetensorError, EOFError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{path}: cannot read the checkpoint ({reason})") from err
    if not isinstance(value, dict):
        raise ValueError(
            f"{path}: expected a state_dict (a dict of tensors), found {type(value).__name__}"
        )
    return value


def state_dict_of(saved: SavedCheckpoint) -> dict[str, Tensor]:
    """The model weights a checkpoint holds."""
    if saved.kind == "transformers":
        files = sorted(saved.path.glob("*.safetensors")) or sorted(saved.path.glob("*.bin"))
        if not files:
            raise ValueError(f"{saved.path}: a model directory without weight files")
        state: dict[str, Any] = {}
        for file in files:
            state.update(_load(file))
        return state
    value = _load(saved.path)
    for key in ("state_dict", "model"):
        if key in value and isinstance(value[key], dict):
            value = value[key]
            break
    if not value or not all(isinstance(v, Tensor) for v in value.values()):
        raise ValueError(
            f"{saved.path}: no state_dict found (expected tensors by name, or "
            "one under 'state_dict' or 'model')"
        )
    return value


def resolve_build(build: Build) -> Callable[..., nn.Module]:
    """`build` itself, or the object an import path `package.module:name` names."""
    if not isinstance(build, str):
        return build
    module_name, _, attr = build.partition(":")
    if not module_name or not attr:
        raise ValueError(f"model factory must be 'package.module:name', got {build!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"model factory {build!r}: cannot import {module_name} ({err})") from err
    if not hasattr(module, attr):
        raise ValueError(f"model factory {build!r}: {module_name} has no {attr!r}")
    return getattr(module, attr)


def build_model(build: Build | None, saved: SavedCheckpoint) -> nn.Module:
    """A model built for `saved` with its weights loaded (strictly: every key must fit)."""
    if build is None:
        if saved.kind != "transformers":
            raise ValueError(
                f"{saved.path}: give a model factory (package.module:name) to load it into"
            )
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(saved.path, local_files_only=True)
    factory = resolve_build(build)
    hparams = {}
    if saved.kind == "lightning" and inspect.isclass(factory):
        hparams = dict(_load(saved.path).get("hyper_parameters") or {})
    model = factory(**hparams)
    if not isinstance(model, nn.Module):
        name = build if isinstance(build, str) else getattr(build, "__qualname__", repr(build))
        raise ValueError(
            f"model factory {name!r} built a {type(model).__name__}, not a torch.nn.Module"
        )
    state = state_dict_of(saved)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise ValueError(
            f"{saved.path}: its weights do not fit the model (first missing key: "
            f"{missing[0] if missing else 'none'}; first unexpected key: "
            f"{unexpected[0] if unexpected else 'none'})"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:  # same names, other shapes
        raise ValueError(f"{saved.path}: {str(err).splitlines()[1].strip()}") from err
    return model
