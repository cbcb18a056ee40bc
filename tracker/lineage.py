"""A sequence of checkpoints: SAEs fitted in order, chained into lineages (`tracker.chain`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import polars as pl
from tqdm.auto import tqdm

from tracker.chain import Chain
from tracker.checkpoint import Checkpoint
from tracker.checks import check_steps
from tracker.config import MatchConfig, SAEConfig
from tracker.links import PARENT_SCHEMA, LineageIds, Link
from tracker.match import MatchResult


@dataclass
class Lineage:
    checkpoints: list[Checkpoint]
    matches: list[MatchResult]
    """matches[i] links checkpoints[i] and checkpoints[i + 1]."""
    ids: dict[int, dict[int, int]] = field(default_factory=dict)
    """step -> {feature: lineage id} for every live feature."""
    parents: pl.DataFrame = field(default_factory=pl.DataFrame)
    """lineage, parent, kind (split or merge), step: where a lineage came from."""
    links: list[Link] = field(default_factory=list)
    """links[i] adds checkpoints[i + 1]: its edges and events as the store holds them
    (across gaps, with witnessed deaths of lost features)."""

    def events(self) -> pl.DataFrame:
        """Every event of the sequence, with prev_step and step."""
        frames = [
            link.events.with_columns(pl.lit(link.step, pl.Int64).alias("step"))
            for link in self.links
        ]
        return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def track(
    acts: Mapping[int, object],
    config: SAEConfig | None = None,
    match_config: MatchConfig | None = None,
    *,
    progress: bool = False,
) -> Lineage:
    """Fit every checkpoint in step order and chain them: matches with activation witnesses,
    gap-tolerant lineage ids (see `tracker.chain.Chain`)."""
    config, match_config = config or SAEConfig(), match_config or MatchConfig()
    check_steps(acts, "the mapping's keys (steps)")
    chain = Chain(match_config)
    result = Lineage([], [])
    parents: list[dict[str, object]] = []
    for step in tqdm(sorted(acts), desc="checkpoints", disable=not progress):
        link = chain.fit(step, acts[step], config)
        assert link.checkpoint is not None
        result.checkpoints.append(link.checkpoint)
        result.ids[step] = link.ids
        if link.result is not None:
            result.matches.append(link.result)
            result.links.append(link)
            parents += link.parents
    result.parents = pl.DataFrame(parents, schema=PARENT_SCHEMA)
    return result


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
