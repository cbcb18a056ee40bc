"""The toy replay: train with the tracker, store the truth beside the lineage, validate."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import polars as pl
import torch
from torch.utils.data import DataLoader

from experiments import common
from experiments.toy import panels
from experiments.toy.config import LAYER, ToyConfig
from experiments.toy.model import SparseFeatures, ToyModel, sparse_features
from experiments.toy.truth import alignment_table, truth_table
from experiments.toy.validate import validate
from tracker import MatchConfig
from tracker.store import Writer


def run(cfg: ToyConfig, progress: bool = True) -> dict[str, Any]:
    """Train with the tracker, write the truth beside the lineage, validate. Returns the report."""
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    db = cfg.db
    common.fresh(db.parent)
    probe = sparse_features(
        cfg.n_probe, cfg.n, cfg.sparsity, torch.Generator().manual_seed(cfg.probe_seed)
    )
    tracker = common.feature_tracker(
        cfg,
        LAYER,
        probe,
        f"log:{cfg.snapshots}",
        {"batch_size": 1024, "init": cfg.sae_init, **cfg.sae},
        match=MatchConfig(
            min_activation=cfg.min_activation, min_frequency=cfg.min_frequency, **cfg.match
        ),
        dtype="float32",
        metrics_every=max(cfg.steps // 100, 1),
    )
    record = common.RecordWeights(tracker, keep=["hidden.weight"])
    trainer = common.trainer(cfg.steps, [tracker, record], progress)
    trainer.fit(ToyModel(cfg), DataLoader(SparseFeatures(cfg), batch_size=None))
    trained = time.perf_counter() - start

    Ws = {step: state["hidden.weight"] for step, state in record.states.items()}
    steps = sorted(Ws)
    writer = Writer(db)
    writer.write_replay(cfg.run, "toy", asdict(cfg))
    writer.write_probe(cfg.run, probe_rows(probe))
    truth = truth_table(steps, Ws, cfg)
    align = alignment_table(db, cfg, Ws, probe)
    writer.write_table("toy_truth", cfg.run, truth)
    writer.write_table("toy_alignment", cfg.run, align)
    panels.publish(writer, cfg, truth, align)
    report = validate(db, cfg)
    report["seconds"] = {"total": time.perf_counter() - start, "training_and_sae": trained}
    summary = [
        {"metric": f"{kind}_{key}", "value": float(report[kind][key])}
        for kind in ("birth", "death")
        for key in ("true", "reported", "recall", "precision")
    ]
    writer.write_table("toy_validation", cfg.run, pl.DataFrame(summary))
    return report


def probe_rows(probe: torch.Tensor) -> pl.DataFrame:
    """The probe inputs as the viewer lists them: the non-zero features, and the vector."""
    rows = probe.tolist()
    return pl.DataFrame(
        {
            "probe_index": list(range(len(rows))),
            "label": [
                " ".join(f"x{i}={v:.2f}" for i, v in enumerate(row) if v > 0) or "(all zero)"
                for row in rows
            ],
            "payload": [json.dumps({"x": [round(v, 4) for v in row]}) for row in rows],
        }
    )


def print_report(report: dict[str, Any], cfg: ToyConfig) -> None:
    print(f"\nToy superposition, S = {cfg.sparsity}: {cfg.n} features in {cfg.m} dimensions")
    print(f"  represented at the end: {report['final_represented']}")
    for kind in ("birth", "death"):
        r = report[kind]
        wrong = r["reported"] - round(r["precision"] * r["reported"]) if r["reported"] else 0
        print(
            f"  {kind}s: {r['true']} true, {r['reported']} reported (confident, witnessed by "
            f"the activations); recall {r['recall']:.2f}, precision {r['precision']:.2f}, "
            f"{wrong} false"
        )
        for row in r["detail"]:
            mark = "found" if row["found"] else "MISSED"
            print(f"    true feature {row['true_feature']:>2} at step {row['step']:>5}: {mark}")
    s = report["seconds"]
    print(f"  {s['total']:.0f} s in all ({s['training_and_sae']:.0f} s training with SAEs)")
    print(f"  lineage database: {Path(cfg.db)}")
