"""SAE fits as Ray tasks on a 2-worker local cluster: the same tables as in-process fitting,
a killed worker loses nothing, a fit that keeps failing is recorded and the run goes on."""

import os
import signal
import threading
import time
from pathlib import Path

import golden
import numpy as np
import pytest
from tiny import one_of_each

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


def _kill_first_fit(killed: list[int], stop: threading.Event) -> None:
    """SIGKILL the first worker seen running a fit task (its title is `ray::_fit`)."""
    while not stop.is_set() and not killed:
        for pid in os.listdir("/proc"):
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes()
            except (OSError, ValueError):
                continue
            if pid.isdigit() and title.startswith(b"ray::_fit"):
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
