"""The `tracker` command line. Talks to people: progress bars, one-line errors, exit codes."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

import torch

from tracker import commands as cmd
from tracker.checks import idle_cores, usable_cores
from tracker.config import MatchConfig, SAEConfig
from tracker.sae import ARCHITECTURES

EXAMPLES = """examples:
  tracker analyze data/acts --db data/acts.duckdb --run my-run --k 32
  tracker fit data/my-run                       # snapshots a FeatureTracker(fit="defer") saved
  tracker capture ckpts/ --model mypkg.model:build --layers blocks.0.mlp --probe probe.pt \
      --run my-run && tracker fit data/my-run     # a finished run's checkpoints
  tracker export data/my-run/lineage.duckdb --parquet data/my-run/parquet
  tracker app data/my-run/lineage.duckdb --port 8501
  tracker suggest data/my-run --layer blocks.1   # which d_sae and k a second seed reproduces
  tracker train-sae data/acts/1000.npy --out data/sae-1000 --k 32 --steps 2000
"""


def _add_executor_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--executor",
        choices=["local", "ray"],
        default="local",
        help="where the SAE fits run: in this process, or as Ray tasks (pip install "
        "'.[ray]'; matching and writes stay here)",
    )
    sub.add_argument(
        "--address",
        help="with --executor ray: a running cluster's address (default: start Ray here)",
    )


def _add_match_options(parser: argparse.ArgumentParser) -> None:
    defaults = MatchConfig()
    group = parser.add_argument_group("match options")
    group.add_argument(
        "--tau",
        type=float,
        default=defaults.tau_match,
        help="least decoder cosine for a continuation (raised to chance)",
    )
    group.add_argument("--min-confidence", type=float, default=defaults.min_confidence)
    group.add_argument(
        "--min-frequency",
        type=float,
        default=defaults.min_frequency,
        help="features firing on at most this share of the probe set are dead",
    )
    group.add_argument(
        "--witness-carried",
        type=share_or_off,
        default=defaults.witness_carried,
        metavar="SHARE|off",
        help="a feature is also present where the other checkpoint's layer carries its "
        "pattern at least this strongly (default 1.0; off: its own encoder alone)",
    )


def share_or_off(text: str) -> float | None:
    return None if text == "off" else float(text)


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
    group.add_argument("--init", choices=["random", "previous"], default=defaults.init)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tracker",
        description="Feature lineage across training checkpoints.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    subparsers = parser.add_subparsers(dest="command", required=True)

    def command(
        name: str, help: str, run: Callable[[argparse.Namespace], int]
    ) -> argparse.ArgumentParser:
        sub = subparsers.add_parser(
            name, help=help, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        sub.set_defaults(run_fn=run)
        if name != "app":
            sub.add_argument(
                "--threads",
                type=int,
                default=None,
                help="CPU threads for fitting (default: the cores this process may use that "
                f"other work leaves idle at start; here {usable_cores()} usable); with "
                "--executor ray, the threads each fit task uses and asks for (default 1)",
            )
        return sub

    an = command(
        "analyze",
        "fit, match and store the checkpoints of an activation directory",
        cmd.analyze_command,
    )
    an.add_argument("dir", help="DIR/<step>.npy|.safetensors, or DIR/<layer>/<step>.*")
    an.add_argument("--db", required=True, help="the DuckDB file to write")
    an.add_argument("--run", help="run name (default: the directory's name)")
    an.add_argument("--layer", help="only this layer of a multi-layer directory")
    _add_sae_options(an)
    _add_match_options(an)
    _add_executor_options(an)

    fr = command(
        "fit", "fit and match the snapshots of a FeatureTracker(fit='defer') run", cmd.fit_command
    )
    fr.add_argument("run_dir", help="the run directory (holds run.json and activations/)")
    fr.add_argument("--db", help="the DuckDB file (default: RUN_DIR/lineage.duckdb)")
    _add_executor_options(fr)

    ca = command(
        "capture",
        "snapshot the probe activations of a finished run's checkpoints",
        cmd.capture_command,
    )
    ca.add_argument("checkpoints", nargs="+", help="checkpoint files, directories or globs")
    ca.add_argument(
        "--model",
        help="package.module:factory building the model (a Lightning "
        "class gets the checkpoint's hyper_parameters); not needed for transformers "
        "model directories",
    )
    ca.add_argument(
        "--layers",
        "--modules",
        dest="layers",
        nargs="+",
        required=True,
        help="module names to watch (--modules is the old name)",
    )
    ca.add_argument("--probe", help="probe inputs: .npy, .pt or .safetensors")
    ca.add_argument("--text", help="or a text file, cut into sequences of --seq-len tokens")
    ca.add_argument("--seq-len", type=int, help="tokens per probe sequence (with --text)")
    ca.add_argument("--sequences", type=int, help="probe sequences (default: all the text)")
    ca.add_argument("--tokenizer", help="a saved transformers tokenizer's directory")
    ca.add_argument("--chars", help="or a file holding a character model's alphabet, in id order")
    ca.add_argument("--run", required=True, help="run name: writes ROOT/RUN")
    ca.add_argument("--root", default="data")
    ca.add_argument(
        "--select", default="flatten", help="tokens (every token a row), flatten, or a position"
    )
    ca.add_argument("--dtype", choices=["float16", "float32"], default="float16")
    ca.add_argument("--probe-batch-size", type=int, default=256)
    _add_sae_options(ca)
    _add_match_options(ca)

    su = command(
        "suggest", "measure which SAE sizes stay reproducible on one snapshot", cmd.suggest_command
    )
    su.add_argument("source", help="an activation file, a run directory or activation directory")
    su.add_argument("--layer", help="the layer (default: the first)")
    su.add_argument("--step", type=int, help="the snapshot's step (default: the last)")
    su.add_argument("--steps", type=int, default=300, help="optimiser steps per fit")
    su.add_argument("--device", default="auto")

    ex = command("export", "write every table of a lineage database to Parquet", cmd.export_command)
    ex.add_argument("db")
    ex.add_argument("--parquet", required=True, help="output directory, one file per table")

    app = command(
        "app",
        "start the viewer on lineage databases (binds 127.0.0.1 unless told)",
        cmd.app_command,
    )
    app.add_argument("db", nargs="*", help="database files (default: all under ./data)")
    app.add_argument("--port", type=int, default=8501)
    app.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")

    fit = command("train-sae", "fit one SAE to one activation file [n, d]", cmd.train_sae_command)
    fit.add_argument("activations", help="a .npy, .safetensors (tensor 'activations') or .pt file")
    fit.add_argument("--out", required=True, help="directory for cfg.json + sae.safetensors")
    _add_sae_options(fit)
    return parser


def _default_threads(command: str) -> int:
    """The idle cores among those this process may use, said aloud when fewer than all."""
    usable, idle = usable_cores(), idle_cores()
    if idle < usable:
        print(
            f"tracker {command}: other work keeps this machine's cores busy; fitting on "
            f"{idle} thread(s), not {usable} (--threads to choose)",
            file=sys.stderr,
        )
    return idle


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        print(
            f"tracker {args.command}: error: --threads must be >= 1, got {threads}", file=sys.stderr
        )
        return 2
    if args.command != "app":
        threads = threads or _default_threads(args.command)
        torch.set_num_threads(threads)
    try:
        code: int = args.run_fn(args)
    except (ValueError, FileNotFoundError, RuntimeError, ConnectionError, ImportError) as err:
        print(f"tracker {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"tracker {args.command}: interrupted; what was written is kept whole (each "
            "checkpoint in one transaction): run the command again to complete it",
            file=sys.stderr,
        )
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
