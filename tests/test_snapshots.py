import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from tracker.snapshots import RunDir, scan_activation_dir


def test_write_is_atomic_and_logged(tmp_path):
    run = RunDir(tmp_path / "r")
    x = torch.randn(5, 3)
    path = run.write_activations("mlp", 7, x, "float16")
    assert path == tmp_path / "r" / "activations" / "mlp" / "7.safetensors"
    assert [p.name for p in path.parent.iterdir()] == ["7.safetensors"], "no temporary left"
    stored = load_file(str(path))["activations"]
    assert stored.dtype == torch.float16
    torch.testing.assert_close(stored.float(), x, atol=1e-3, rtol=1e-3)
    assert run.written() == [("mlp", 7)]


def test_values_beyond_float16_are_kept_in_float32(tmp_path, caplog):
    run = RunDir(tmp_path)
    x = torch.tensor([[1e5, 1.0], [2.0, 3.0]])
    stored = load_file(str(run.write_activations("a", 0, x, "float16")))["activations"]
    assert stored.dtype == torch.float32 and torch.equal(stored, x)
    assert "exceeds the float16 range" in caplog.text


def test_metrics_keep_the_last_value_per_step_and_skip_a_cut_line(tmp_path):
    run = RunDir(tmp_path)
    run.append_metrics([{"step": 1, "name": "loss", "value": 2.0}])
    run.append_metrics(
        [{"step": 1, "name": "loss", "value": 1.5}, {"step": 2, "name": "loss", "value": 1.0}]
    )
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "na')  # a crash mid-line
    assert run.metrics() == [
        {"step": 1, "name": "loss", "value": 1.5},
        {"step": 2, "name": "loss", "value": 1.0},
    ]


def test_manifest_refuses_another_width_or_probe_size(tmp_path):
    run = RunDir(tmp_path)
    run.write_manifest("r", 20, {"a": 8})
    run.check_compatible("r", 20, {"a": 8, "b": 4})  # a new layer is fine
    with pytest.raises(ValueError, match="layer 'a' with width 8, this run's is 16"):
        run.check_compatible("r", 20, {"a": 16})
    with pytest.raises(ValueError, match="holds snapshots of 20 probe inputs, this run has 30"):
        run.check_compatible("r", 30, {"a": 8})


def test_scan_reads_flat_and_layered_directories(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    np.save(flat / "10.npy", np.zeros((3, 2), np.float32))
    save_file({"activations": torch.zeros(3, 2)}, str(flat / "2.safetensors"))
    (flat / "notes.txt").write_text("ignored")
    assert scan_activation_dir(flat) == {"": {10: flat / "10.npy", 2: flat / "2.safetensors"}}

    layered = tmp_path / "layered"
    for layer in ("mlp", "attn"):
        (layered / layer).mkdir(parents=True)
        np.save(layered / layer / "0.npy", np.zeros((3, 2), np.float32))
    assert set(scan_activation_dir(layered)) == {"mlp", "attn"}


def test_scan_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="activation directory .* does not exist"):
        scan_activation_dir(tmp_path / "none")
    with pytest.raises(ValueError, match="holds no activation files"):
        scan_activation_dir(tmp_path)
    np.save(tmp_path / "5.npy", np.zeros((2, 2), np.float32))
    save_file({"activations": torch.zeros(2, 2)}, str(tmp_path / "5.safetensors"))
    with pytest.raises(ValueError, match="step 5 of layer '' is stored twice"):
        scan_activation_dir(tmp_path)
