"""Reading the lineage store: every method returns a polars DataFrame (or a tensor/SAE).

Each query opens the file read-only for its own duration (inside `shared_reads`, a burst of
queries shares one connection for up to half a second), so a reader never blocks a live
run's writer for long, and retries briefly while the writer holds it. Every value a user
gives reaches SQL as a parameter.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from safetensors.torch import load as load_bytes
from torch import Tensor

from tracker import across, comparison
from tracker.activations import load_activation_file
from tracker.comparison import Comparison
from tracker.config import MatchConfig
from tracker.db import (
    CORE_TABLES,
    EVENTS_AGAINST_NOISE,
    LINEAGE_LABELS,
    check_extra_name,
    query,
    shared_reads,
)
from tracker.evidence import with_evidence
from tracker.overview import Overview
from tracker.panels import Panel, decode
from tracker.sae import SAE
from tracker.snapshots import RunDir
from tracker.store import Writer

__all__ = ["VIEWER_DBS_ENV", "Comparison", "Reader", "open_db", "shared_reads", "with_evidence"]

VIEWER_DBS_ENV = "TRACKER_DBS"
"""The environment variable through which `tracker app` tells the viewer which files to open."""


class Reader(Overview):
    """Queries over one lineage database file (see `open_db`)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # Exists, is a lineage DB of this schema version, and holds all of its tables.
        found = query(self.path, "SELECT table_name FROM information_schema.tables")
        missing = sorted(set(CORE_TABLES) - set(found["table_name"].to_list()))
        if missing:
            raise ValueError(
                f"{self.path} lacks the lineage tables {missing}: rebuild it with "
                "`tracker fit` or `tracker analyze`"
            )

    def sql(self, sql: str, params: list[object] | None = None) -> pl.DataFrame:
        """Any read-only query, parameterized."""
        return query(self.path, sql, list(params or []))

    def runs(self) -> pl.DataFrame:
        return self.sql("SELECT * FROM runs ORDER BY created_at")

    def layers(self, run: str) -> list[str]:
        rows = self.sql(
            "SELECT DISTINCT layer FROM checkpoints WHERE run = ? ORDER BY layer", [run]
        )
        return rows["layer"].to_list()

    def checkpoints(self, run: str, layer: str | None = None) -> pl.DataFrame:
        """Whole checkpoints written so far (a live run adds rows as it goes)."""
        if layer is None:
            return self.sql("SELECT * FROM checkpoints WHERE run = ? ORDER BY layer, step", [run])
        return self.sql(
            "SELECT * FROM checkpoints WHERE run = ? AND layer = ? ORDER BY step", [run, layer]
        )

    def metrics(self, run: str, name: str | None = None) -> pl.DataFrame:
        if name is None:
            return self.sql("SELECT * FROM metrics WHERE run = ? ORDER BY name, step", [run])
        return self.sql(
            "SELECT * FROM metrics WHERE run = ? AND name = ? ORDER BY step", [run, name]
        )

    def saes(self, run: str, layer: str) -> pl.DataFrame:
        return self.sql(
            "SELECT * FROM saes WHERE run = ? AND layer = ? ORDER BY step", [run, layer]
        )

    def features(self, run: str, layer: str, step: int) -> pl.DataFrame:
        return self.sql(
            "SELECT * FROM features WHERE run = ? AND layer = ? AND step = ? ORDER BY feature",
            [run, layer, step],
        )

    def edges(self, run: str, layer: str, step: int) -> pl.DataFrame:
        """Edges from the checkpoint before `step` into `step`."""
        return self.sql(
            "SELECT * FROM edges WHERE run = ? AND layer = ? AND step = ? ORDER BY source, target",
            [run, layer, step],
        )

    def events(
        self, run: str, layer: str, step: int | None = None, min_confidence: float = 0.0
    ) -> pl.DataFrame:
        sql = "SELECT * FROM events WHERE run = ? AND layer = ? AND confidence >= ?"
        params: list[object] = [run, layer, min_confidence]
        if step is not None:
            sql += " AND step = ?"
            params.append(step)
        return self.sql(sql + " ORDER BY step, kind", params)

    def event_counts(self, run: str, layer: str, min_confidence: float = 0.5) -> pl.DataFrame:
        """Events per checkpoint and kind (confident ones by default)."""
        return self.sql(
            "SELECT step, kind, count(*) AS n FROM events WHERE run = ? AND "
            "layer = ? AND confidence >= ? GROUP BY step, kind ORDER BY step, kind",
            [run, layer, min_confidence],
        )

    def events_against_noise(
        self, run: str, layer: str, min_confidence: float = 0.5
    ) -> pl.DataFrame:
        """Per transition (step, prev_step): all events, confident ones, and `unstable`, the
        live features on either side that no second seed found: what SAE noise alone could
        show as births and deaths there. Null `unstable` where the run fitted one seed."""
        return self.sql(
            EVENTS_AGAINST_NOISE,
            [run, layer, min_confidence, run, layer, run, layer],
        )

    def lineage_labels(self, run: str, layer: str) -> pl.DataFrame:
        """lineage, step, label: each lineage's latest label (a "label" panel its run
        published for one of its features); lineages without one are left out."""
        return self.sql(LINEAGE_LABELS, [run, layer])

    def lineage(self, run: str, layer: str, lineage: int) -> pl.DataFrame:
        """One lineage's features across all checkpoints."""
        return self.sql(
            "SELECT * FROM features WHERE run = ? AND layer = ? AND lineage = ? ORDER BY step",
            [run, layer, lineage],
        )

    def lineage_edges(self, run: str, layer: str, lineage: int) -> pl.DataFrame:
        """Edges into the lineage's features: the cosine to its own past at each step."""
        return self.sql(
            "SELECT e.* FROM edges e JOIN features f ON f.run = e.run AND f.layer = e.layer "
            "AND f.step = e.step AND f.feature = e.target "
            "WHERE e.run = ? AND e.layer = ? AND f.lineage = ? ORDER BY e.step",
            [run, layer, lineage],
        )

    def lineage_events(self, run: str, layer: str, lineage: int) -> pl.DataFrame:
        """Events that take one of the lineage's features as source or target."""
        return self.sql(
            "SELECT DISTINCT ev.* FROM events ev JOIN features f ON f.run = ev.run AND "
            "f.layer = ev.layer AND ((f.step = ev.step AND list_contains(ev.targets, "
            "f.feature)) OR (f.step = ev.prev_step AND list_contains(ev.sources, f.feature))) "
            "WHERE ev.run = ? AND ev.layer = ? AND f.lineage = ? ORDER BY ev.step",
            [run, layer, lineage],
        )

    def run_config(self, run: str) -> dict[str, object]:
        rows = self.sql("SELECT config FROM runs WHERE run = ?", [run])
        return json.loads(rows["config"][0]) if not rows.is_empty() else {}

    def lineage_gaps(self, run: str, layer: str, lineage: int) -> pl.DataFrame:
        """Where the lineage went unseen: `missed` edges (no SAE had its feature at step
        while the activations still showed it) and continuations across a gap (a later SAE
        found it again, or took back its death). prev_step is where it was last seen,
        act_corr the pattern correlation, gap the checkpoints without it."""
        return self.sql(
            "SELECT e.kind, e.prev_step, e.step, e.source, e.act_corr, e.gap FROM edges e JOIN "
            "features f ON f.run = e.run AND f.layer = e.layer AND f.step = e.prev_step AND "
            "f.feature = e.source WHERE e.run = ? AND e.layer = ? AND f.lineage = ? AND "
            "e.gap > 0 ORDER BY e.step",
            [run, layer, lineage],
        )

    def lineage_parents(self, run: str, layer: str, lineage: int) -> pl.DataFrame:
        return self.sql(
            "SELECT * FROM lineages WHERE run = ? AND layer = ? AND lineage = ?",
            [run, layer, lineage],
        )

    def examples(self, run: str, layer: str, step: int, feature: int) -> pl.DataFrame:
        return self.sql(
            "SELECT * FROM examples WHERE run = ? AND layer = ? AND step = ? AND "
            "feature = ? ORDER BY rank",
            [run, layer, step, feature],
        )

    def probe(self, run: str) -> pl.DataFrame:
        return self.sql("SELECT * FROM probe WHERE run = ? ORDER BY probe_index", [run])

    def table(self, name: str, run: str, step: int | None = None) -> pl.DataFrame:
        """An experiment's own table (`Writer.write_table`); empty when the file has none.
        With `step`, only its rows at that step (the table must have a `step` column): a
        renderer reads one checkpoint of a large table, e.g. feature maps."""
        check_extra_name(name)
        found = self.sql("SELECT 1 FROM duckdb_tables() WHERE table_name = ?", [name])
        if found.is_empty():
            return pl.DataFrame()
        if step is None:
            return self.sql(f"SELECT * FROM {name} WHERE run = ?", [run])
        return self.sql(f"SELECT * FROM {name} WHERE run = ? AND step = ?", [run, step])

    def panels(self, run: str, layer: str, step: int, feature: int) -> list[Panel]:
        """What the Feature page draws for this feature (`Writer.write_panels`): its own
        panels merged with its checkpoint's by position, its own first at equal positions."""
        rows = self.sql(
            "SELECT kind, spec, data FROM panels WHERE run = ? AND layer = ? AND step = ? "
            "AND (feature = ? OR feature IS NULL) ORDER BY position, feature IS NULL",
            [run, layer, step, feature],
        )
        return [decode(*row) for row in rows.iter_rows()]

    def replay(self, run: str) -> tuple[str, dict[str, object]] | None:
        """The experiment a run belongs to and its configuration, if one recorded it."""
        rows = self.sql("SELECT replay, config FROM replays WHERE run = ?", [run])
        return None if rows.is_empty() else (rows["replay"][0], json.loads(rows["config"][0]))

    def failures(self, run: str) -> pl.DataFrame:
        return self.sql("SELECT * FROM failures WHERE run = ? ORDER BY step", [run])

    def sae(self, run: str, layer: str, step: int) -> SAE:
        rows = self.sql(
            "SELECT cfg, weights FROM sae_weights WHERE run = ? AND layer = ? AND step = ?",
            [run, layer, step],
        )
        if rows.is_empty():
            raise ValueError(f"{self.path}: no SAE for run {run!r}, layer {layer!r}, step {step}")
        where = f"{self.path} run {run!r} layer {layer!r} step {step}"
        return SAE.from_parts(json.loads(rows["cfg"][0]), load_bytes(rows["weights"][0]), where)

    def decoder(self, run: str, layer: str, step: int) -> Tensor:
        """The [d_sae, d] unit-row decoder of that checkpoint's SAE."""
        return self.sae(run, layer, step).W_dec.detach()

    def compare(self, run: str, layer: str, a: int, b: int, max_features: int = 512) -> Comparison:
        """Checkpoints a and b side by side on the signal the run's matching used (the
        `max_features` most frequent live features of each; see `tracker.comparison`). The
        probe activations are read from the run directory beside this file when it still
        holds them; without them the decoders are compared."""
        config = MatchConfig.from_dict(self._match_dict(run))
        saes = (self.sae(run, layer, a), self.sae(run, layer, b))
        features = (self.features(run, layer, a), self.features(run, layer, b))
        return comparison.compare(
            saes,
            features,
            (self._acts(run, layer, a), self._acts(run, layer, b)),
            config,
            max_features,
        )

    def shared_lineages(
        self, run: str, layer: str, other: str | Path, other_run: str, other_layer: str
    ) -> pl.DataFrame:
        """Which lineages this run and `other_run` (in the database file `other`) both grow,
        and when: their features paired on activation correlation over the probe set at
        every step both checkpointed (see `tracker.across`). Needs both runs' snapshots."""
        theirs = Reader(other)
        if not self.probe(run).drop("run").equals(theirs.probe(other_run).drop("run")):
            raise ValueError(f"runs {run!r} and {other_run!r} describe different probe inputs")
        steps = sorted(
            set(self.checkpoints(run, layer)["step"])
            & set(theirs.checkpoints(other_run, other_layer)["step"])
        )
        if not steps:
            raise ValueError(f"runs {run!r} and {other_run!r} have no checkpoint step in common")
        config = MatchConfig.from_dict(self._match_dict(run))
        pairs = [
            across.pairs_at(
                step,
                self._snapshot(run, layer, step),
                theirs._snapshot(other_run, other_layer, step),
                config,
            )
            for step in steps
        ]
        return across.shared(
            pl.concat(pairs),
            self.feature_map(run, layer),
            theirs.feature_map(other_run, other_layer),
        )

    def _snapshot(self, run: str, layer: str, step: int) -> across.Snapshot:
        acts = self._acts(run, layer, step)
        if acts is None:
            raise FileNotFoundError(
                f"{self.path.parent / 'activations'}: no snapshot of run {run!r} layer "
                f"{layer!r} step {step}; two runs are compared on their probe activations"
            )
        features = self.features(run, layer, step).select("feature", "lineage")
        return across.Snapshot(self.sae(run, layer, step), features, acts)

    def _match_dict(self, run: str) -> dict[str, object]:
        match = self.run_config(run).get("match")
        return match if isinstance(match, dict) else {}

    def _acts(self, run: str, layer: str, step: int) -> Tensor | None:
        """The run's probe activations at `step`, from the run directory this file sits
        in (None when it holds none, or is another run's)."""
        run_dir = RunDir(self.path.parent)
        manifest = run_dir.read_manifest()
        path = run_dir.activation_path(layer, step)
        if (manifest is not None and manifest.get("run") != run) or not path.is_file():
            return None
        return load_activation_file(path)


def open_db(path: str | Path, read_only: bool = True) -> Reader:
    """A reader over a lineage database. With read_only=False a missing file is created
    (empty, with the schema) first.

    Raises:
        FileNotFoundError: read_only and the file does not exist.
        ValueError: not a lineage database, or one of another schema version.
    """
    if not read_only:
        Writer(path)
    return Reader(path)
