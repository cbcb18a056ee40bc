import os

import numpy as np

from tracker import SAE
from tracker.cli import main
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
