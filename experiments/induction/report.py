"""The replay's printed report."""

from __future__ import annotations

from typing import Any

from experiments.induction.config import InductionConfig


def print_report(report: dict[str, Any], cfg: InductionConfig) -> None:
    final, phase = report["final"], report["phase"]
    print(f"induction heads: 2-layer attention-only, d_model {cfg.d_model}, {cfg.steps} steps")
    print(
        f"  final: repeat loss {final['repeat_loss']:.2f} nats (first copy "
        f"{final['first_copy_loss']:.2f}), in-context score {final['icl_score']:+.3f}, "
        f"prefix matching L0 {final['prefix/L0']:.2f}, L1 {final['prefix/L1']:.2f}"
    )
    if phase is None:
        print("  no phase change: copying gains less than 0.5 nats")
    else:
        print(
            f"  phase change: copying gain 10% at step {phase['onset']}, 90% at {phase['end']}, "
            f"steepest at {phase['steepest']} (gain {phase['gain']:.2f} nats)"
        )
    print("  confident events within one checkpoint of the phase change | elsewhere:")
    for layer, r in report["layers"].items():
        counts = ", ".join(f"{k} {i} | {o}" for k, (i, o) in r["events"].items())
        print(
            f"    {layer}: {r['checkpoints_in']} | {r['checkpoints_out']} checkpoint pairs; "
            f"{counts}"
        )
        print(
            f"      births there: {r['born_in']}, {r['born_copying']} copying, "
            f"{r['born_previous']} previous-token; at the end, of {r['live_final']} live "
            f"features: {r['copying_final']} copying, {r['previous_final']} previous-token"
        )
        print(
            "      copying / previous-token / live features per checkpoint: "
            + ", ".join(f"{s}: {c}/{p}/{n}" for s, c, p, n in r["by_step"])
        )
    seconds = report.get("seconds")
    if seconds:
        print(f"  {seconds['total']:.0f} s ({seconds['training_and_sae']:.0f} s training and SAEs)")
