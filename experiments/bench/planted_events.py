"""Lineage events against planted ground truth: per-kind precision, recall and F1.

Planted runs (tracker.planted) of d=64 with 48 true features, 6 checkpoints, and 2 births,
2 deaths, 2 splits and 2 merges at every transition but one, which only drifts. SAEs are twice
as wide as the truth (a user never knows its size) with k=4 for ~3 active features. Only
confident events count. Both SAE initialisations are measured in the same run: "previous"
(warm start from the last checkpoint's SAE) and "random" (each checkpoint from scratch).

Then the gradual run: 10 checkpoints where births grow to full size and deaths fade out
over 3 checkpoints, directions rotate three times faster, and one split and one merge per
transition; a birth or death counts when reported from one checkpoint before its ramp to one
after.

    python experiments/bench/planted_events.py [--seeds 3] [--only steps|gradual]
        [--set confirm=false ...]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import polars as pl

from tracker import SAEConfig
from tracker.config import MatchConfig
from tracker.lineage import track
from tracker.planted import KINDS, KindScore, PlantedConfig, planted_run, score_events

STEPS = (0, 100, 200, 300, 400, 500)
QUIET = 300
GRADUAL_STEPS = tuple(range(0, 1000, 100))


def evaluate(
    name: str, init: str, seeds: int, match_config: MatchConfig, gradual: bool = False
) -> None:
    totals = {kind: KindScore(0, 0, 0) for kind in KINDS}
    quiet_events, seconds, floor = 0, 0.0, []
    for seed in range(seeds):
        planted = PlantedConfig(d=64, n_true=48, steps=STEPS, quiet=(QUIET,), seed=seed)
        if gradual:
            planted = replace(
                planted, steps=GRADUAL_STEPS, quiet=(), ramp=3, drift=0.15, splits=1, merges=1
            )
        run = planted_run(planted)
        start = time.perf_counter()
        lineage = track(
            run.acts,
            SAEConfig(d_sae=96, k=4, steps=600, batch_size=1024, init=init, seed=seed),
            match_config,
        )
        seconds += time.perf_counter() - start
        events = lineage.events().filter(pl.col("confidence") >= match_config.min_confidence)
        reported = [
            (r["prev_step"], r["step"], r["kind"], r["sources"], r["targets"])
            for r in events.iter_rows(named=True)
        ]
        quiet_events += 0 if gradual else events.filter(pl.col("step") == QUIET).height
        floor += [c.stable_share for c in lineage.checkpoints if c.stable_share is not None]
        decoders = {c.step: c.sae.W_dec.detach() for c in lineage.checkpoints}
        for kind, s in score_events(run, reported, decoders).items():
            t = totals[kind]
            totals[kind] = KindScore(t.tp + s.tp, t.fp + s.fp, t.fn + s.fn)
    checkpoints = len(GRADUAL_STEPS if gradual else STEPS)
    print(
        f"{name}, init={init}: {seeds} planted runs, {seconds / seeds:.1f} s per run "
        f"({checkpoints} checkpoints, 2 SAEs each), mean stable share "
        f"{sum(floor) / len(floor):.2f}"
    )
    head = f"  {'kind':<8}{'true':>6}{'tp':>5}{'fp':>5}{'fn':>5}"
    print(f"{head}{'precision':>11}{'recall':>8}{'F1':>7}")
    for kind, s in totals.items():
        print(
            f"  {kind:<8}{s.tp + s.fn:>6}{s.tp:>5}{s.fp:>5}{s.fn:>5}{s.precision:>11.3f}"
            f"{s.recall:>8.3f}{s.f1:>7.3f}"
        )
    if not gradual:
        print(f"  confident events between drift-only checkpoints: {quiet_events}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", choices=("steps", "gradual"), default=None)
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="FIELD=VALUE", help="MatchConfig overrides"
    )
    args = parser.parse_args()
    config = MatchConfig(**{k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)})
    if args.only != "gradual":
        for init in ("random", "previous"):
            evaluate("planted", init, args.seeds, config)
    if args.only != "steps":
        evaluate("gradual", "random", args.seeds, config, gradual=True)


if __name__ == "__main__":
    main()
