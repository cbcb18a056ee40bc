"""The SAE architectures by name: adding one (BatchTopK, JumpReLU, ...) is one new file."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from tracker import config

if TYPE_CHECKING:
    from tracker.sae.base import SAE

ARCHITECTURES: dict[str, type[SAE]] = {}

T = TypeVar("T", bound="type[SAE]")


def register(name: str) -> Callable[[T], T]:
    """Class decorator: make an SAE subclass available as `SAEConfig(arch=name)`."""

    def wrap(cls: T) -> T:
        if name in ARCHITECTURES:
            raise ValueError(f"SAE architecture {name!r} is registered twice")
        cls.arch = name
        ARCHITECTURES[name] = cls
        config.ARCHITECTURES.add(name)
        return cls

    return wrap
