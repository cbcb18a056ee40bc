"""Planted lineage: synthetic checkpoints whose true features are born, die, split and merge.

Each true feature has a direction that drifts a little at every step and a fixed *support*
(the probe inputs it fires on, with fixed coefficients), so the probe order means the same
thing at every step. A split divides the parent's support between two children whose
directions stay close to the parent's; a merge gives the child the union of its parents'
supports and their summed direction. Scoring compares reported events with the truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

KINDS = ("birth", "death", "split", "merge")


@dataclass(frozen=True)
class TrueEvent:
    prev_step: int
    step: int
    kind: str
    sources: frozenset[int]
    """True feature ids before the event (empty for a birth)."""
    targets: frozenset[int]
    """True feature ids after the event (empty for a death)."""
    until: int | None = None
    """For a gradual birth (death): the step where the feature reaches full size (is gone).
    The event may then be reported at any transition from one checkpoint before `step` to one
    after `until`: where a feature that forms slowly is "born" is a matter of threshold."""
    complete: bool = True
    """False for a gradual event still under way at the last checkpoint (`until` is then the
    last step): reporting it is neither right nor wrong, and missing it is no miss."""


@dataclass
class PlantedRun:
    """Activations per step and the truth behind them."""

    acts: dict[int, Tensor] = field(default_factory=dict)
    """step -> [n, d] activations, the same probe inputs in the same order at every step."""
    directions: dict[int, dict[int, Tensor]] = field(default_factory=dict)
    """step -> {true feature id: unit direction [d]}."""
    events: list[TrueEvent] = field(default_factory=list)


@dataclass(frozen=True)
class PlantedConfig:
    """What to plant. Counts are per step transition unless `quiet` names the transition."""

    d: int = 64
    n_true: int = 40
    n: int = 4096
    active: float = 3.0
    """Mean number of true features firing per probe input."""
    steps: tuple[int, ...] = (0, 100, 200, 300)
    births: int = 2
    deaths: int = 2
    splits: int = 2
    merges: int = 2
    quiet: tuple[int, ...] = ()
    """Steps reached by drift alone: no event at all between the previous step and these."""
    drift: float = 0.05
    """Standard deviation of the per-step Gaussian nudge of each direction, per unit norm."""
    child_cos: float = 0.75
    """Cosine between a split child and its parent (merge parents sit at ~0.71 to the child)."""
    noise: float = 0.02
    ramp: int = 0
    """Checkpoints a birth takes to grow to full size and a death to fade out (its
    coefficients scaled by 1/ramp, 2/ramp, ...); 0 or 1: at once."""
    seed: int = 0


class _Planter:
    def __init__(self, cfg: PlantedConfig) -> None:
        self.cfg = cfg
        self.g = torch.Generator().manual_seed(cfg.seed)
        self.next_id = 0
        self.dirs: dict[int, Tensor] = {}
        self.coefs: dict[int, Tensor] = {}  # id -> [n] non-negative coefficient per probe input
        self.scales: dict[int, list[float]] = {}  # id -> scales still to come (gradual)
        self.ramping: dict[int, TrueEvent] = {}  # id -> its gradual event, until it is done

    def unit(self, v: Tensor) -> Tensor:
        return v / v.norm()

    def random_dir(self) -> Tensor:
        return self.unit(torch.randn(self.cfg.d, generator=self.g))

    def add(self, direction: Tensor, coefs: Tensor) -> int:
        fid, self.next_id = self.next_id, self.next_id + 1
        self.dirs[fid], self.coefs[fid] = direction, coefs
        return fid

    def random_support(self) -> Tensor:
        cfg = self.cfg
        fires = torch.rand(cfg.n, generator=self.g) < cfg.active / cfg.n_true
        return fires * (0.5 + torch.rand(cfg.n, generator=self.g))

    def near(self, direction: Tensor, cos: float) -> tuple[Tensor, Tensor]:
        """Two unit vectors at cosine `cos` to `direction`, on opposite sides of it."""
        u = torch.randn(self.cfg.d, generator=self.g)
        u = self.unit(u - (u @ direction) * direction)
        sin = (1 - cos**2) ** 0.5
        return cos * direction + sin * u, cos * direction - sin * u

    def pick(self, count: int, exclude: set[int]) -> list[int]:
        pool = [f for f in self.dirs if f not in exclude and f not in self.scales]
        order = torch.randperm(len(pool), generator=self.g)[:count]
        return [pool[i] for i in order.tolist()]

    def transition(self, prev: int, step: int) -> list[TrueEvent]:
        cfg = self.cfg
        events: list[TrueEvent] = []
        used: set[int] = set()

        def event(kind: str, sources: list[int], targets: list[int]) -> None:
            events.append(TrueEvent(prev, step, kind, frozenset(sources), frozenset(targets)))

        ramp = [i / cfg.ramp for i in range(1, cfg.ramp)] if cfg.ramp > 1 else []
        for fid in self.pick(cfg.deaths, used):
            used.add(fid)
            if ramp:  # fades: 1 - 1/ramp, ..., 1/ramp, then gone
                self.scales[fid] = [*ramp[::-1], 0.0]
                self.ramping[fid] = TrueEvent(prev, step, "death", frozenset([fid]), frozenset())
            else:
                del self.dirs[fid], self.coefs[fid]
                event("death", [fid], [])
        for parent in self.pick(cfg.splits, used):
            used.add(parent)
            direction, coefs = self.dirs.pop(parent), self.coefs.pop(parent)
            side = torch.rand(cfg.n, generator=self.g) < 0.5
            a, b = self.near(direction, cfg.child_cos)
            children = [self.add(a, coefs * side), self.add(b, coefs * ~side)]
            used.update(children)
            event("split", [parent], children)
        for _ in range(cfg.merges):
            pair = self.pick(2, used)
            used.update(pair)
            # The child is the parents' normalised sum: for nearly orthogonal parents it sits
            # at cosine ~0.71 to each, the mirror of a split.
            child_dir = self.unit(self.dirs.pop(pair[0]) + self.dirs.pop(pair[1]))
            coefs = torch.maximum(self.coefs.pop(pair[0]), self.coefs.pop(pair[1]))
            event("merge", pair, [self.add(child_dir, coefs)])
        for _ in range(cfg.births):
            fid = self.add(self.random_dir(), self.random_support())
            if ramp:  # grows: 1/ramp, ..., 1
                self.scales[fid] = [*ramp, 1.0]
                self.ramping[fid] = TrueEvent(prev, step, "birth", frozenset(), frozenset([fid]))
            else:
                event("birth", [], [fid])
        return events

    def advance_ramps(self, step: int) -> list[TrueEvent]:
        """After the activations of `step`: move every gradual feature to its next scale, and
        return the events whose ramp ended at this step (a faded feature is removed)."""
        done = []
        for fid in list(self.scales):
            scale = self.scales[fid].pop(0)
            if self.scales[fid]:
                continue
            del self.scales[fid]
            if scale == 0.0:
                del self.dirs[fid], self.coefs[fid]
            e = self.ramping.pop(fid)
            done.append(TrueEvent(e.prev_step, e.step, e.kind, e.sources, e.targets, until=step))
        return done

    def drift(self) -> None:
        for fid, direction in self.dirs.items():
            nudge = self.cfg.drift * torch.randn(self.cfg.d, generator=self.g) / self.cfg.d**0.5
            self.dirs[fid] = self.unit(direction + nudge)

    def activations(self) -> Tensor:
        ids = sorted(self.dirs)
        codes = torch.stack([self.coefs[f] * self.scales.get(f, [1.0])[0] for f in ids], dim=1)
        dirs = torch.stack([self.dirs[f] for f in ids])
        return codes @ dirs + self.cfg.noise * torch.randn(self.cfg.n, self.cfg.d, generator=self.g)


def planted_run(cfg: PlantedConfig | None = None) -> PlantedRun:
    """Generate a planted run (see the module docstring)."""
    cfg = cfg or PlantedConfig()
    planter = _Planter(cfg)
    for _ in range(cfg.n_true):
        planter.add(planter.random_dir(), planter.random_support())
    run = PlantedRun()
    for i, step in enumerate(cfg.steps):
        if i > 0:
            planter.drift()
            if step not in cfg.quiet:
                run.events.extend(planter.transition(cfg.steps[i - 1], step))
        run.directions[step] = {
            f: d
            for f, d in planter.dirs.items()
            if f not in planter.scales or planter.scales[f][0] > 0
        }
        run.acts[step] = planter.activations()
        run.events.extend(planter.advance_ramps(step))
    last = cfg.steps[-1]
    run.events.extend(
        TrueEvent(e.prev_step, e.step, e.kind, e.sources, e.targets, until=last, complete=False)
        for e in planter.ramping.values()
    )
    return run


@dataclass(frozen=True)
class KindScore:
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def true_feature_of(W_dec_FD: Tensor, truth: dict[int, Tensor], min_cos: float) -> dict[int, int]:
    """SAE feature -> the true feature its decoder points at (cosine >= min_cos)."""
    ids = sorted(truth)
    T = torch.stack([truth[i] for i in ids])
    W = W_dec_FD / W_dec_FD.norm(dim=1, keepdim=True)
    best = (W @ T.t()).max(dim=1)
    return {
        f: ids[int(j)]
        for f, (c, j) in enumerate(zip(best.values, best.indices, strict=True))
        if float(c) >= min_cos
    }


def score_events(
    run: PlantedRun,
    reported: list[tuple[int, int, str, list[int], list[int]]],
    decoders: dict[int, Tensor],
    min_cos: float = 0.9,
) -> dict[str, KindScore]:
    """Precision and recall per event kind. A reported event (prev_step, step, kind, source
    features, target features) is right when its features map to the true features of a true
    event of the same kind at the same transition, or, for a gradual one, at a step from one
    checkpoint before its ramp to one after; each true event is found at most once. An event
    still under way at the last checkpoint counts neither way."""
    maps = {s: true_feature_of(W, run.directions[s], min_cos) for s, W in decoders.items()}
    index = {step: i for i, step in enumerate(sorted(run.acts))}

    def on_time(event: TrueEvent, prev_step: int, step: int) -> bool:
        if event.until is None:
            return (event.prev_step, event.step) == (prev_step, step)
        return index[event.step] - 1 <= index[step] <= index[event.until] + 1

    found: set[TrueEvent] = set()
    fp = dict.fromkeys(KINDS, 0)
    for prev_step, step, kind, sources, targets in reported:
        src = [maps[prev_step].get(f) for f in sources]
        tgt = [maps[step].get(f) for f in targets]
        match = next(
            (
                e
                for e in run.events
                if e not in found
                and e.kind == kind
                and e.sources == frozenset(src)
                and e.targets == frozenset(tgt)
                and on_time(e, prev_step, step)
            ),
            None,
        )
        if None in src or None in tgt or match is None:
            fp[kind] += 1
        else:
            found.add(match)
    scores = {}
    for kind in KINDS:
        tp = sum(1 for e in found if e.kind == kind and e.complete)
        fn = sum(1 for e in run.events if e.kind == kind and e.complete) - tp
        scores[kind] = KindScore(tp, fp[kind], fn)
    return scores
