"""The toy-superposition replay over seeds: are its confident births and deaths the model's?

Runs the replay exactly as `make demo` does (S = 0.9, 5000 steps, 16 log-spaced
checkpoints, background SAEs) for each seed and scores the confident births and deaths
against the ground truth (a true feature is born when its column norm ‖W_i‖ reaches 0.5;
see the replay's `validate`). Prints one row per seed and the means.

    python experiments/bench/toy_events.py [--seeds 0 1 2 3 4] [--set witness_corr=0.7 ...]
        [--sae seeds=3 ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from experiments.toy import ToyConfig, run


def score(report: dict) -> dict[str, float]:
    birth, death = report["birth"], report["death"]
    right_deaths = round(death["precision"] * death["reported"]) if death["reported"] else 0
    return {
        "true_births": birth["true"],
        "births": birth["reported"],
        "recall": birth["recall"],
        "precision": birth["precision"],
        "true_deaths": death["true"],
        "deaths": death["reported"],
        "false_deaths": death["reported"] - right_deaths,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="FIELD=VALUE", help="MatchConfig overrides"
    )
    parser.add_argument(
        "--sae", nargs="*", default=[], metavar="FIELD=VALUE", help="SAEConfig overrides"
    )
    args = parser.parse_args()
    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    sae = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.sae)}
    rows, start = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as root:
        for seed in args.seeds:
            cfg = ToyConfig(seed=seed, root=root, run=f"toy{seed}", match=overrides, sae=sae)
            rows.append(score(run(cfg, progress=False)))
    changed = {**overrides, **sae}
    print(f"toy replay, S = 0.9, defaults{' + ' + str(changed) if changed else ''}")
    print(
        f"{'seed':>5}{'true births':>13}{'reported':>10}{'recall':>8}{'precision':>11}"
        f"{'true deaths':>13}{'reported':>10}{'false':>7}"
    )
    for seed, r in zip(args.seeds, rows, strict=True):
        print(
            f"{seed:>5}{r['true_births']:>13}{r['births']:>10}{r['recall']:>8.2f}"
            f"{r['precision']:>11.2f}{r['true_deaths']:>13}{r['deaths']:>10}{r['false_deaths']:>7}"
        )

    def mean(key: str) -> float:
        values = [r[key] for r in rows if r[key] == r[key]]  # skip NaN (nothing reported)
        return sum(values) / len(values) if values else float("nan")

    print(
        f"{'mean':>5}{mean('true_births'):>13.1f}{mean('births'):>10.1f}{mean('recall'):>8.2f}"
        f"{mean('precision'):>11.2f}{mean('true_deaths'):>13.1f}{mean('deaths'):>10.1f}"
        f"{mean('false_deaths'):>7.1f}"
    )
    seconds = time.perf_counter() - start
    print(f"{seconds / len(rows):.0f} s per run (training with background SAEs, 2 CPU cores)")


if __name__ == "__main__":
    main()
