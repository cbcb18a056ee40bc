"""The grokking replay: train with the tracker, then store progress measures, the
embedding's spectrum, Fourier labels and the viewer's panels beside the lineage."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Any

import polars as pl
import torch
from torch.utils.data import DataLoader

from experiments import common
from experiments.grokking.analysis import analyse
from experiments.grokking.config import LAYERS, GrokConfig
from experiments.grokking.features import feature_maps
from experiments.grokking.fourier import embedding_power, key_frequencies
from experiments.grokking.model import FullBatch, Transformer, split
from experiments.grokking.progress import progress_measures
from tracker.pipeline import fit_run
from tracker.store import Writer


def run(cfg: GrokConfig, progress: bool = True) -> dict[str, Any]:
    """Train with the tracker; store progress measures, the embedding's spectrum, Fourier
    labels and feature maps beside the lineage; return `analyse`'s report."""
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    run_dir = cfg.run_dir
    common.fresh(run_dir)
    pairs, train = split(cfg)
    y = pairs.sum(1) % cfg.p
    layer = LAYERS[cfg.layer]
    tracker = common.feature_tracker(
        cfg,
        layer,
        pairs,
        cfg.schedule(),
        {"batch_size": cfg.sae_batch, "init": "previous"},
        probe_batch_size=4096,
        metrics_every=cfg.eval_every,
    )
    weights = common.RecordWeights(tracker, every=cfg.eval_every)
    trainer = common.trainer(cfg.steps, [tracker, weights], progress)
    model = Transformer(cfg)
    trainer.fit(model, DataLoader(FullBatch(pairs[train], y[train]), batch_size=None))
    if cfg.fit == "defer":
        fit_run(run_dir, progress=progress)
    trained = time.perf_counter() - start

    model = model.cpu()
    final = weights.states[max(weights.states)]
    power = embedding_power(final["W_E"], cfg.p)
    keys = key_frequencies(power)
    measures = progress_measures(model, weights.states, keys, train)

    writer = Writer(cfg.db)
    writer.write_replay(cfg.run, "grokking", {**asdict(cfg), "key_frequencies": keys})
    labels = feature_maps(cfg, keys, writer)
    writer.write_metrics(
        cfg.run, measures.unpivot(index="step", variable_name="name").sort("step", "name")
    )
    writer.write_probe(
        cfg.run,
        pl.DataFrame(
            {
                "probe_index": list(range(len(pairs))),
                "label": [f"{a} + {b} = {(a + b) % cfg.p}" for a, b in pairs.tolist()],
                "payload": [
                    json.dumps({"a": a, "b": b, "train": t})
                    for (a, b), t in zip(pairs.tolist(), train.tolist(), strict=True)
                ],
            }
        ),
    )
    writer.write_table(
        "grok_embedding",
        cfg.run,
        pl.DataFrame(
            {
                "frequency": list(range(1, cfg.p // 2 + 1)),
                "power": (power / power.sum()).tolist(),
                "key": [k in keys for k in range(1, cfg.p // 2 + 1)],
            }
        ),
    )
    writer.write_table("grok_features", cfg.run, labels.with_columns(pl.lit(layer).alias("layer")))
    report = analyse(cfg)
    report["seconds"] = {"total": time.perf_counter() - start, "training_and_sae": trained}
    return report
