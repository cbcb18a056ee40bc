"""A sequence of checkpoints: SAEs fitted in order, matched pairwise, chained into lineages."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import polars as pl
import torch
from torch import Tensor
from tqdm.auto import tqdm

from tracker.calibration import cross_seed_stable
from tracker.checks import as_activations
from tracker.config import MatchConfig, SAEConfig
from tracker.fit import train_sae
from tracker.match import MatchResult, activation_rows, match, resolve_signal
from tracker.sae import SAE

NOISE_SEED_OFFSET = 1_000_003


@dataclass
class Checkpoint:
    step: int
    sae: SAE
    acts: Tensor
    stable: Tensor | None = None
    """Bool [d_sae]: live features the independent other-seed SAE also has (cos >= tau)."""
    stable_share: float | None = None
    """Share of live features that are stable: the seed noise floor of this checkpoint."""


@dataclass
class Lineage:
    checkpoints: list[Checkpoint]
    matches: list[MatchResult]
    """matches[i] links checkpoints[i] and checkpoints[i + 1]."""
    ids: dict[int, dict[int, int]] = field(default_factory=dict)
    """step -> {feature: lineage id} for every live feature."""
    parents: pl.DataFrame = field(default_factory=pl.DataFrame)
    """lineage, parent, kind (split or merge), step: where a lineage came from."""


def fit_checkpoint(
    step: int,
    acts: object,
    config: SAEConfig,
    match_config: MatchConfig,
    previous: SAE | None = None,
) -> Checkpoint:
    """One checkpoint's SAE (warm-started from `previous` when config.init == "previous")
    and, with config.noise_floor, its stable features against an independent other seed."""
    x = as_activations(acts, name=f"activations at step {step}")
    init_from = previous if config.init == "previous" else None
    sae = train_sae(x, config, init_from=init_from)
    checkpoint = Checkpoint(step, sae, x)
    if config.noise_floor:
        other = train_sae(x, replace(config, seed=config.seed + NOISE_SEED_OFFSET, progress=False))
        live, other_live = match_config.live(sae), match_config.live(other)
        signal = resolve_signal(match_config, sae.d, int(live.sum()), have_acts=True)
        if signal == "activation":  # the two seeds' features, compared on the same inputs
            mine = activation_rows(sae.latents(x, columns=live.nonzero().flatten()))
            theirs = activation_rows(other.latents(x, columns=other_live.nonzero().flatten()))
        else:
            mine, theirs = sae.W_dec.detach()[live].cpu(), other.W_dec.detach()[other_live].cpu()
        stable = torch.zeros(sae.d_sae, dtype=torch.bool)
        stable[live] = cross_seed_stable(mine, theirs, match_config.tau_match)
        checkpoint.stable = stable
        checkpoint.stable_share = float(stable[live].float().mean()) if live.any() else 0.0
    return checkpoint


def track(
    acts: Mapping[int, object],
    config: SAEConfig | None = None,
    match_config: MatchConfig | None = None,
    *,
    progress: bool = False,
) -> Lineage:
    """Fit every checkpoint in step order, match consecutive ones, and assign lineage ids."""
    config, match_config = config or SAEConfig(), match_config or MatchConfig()
    checkpoints: list[Checkpoint] = []
    for step in tqdm(sorted(acts), desc="checkpoints", disable=not progress):
        previous = checkpoints[-1].sae if checkpoints else None
        checkpoints.append(fit_checkpoint(step, acts[step], config, match_config, previous))
    matches = [
        match(
            a.sae, b.sae, match_config, a.acts, b.acts, stable_prev=a.stable, stable_next=b.stable
        )
        for a, b in itertools.pairwise(checkpoints)
    ]
    return assign_lineages(checkpoints, matches, match_config)


class LineageIds:
    """Lineage ids, advanced one checkpoint at a time: a continuation keeps its parent's
    lineage; births, split children and merge results start new ones, and splits and merges
    record their parents. Live features are those that take part in `match`
    (`MatchConfig.live`)."""

    def __init__(self, config: MatchConfig | None = None) -> None:
        self.config = config or MatchConfig()
        self.next_id = 0

    def _new(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def _live(self, sae: SAE) -> list[int]:
        return self.config.live(sae).nonzero().flatten().tolist()

    def start(self, sae: SAE) -> dict[int, int]:
        return {feature: self._new() for feature in self._live(sae)}

    def advance(
        self, before: dict[int, int], result: MatchResult, sae: SAE, step: int
    ) -> tuple[dict[int, int], list[dict[str, object]]]:
        """(feature -> lineage at this step, parent rows) after `result`."""
        now: dict[int, int] = {}
        parents: list[dict[str, object]] = []
        for row in result.edges.filter(pl.col("kind") == "continuation").iter_rows(named=True):
            now[row["target"]] = before[row["source"]]
        for row in result.events.iter_rows(named=True):
            for target in row["targets"]:
                now[target] = self._new()
                parents += [
                    {
                        "lineage": now[target],
                        "parent": before[source],
                        "kind": row["kind"],
                        "step": step,
                    }
                    for source in row["sources"]
                ]
        for feature in self._live(sae):  # only when a side had nothing live to match
            if feature not in now:
                now[feature] = self._new()
        return now, parents


PARENT_SCHEMA = {"lineage": pl.Int64, "parent": pl.Int64, "kind": pl.Utf8, "step": pl.Int64}


def assign_lineages(
    checkpoints: list[Checkpoint],
    matches: list[MatchResult],
    config: MatchConfig | None = None,
) -> Lineage:
    """Lineage ids for a whole sequence (see `LineageIds`)."""
    result = Lineage(checkpoints, matches)
    if not checkpoints:
        return result
    ids = LineageIds(config)
    result.ids[checkpoints[0].step] = ids.start(checkpoints[0].sae)
    parents: list[dict[str, object]] = []
    for prev, cur, m in zip(checkpoints, checkpoints[1:], matches, strict=False):
        result.ids[cur.step], rows = ids.advance(result.ids[prev.step], m, cur.sae, cur.step)
        parents += rows
    result.parents = pl.DataFrame(parents, schema=PARENT_SCHEMA)
    return result
