"""When to snapshot: every N steps, at listed steps, or N steps spread geometrically."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from tracker.checks import check_steps


@dataclass(frozen=True)
class Schedule:
    """A snapshot schedule. Step 0 (before any update) and the last step are always included.

    Build it with `Schedule.parse`: `100` or `"every:100"`; `"log:20"` (20 steps spread
    geometrically over the run, since early training changes fastest); or a list of steps.
    """

    kind: Literal["every", "log", "steps"]
    n: int = 0
    """Period for "every", number of steps for "log"."""
    steps: tuple[int, ...] = ()
    """The explicit steps for "steps"."""

    @classmethod
    def parse(cls, spec: int | str | Sequence[int] | Schedule) -> Schedule:
        if isinstance(spec, Schedule):
            return spec
        if isinstance(spec, bool):
            raise ValueError(f"schedule must be an int, 'every:N', 'log:N' or a list, got {spec!r}")
        if isinstance(spec, int):
            spec = f"every:{spec}"
        if isinstance(spec, str):
            kind, _, value = spec.partition(":")
            if kind not in ("every", "log") or not value.isdigit() or int(value) < 1:
                raise ValueError(f"schedule must be 'every:N' or 'log:N' with N >= 1, got {spec!r}")
            return cls(kind, n=int(value))  # type: ignore[arg-type]
        if not isinstance(spec, Sequence) or not spec:
            raise ValueError(
                f"schedule must be an int, 'every:N', 'log:N' or a non-empty list of steps, "
                f"got {spec!r}"
            )
        steps = tuple(sorted(set(check_steps(spec, "schedule steps"))))
        return cls("steps", steps=steps)

    def resolve(self, last_step: int | None) -> list[int]:
        """The sorted steps to snapshot in a run whose final step is `last_step`.

        `last_step` may be None when the run length is unknown (then "log" is impossible).
        """
        if self.kind == "log" and last_step is None:
            raise ValueError(
                "schedule 'log:N' needs a known run length: set Trainer(max_steps=...) "
                "or max_epochs with a sized train DataLoader"
            )
        if self.kind == "steps":
            chosen = set(self.steps)
        elif self.kind == "every":
            # With an unknown run length `due` decides step by step.
            chosen = set(range(0, last_step + 1, self.n)) if last_step is not None else set()
        else:
            assert last_step is not None
            chosen = set(_geometric(self.n, last_step))
        chosen.add(0)
        if last_step is not None:
            chosen = {s for s in chosen if s <= last_step} | {last_step}
        return sorted(chosen)

    def due(self, step: int, resolved: list[int] | None) -> bool:
        """Whether `step` is a snapshot step (for "every" with an unknown run length too)."""
        if resolved is not None and step in resolved:
            return True
        return self.kind == "every" and step % self.n == 0

    def __str__(self) -> str:
        return f"{self.kind}:{self.n}" if self.kind != "steps" else ",".join(map(str, self.steps))


def _geometric(n: int, last_step: int) -> list[int]:
    """n distinct steps in [1, last_step], geometrically spaced (as distinct as room allows)."""
    if last_step < 1:
        return []
    n = min(n, last_step)
    if n == 1:
        return [last_step]
    ratio = math.log(last_step) / (n - 1)
    steps: list[int] = []
    for i in range(n):
        step = round(math.exp(i * ratio))
        # Early steps collide after rounding; nudge them apart so N steps stay N.
        step = max(step, steps[-1] + 1) if steps else step
        steps.append(step)
    # Nudging may push the tail past the end; pull it back from the end, keeping order.
    for i in range(n - 1, -1, -1):
        ceiling = last_step if i == n - 1 else steps[i + 1] - 1
        steps[i] = min(steps[i], ceiling)
    return steps
