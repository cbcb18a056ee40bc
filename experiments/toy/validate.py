"""The lineage's confident births and deaths scored against the ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from experiments.toy.config import LAYER, ToyConfig
from tracker import MatchConfig
from tracker.reader import open_db


def _truth_events(truth: pl.DataFrame, steps: list[int], kind: str) -> list[tuple[int, int]]:
    """(true feature, checkpoint index) where it becomes (birth) or stops being (death)
    represented."""
    state = {
        s: set(truth.filter((pl.col("step") == s) & pl.col("represented"))["feature"])
        for s in steps
    }
    out = []
    for c in range(1, len(steps)):
        before, now = state[steps[c - 1]], state[steps[c]]
        changed = now - before if kind == "birth" else before - now
        out += [(i, c) for i in sorted(changed)]
    return out


def validate(db: Path, cfg: ToyConfig) -> dict[str, Any]:
    """Births and deaths of the lineage against the truth, checkpoint by checkpoint.

    An SAE feature stands for true feature i at a checkpoint when its decoder is within
    `min_align` of W_i (the best such feature if several). A true birth (feature i becomes
    represented at checkpoint c) is found when the lineage carrying i at c or c + 1 started
    by a confident event (birth, split or merge) at a checkpoint within one of c. A reported
    confident birth is right when the true feature its lineage comes to stand for (first
    alignment, at most one checkpoint later) is born within one checkpoint of the birth it
    claims: the checkpoint after its prev_step, which for a birth dated back across a gap
    is earlier than its step. Deaths mirror births.
    """
    reader = open_db(db)
    run = cfg.run
    truth = reader.table("toy_truth", run)
    align = reader.table("toy_alignment", run)
    steps = reader.checkpoints(run, LAYER)["step"].to_list()
    index = {s: c for c, s in enumerate(steps)}
    fmap = reader.feature_map(run, LAYER)
    events = reader.events(run, LAYER, min_confidence=MatchConfig().min_confidence)
    spans = fmap.group_by("lineage").agg(
        pl.col("step").min().alias("start"), pl.col("step").max().alias("end")
    )
    best = (
        align.filter(pl.col("cosine") >= cfg.min_align)
        # Ties (a latent mixing two true features that point the same way aligns with both)
        # are broken by index, not by the order rows come back from the store.
        .sort(["cosine", "feature", "true_feature"], descending=[True, False, False])
        .unique(["step", "true_feature"], keep="first", maintain_order=True)
        .join(fmap.select("step", "feature", "lineage"), on=["step", "feature"])
    )
    carried = {(r["step"], r["true_feature"]): r["lineage"] for r in best.iter_rows(named=True)}
    # lineage -> (true feature, checkpoint index) of its first alignment
    stands_for = {
        r["lineage"]: (r["true_feature"], index[r["step"]])
        for r in best.sort(["step", "cosine", "true_feature"], descending=[False, True, False])
        .unique("lineage", keep="first", maintain_order=True)
        .iter_rows(named=True)
    }
    lineage_start = {r["lineage"]: index[r["start"]] for r in spans.iter_rows(named=True)}
    lineage_end = {r["lineage"]: index[r["end"]] for r in spans.iter_rows(named=True)}
    feature_lineage = {(r["step"], r["feature"]): r["lineage"] for r in fmap.iter_rows(named=True)}
    event_lineages = {
        feature_lineage[(r["step"], t)]
        for r in events.iter_rows(named=True)
        if r["kind"] != "death"
        for t in r["targets"]
        if (r["step"], t) in feature_lineage
    }

    report: dict[str, Any] = {}
    for kind in ("birth", "death"):
        true = _truth_events(truth, steps, kind)
        rows = []
        for i, c in true:
            lineage, hit = None, False
            probe_at = (c, c + 1) if kind == "birth" else (c - 1, c - 2)
            for cc in probe_at:
                if 0 <= cc < len(steps) and (steps[cc], i) in carried:
                    lineage = carried[(steps[cc], i)]
                    if kind == "birth":
                        at = lineage_start[lineage]
                        hit = lineage in event_lineages and at > 0 and abs(at - c) <= 1
                    else:
                        at = lineage_end[lineage]
                        hit = at < len(steps) - 1 and abs(at + 1 - c) <= 1
                    break
            rows.append({"true_feature": i, "step": steps[c], "lineage": lineage, "found": hit})
        reported = events.filter(pl.col("kind") == kind)
        right = 0
        for r in reported.iter_rows(named=True):
            # A birth the activations date back (gap > 0) claims the checkpoint after its
            # prev_step, the first whose activations show the feature; its step is only
            # where an SAE found it.
            c = index[r["prev_step"]] + 1 if kind == "birth" else index[r["step"]]
            feats = r["targets"] if kind == "birth" else r["sources"]
            at_step = r["step"] if kind == "birth" else r["prev_step"]  # a gap's is further back
            lin = feature_lineage.get((at_step, feats[0])) if feats else None
            if lin in stands_for:
                i, first = stands_for[lin]
                ok_time = first <= index[r["step"]] + 1 if kind == "birth" else True
                right += ok_time and any(t == i and abs(tc - c) <= 1 for t, tc in true)
        recall = sum(r["found"] for r in rows) / len(rows) if rows else float("nan")
        precision = right / len(reported) if len(reported) else float("nan")
        report[kind] = {
            "true": len(rows),
            "reported": len(reported),
            "recall": recall,
            "precision": precision,
            "detail": rows,
        }
    final = truth.filter(pl.col("step") == steps[-1])
    report["final_represented"] = sorted(final.filter(pl.col("represented"))["feature"].to_list())
    return report
