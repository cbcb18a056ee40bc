"""The replay's printed report."""

from __future__ import annotations

from typing import Any

import polars as pl

from experiments.grokking.config import GrokConfig
from experiments.grokking.progress import PHASES


def print_report(report: dict[str, Any], cfg: GrokConfig) -> None:
    b = report["bounds"]
    final = report["final"]
    print(f"grokking p={cfg.p}: {len(report['steps'])} checkpoints, layer {cfg.layer}")
    print(
        f"  memorised (train acc >= 99%) at step {b['memorised']}, grokked (test acc >= 95%) "
        f"at step {b['grokked']}"
    )
    print(
        f"  phases: memorisation to {b['memorisation_end']} (test-loss peak), circuit "
        f"formation to {b['cleanup_start']}, clean-up (fastest weight decay) to {b['cleanup_end']}"
    )
    print("  paper (p=113): memorisation to ~1.4k, circuit formation to ~9.4k, clean-up to ~14k")
    print(
        f"  final: train acc {final['train_acc']:.3f}, test acc {final['test_acc']:.3f}, "
        f"test loss {final['test_loss']:.2e}, restricted {final['restricted_loss']:.2e}, "
        f"excluded {final['excluded_loss']:.2e}"
    )
    print(f"  key frequencies (embedding): {report['keys']}")
    print(f"  live features per key frequency at the last step: {report['coverage']}")
    live = report["live"]
    print(
        "  share of live SAE features whose dominant frequency is a key one "
        f"(chance {report['chance']:.2f}):"
    )
    print(
        "    "
        + ", ".join(
            f"{s}: {k / n:.2f}" for s, k, n in live.select("step", "on_key", "live").iter_rows()
        )
    )
    print(
        "  share of live SAE features stable across two seeds: "
        + ", ".join(
            f"{s}: {k / n:.2f}" for s, k, n in live.select("step", "stable", "live").iter_rows()
        )
    )
    print("  events per phase (confident ones in brackets):")
    for phase in PHASES:
        rows = report["phases"].filter(pl.col("phase") == phase)
        print(f"    {phase}: " + ", ".join(f"{k} {n} ({c})" for _, k, n, c in rows.iter_rows()))
    dead = report["cleanup_deaths"]
    share = dead["memorising"] / dead["deaths"] if dead["deaths"] else float("nan")
    print(
        f"  confident deaths in the clean-up: {dead['deaths']}, of them memorising features "
        f"(not on a key frequency when last seen): {dead['memorising']} ({share:.2f})"
    )
    onset = report["settled"].group_by("phase", "how").agg(pl.len().alias("n"))
    print("  lineages ending on a key frequency, by the phase they settled on it in:")
    for phase in PHASES:
        here = dict(onset.filter(pl.col("phase") == phase).select("how", "n").iter_rows())
        print(f"    {phase}: {here.get('born', 0)} born so, {here.get('changed', 0)} changed")
    if "seconds" in report:
        s = report["seconds"]
        print(f"  {s['training_and_sae']:.0f} s training + SAEs, {s['total']:.0f} s in all")
