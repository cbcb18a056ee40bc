import os

import numpy as np
import pytest

from tracker import SAE, commands
from tracker.cli import build_parser, main
from tracker.commands import match_config
from tracker.synthetic import planted_sparse


def test_train_sae_writes_a_loadable_sae_and_reports_metrics(tmp_path, capsys):
    x = planted_sparse(2000, 8, 12, 2, seed=0).x_ND
    np.save(tmp_path / "100.npy", x.numpy())
    code = main(
        [
            "train-sae",
            str(tmp_path / "100.npy"),
            "--out",
            str(tmp_path / "sae"),
            "--d-sae",
            "32",
            "--k",
            "3",
            "--steps",
            "20",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "SAE topk d=8 d_sae=32: FVU" in printed
    sae = SAE.load(tmp_path / "sae")
    assert sae.W_dec.shape == (32, 8) and sae.metrics is not None and sae.metrics.steps == 20


def test_bad_input_exits_non_zero_with_one_line(tmp_path, capsys):
    assert main(["train-sae", str(tmp_path / "nope.npy"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith("tracker train-sae: error: activation file") and "does not exist" in err
    np.save(tmp_path / "flat.npy", np.zeros(10, dtype=np.float32))
    assert main(["train-sae", str(tmp_path / "flat.npy"), "--out", str(tmp_path / "o")]) == 2
    assert "activations must be 2-D" in capsys.readouterr().err


def test_threads_default_to_the_cores_this_process_may_use(tmp_path, capsys):
    import torch

    from tracker.checks import usable_cores

    before = torch.get_num_threads()
    x = torch.randn(200, 8, generator=torch.Generator().manual_seed(0))
    np.save(tmp_path / "a.npy", x.numpy())
    try:
        args = ["train-sae", str(tmp_path / "a.npy"), "--out", str(tmp_path / "s"), "--k", "2"]
        assert main([*args, "--steps", "5", "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
        assert main([*args, "--steps", "5"]) == 0
        assert torch.get_num_threads() == usable_cores() == len(os.sched_getaffinity(0))
        assert main([*args, "--threads", "0"]) == 2
        assert capsys.readouterr().err.endswith("error: --threads must be >= 1, got 0\n")
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("runnable", "cpus", "usable", "threads"),
    [
        (None, 2, 2, 2),  # no load count (not Linux): every usable core
        (1, 2, 2, 2),  # only the reader runs: idle
        (2, 2, 2, 1),  # one other task on two cores
        (3, 2, 2, 1),  # both cores busy: still one thread
        (9, 64, 2, 2),  # 8 busy tasks on a 64-core machine leave this process's 2 cores idle
        (63, 64, 4, 2),  # 62 busy on 64: two idle
    ],
)
def test_idle_cores_leaves_busy_cores_to_the_work_on_them(
    monkeypatch, runnable, cpus, usable, threads
):
    import tracker.checks

    monkeypatch.setattr(tracker.checks, "_runnable", lambda: runnable)
    monkeypatch.setattr(tracker.checks, "usable_cores", lambda: usable)
    monkeypatch.setattr(tracker.checks.os, "cpu_count", lambda: cpus)
    assert tracker.checks.idle_cores() == threads


def test_tracker_fit_on_a_busy_machine_fits_on_fewer_threads_and_says_so(
    tmp_path, capsys, monkeypatch
):
    import torch

    import tracker.checks

    monkeypatch.setattr(tracker.checks, "_runnable", lambda: 5)  # four other tasks running
    monkeypatch.setattr(tracker.checks, "usable_cores", lambda: 2)
    monkeypatch.setattr(tracker.checks.os, "cpu_count", lambda: 2)
    monkeypatch.setattr("tracker.cli.usable_cores", lambda: 2)
    before = torch.get_num_threads()
    x = torch.randn(200, 8, generator=torch.Generator().manual_seed(0))
    np.save(tmp_path / "a.npy", x.numpy())
    try:
        args = ["train-sae", str(tmp_path / "a.npy"), "--out", str(tmp_path / "s"), "--k", "2"]
        assert main([*args, "--steps", "5"]) == 0
        assert torch.get_num_threads() == 1
        assert capsys.readouterr().err.startswith(  # then the progress bar
            "tracker train-sae: other work keeps this machine's cores busy; fitting on "
            "1 thread(s), not 2 (--threads to choose)\n"
        )
        assert main([*args, "--steps", "5", "--threads", "2"]) == 0  # asked for: no message
        assert torch.get_num_threads() == 2
        assert "busy" not in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)


@pytest.mark.machine_load
def test_runnable_reads_the_kernels_count():
    from tracker.checks import _runnable

    if not os.path.exists("/proc/loadavg"):
        pytest.skip("no /proc/loadavg off Linux")
    assert _runnable(samples=3, interval=0.0) >= 1  # at least the reading thread itself


def test_ctrl_c_exits_130_with_one_line_not_a_traceback(monkeypatch, tmp_path, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "fit_run", interrupted)
    assert main(["fit", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert err.startswith("tracker fit: interrupted; what was written is kept whole")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_witness_carried_is_a_share_or_off_on_the_command_line():
    parser = build_parser()
    base = ["analyze", "acts", "--db", "x.duckdb"]
    assert match_config(parser.parse_args(base)).witness_carried == 1.0
    assert (
        match_config(parser.parse_args([*base, "--witness-carried", "0.9"])).witness_carried == 0.9
    )
    assert (
        match_config(parser.parse_args([*base, "--witness-carried", "off"])).witness_carried is None
    )
    with pytest.raises(ValueError, match="MatchConfig.witness_carried must be finite and > 0"):
        match_config(parser.parse_args([*base, "--witness-carried", "0"]))
