"""The offline pipeline: checkpoints in step order -> SAEs, matches, lineage -> the store.

`Analyzer` takes one (run, layer)'s checkpoints one at a time; `analyze`, `tracker fit` and
the callback's inline and background modes all drive it, so they write the same tables.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import polars as pl
import torch
from torch import Tensor
from tqdm.auto import tqdm

from tracker.activations import load_activation_file
from tracker.chain import Chain
from tracker.checkpoint import Checkpoint
from tracker.checks import as_activations, check_choice, check_steps
from tracker.config import MatchConfig, SAEConfig
from tracker.links import PARENT_SCHEMA, Link
from tracker.reader import Reader
from tracker.remote import RayFits, fit_on_ray, preflight
from tracker.resume import StoredRun
from tracker.snapshots import RunDir, scan_activation_dir
from tracker.store import Writer

log = logging.getLogger(__name__)

LOW_STABLE_SHARE = 0.3
"""Below this stable share the run warns (planted data: ~0.77; Gaussian noise: 0.0)."""
MIN_LIVE_TO_CHECK = 8
"""Checkpoints with fewer live features (a network at initialisation) are not judged."""
TOP_EXAMPLES = 20
EXAMPLE_QUANTILES = (0.25, 0.5, 0.75)
DB_NAME = "lineage.duckdb"
Executor = Literal["local", "ray"]


class Analyzer:
    """Fits, matches and stores the checkpoints of one (run, layer), in step order."""

    def __init__(
        self,
        writer: Writer,
        run: str,
        layer: str,
        sae: SAEConfig | None = None,
        match_config: MatchConfig | None = None,
    ) -> None:
        self.writer, self.run, self.layer = writer, run, layer
        self.sae_config = sae or SAEConfig()
        self.match_config = match_config or MatchConfig()
        self.chain = Chain(self.match_config)
        self._checked = False

    def resume(self, before: int, load_acts: Callable[[int], Tensor]) -> None:
        """Continue from the last stored checkpoint before step `before` (a resumed training
        run; see `tracker.resume`)."""
        StoredRun(Reader(self.writer.path), self.run, self.layer, load_acts).resume(
            self.chain, before
        )

    def add(self, step: int, acts: object, fitted: Checkpoint | None = None) -> dict[str, float]:
        """Fit checkpoint `step` (or take it `fitted` elsewhere, as by `tracker.remote`),
        chain it to the previous ones, write it in one transaction. Returns its summary: live
        features, stable share, FVU and confident events per kind (what the callback logs
        through the trainer's logger)."""
        prev = self.chain.prev
        if fitted is None:
            link = self.chain.fit(step, acts, self.sae_config)
        else:
            x = as_activations(acts, name=f"activations at step {step}")
            link = self.chain.add(replace(fitted, acts=x))
        cp = link.checkpoint
        assert cp is not None
        prev_step = prev.step if prev is not None else None
        revise = None if link.revised is None or prev is None else (prev.step, link.revised)
        self.writer.write_checkpoint(
            self.run, self.layer, step, checkpoint_tables(cp, link, prev_step), revise
        )
        numbers = summary(cp, link, self.match_config)
        self._check_reproducible(step, numbers)
        return numbers

    def _check_reproducible(self, step: int, numbers: dict[str, float]) -> None:
        """Warn once, at the first checkpoint with features, when a second seed finds few of
        them: every event would be capped at low confidence."""
        share = numbers.get("stable_share")
        if self._checked or share is None or numbers["live_features"] < MIN_LIVE_TO_CHECK:
            return
        self._checked = True
        if share < LOW_STABLE_SHARE:
            log.warning(
                "layer %s step %d: a second seed finds %.0f%% of the %d live features (stable "
                "share %.2f): the dictionary is not reproducible and events will be capped at "
                "low confidence; a smaller one may be (`tracker suggest` measures sizes)",
                self.layer, step, 100 * share, numbers["live_features"], share,
            )  # fmt: skip


def summary(cp: Checkpoint, link: Link, config: MatchConfig) -> dict[str, float]:
    """One checkpoint in numbers a training logger plots beside the loss."""
    assert cp.sae.metrics is not None
    out = {"live_features": float(len(link.ids)), "fvu": float(cp.sae.metrics.fvu)}
    if cp.stable_share is not None:
        out["stable_share"] = cp.stable_share
    kinds = []  # the first checkpoint's link has no events table
    if link.events.height:
        kinds = link.events.filter(pl.col("confidence") >= config.min_confidence)["kind"].to_list()
    for kind in ("birth", "death", "split", "merge"):
        out[f"{kind}s"] = float(kinds.count(kind))
    return out


def checkpoint_tables(cp: Checkpoint, link: Link, prev_step: int | None) -> dict[str, pl.DataFrame]:
    sae, metrics = cp.sae, cp.sae.metrics
    assert metrics is not None
    cfg = sae.config
    result, ids = link.result, link.ids
    stable = cp.stable if cp.stable is not None else torch.zeros(sae.d_sae, dtype=torch.bool)
    live = sorted(ids)
    tables = {
        "checkpoints": pl.DataFrame(
            [
                {
                    "prev_step": prev_step,
                    "n_probe": cp.acts.shape[0],
                    "stable_share": cp.stable_share,
                    "tau": result.tau if result else None,
                    "chance_mean": result.chance.mean if result else None,
                    "chance_quantile": result.chance.quantile if result else None,
                    "written_at": datetime.now(),
                }
            ],
            schema_overrides={
                "prev_step": pl.Int64,
                "tau": pl.Float64,
                "chance_mean": pl.Float64,
                "chance_quantile": pl.Float64,
                "stable_share": pl.Float64,
            },
        ),
        "saes": pl.DataFrame(
            [
                {
                    "d_in": sae.d,
                    "d_sae": sae.d_sae,
                    "arch": sae.arch,
                    "k": cfg.k,
                    "seed": cfg.seed,
                    "fvu": metrics.fvu,
                    "l0": metrics.l0,
                    "dead_fraction": metrics.dead_fraction,
                    "fit_seconds": metrics.fit_seconds,
                }
            ]
        ),
        "sae_weights": pl.DataFrame([{"cfg": json.dumps(sae.meta()), "weights": sae.to_bytes()}]),
        "features": pl.DataFrame(
            {
                "feature": live,
                "lineage": [ids[f] for f in live],
                "frequency": sae.frequency[live].tolist(),
                "mean_activation": sae.mean_activation[live].tolist(),
                "stable": stable[live].tolist(),
            },
            schema={
                "feature": pl.Int32,
                "lineage": pl.Int64,
                "frequency": pl.Float64,
                "mean_activation": pl.Float64,
                "stable": pl.Boolean,
            },
        ),
        "examples": examples(cp, live),
        "lineages": pl.DataFrame(link.parents, schema=PARENT_SCHEMA),
    }
    if result is not None:
        tables["edges"], tables["events"] = link.edges, link.events
    return tables


@torch.no_grad()
def examples(cp: Checkpoint, live: list[int]) -> pl.DataFrame:
    """Per live feature its top 20 probe inputs, plus one at each activation quantile of the
    inputs it fires on (as feature dashboards show); `rank` is the position by activation."""
    schema = {
        "feature": pl.Int32,
        "rank": pl.Int32,
        "probe_index": pl.Int32,
        "activation": pl.Float64,
    }
    if not live:
        return pl.DataFrame(schema=schema)
    z = cp.sae.latents(cp.acts, columns=torch.tensor(live))
    values, order = z.sort(dim=0, descending=True)
    fires = (z > 0).sum(0)
    rows: list[tuple[int, int, int, float]] = []
    for col, feature in enumerate(live):
        count = int(fires[col])
        ranks = list(range(min(TOP_EXAMPLES, count)))
        if count > TOP_EXAMPLES:
            ranks += sorted(
                {TOP_EXAMPLES + int(q * (count - TOP_EXAMPLES)) for q in EXAMPLE_QUANTILES}
            )
        rows += [(feature, r, int(order[r, col]), float(values[r, col])) for r in ranks]
    return pl.DataFrame(rows, schema=schema, orient="row")


def analyze(
    source: Mapping[int, object] | str | Path,
    db: str | Path,
    run: str,
    *,
    layer: str | None = None,
    sae: SAEConfig | None = None,
    match: MatchConfig | None = None,
    progress: bool = False,
    executor: Executor = "local",
    address: str | None = None,
    threads: int = 1,
) -> Writer:
    """Fit, match and store every checkpoint of `source`: a mapping {step: [n, d]} (one
    layer, named `layer` or "default") or an activation directory (all its layers, or only
    `layer`). With executor="ray" the fits are Ray tasks of `threads` CPU threads each (on
    the cluster at `address`, or on Ray started here) and a fit that keeps failing goes to
    the `failures` table while the run goes on (see `tracker.remote`). Returns the writer."""
    check_choice("executor", executor, ("local", "ray"))
    layers = _layers(source, layer)
    sae, match = sae or SAEConfig(), match or MatchConfig()
    ray = executor == "ray"  # Ray starts before anything is written
    fits = RayFits(sae, match, address=address, threads=threads) if ray else None
    try:
        writer = Writer(db)
        where = str(source) if isinstance(source, str | Path) else "mapping"
        writer.write_run(run, {"sae": sae.to_dict(), "match": match.to_dict(), "source": where})
        analyzers = {name: Analyzer(writer, run, name, sae, match) for name in layers}
        if fits is not None:
            fit_on_ray(layers, analyzers, _load, fits, progress)
        else:
            for name, steps in layers.items():
                for step in tqdm(sorted(steps), desc=f"layer {name}", disable=not progress):
                    analyzers[name].add(step, _load(steps[step]))
        writer.finish_run(run)
    finally:  # Ray stops last: a Ctrl-C while it does finds everything written
        if fits is not None:
            fits.close()
    return writer


def _layers(
    source: Mapping[int, object] | str | Path, layer: str | None
) -> dict[str, Mapping[int, Any]]:
    if isinstance(source, str | Path):
        found: dict[str, Mapping[int, Any]] = dict(scan_activation_dir(source))
        if layer is not None:
            if layer not in found:
                raise ValueError(f"{source} has no layer {layer!r}; it has {sorted(found)}")
            found = {layer: found[layer]}
        return {name or "default": steps for name, steps in found.items()}
    if not source:
        raise ValueError("source holds no checkpoints")
    check_steps(source, "the mapping's keys (steps)")
    return {layer or "default": source}


def _load(item: object) -> object:
    return load_activation_file(item) if isinstance(item, Path) else item


def fit_run(
    run_dir: str | Path,
    db: str | Path | None = None,
    progress: bool = False,
    executor: Executor = "local",
    address: str | None = None,
    threads: int = 1,
) -> Path:
    """Fit and match the snapshots a `defer` run saved; returns the database path
    (RUN_DIR/lineage.duckdb by default). The run's own SAE and match configs and metrics
    are used, so the tables equal what inline or background fitting would have written.
    `executor`, `address` and `threads` as in `analyze`."""
    rd = RunDir(run_dir)
    manifest = rd.read_manifest()
    if manifest is None:
        raise FileNotFoundError(f"{rd.path} is not a run directory (no run.json)")
    db_path = Path(db) if db is not None else rd.path / DB_NAME
    sae = SAEConfig.from_dict(manifest.get("sae", {}))
    match = MatchConfig.from_dict(manifest.get("match", {}))
    if executor == "ray":
        preflight(address, threads)
    writer = Writer(db_path)  # the run's records first: what Ray's end may cut short is none
    writer.write_metrics(manifest["run"], metrics_frame(rd))
    write_probe(writer, manifest["run"], rd)
    analyze(
        rd.activations,
        db_path,
        manifest["run"],
        sae=sae,
        match=match,
        progress=progress,
        executor=executor,
        address=address,
        threads=threads,
    )
    return db_path


def write_probe(writer: Writer, run: str, rd: RunDir) -> None:
    """The run directory's description of its probe rows (text probes), into the store."""
    rows = rd.probe_rows()
    if rows:
        writer.write_probe(run, pl.DataFrame(rows))


def metrics_frame(rd: RunDir) -> pl.DataFrame:
    return pl.DataFrame(
        rd.metrics(), schema={"step": pl.Int64, "name": pl.Utf8, "value": pl.Float64}
    )


def read_snapshot(rd: RunDir, layer: str, step: int) -> Tensor:
    return load_activation_file(rd.activation_path(layer, step))
