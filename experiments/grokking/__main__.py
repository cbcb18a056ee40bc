"""`python -m experiments.grokking`: the grokking replay."""

from __future__ import annotations

from dataclasses import replace

from experiments.common import replay_main, replay_parser
from experiments.grokking.analysis import analyse
from experiments.grokking.config import LAYERS, TINY, GrokConfig
from experiments.grokking.figures import draw
from experiments.grokking.report import print_report
from experiments.grokking.run import run


def main() -> None:
    parser = replay_parser(
        "grokking", "Replay 2: grokking on modular addition, tracked.", "grokking", GrokConfig.steps
    )
    parser.add_argument("--p", type=int, default=113, help="the modulus (default 113)")
    parser.add_argument("--layer", choices=sorted(LAYERS), default="mlp")
    args = parser.parse_args()
    cfg = GrokConfig(**TINY) if args.tiny else GrokConfig()  # type: ignore[arg-type]
    cfg = replace(cfg, p=args.p if not args.tiny else cfg.p, layer=args.layer)
    replay_main(args, cfg, run, analyse, print_report, draw)


if __name__ == "__main__":
    main()
