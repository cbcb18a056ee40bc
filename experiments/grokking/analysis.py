"""The report, from the run's DB alone: events per phase, features on key frequencies, and
where lineages settled on one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from experiments.grokking.config import LAYERS, GrokConfig
from experiments.grokking.progress import PHASES, phase_of, phases
from tracker.reader import open_db
from tracker.store import Writer


def events_by_phase(db: Path, cfg: GrokConfig, bounds: dict[str, int | None]) -> pl.DataFrame:
    """Births, deaths, splits and merges per phase, all and confident (>= 0.5; an event
    touching a feature the seed noise floor calls unstable has confidence 0.25). An event
    belongs to the phase of the checkpoint where it is seen; a birth or death counts each
    feature."""
    events = open_db(db).events(cfg.run, LAYERS[cfg.layer])
    kinds = ("birth", "death", "split", "merge")
    counts = {(ph, kind): [0, 0] for ph in PHASES for kind in kinds}
    for step, kind, sources, targets, confidence in events.select(
        "step", "kind", "sources", "targets", "confidence"
    ).iter_rows():
        n = len(targets) if kind == "birth" else len(sources) if kind == "death" else 1
        counts[(phase_of(step, bounds), kind)][0] += n
        counts[(phase_of(step, bounds), kind)][1] += n if confidence >= 0.5 else 0
    return pl.DataFrame(
        [
            {"phase": ph, "kind": kind, "count": n, "confident": c}
            for (ph, kind), (n, c) in counts.items()
        ]
    )


def cleanup_deaths(
    db: Path, cfg: GrokConfig, bounds: dict[str, int | None], labels: pl.DataFrame, keys: list[int]
) -> dict[str, int]:
    """Confident deaths in the clean-up, and how many of them were memorising features: not
    on a key frequency at the checkpoint where they were last seen."""
    events = open_db(db).events(cfg.run, LAYERS[cfg.layer], min_confidence=0.5)
    label = {(s, f): k for s, f, k in labels.select("step", "feature", "frequency").iter_rows()}
    dying = [
        label.get((prev_step, feature))
        for step, prev_step, kind, sources in events.select(
            "step", "prev_step", "kind", "sources"
        ).iter_rows()
        if kind == "death" and phase_of(step, bounds) == "cleanup"
        for feature in sources
    ]
    return {"deaths": len(dying), "memorising": sum(k not in keys for k in dying)}


def settled(
    labels: pl.DataFrame,
    features: pl.DataFrame,
    keys: list[int],
    bounds: dict[str, int | None],
) -> pl.DataFrame:
    """Lineages alive at the end on a key frequency, and the checkpoint from which their
    dominant frequency stays that one: "born" when that is the lineage's first checkpoint,
    "changed" when the lineage was there before on another map (the warm-started latent
    followed the network from memory to circuit). `features` holds the features table's
    step, feature and lineage."""
    joined = labels.join(features, on=["step", "feature"]).sort("lineage", "step")
    last = int(joined["step"].max())
    rows = []
    for (lineage,), group in joined.group_by("lineage"):
        freqs, steps = group["frequency"].to_list(), group["step"].to_list()
        if steps[-1] != last or freqs[-1] not in keys:
            continue
        i = len(freqs) - 1
        while i > 0 and freqs[i - 1] == freqs[-1]:
            i -= 1
        rows.append(
            {
                "lineage": lineage,
                "frequency": freqs[-1],
                "step": steps[i],
                "how": "born" if i == 0 else "changed",
                "phase": phase_of(steps[i], bounds),
            }
        )
    schema = {
        "lineage": pl.Int64,
        "frequency": pl.Int64,
        "step": pl.Int64,
        "how": pl.String,
        "phase": pl.String,
    }
    return pl.DataFrame(rows, schema=schema).sort("step", "lineage")


def analyse(cfg: GrokConfig) -> dict[str, Any]:
    """The report, from the run's DB alone (so it can be redone without training): phases,
    key frequencies, events per phase, how many SAE features sit on a key frequency at each
    checkpoint, and where lineages settled on one. Writes grok_phases and grok_live."""
    reader = open_db(cfg.db)
    measures = reader.metrics(cfg.run).pivot(on="name", index="step", values="value")
    bounds = phases(measures)
    embedding = reader.table("grok_embedding", cfg.run).sort("frequency")
    keys = embedding.filter(pl.col("key"))["frequency"].to_list()
    labels = reader.table("grok_features", cfg.run).drop("run")
    steps = reader.checkpoints(cfg.run, LAYERS[cfg.layer])["step"].to_list()
    features = reader.sql(
        "SELECT step, feature, lineage, stable FROM features WHERE run = ? AND layer = ?",
        [cfg.run, LAYERS[cfg.layer]],
    )
    live = (
        labels.join(features, on=["step", "feature"])
        .group_by("step")
        .agg(
            pl.len().alias("live"),
            (pl.col("frequency") > 0).sum().alias("labelled"),
            pl.col("frequency").is_in(keys).sum().alias("on_key"),
            pl.col("stable").sum().alias("stable"),
        )
        .sort("step")
    )
    by_phase = events_by_phase(cfg.db, cfg, bounds)
    writer = Writer(cfg.db)
    writer.write_table("grok_live", cfg.run, live)
    writer.write_table("grok_phases", cfg.run, by_phase)
    here = labels.filter(pl.col("step") == steps[-1])
    return {
        "keys": keys,
        "chance": len(keys) / (cfg.p // 2),
        "bounds": bounds,
        "final": measures.sort("step").row(-1, named=True),
        "coverage": {k: here.filter(pl.col("frequency") == k).height for k in keys},
        "phases": by_phase,
        "live": live,
        "settled": settled(labels, features.drop("stable"), keys, bounds),
        "cleanup_deaths": cleanup_deaths(cfg.db, cfg, bounds, labels, keys),
        "steps": steps,
    }
