"""Lineage events against planted ground truth: per-kind precision, recall and F1.

Planted runs (tracker.planted) of d=64 with 48 true features, 6 checkpoints, and 2 births,
2 deaths, 2 splits and 2 merges at every transition but one, which only drifts. SAEs are twice
as wide as the truth (a user never knows its size) with k=4 for ~3 active features. Only
confident events count. Both SAE initialisations are measured in the same run: "previous"
(warm start from the last checkpoint's SAE) and "random" (each checkpoint from scratch).

    python experiments/bench/planted_events.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import time

from tracker import SAEConfig
from tracker.config import MatchConfig
from tracker.lineage import track
from tracker.planted import KINDS, KindScore, PlantedConfig, planted_run, score_events

STEPS = (0, 100, 200, 300, 400, 500)
QUIET = 300


def evaluate(init: str, seeds: int, match_config: MatchConfig) -> None:
    totals = {kind: KindScore(0, 0, 0) for kind in KINDS}
    quiet_events, seconds, floor = 0, 0.0, []
    for seed in range(seeds):
        run = planted_run(PlantedConfig(d=64, n_true=48, steps=STEPS, quiet=(QUIET,), seed=seed))
        start = time.perf_counter()
        lineage = track(
            run.acts,
            SAEConfig(d_sae=96, k=4, steps=600, batch_size=1024, init=init, seed=seed),
            match_config,
        )
        seconds += time.perf_counter() - start
        reported = []
        for a, b, m in zip(
            lineage.checkpoints, lineage.checkpoints[1:], lineage.matches, strict=False
        ):
            confident = m.events.filter(m.events["confidence"] >= match_config.min_confidence)
            for row in confident.iter_rows(named=True):
                reported.append((a.step, b.step, row["kind"], row["sources"], row["targets"]))
            quiet_events += len(confident) if b.step == QUIET else 0
        floor += [c.stable_share for c in lineage.checkpoints if c.stable_share is not None]
        decoders = {c.step: c.sae.W_dec.detach() for c in lineage.checkpoints}
        for kind, s in score_events(run, reported, decoders).items():
            t = totals[kind]
            totals[kind] = KindScore(t.tp + s.tp, t.fp + s.fp, t.fn + s.fn)
    print(
        f"init={init}: {seeds} planted runs, {seconds / seeds:.1f} s per run (6 checkpoints, "
        f"2 SAEs each), mean stable share {sum(floor) / len(floor):.2f}"
    )
    head = f"  {'kind':<8}{'true':>6}{'tp':>5}{'fp':>5}{'fn':>5}"
    print(f"{head}{'precision':>11}{'recall':>8}{'F1':>7}")
    for kind, s in totals.items():
        print(
            f"  {kind:<8}{s.tp + s.fn:>6}{s.tp:>5}{s.fp:>5}{s.fn:>5}{s.precision:>11.3f}"
            f"{s.recall:>8.3f}{s.f1:>7.3f}"
        )
    print(f"  confident events between drift-only checkpoints: {quiet_events}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    for init in ("random", "previous"):
        evaluate(init, args.seeds, MatchConfig())


if __name__ == "__main__":
    main()
