"""The fixed probe set: the same inputs, in the same order, at every snapshot."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, SequentialSampler, Subset

from tracker.capture import Selector
from tracker.text import TextProbe


class _TensorRows(Dataset[Tensor]):
    def __init__(self, inputs: Tensor) -> None:
        self.inputs = inputs

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def __getitem__(self, index: int) -> Tensor:
        return self.inputs[index]


class ProbeSet:
    """Probe inputs from a tensor [n, ...], a map-style Dataset or a non-shuffling DataLoader,
    read in a fixed order and in batches, so that memory stays bounded for large probe sets.

    Raises:
        ValueError: an empty probe set, a shuffling DataLoader, or an iterable-style dataset
            (whose order and length cannot be fixed).
    """

    def __init__(
        self, probe: Tensor | Dataset[Any] | DataLoader[Any] | TextProbe, batch_size: int = 256
    ):
        collate: Callable[[list[Any]], Any] | None = None
        self.text = probe if isinstance(probe, TextProbe) else None
        """A text probe's sequences, which describe its rows (`rows`)."""
        if isinstance(probe, TextProbe):
            probe = probe.tokens
        if isinstance(probe, DataLoader):
            if not isinstance(probe.sampler, SequentialSampler):
                raise ValueError(
                    "probe DataLoader must read in a fixed order (shuffle=False, no sampler), "
                    f"got sampler {type(probe.sampler).__name__}"
                )
            batch_size = probe.batch_size or batch_size
            collate = probe.collate_fn
            probe = probe.dataset
        if isinstance(probe, Tensor):
            if probe.ndim == 0:
                raise ValueError("probe tensor must have a leading sample dimension, got a scalar")
            probe = _TensorRows(probe)
        if not hasattr(probe, "__len__") or not hasattr(probe, "__getitem__"):
            raise ValueError(
                f"probe must be a tensor, a map-style Dataset or a DataLoader over one, "
                f"got {type(probe).__name__}"
            )
        if len(probe) == 0:  # type: ignore[arg-type]
            raise ValueError("probe set is empty")
        if batch_size < 1:
            raise ValueError(f"probe batch_size must be positive, got {batch_size}")
        self.dataset: Dataset[Any] = probe
        self.batch_size = batch_size
        self.collate = collate

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def rows(self, selectors: dict[str, Selector], per_input: int = 1) -> list[dict[str, Any]]:
        """What each row is (probe_index, label, payload) for the rows the selectors make:
        a text probe's contexts, or input and position of every token row (`per_input` of
        them per input) when all layers use select="tokens"; [] otherwise. Rows are per run,
        so a text probe needs the same selector on every layer."""
        kinds = {repr(s) for s in selectors.values()}
        if self.text is not None:
            if len(kinds) > 1:
                raise ValueError(
                    f"a text probe needs one selector for every layer, got {sorted(kinds)}"
                )
            return self.text.rows(next(iter(selectors.values())))
        if kinds != {"'tokens'"}:
            return []
        return [
            {
                "probe_index": i * per_input + t,
                "label": f"input {i}, position {t}",
                "payload": json.dumps({"input": i, "position": t}),
            }
            for i in range(len(self))
            for t in range(per_input)
        ]

    def shard(self, rank: int, world_size: int) -> range:
        """The contiguous probe indices that `rank` of `world_size` processes."""
        per_rank = -(-len(self) // world_size)
        return range(min(rank * per_rank, len(self)), min((rank + 1) * per_rank, len(self)))

    def batches(self, indices: range | None = None) -> Iterator[Any]:
        """Batches over the contiguous `indices` (all by default), in order."""
        rows = range(len(self)) if indices is None else indices
        if self.collate is None and isinstance(self.dataset, _TensorRows):
            for start in range(rows.start, rows.stop, self.batch_size):
                yield self.dataset.inputs[start : min(start + self.batch_size, rows.stop)]
            return
        subset = Subset(self.dataset, list(rows))
        # A DataLoader draws its base seed from the global generator unless given its own:
        # that draw would shift the training run's random stream.
        loader = DataLoader(
            subset,
            batch_size=self.batch_size,
            shuffle=False,
            collate_fn=self.collate,
            generator=torch.Generator(),
        )
        yield from loader


def first_tensor(batch: Any) -> Tensor:
    """The model input of a probe batch: the batch itself, or its first element for
    (input, target) pairs, as Lightning datasets usually yield."""
    if isinstance(batch, (tuple, list)):
        batch = batch[0]
    if not isinstance(batch, Tensor):
        raise ValueError(
            f"probe batch input must be a tensor, got {type(batch).__name__}; "
            "pass probe_forward= to feed the model yourself"
        )
    return batch
