"""SAE fits as Ray tasks on a 2-worker local cluster: the same tables as in-process fitting
(after training, and in the callback's background mode), a killed worker loses nothing, a fit
that keeps failing is recorded and the run goes on."""

import os
import signal
import threading
import time
from pathlib import Path

import golden
import numpy as np
import pytest
import torch
from lightning.pytorch import seed_everything
from tiny import TinyNet, dataset, loader, one_of_each, trainer

from tracker import pipeline, remote
from tracker.callback import FeatureTracker
from tracker.cli import main
from tracker.config import SAEConfig
from tracker.pipeline import analyze
from tracker.reader import open_db

ray = pytest.importorskip("ray")

SAE = SAEConfig(d_sae=40, k=4, steps=300, batch_size=256, init="previous")
STEPS = (0, 10, 20, 30)


@pytest.fixture(scope="module")
def cluster():
    """Ray on this machine with two one-core workers, started once for the module."""
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Two layers of planted activations on disk, and their tables fitted in-process."""
    root = tmp_path_factory.mktemp("remote")
    run = one_of_each(1024, steps=STEPS)
    for layer, scale in (("a", 1.0), ("b", 1.5)):
        (root / "acts" / layer).mkdir(parents=True)
        for step, x in run.acts.items():
            np.save(root / "acts" / layer / f"{step}.npy", (x * scale).numpy())
    analyze(root / "acts", root / "local.duckdb", "p", sae=SAE)
    return root


def test_ray_fits_write_the_tables_of_in_process_fits(cluster, planted, tmp_path):
    db = tmp_path / "ray.duckdb"
    analyze(planted / "acts", db, "p", sae=SAE, executor="ray")
    assert (
        golden.differences(
            golden.snapshot(db, planted), golden.snapshot(planted / "local.duckdb", planted)
        )
        == []
    )
    reader = open_db(db)
    assert reader.checkpoints("p", "a")["step"].to_list() == list(STEPS)
    assert reader.checkpoints("p", "b")["step"].to_list() == list(STEPS)
    assert reader.events("p", "a", min_confidence=0.5).height > 0
    assert ray.is_initialized()  # a Ray the caller started is left running


def _descends_from_us(pid: int) -> bool:
    """Whether process `pid` was started by this one (the embedded Ray's workers are), so
    that the test never kills a fit of another Ray on the machine."""
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # the parent's pid
        if pid == os.getpid():
            return True
    return False


def _kill_first_fit(killed: list[int], stop: threading.Event) -> None:
    """SIGKILL the first worker of this test's Ray seen running a fit (title `ray::_fit`)."""
    while not stop.is_set() and not killed:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if title.startswith(b"ray::_fit") and _descends_from_us(int(pid)):
                os.kill(int(pid), signal.SIGKILL)
                killed.append(int(pid))
                return
        time.sleep(0.01)


def test_a_worker_killed_mid_fit_loses_nothing(cluster, planted, tmp_path):
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_first_fit, args=(killed, stop), daemon=True)
    killer.start()
    db = tmp_path / "ray.duckdb"
    try:
        analyze(planted / "acts", db, "p", sae=SAE, executor="ray")
    finally:
        stop.set()
        killer.join()
    assert killed, "no fit task was seen running"
    assert (
        golden.differences(
            golden.snapshot(db, planted), golden.snapshot(planted / "local.duckdb", planted)
        )
        == []
    )
    assert open_db(db).sql("SELECT count(*) AS n FROM failures")["n"][0] == 0


def test_a_fit_that_keeps_failing_is_recorded_and_the_run_goes_on(cluster, planted, tmp_path):
    acts = tmp_path / "acts"
    for layer in ("a", "b"):
        (acts / layer).mkdir(parents=True)
        for step in STEPS:
            (acts / layer / f"{step}.npy").symlink_to(planted / "acts" / layer / f"{step}.npy")
    (acts / "a" / "20.npy").unlink()
    np.save(acts / "a" / "20.npy", np.full((1024, 32), np.nan, dtype=np.float32))
    db = tmp_path / "ray.duckdb"
    analyze(acts, db, "p", sae=SAE, executor="ray")
    reader = open_db(db)
    failures = reader.sql("SELECT layer, step, error FROM failures")
    assert failures.select("layer", "step").rows() == [("a", 20)]
    assert "NaN" in failures["error"][0]
    assert reader.checkpoints("p", "a")["step"].to_list() == [0, 10, 30]
    assert reader.checkpoints("p", "b")["step"].to_list() == list(STEPS)


def test_the_cli_fits_on_ray_and_an_unknown_executor_is_named(cluster, planted, tmp_path, capsys):
    db = tmp_path / "cli.duckdb"
    args = ["analyze", str(planted / "acts"), "--db", str(db), "--run", "p", "--d-sae", "40"]
    assert main([*args, "--k", "4", "--steps", "300", "--executor", "ray"]) == 0
    assert "run 'p' layer 'a': 4 checkpoints" in capsys.readouterr().out
    with pytest.raises(ValueError, match="executor must be 'local' or 'ray', got 'dask'"):
        analyze(planted / "acts", tmp_path / "x.duckdb", "p", sae=SAE, executor="dask")  # type: ignore[arg-type]


def test_the_cli_gives_each_ray_fit_the_threads_asked_for(
    cluster, planted, tmp_path, capsys, monkeypatch
):
    asked = []

    class Recording(remote.RayFits):
        def __post_init__(self) -> None:
            asked.append(self.threads)
            super().__post_init__()

    monkeypatch.setattr(pipeline, "RayFits", Recording)
    db = tmp_path / "threads.duckdb"
    args = ["analyze", str(planted / "acts"), "--db", str(db), "--run", "p", "--d-sae", "40"]
    args += ["--k", "4", "--steps", "300", "--executor", "ray"]
    assert main([*args, "--threads", "2"]) == 0  # one fit at a time, on both CPUs
    assert sorted(open_db(db).checkpoints("p")["step"].to_list()) == sorted(STEPS * 2)
    assert main([*args[:2], "--db", str(tmp_path / "one.duckdb"), *args[4:]]) == 0
    assert asked == [2, 1], "a task's threads: --threads, else 1"
    wide = tmp_path / "wide.duckdb"
    assert main([*args[:2], "--db", str(wide), *args[4:], "--threads", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert asked == [2, 1, 3] and err[-1] == (
        "tracker analyze: error: fits of 3 threads fit no node of this Ray cluster "
        "(the largest has 2 CPUs): ask for fewer threads"
    )
    assert not wide.exists(), "nothing written"


def _train(root: Path, **options) -> Path:
    """The tiny net trained 12 steps with background fitting of its first layer."""
    seed_everything(0)
    tracker = FeatureTracker(
        layers=["body.0"],
        probe=dataset(128, seed=1).tensors[0],
        schedule=[0, 4, 8],
        run="r",
        root=root,
        sae=SAEConfig(d_sae=16, k=2, steps=60, batch_size=64, init="previous"),
        fit="background",
        queue_size=1,
        threads=1,  # as Ray's tasks: equal tables must not hang on summation order
        **options,
    )
    trainer(root, max_steps=12, callbacks=[tracker]).fit(TinyNet(), loader())
    return root / "r" / "lineage.duckdb"


def test_background_fitting_on_ray_writes_the_tables_of_local_background_fitting(cluster, tmp_path):
    local = _train(tmp_path / "local")
    remote = _train(tmp_path / "ray", executor="ray")
    want = golden.snapshot(local, tmp_path / "local")
    assert golden.differences(golden.snapshot(remote, tmp_path / "ray"), want) == []
    reader = open_db(remote)
    assert reader.checkpoints("r")["step"].to_list() == [0, 4, 8, 12]
    assert reader.sql("SELECT count(*) AS n FROM metrics")["n"][0] > 0
    with pytest.raises(ValueError, match="executor='ray' runs background fits: give fit="):
        FeatureTracker(layers=["body.0"], probe=torch.zeros(4, 6), fit="inline", executor="ray")
