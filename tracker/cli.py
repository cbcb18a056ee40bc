"""The `tracker` command line. Talks to people: progress bars, one-line errors, exit codes."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from tracker.activations import load_activation_file
from tracker.config import SAEConfig
from tracker.fit import train_sae
from tracker.sae import ARCHITECTURES

EXAMPLES = """examples:
  tracker train-sae data/acts/1000.npy --out data/sae-1000 --k 32 --steps 2000
"""


def _add_sae_options(parser: argparse.ArgumentParser) -> None:
    defaults = SAEConfig()
    group = parser.add_argument_group("SAE options")
    group.add_argument("--arch", choices=sorted(ARCHITECTURES), default=defaults.arch)
    group.add_argument("--d-sae", type=int, default=None, help="latents (default: 8 x d)")
    group.add_argument("--k", type=int, default=defaults.k, help="TopK: active latents")
    group.add_argument("--l1-coef", type=float, default=defaults.l1_coef, help="ReLU: L1 weight")
    group.add_argument("--steps", type=int, default=defaults.steps)
    group.add_argument("--batch-size", type=int, default=defaults.batch_size)
    group.add_argument("--lr", type=float, default=None)
    group.add_argument("--seed", type=int, default=defaults.seed)
    group.add_argument("--device", default=defaults.device, help="auto, cpu, cuda or cuda:N")


def _sae_config(args: argparse.Namespace) -> SAEConfig:
    return SAEConfig(
        arch=args.arch,
        d_sae=args.d_sae,
        k=args.k,
        l1_coef=args.l1_coef,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        progress=True,
    )


def _train_sae(args: argparse.Namespace) -> int:
    sae = train_sae(load_activation_file(args.activations), _sae_config(args))
    out = sae.save(args.out)
    metrics = sae.metrics
    assert metrics is not None
    print(
        f"SAE {sae.arch} d={sae.d} d_sae={sae.d_sae}: FVU {metrics.fvu:.4f}, L0 {metrics.l0:.1f}, "
        f"dead {metrics.dead_fraction:.1%}, {metrics.fit_seconds:.1f}s -> {out}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tracker",
        description="Feature lineage across training checkpoints.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(dest="command", required=True)

    fit = commands.add_parser(
        "train-sae",
        help="fit one SAE to one activation file [n, d]",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fit.add_argument("activations", help="a .npy, .safetensors (tensor 'activations') or .pt file")
    fit.add_argument("--out", required=True, help="directory for cfg.json + sae.safetensors")
    _add_sae_options(fit)
    fit.set_defaults(run=_train_sae)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        code: int = args.run(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"tracker {args.command}: error: {err}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
