"""The pipeline: analyze into the store, the CLI, and the callback's three fit modes."""

import threading
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
import torch
from lightning.pytorch import seed_everything
from tiny import TinyNet, dataset, loader, one_of_each, trainer

from tracker import FeatureTracker, MatchConfig, SAEConfig
from tracker.cli import main
from tracker.fitter import SnapshotFitter
from tracker.pipeline import Analyzer
from tracker.planted import score_events
from tracker.reader import open_db
from tracker.snapshots import RunDir
from tracker.store import Writer

SMALL_SAE = SAEConfig(d_sae=16, k=2, steps=60, batch_size=64)


@pytest.mark.slow
def test_analyze_cli_on_a_planted_directory_finds_the_true_events(tmp_path, capsys):
    run = one_of_each(2048)
    acts = tmp_path / "acts"
    acts.mkdir()
    for step, x in run.acts.items():
        np.save(acts / f"{step}.npy", x.numpy())
    code = main(
        [
            "analyze",
            str(acts),
            "--db",
            str(tmp_path / "p.duckdb"),
            "--run",
            "planted",
            "--d-sae",
            "40",
            "--k",
            "4",
            "--steps",
            "300",
            "--batch-size",
            "1024",
        ]
    )
    assert code == 0
    assert "run 'planted' layer 'default': 3 checkpoints" in capsys.readouterr().out
    reader = open_db(tmp_path / "p.duckdb")
    events = reader.events("planted", "default", min_confidence=0.5)
    reported = [
        (r["prev_step"], r["step"], r["kind"], r["sources"], r["targets"])
        for r in events.iter_rows(named=True)
    ]
    decoders = {s: reader.decoder("planted", "default", s) for s in (0, 10, 20)}
    scores = score_events(run, reported, decoders)
    assert all(s.recall == 1.0 for s in scores.values()), scores
    assert sum(s.fp for s in scores.values()) <= 1, scores
    # Every confident event is witnessed by the activations and carries its evidence.
    assert set(events["witness"]) == {"absent"}, events["witness"].to_list()
    strong = (events["presence"] >= 0.5) & (events["presence_corr"] >= 0.8)
    assert not strong.any(), "absent means weak or differently patterned there"
    assert events["seeds"].is_in([1, 2]).all() and (events["gap"] >= 0).all()
    assert (events["confidence"] <= events["match_confidence"]).all()
    # Lineage: every continuation edge keeps the lineage id of its source.
    edges = reader.sql(
        "SELECT e.kind, a.lineage AS src, b.lineage AS dst FROM edges e "
        "JOIN features a ON a.step = e.prev_step AND a.feature = e.source "
        "JOIN features b ON b.step = e.step AND b.feature = e.target"
    )
    cont = edges.filter(pl.col("kind") == "continuation")
    assert len(cont) > 20 and (cont["src"] == cont["dst"]).all()
    assert (
        edges.filter(pl.col("kind") != "continuation")["src"]
        != edges.filter(pl.col("kind") != "continuation")["dst"]
    ).all()
    first = int(reader.features("planted", "default", 20)["feature"][0])
    ex = reader.examples("planted", "default", 20, first)
    assert ex["rank"][:20].to_list() == list(range(20)) and len(ex) == 23
    assert ex["activation"].is_sorted(descending=True)


def watching(tmp_path, run, fit, schedule, **kwargs):
    """A FeatureTracker on the tiny net's first layer, 128 probe inputs, the small SAE."""
    return FeatureTracker(
        layers=["body.0"],
        probe=dataset(128, seed=1).tensors[0],
        schedule=schedule,
        run=run,
        root=tmp_path / "runs",
        sae=SMALL_SAE,
        fit=fit,
        **kwargs,
    )


def _train(tmp_path, mode, **kwargs):
    seed_everything(0)
    kwargs.setdefault("match", MatchConfig(tau_match=0.75, min_confidence=0.6))
    tracker = FeatureTracker(
        layers=["body.0"],
        probe=dataset(128, seed=1).tensors[0],
        schedule=[0, 4, 8],
        run=mode,
        root=tmp_path / "runs",
        sae=kwargs.pop("sae", SMALL_SAE),
        fit=mode,
        **kwargs,
    )
    trainer(tmp_path, max_steps=12, callbacks=[tracker]).fit(TinyNet(), loader())
    return tmp_path / "runs" / mode


TABLES = {
    "features": "step, feature",
    "events": "step, kind, sources",
    "edges": "step, source, target",
    "lineages": "step, lineage, parent",
    "examples": "step, feature, rank",
    "saes": "step",
    "metrics": "step, name",
}


def _tables(db):
    reader = open_db(db)
    out = {}
    for table, order in TABLES.items():
        frame = reader.sql(f"SELECT * EXCLUDE (run) FROM {table} ORDER BY {order}")
        out[table] = frame.drop("fit_seconds") if table == "saes" else frame
    return out


@pytest.mark.slow
def test_inline_background_and_defer_write_the_same_tables(tmp_path, capsys):
    # The same threads in every mode: equal tables must not hang on summation order.
    threads = torch.get_num_threads()
    inline = _tables(_train(tmp_path, "inline") / "lineage.duckdb")
    background = _train(tmp_path, "background", queue_size=1, threads=threads)
    background = _tables(background / "lineage.duckdb")
    deferred = _train(tmp_path, "defer")
    assert not (deferred / "lineage.duckdb").exists()
    assert main(["fit", str(deferred), "--threads", str(threads)]) == 0
    assert "4 checkpoints" in capsys.readouterr().out
    fitted = _tables(deferred / "lineage.duckdb")
    tau = open_db(deferred / "lineage.duckdb").checkpoints("defer")["tau"].drop_nulls()
    assert (tau >= 0.75).all(), "tracker fit must use the run's own match config"
    assert len(inline["saes"]) == 4 and len(inline["features"]) > 0 and len(inline["metrics"]) > 0
    for table in TABLES:
        assert inline[table].equals(background[table]), f"{table}: inline != background"
        assert inline[table].equals(fitted[table]), f"{table}: inline != defer + tracker fit"

    out = tmp_path / "parquet"
    extra = pl.DataFrame({"step": [0, 3], "label": ["a", "b"]})
    Writer(deferred / "lineage.duckdb").write_table("my_truth", "defer", extra)
    assert main(["export", str(deferred / "lineage.duckdb"), "--parquet", str(out)]) == 0
    features = pl.read_parquet(out / "features.parquet")
    assert len(features) == len(fitted["features"])
    assert {p.stem for p in out.glob("*.parquet")} >= {"runs", "events", "edges", "examples"}
    assert pl.read_parquet(out / "my_truth.parquet").drop("run").equals(extra), "a replay's table"


UNFITTABLE = SAEConfig(d_sae=16, k=2, steps=20, device="cuda:99")  # fails at every fit


def test_a_failed_background_fit_is_recorded_and_training_goes_on(tmp_path, caplog):
    run_dir = _train(tmp_path, "background", sae=UNFITTABLE)
    reader = open_db(run_dir / "lineage.duckdb")
    failures = reader.failures("background")
    assert failures["step"].to_list() == [0, 4, 8, 12]
    assert "device" in failures["error"][0].lower(), failures["error"][0]
    assert len(list((run_dir / "activations" / "body.0").glob("*.safetensors"))) == 4
    assert "(steps 0, 4, 8, 12;" in caplog.text and f"`tracker fit {run_dir}`" in caplog.text


def test_a_failure_that_cannot_be_recorded_neither_stops_nor_hangs_training(
    tmp_path, caplog, monkeypatch
):
    def locked(*args):
        raise duckdb.IOException("Could not set lock on file: Conflicting lock is held")

    monkeypatch.setattr(Writer, "write_failure", locked)
    run_dir = _train(tmp_path, "background", sae=UNFITTABLE)
    assert "could not write to" in caplog.text and "Conflicting lock" in caplog.text
    assert "4 checkpoint(s) of run background are not in its lineage (steps 0, 4, 8, 12;" in (
        caplog.text
    )
    assert (run_dir / "lineage.duckdb").exists()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_closing_never_waits_on_a_dead_worker(tmp_path, caplog, monkeypatch):
    run_dir = _train(tmp_path, "defer")  # snapshots on disk, nothing fitted
    fitter = SnapshotFitter(
        RunDir(run_dir),
        "defer",
        ["body.0"],
        SMALL_SAE,
        MatchConfig(),
        background=True,
        queue_size=1,
    )

    def die(step):
        raise SystemExit  # ends the worker thread, as no Exception handler catches it

    monkeypatch.setattr(fitter, "_process", die)
    for step in (0, 4, 8, 12):  # the queue holds one: the rest wait in memory
        fitter.submit(step)
    closing = threading.Thread(target=fitter.close, daemon=True)
    closing.start()
    closing.join(timeout=60)
    assert not closing.is_alive(), "close() blocked on a dead worker"
    assert "(steps 0, 4, 8, 12;" in caplog.text


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["fit", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"tracker fit: error: {tmp_path / 'nowhere'} is not a run directory (no run.json)"
    )
    assert main(["analyze", str(tmp_path), "--db", str(tmp_path / "x.duckdb")]) == 2
    assert "holds no activation files" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "none.duckdb"), "--parquet", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_analyze_a_mapping_and_reject_steps_out_of_order(tmp_path):
    from tracker.pipeline import Analyzer, analyze
    from tracker.store import Writer

    x = torch.randn(300, 8)
    analyze({3: x, 1: x * 1.1}, tmp_path / "m.duckdb", "m", sae=SMALL_SAE)
    assert open_db(tmp_path / "m.duckdb").checkpoints("m")["step"].to_list() == [1, 3]
    analyzer = Analyzer(Writer(tmp_path / "n.duckdb"), "n", "L", SMALL_SAE)
    analyzer.add(5, x)
    with pytest.raises(ValueError, match="checkpoints must come in step order: 2 after 5"):
        analyzer.add(2, x)


def test_a_resume_numbers_new_lineages_from_the_checkpoint_it_resumes(tmp_path):
    run = one_of_each(512)
    first = Analyzer(Writer(tmp_path / "r.duckdb"), "r", "L", SMALL_SAE)
    for step in sorted(run.acts):
        first.add(step, run.acts[step])
    reader = open_db(tmp_path / "r.duckdb")
    ids = reader.sql("SELECT step, max(lineage) AS top FROM features GROUP BY step ORDER BY step")
    assert ids["top"].to_list() == sorted(ids["top"].to_list())
    assert ids["top"][0] < ids["top"][-1], "later checkpoints started new lineages"
    resumed = Analyzer(Writer(tmp_path / "r.duckdb"), "r", "L", SMALL_SAE)
    resumed.resume(10, run.acts.__getitem__)  # goes on after step 0, replacing 10 and 20
    parents = reader.sql("SELECT max(lineage) AS m FROM lineages WHERE step <= 0")["m"][0]
    assert resumed.chain.ids.next_id == max(ids["top"][0], parents or 0) + 1
    resumed.add(10, run.acts[10])
    assert reader.checkpoints("r", "L")["step"].to_list() == [0, 10, 20]


@pytest.mark.slow
@pytest.mark.parametrize("first_fit", ["inline", "defer"])
def test_a_resumed_inline_run_continues_the_lineage(tmp_path, caplog, first_fit):
    """`defer` stands for a background run that crashed: its snapshots are on disk, its
    lineage is not; the resumed run fits them first, in order."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    def tracker(fit):
        return watching(tmp_path, "resumed", fit, "every:3")

    seed_everything(0)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=6, save_top_k=-1)
    first = [tracker(first_fit), ckpt]
    trainer(tmp_path, max_steps=6, callbacks=first, enable_checkpointing=True).fit(
        TinyNet(), loader()
    )
    trainer(tmp_path, max_steps=12, callbacks=[tracker("inline")]).fit(
        TinyNet(), loader(), ckpt_path=next((tmp_path / "ckpt").glob("*.ckpt"))
    )
    if first_fit == "defer":
        assert "fitting 3 snapshot(s) on disk the lineage lacks (steps 0, 3, 6)" in caplog.text

    reader = open_db(tmp_path / "runs" / "resumed" / "lineage.duckdb")
    assert reader.checkpoints("resumed", "body.0")["step"].to_list() == [0, 3, 6, 9, 12]
    assert reader.checkpoints("resumed", "body.0")["prev_step"].to_list()[3] == 6
    joined = reader.sql(
        "SELECT e.step, a.lineage AS src, b.lineage AS dst FROM edges e "
        "JOIN features a ON a.step = e.prev_step AND a.feature = e.source "
        "JOIN features b ON b.step = e.step AND b.feature = e.target "
        "WHERE e.kind = 'continuation'"
    )
    across = joined.filter(pl.col("step") == 9)
    assert len(across) > 0 and (across["src"] == across["dst"]).all(), "lineage kept on resume"
    new = reader.sql(
        "SELECT lineage FROM features WHERE step = 9 AND lineage NOT IN "
        "(SELECT lineage FROM features WHERE step = 6)"
    )["lineage"].to_list()
    before = reader.sql("SELECT max(lineage) AS m FROM features WHERE step <= 6")["m"][0]
    assert all(lineage > before for lineage in new), "new lineages must not reuse old ids"


def worker_end(monkeypatch) -> threading.Event:
    """An event set when the background worker thread ends."""
    done, work = threading.Event(), SnapshotFitter._work

    def tracked_work(self):
        try:
            work(self)
        finally:
            done.set()

    monkeypatch.setattr(SnapshotFitter, "_work", tracked_work)
    return done


class Interrupted(TinyNet):
    """Ctrl-C at step 5 of training."""

    def training_step(self, batch, batch_idx):
        if self.trainer.global_step == 5:
            raise KeyboardInterrupt
        return super().training_step(batch, batch_idx)


@pytest.mark.parametrize("when", ["in training", "while the end waits for fits"])
def test_ctrl_c_stops_a_background_run_without_waiting_for_its_fits(
    tmp_path, caplog, monkeypatch, when
):
    import os
    import signal as signals

    release = threading.Event()
    started = []

    def stuck(self, step, acts, fitted=None):  # a fit that would take for ever
        started.append(step)
        release.wait()

    monkeypatch.setattr(Analyzer, "add", stuck)
    worker_done = worker_end(monkeypatch)
    tracker = watching(tmp_path, "ctrl-c", "background", "every:1")
    fit = trainer(tmp_path, max_steps=6, callbacks=[tracker])

    def ctrl_c_once_training_is_over():
        while fit.global_step < 6 and not release.is_set():
            release.wait(0.05)
        if not release.is_set():
            os.kill(os.getpid(), signals.SIGINT)

    handler = signals.getsignal(signals.SIGINT)
    # Python's own Ctrl-C handler, whatever this process inherited: a shell's background job
    # (`cmd &`, nohup) starts with SIGINT ignored, and the test then waited for ever.
    signals.signal(signals.SIGINT, signals.default_int_handler)
    try:
        if when != "in training":
            threading.Thread(target=ctrl_c_once_training_is_over, daemon=True).start()
        with pytest.raises(SystemExit):  # Lightning's graceful shutdown on Ctrl-C
            fit.fit(Interrupted() if when == "in training" else TinyNet(), loader())
    finally:
        release.set()
        signals.signal(signals.SIGINT, handler)
        assert worker_done.wait(timeout=60), "the worker ends once its fit returns"
    assert started in ([], [0]), "the worker started no step after the interrupt"
    if started:  # the stuck fit had begun: it was left, not waited for
        assert "a fit was still running when training stopped" in caplog.text
    assert "fitting step" not in caplog.text, "the worker ended without an error"
    assert "(steps 0, 1, 2, 3, 4, 5" in caplog.text and "tracker fit" in caplog.text
    assert not (tmp_path / "runs" / "ctrl-c" / ".writer.lock").exists()


@pytest.mark.parametrize("mode", ["inline", "background"])
def test_each_fitted_checkpoint_reaches_the_trainers_logger(tmp_path, mode):
    from lightning.pytorch.loggers import CSVLogger

    seed_everything(0)
    tracker = watching(
        tmp_path, mode, mode, [0, 4, 8], match=MatchConfig(tau_match=0.75, min_confidence=0.6)
    )
    logger = CSVLogger(tmp_path / "logs", name=mode)
    trainer(tmp_path, max_steps=12, callbacks=[tracker], logger=logger).fit(TinyNet(), loader())
    logged = pl.read_csv(Path(logger.log_dir) / "metrics.csv")
    rows = logged.filter(pl.col("tracker/body.0/live_features").is_not_null())
    assert sorted(rows["step"].to_list()) == [0, 4, 8, 12]
    stored = open_db(tmp_path / "runs" / mode / "lineage.duckdb")
    checkpoints = stored.checkpoints(mode, "body.0")
    counts = stored.event_counts(mode, "body.0", 0.6)
    for row in rows.iter_rows(named=True):
        step = row["step"]
        n = dict(counts.filter(pl.col("step") == step).select("kind", "n").iter_rows())
        assert row["tracker/body.0/live_features"] == stored.features(mode, "body.0", step).height
        share = checkpoints.filter(pl.col("step") == step)["stable_share"][0]
        assert row["tracker/body.0/stable_share"] == pytest.approx(share)
        assert row["tracker/body.0/deaths"] == n.get("death", 0)
        # A birth may be confirmed by the next checkpoint, after it was logged.
        assert row["tracker/body.0/births"] <= n.get("birth", 0)
    assert rows["tracker/body.0/fvu"].is_between(0, 1.5).all()


class CountsThreads(TinyNet):
    """Records the CPU threads the training thread has at each step."""

    def __init__(self):
        super().__init__()
        self.seen: list[int] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(torch.get_num_threads())
        return super().training_step(batch, batch_idx)


@pytest.mark.parametrize("mode", ["inline", "background"])
def test_fitting_runs_on_its_own_thread_count_and_leaves_trainings(tmp_path, monkeypatch, mode):
    fitting, add = [], Analyzer.add

    def counted(self, step, acts, fitted=None):
        fitting.append(torch.get_num_threads())
        return add(self, step, acts, fitted)

    monkeypatch.setattr(Analyzer, "add", counted)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        tracker = watching(tmp_path, mode, mode, [0, 4, 8], threads=1)
        net = CountsThreads()
        trainer(tmp_path, max_steps=12, callbacks=[tracker]).fit(net, loader())
        assert fitting == [1, 1, 1, 1], "every checkpoint was fitted on one thread"
        assert set(net.seen) == {2} and torch.get_num_threads() == 2, "training kept its own"
    finally:
        torch.set_num_threads(before)


def test_background_fitting_takes_half_the_usable_cores_by_default(tmp_path):
    from tracker.checks import usable_cores

    assert watching(tmp_path, "b", "background", 4).fit_threads == max(1, usable_cores() // 2)
    assert watching(tmp_path, "i", "inline", 4).fit_threads is None  # training's own
    assert watching(tmp_path, "t", "background", 4, threads=3).fit_threads == 3


def test_at_end_leave_returns_without_waiting_and_tracker_fit_completes(
    tmp_path, caplog, monkeypatch
):
    import tracker.fitter

    release, add = threading.Event(), Analyzer.add

    def slow(self, step, acts, fitted=None):  # the first fit lasts until the test lets it go
        release.wait()
        return add(self, step, acts, fitted)

    monkeypatch.setattr(Analyzer, "add", slow)
    worker_done = worker_end(monkeypatch)
    monkeypatch.setattr(tracker.fitter, "STOP_SECONDS", 0.2)
    seed_everything(0)
    watcher = watching(tmp_path, "leave", "background", [0, 4, 8], at_end="leave")
    trainer(tmp_path, max_steps=12, callbacks=[watcher]).fit(TinyNet(), loader())
    assert not worker_done.is_set(), "trainer.fit returned while the first fit was running"
    assert "(steps 0, 4, 8, 12" in caplog.text and "tracker fit" in caplog.text
    release.set()
    assert worker_done.wait(timeout=60)
    monkeypatch.setattr(Analyzer, "add", add)
    run_dir = tmp_path / "runs" / "leave"
    assert main(["fit", str(run_dir)]) == 0
    stored = open_db(run_dir / "lineage.duckdb").checkpoints("leave", "body.0")
    assert stored["step"].to_list() == [0, 4, 8, 12]
