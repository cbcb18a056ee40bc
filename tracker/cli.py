"""The `tracker` command line. Talks to people: progress bars, one-line errors, exit codes."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl
import torch

from tracker.activations import load_activation_file
from tracker.config import MatchConfig, SAEConfig
from tracker.export import export_parquet
from tracker.fit import train_sae
from tracker.pipeline import analyze, fit_run
from tracker.posthoc import capture_checkpoints, load_probe
from tracker.reader import VIEWER_DBS_ENV, open_db
from tracker.sae import ARCHITECTURES

EXAMPLES = """examples:
  tracker analyze data/acts --db data/acts.duckdb --run my-run --k 32
  tracker fit data/my-run                       # snapshots a FeatureTracker(fit="defer") saved
  tracker capture ckpts/ --model mypkg.model:build --modules blocks.0.mlp --probe probe.pt \
      --run my-run && tracker fit data/my-run     # a finished run's checkpoints
  tracker export data/my-run/lineage.duckdb --parquet data/my-run/parquet
  tracker app data/my-run/lineage.duckdb --port 8501
  tracker train-sae data/acts/1000.npy --out data/sae-1000 --k 32 --steps 2000
"""


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


def _sae_config(args: argparse.Namespace, progress: bool = True) -> SAEConfig:
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
        init=args.init,
        progress=progress,
    )


def _analyze(args: argparse.Namespace) -> int:
    match = MatchConfig(
        tau_match=args.tau, min_confidence=args.min_confidence, min_frequency=args.min_frequency
    )
    analyze(
        args.dir,
        args.db,
        args.run or Path(args.dir).resolve().name,
        layer=args.layer,
        sae=_sae_config(args, progress=False),
        match=match,
        progress=True,
    )
    _summary(Path(args.db), match.min_confidence)
    return 0


def _fit(args: argparse.Namespace) -> int:
    db = fit_run(args.run_dir, args.db, progress=True)
    _summary(db, MatchConfig().min_confidence)
    return 0


def _capture(args: argparse.Namespace) -> int:
    select: str | int = int(args.select) if args.select.lstrip("-").isdigit() else args.select
    done = capture_checkpoints(
        args.checkpoints,
        args.model,
        args.modules,
        load_probe(args.probe),
        args.run,
        args.root,
        select=select,
        dtype=args.dtype,
        probe_batch_size=args.probe_batch_size,
        device=args.device,
        sae=_sae_config(args, progress=False),
        match=MatchConfig(
            tau_match=args.tau, min_confidence=args.min_confidence, min_frequency=args.min_frequency
        ),
        progress=True,
    )
    print(
        f"captured {len(done.captured)} checkpoints into {done.run_dir.path}"
        + (f" ({len(done.skipped)} already there)" if done.skipped else "")
        + f"; next: tracker fit {done.run_dir.path}"
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    written = export_parquet(args.db, args.parquet)
    print(f"wrote {len(written)} tables to {args.parquet}: {', '.join(p.stem for p in written)}")
    return 0


def _app(args: argparse.Namespace) -> int:
    dbs = [Path(p).resolve() for p in args.db]
    if not dbs:
        dbs = sorted(Path("data").resolve().glob("**/*.duckdb"))
        if not dbs:
            raise FileNotFoundError(
                "no database given and none under ./data: tracker app DB [DB ...]"
            )
        print(f"opening the databases under ./data: {', '.join(map(str, dbs))}")
    for db in dbs:
        if not db.is_file():
            raise FileNotFoundError(f"database {db} does not exist")
        open_db(db)  # a lineage database of this schema version, or one clear error now
    script = Path(__file__).resolve().parent.parent / "app" / "main.py"
    if not script.is_file():
        raise FileNotFoundError(
            f"the viewer {script} is missing: run from a clone installed with `pip install -e .`"
        )
    env = {**os.environ, VIEWER_DBS_ENV: os.pathsep.join(map(str, dbs))}
    print(f"viewer on http://{args.host}:{args.port} (Ctrl+C stops it)", flush=True)
    # exec, not a child process: whoever stops `tracker app` (Ctrl-C, SIGTERM from a test
    # harness or a process manager) stops the server itself, never leaving it orphaned.
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(script),
        "--server.address",
        args.host,
        "--server.port",
        str(args.port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]
    os.execve(sys.executable, command, env)


def _summary(db: Path, min_confidence: float) -> None:
    reader = open_db(db)
    for run in reader.runs()["run"].to_list():
        for layer in reader.layers(run):
            n = len(reader.checkpoints(run, layer))
            counts = reader.event_counts(run, layer, min_confidence)
            by_kind = counts.group_by("kind").agg(pl.col("n").sum()).sort("kind")
            events = ", ".join(f"{k} {n}" for k, n in by_kind.iter_rows()) or "none"
            print(f"{db}: run {run!r} layer {layer!r}: {n} checkpoints; confident events: {events}")


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

    def command(
        name: str, help: str, run: Callable[[argparse.Namespace], int]
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name, help=help, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        sub.set_defaults(run_fn=run)
        if name != "app":
            sub.add_argument(
                "--threads",
                type=int,
                default=None,
                help="CPU threads for fitting (default: the cores this process may use, "
                f"here {usable_cores()})",
            )
        return sub

    an = command(
        "analyze", "fit, match and store the checkpoints of an activation directory", _analyze
    )
    an.add_argument("dir", help="DIR/<step>.npy|.safetensors, or DIR/<layer>/<step>.*")
    an.add_argument("--db", required=True, help="the DuckDB file to write")
    an.add_argument("--run", help="run name (default: the directory's name)")
    an.add_argument("--layer", help="only this layer of a multi-layer directory")
    _add_sae_options(an)
    _add_match_options(an)

    fr = command("fit", "fit and match the snapshots of a FeatureTracker(fit='defer') run", _fit)
    fr.add_argument("run_dir", help="the run directory (holds run.json and activations/)")
    fr.add_argument("--db", help="the DuckDB file (default: RUN_DIR/lineage.duckdb)")

    ca = command(
        "capture", "snapshot the probe activations of a finished run's checkpoints", _capture
    )
    ca.add_argument("checkpoints", nargs="+", help="checkpoint files, directories or globs")
    ca.add_argument(
        "--model",
        help="package.module:factory building the model (a Lightning "
        "class gets the checkpoint's hyper_parameters); not needed for transformers "
        "model directories",
    )
    ca.add_argument("--modules", nargs="+", required=True, help="module names to watch")
    ca.add_argument("--probe", required=True, help="probe inputs: .npy, .pt or .safetensors")
    ca.add_argument("--run", required=True, help="run name: writes ROOT/RUN")
    ca.add_argument("--root", default="data")
    ca.add_argument("--select", default="flatten", help="flatten, or a token position (-1)")
    ca.add_argument("--dtype", choices=["float16", "float32"], default="float16")
    ca.add_argument("--probe-batch-size", type=int, default=256)
    _add_sae_options(ca)
    _add_match_options(ca)

    ex = command("export", "write every table of a lineage database to Parquet", _export)
    ex.add_argument("db")
    ex.add_argument("--parquet", required=True, help="output directory, one file per table")

    app = command(
        "app", "start the viewer on lineage databases (binds 127.0.0.1 unless told)", _app
    )
    app.add_argument("db", nargs="*", help="database files (default: all under ./data)")
    app.add_argument("--port", type=int, default=8501)
    app.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")

    fit = command("train-sae", "fit one SAE to one activation file [n, d]", _train_sae)
    fit.add_argument("activations", help="a .npy, .safetensors (tensor 'activations') or .pt file")
    fit.add_argument("--out", required=True, help="directory for cfg.json + sae.safetensors")
    _add_sae_options(fit)
    return parser


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container or `taskset`
    narrows), not the machine's: torch's default counts the machine's and oversubscribes."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


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
        torch.set_num_threads(threads or usable_cores())
    try:
        code: int = args.run_fn(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"tracker {args.command}: error: {err}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
