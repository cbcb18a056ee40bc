"""`python -m experiments.toy`: the toy-superposition replay (`make demo`)."""

from __future__ import annotations

import argparse

from experiments.common import FIGURES
from experiments.toy import ToyConfig, print_report, run
from experiments.toy.sweep import draw_sweep, print_sweep, sweep


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.toy",
        description="Replay 1: toy models of superposition, tracked against ground truth.",
    )
    parser.add_argument("--sparsity", type=float, default=ToyConfig.sparsity)
    parser.add_argument("--steps", type=int, default=ToyConfig.steps)
    parser.add_argument("--snapshots", type=int, default=ToyConfig.snapshots)
    parser.add_argument("--seed", type=int, default=ToyConfig.seed)
    parser.add_argument("--root", default=ToyConfig.root)
    parser.add_argument("--run", default=ToyConfig.run)
    parser.add_argument(
        "--sweep", action="store_true", help="also run the sparsity sweep and draw figures"
    )
    args = parser.parse_args()
    cfg = ToyConfig(
        sparsity=args.sparsity,
        steps=args.steps,
        snapshots=args.snapshots,
        seed=args.seed,
        root=args.root,
        run=args.run,
    )
    report = run(cfg)
    print_report(report, cfg)
    if args.sweep:
        table = sweep(cfg)
        print_sweep(table)
        for path in draw_sweep(table, FIGURES):
            print(f"  wrote {path}")


if __name__ == "__main__":
    main()
