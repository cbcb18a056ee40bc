"""`python -m experiments.induction`: the induction-heads replay."""

from __future__ import annotations

from experiments.common import replay_main, replay_parser
from experiments.induction.analysis import analyse
from experiments.induction.config import TINY, InductionConfig
from experiments.induction.figures import draw
from experiments.induction.report import print_report
from experiments.induction.run import run


def main() -> None:
    parser = replay_parser(
        "induction",
        "Replay 3: induction heads forming in a small language model, tracked.",
        "induction",
        InductionConfig.steps,
    )
    args = parser.parse_args()
    cfg = InductionConfig(**TINY) if args.tiny else InductionConfig()  # type: ignore[arg-type]
    replay_main(args, cfg, run, analyse, print_report, draw)


if __name__ == "__main__":
    main()
