"""Whole-run lineage queries for the viewer's overview pages, answered in SQL.

A run of 1,000 checkpoints of 16,384 features holds 16 million feature rows; the Lineage and
Feature pages need per-lineage spans, the lineages each event concerns, and the rows of the
few lineages they draw. Reading every row into the page to work those out took about a
second there (README "Store speed"); these queries hand back only what a page shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import polars as pl

EVENT_LINEAGES = (  # run, layer, min_confidence, run, layer
    "WITH e AS (SELECT *, row_number() OVER () AS event FROM events "
    "WHERE run = ? AND layer = ? AND confidence >= ?), "
    "ends AS (SELECT event, prev_step AS at, unnest(sources) AS feature FROM e "
    "UNION ALL SELECT event, step AS at, unnest(targets) AS feature FROM e), "
    "lin AS (SELECT ends.event, list(DISTINCT f.lineage ORDER BY f.lineage) AS lineages "
    "FROM ends JOIN features f ON f.step = ends.at AND f.feature = ends.feature "
    "WHERE f.run = ? AND f.layer = ? GROUP BY ends.event) "
    "SELECT e.* EXCLUDE (event), coalesce(lin.lineages, []::BIGINT[]) AS lineages "
    "FROM e LEFT JOIN lin USING (event) ORDER BY e.step, e.kind, e.event"
)


class _Queries(Protocol):
    def sql(self, sql: str, params: list[object] | None = None) -> pl.DataFrame: ...


class Overview:
    """The overview queries of `tracker.reader.Reader`, which supplies `sql`."""

    def feature_map(self: _Queries, run: str, layer: str) -> pl.DataFrame:
        """step, feature, lineage of every live feature of every checkpoint."""
        return self.sql(
            "SELECT step, feature, lineage, frequency FROM features WHERE run = ? "
            "AND layer = ? ORDER BY step, feature",
            [run, layer],
        )

    def lineage_spans(
        self: _Queries,
        run: str,
        layer: str,
        first: int | None = None,
        last: int | None = None,
        lineages: Sequence[int] | None = None,
    ) -> pl.DataFrame:
        """lineage, first, last, checkpoints: where each lineage is seen within steps
        [first, last] (all by default), for `lineages` only when given."""
        sql = (
            "SELECT lineage, min(step) AS first, max(step) AS last, count(*) AS checkpoints "
            "FROM features WHERE run = ? AND layer = ? AND step BETWEEN ? AND ?"
        )
        params: list[object] = [run, layer, _low(first), _high(last)]
        if lineages is not None:
            sql += " AND list_contains(?, lineage)"
            params.append([int(x) for x in lineages])
        return self.sql(sql + " GROUP BY lineage ORDER BY lineage", params)

    def lineage_count(self: _Queries, run: str, layer: str) -> int:
        rows = self.sql(
            "SELECT count(DISTINCT lineage) AS n FROM features WHERE run = ? AND layer = ?",
            [run, layer],
        )
        return int(rows["n"][0])

    def lineage_rows(
        self: _Queries,
        run: str,
        layer: str,
        lineages: Sequence[int],
        first: int | None = None,
        last: int | None = None,
    ) -> pl.DataFrame:
        """step, feature, lineage, frequency of the features of `lineages` within steps
        [first, last]."""
        return self.sql(
            "SELECT step, feature, lineage, frequency FROM features WHERE run = ? AND "
            "layer = ? AND step BETWEEN ? AND ? AND list_contains(?, lineage) "
            "ORDER BY step, feature",
            [run, layer, _low(first), _high(last), [int(x) for x in lineages]],
        )

    def event_lineages(
        self: _Queries, run: str, layer: str, min_confidence: float = 0.0
    ) -> pl.DataFrame:
        """The events at `min_confidence` or more, ordered as `events` orders them, with
        `lineages`: those of their sources (where last seen, at prev_step) and targets."""
        return self.sql(EVENT_LINEAGES, [run, layer, min_confidence, run, layer])


def _low(step: int | None) -> int:
    return -(2**62) if step is None else int(step)


def _high(step: int | None) -> int:
    return 2**62 if step is None else int(step)
