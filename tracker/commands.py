"""What each `tracker` command does, given its parsed arguments (`tracker.cli` parses)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import polars as pl

from tracker.activations import load_activation_file
from tracker.config import MatchConfig, SAEConfig
from tracker.export import export_parquet
from tracker.fit import train_sae
from tracker.pipeline import analyze, fit_run
from tracker.reader import VIEWER_DBS_ENV, open_db
from tracker.snapshots import scan_activation_dir
from tracker.suggest import REPRODUCIBLE, suggest
from tracker.text import CharTokenizer, text_probe


def sae_config(args: argparse.Namespace, progress: bool = True) -> SAEConfig:
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


def match_config(args: argparse.Namespace) -> MatchConfig:
    """The match options of `tracker analyze` and `tracker capture`."""
    return MatchConfig(
        tau_match=args.tau,
        min_confidence=args.min_confidence,
        min_frequency=args.min_frequency,
        witness_carried=args.witness_carried,
    )


def analyze_command(args: argparse.Namespace) -> int:
    match = match_config(args)
    analyze(
        args.dir,
        args.db,
        args.run or Path(args.dir).resolve().name,
        layer=args.layer,
        sae=sae_config(args, progress=False),
        match=match,
        progress=True,
        executor=args.executor,
        address=args.address,
        threads=args.threads or 1,
    )
    summary(Path(args.db), match.min_confidence)
    return 0


def fit_command(args: argparse.Namespace) -> int:
    db = fit_run(
        args.run_dir,
        args.db,
        progress=True,
        executor=args.executor,
        address=args.address,
        threads=args.threads or 1,
    )
    summary(db, MatchConfig().min_confidence)
    return 0


def probe_of(args: argparse.Namespace) -> Any:
    """--probe FILE, or --text FILE cut into --seq-len sequences by --tokenizer/--chars."""
    if (args.probe is None) == (args.text is None):
        raise ValueError("give the probe inputs: --probe FILE, or --text FILE with --seq-len")
    if args.probe is not None:
        from tracker.posthoc import load_probe  # with Lightning: only `capture` pays for it

        return load_probe(args.probe)
    if args.seq_len is None or (args.tokenizer is None) == (args.chars is None):
        raise ValueError("--text needs --seq-len and one of --tokenizer DIR or --chars FILE")
    tokenizer = args.tokenizer or CharTokenizer(Path(args.chars).read_text())
    return text_probe(Path(args.text), tokenizer, args.seq_len, args.sequences)


def capture_command(args: argparse.Namespace) -> int:
    from tracker.posthoc import capture_checkpoints

    select: str | int = int(args.select) if args.select.lstrip("-").isdigit() else args.select
    done = capture_checkpoints(
        args.checkpoints,
        args.model,
        args.layers,
        probe_of(args),
        args.run,
        args.root,
        select=select,
        dtype=args.dtype,
        probe_batch_size=args.probe_batch_size,
        device=args.device,
        sae=sae_config(args, progress=False),
        match=match_config(args),
        progress=True,
    )
    print(
        f"captured {len(done.captured)} checkpoints into {done.run_dir.path}"
        + (f" ({len(done.skipped)} already there)" if done.skipped else "")
        + f"; next: tracker fit {done.run_dir.path}"
    )
    return 0


def export_command(args: argparse.Namespace) -> int:
    written = export_parquet(args.db, args.parquet)
    print(f"wrote {len(written)} tables to {args.parquet}: {', '.join(p.stem for p in written)}")
    return 0


def app_command(args: argparse.Namespace) -> int:
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
    # app/launch.py loads the pages' imports (torch among them) before the server listens.
    command = [
        sys.executable,
        str(script.parent / "launch.py"),
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
        # The viewer is read, not edited: no watcher over the files of every module it
        # imported (torch's thousands).
        "--server.fileWatcherType",
        "none",
    ]
    os.execve(sys.executable, command, env)


def summary(db: Path, min_confidence: float) -> None:
    reader = open_db(db)
    for run in reader.runs()["run"].to_list():
        for layer in reader.layers(run):
            n = len(reader.checkpoints(run, layer))
            counts = reader.event_counts(run, layer, min_confidence)
            by_kind = counts.group_by("kind").agg(pl.col("n").sum()).sort("kind")
            events = ", ".join(f"{k} {n}" for k, n in by_kind.iter_rows()) or "none"
            print(f"{db}: run {run!r} layer {layer!r}: {n} checkpoints; confident events: {events}")


def train_sae_command(args: argparse.Namespace) -> int:
    sae = train_sae(load_activation_file(args.activations), sae_config(args))
    out = sae.save(args.out)
    metrics = sae.metrics
    assert metrics is not None
    print(
        f"SAE {sae.arch} d={sae.d} d_sae={sae.d_sae}: FVU {metrics.fvu:.4f}, L0 {metrics.l0:.1f}, "
        f"dead {metrics.dead_fraction:.1%}, {metrics.fit_seconds:.1f}s -> {out}"
    )
    return 0


def suggest_command(args: argparse.Namespace) -> int:
    source = Path(args.source)
    if source.is_dir():
        root = source / "activations" if (source / "run.json").is_file() else source
        layers = scan_activation_dir(root)
        layer = args.layer if args.layer is not None else next(iter(layers))
        if layer not in layers:
            raise ValueError(f"{root} has no layer {layer!r}; it has {sorted(layers)}")
        step = args.step if args.step is not None else max(layers[layer])
        if step not in layers[layer]:
            raise ValueError(f"{root} has no snapshot of layer {layer!r} at step {step}")
        file = layers[layer][step]
    else:
        file = source
    acts = load_activation_file(file)
    print(f"{file}: {acts.shape[0]} rows of width {acts.shape[1]}; two seeds per size")
    table = suggest(acts, sae=SAEConfig(steps=args.steps, device=args.device))
    print(f"{'d_sae':>7}{'k':>5}{'FVU':>8}{'L0':>7}{'live':>6}{'stable share':>14}")
    for row in table.iter_rows(named=True):
        mark = "  <- recommended" if row["recommended"] else ""
        print(
            f"{row['d_sae']:>7}{row['k']:>5}{row['fvu']:>8.3f}{row['l0']:>7.1f}{row['live']:>6}"
            f"{row['stable_share']:>14.2f}{mark}"
        )
    chosen = table.filter(pl.col("recommended"))
    if chosen.is_empty():
        print(f"no size is reproducible (stable share >= {REPRODUCIBLE}): more probe rows help")
    else:
        d_sae, k = chosen.select("d_sae", "k").row(0)
        print(f"use: sae={{'d_sae': {d_sae}, 'k': {k}}}  (CLI: --d-sae {d_sae} --k {k})")
    return 0
