"""Capture: run the probe set through a model and keep the outputs of named modules.

Hooks exist only during the probe pass, so training forwards run untouched. The pass runs
under `torch.no_grad()`, in eval mode, with the random number generators forked: it draws no
random numbers from training's streams, touches no gradient, updates no batch-norm statistic,
and every module gets back the mode it had.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

Selector = str | int | Callable[[Tensor], Tensor]
"""How a module's output becomes rows [rows, d]: "tokens" (every position of a [batch, seq, d]
output is a row, batch-major: row b·seq + t), "flatten" (one row per input: everything after
the batch dimension), an int (that token position; -1 is the last), or a function giving
[batch, d]."""


def resolve_modules(root: nn.Module, names: list[str]) -> dict[str, nn.Module]:
    """The named submodules of `root`, or a ValueError that names the close matches."""
    available = dict(root.named_modules())
    modules = {}
    for name in names:
        if name == "" or name not in available:
            close = sorted(
                (n for n in available if n),
                key=lambda n: (-difflib.SequenceMatcher(None, name, n).ratio(), n),
            )[:5]
            hint = f"; close matches: {', '.join(map(repr, close))}" if close else ""
            raise ValueError(f"module {name!r} is not in the model's named_modules(){hint}")
        modules[name] = available[name]
    return modules


def selectors_for(
    modules: Sequence[str], select: Selector | Mapping[str, Selector]
) -> dict[str, Selector]:
    """One selector for every watched module: `select` itself, or its mapping per module."""
    selectors = dict(select) if isinstance(select, Mapping) else dict.fromkeys(modules, select)
    if set(selectors) != set(modules):
        raise ValueError(
            f"select must give a selector for each watched module {list(modules)}, "
            f"got {sorted(selectors)}"
        )
    return selectors


def select(output: Any, selector: Selector, name: str) -> Tensor:
    """Apply `selector` to a module's output (the first element of a tuple output)."""
    if isinstance(output, (tuple, list)):
        if not output:
            raise ValueError(f"module {name!r} returned an empty {type(output).__name__}")
        output = output[0]
    if not isinstance(output, Tensor):
        raise ValueError(f"module {name!r} returned {type(output).__name__}, not a tensor")
    if output.ndim == 0:
        raise ValueError(f"module {name!r} returned a scalar, not a [batch, ...] tensor")
    if callable(selector):
        out = selector(output)
    elif selector == "flatten":
        out = output.reshape(output.shape[0], -1)
    elif isinstance(selector, int) or selector == "tokens":
        if output.ndim != 3:
            raise ValueError(
                f"module {name!r}: a token selector ({selector!r}) needs a [batch, seq, d] "
                f"output, got shape {tuple(output.shape)}"
            )
        if not isinstance(selector, int):
            return output.reshape(-1, output.shape[-1])
        out = output[:, selector, :]
    else:
        raise ValueError(f"module {name!r}: unknown selector {selector!r}")
    if not isinstance(out, Tensor) or out.ndim != 2 or out.shape[0] != output.shape[0]:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(
            f"module {name!r}: the selector must give [batch={output.shape[0]}, d], got {shape}"
        )
    return out


@contextmanager
def probe_mode(root: nn.Module) -> Iterator[None]:
    """Eval mode, no grad, forked RNG; restores every module's own training flag after."""
    modes = [(module, module.training) for module in root.modules()]
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            root.eval()
            yield
    finally:
        for module, training in modes:
            module.training = training


def capture(
    root: nn.Module,
    modules: dict[str, nn.Module],
    selectors: dict[str, Selector],
    batches: Iterator[Any],
    forward: Callable[[Any], Any],
) -> dict[str, Tensor]:
    """Run `forward` on each batch and return {name: [n, d]} outputs concatenated on CPU."""
    chunks: dict[str, list[Tensor]] = {name: [] for name in modules}

    def hook_for(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            chunks[name].append(select(output, selectors[name], name).detach().float().cpu())

        return hook

    handles = [m.register_forward_hook(hook_for(name)) for name, m in modules.items()]
    try:
        with probe_mode(root):
            for batch in batches:
                forward(batch)
    finally:
        for handle in handles:
            handle.remove()
    out = {}
    for name, parts in chunks.items():
        if not parts:
            raise ValueError(f"module {name!r} was not called during the probe forward")
        out[name] = torch.cat(parts)
    return out


def gather_rows(
    strategy: Any, world_size: int, x_ND: Tensor, n_probe: int, rows_per_input: int = 1
) -> Tensor:
    """Every rank's shard of the probe activations (`x_ND`: this rank's rows, `rows_per_input`
    per probe input), in probe order, on the CPU. Shards are padded to one size for
    `strategy.all_gather`."""
    per_rank = -(-n_probe // world_size) * rows_per_input
    padded = x_ND.new_zeros(per_rank, x_ND.shape[1])
    padded[: x_ND.shape[0]] = x_ND
    gathered = strategy.all_gather(padded.to(strategy.root_device))
    return gathered.reshape(-1, x_ND.shape[1])[: n_probe * rows_per_input].cpu()
