"""The checkpoints of a finished run: where they are, which step each is, and a model with
their weights. Nothing is unpickled beyond tensors (`torch.load(weights_only=True)`,
safetensors); see `tracker.posthoc` for the formats."""

from __future__ import annotations

import glob
import importlib
import inspect
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from tracker.activations import read_tensors

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
        try:  # the step without reading the weights; a legacy-format file has to be read
            contents = _load(path, mmap=True)
        except ValueError:
            contents = _load(path)
        step = contents.get("global_step")
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


def _load(path: Path, mmap: bool = False) -> dict[str, Any]:
    """A checkpoint file's top-level dict, tensors only (`mmap`: tensors mapped, not read)."""
    advice = "save the model's state_dict (torch.save(model.state_dict(), path))"
    value = read_tensors(
        path, "the checkpoint", advice, mmap=mmap and path.suffix != ".safetensors"
    )
    if not isinstance(value, dict):
        raise ValueError(
            f"{path}: expected a state_dict (a dict of tensors), found {type(value).__name__}"
        )
    return value


def state_dict_of(saved: SavedCheckpoint, value: dict[str, Any] | None = None) -> dict[str, Tensor]:
    """The model weights a checkpoint holds (`value`: its file's contents, if read already)."""
    if saved.kind == "transformers":
        files = sorted(saved.path.glob("*.safetensors")) or sorted(saved.path.glob("*.bin"))
        if not files:
            raise ValueError(f"{saved.path}: a model directory without weight files")
        state: dict[str, Any] = {}
        for file in files:
            state.update(_load(file))
        return state
    value = value if value is not None else _load(saved.path)
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
    contents = None if saved.kind == "transformers" else _load(saved.path)  # read once
    hparams = {}
    if saved.kind == "lightning" and inspect.isclass(factory) and contents is not None:
        hparams = dict(contents.get("hyper_parameters") or {})
    model = factory(**hparams)
    if not isinstance(model, nn.Module):
        name = build if isinstance(build, str) else getattr(build, "__qualname__", repr(build))
        raise ValueError(
            f"model factory {name!r} built a {type(model).__name__}, not a torch.nn.Module"
        )
    state = state_dict_of(saved, contents)
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
