"""`python -m experiments.grokking`: the grokking replay."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from experiments.common import FIGURES, ROOT
from experiments.grokking.analysis import analyse
from experiments.grokking.config import LAYERS, TINY, GrokConfig
from experiments.grokking.figures import draw
from experiments.grokking.report import print_report
from experiments.grokking.run import run


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.grokking",
        description="Replay 2: grokking on modular addition, tracked.",
    )
    parser.add_argument("--p", type=int, default=113, help="the modulus (default 113)")
    parser.add_argument("--steps", type=int, help="training steps (default 16000)")
    parser.add_argument("--layer", choices=sorted(LAYERS), default="mlp")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="the tests' configuration")
    parser.add_argument("--root", type=Path, default=ROOT / "data")
    parser.add_argument("--run", default="grokking")
    parser.add_argument(
        "--report", action="store_true", help="redo the report and figures from the run's DB"
    )
    parser.add_argument(
        "--figures", type=Path, default=FIGURES, help=f"where the pictures go (default {FIGURES})"
    )
    args = parser.parse_args()
    cfg = GrokConfig(**TINY) if args.tiny else GrokConfig()  # type: ignore[arg-type]
    cfg = replace(
        cfg,
        p=args.p if not args.tiny else cfg.p,
        layer=args.layer,
        seed=args.seed,
        root=args.root,
        run=args.run,
    )
    if args.steps:
        cfg = replace(cfg, steps=args.steps)
    report = analyse(cfg) if args.report else run(cfg)
    print_report(report, cfg)
    for path in draw(cfg, report, args.figures):
        print(f"  figure: {path}")
    print(f"  viewer: tracker app {cfg.db}")
