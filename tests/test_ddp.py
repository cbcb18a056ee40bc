"""FeatureTracker under 2-process CPU DDP (gloo): sharded probe, gathered, written once."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from tracker.snapshots import RunDir

HERE = Path(__file__).parent


@pytest.mark.slow
def test_ddp_writes_each_file_once_with_the_full_probe_set_in_order(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    done = subprocess.run(
        [sys.executable, str(HERE / "ddp_run.py"), str(tmp_path)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = RunDir(tmp_path / "ddp")
    assert run.written() == [("body.0", 0), ("body.0", 2), ("body.0", 4)], "rank 0 writes once"

    states = torch.load(tmp_path / "states.pt", weights_only=True)
    probe = states["probe"]
    linear = nn.Linear(6, 8)
    for step, state in ((0, "initial"), (4, "final")):
        linear.load_state_dict(
            {
                k.removeprefix("body.0."): v
                for k, v in states[state].items()
                if k.startswith("body.0.")
            }
        )
        with torch.no_grad():
            expected = linear(probe)
        x = load_file(str(run.activation_path("body.0", step)))["activations"]
        assert x.shape == (21, 8)
        torch.testing.assert_close(
            x.float(), expected, atol=2e-3, rtol=2e-3, msg=lambda m, step=step: f"step {step}: {m}"
        )
