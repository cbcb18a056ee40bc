"""Reading activation files of the activation-directory contract. No pickle is ever loaded."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

SUFFIXES = (".npy", ".safetensors", ".pt")
TENSOR_KEY = "activations"


def read_tensors(file: Path, what: str, advice: str, mmap: bool = False) -> object:
    """The contents of a `.npy`, `.safetensors` or torch file (`.pt`, `.pth`, `.bin`,
    `.ckpt`), tensors only: a pickle that would run code is refused, naming it, with
    `advice`; any other failure is one line naming the file and `what` it should hold.
    `mmap` maps a torch file's tensors instead of reading them (cheap for reading metadata)."""
    try:
        if file.suffix == ".npy":
            return torch.from_numpy(np.load(file, allow_pickle=False))
        if file.suffix == ".safetensors":
            return load_file(str(file))
        return torch.load(file, weights_only=True, map_location="cpu", mmap=mmap)
    except pickle.UnpicklingError as err:
        # torch.load(weights_only=True) refused to run code the file asks for; its message
        # goes on to advise weights_only=False, which the tracker never does.
        named = re.search(r"GLOBAL ([\w.]+)", str(err))
        called = f" ({named.group(1)})" if named else ""
        raise ValueError(
            f"{file}: not plain tensors: loading it would run code{called}; {advice}"
        ) from err
    except (OSError, SafetensorError, RuntimeError, ValueError, TypeError, EOFError) as err:
        # np.load refuses object arrays without pickle, torch.from_numpy arrays of strings:
        # say which file, and why, on one line.
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{file}: cannot read {what} ({reason})") from err


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
    value = read_tensors(
        file,
        "activations",
        "save the activations as a tensor (torch.save(x)), .npy or .safetensors",
    )
    if isinstance(value, dict):
        if TENSOR_KEY not in value:
            found = sorted(value)
            raise ValueError(f"{file}: expected a tensor named {TENSOR_KEY!r}, found {found}")
        value = value[TENSOR_KEY]
    if not isinstance(value, Tensor):
        raise ValueError(f"{file}: expected one tensor, found {type(value).__name__}")
    return value
