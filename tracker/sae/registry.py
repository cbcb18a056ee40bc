"""The SAE architectures by name: adding one (BatchTopK, JumpReLU, ...) is one new file."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from tracker import config

if TYPE_CHECKING:
    from tracker.sae.base import SAE

ARCHITECTURES: dict[str, type[SAE]] = {}

T = TypeVar("T", bound="type[SAE]")


def register(name: str, fields: tuple[str, ...] | None = None) -> Callable[[T], T]:
    """Class decorator: make an SAE subclass available as `SAEConfig(arch=name)`. `fields`
    names the `SAEConfig` fields only it reads (kept for the built-ins when not given)."""
    unknown = [f for f in fields or () if f not in config.SAE_FIELDS]
    if unknown:
        raise ValueError(f"SAE architecture {name!r}: no SAEConfig field(s) {unknown}")

    def wrap(cls: T) -> T:
        if name in ARCHITECTURES:
            raise ValueError(f"SAE architecture {name!r} is registered twice")
        cls.arch = name
        ARCHITECTURES[name] = cls
        if fields is not None or name not in config.ARCHITECTURES:
            config.ARCHITECTURES[name] = tuple(fields or ())
        return cls

    return wrap
