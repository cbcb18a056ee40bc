"""Reading activation files of the activation-directory contract. No pickle is ever loaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

SUFFIXES = (".npy", ".safetensors", ".pt")
TENSOR_KEY = "activations"


def _parse(file: Path) -> object:
    if file.suffix == ".npy":
        return torch.from_numpy(np.load(file, allow_pickle=False))
    if file.suffix == ".safetensors":
        return load_file(str(file))
    return torch.load(file, weights_only=True, map_location="cpu")


def load_activation_file(path: str | Path) -> Tensor:
    """One checkpoint's activations [n, d] from `.npy`, `.safetensors` (tensor "activations")
    or `.pt` (a tensor or a dict holding "activations", read with `weights_only=True`).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: an unknown suffix, a file that does not parse, or no "activations" tensor.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"activation file {file} does not exist")
    if file.suffix not in SUFFIXES:
        raise ValueError(
            f"{file}: unknown activation file type {file.suffix!r}, expected one of {SUFFIXES}"
        )
    try:
        value = _parse(file)
    except (OSError, SafetensorError, RuntimeError, ValueError) as err:
        # np.load refuses object arrays without pickle, torch.load refuses anything but
        # tensors with weights_only=True: say which file, and why.
        raise ValueError(f"{file}: cannot read activations ({err})") from err
    if isinstance(value, dict):
        if TENSOR_KEY not in value:
            found = sorted(value)
            raise ValueError(f"{file}: expected a tensor named {TENSOR_KEY!r}, found {found}")
        value = value[TENSOR_KEY]
    if not isinstance(value, Tensor):
        raise ValueError(f"{file}: expected one tensor, found {type(value).__name__}")
    return value
