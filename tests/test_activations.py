import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tracker.activations import load_activation_file


def test_reads_npy_safetensors_and_pt(tmp_path):
    x = torch.randn(5, 3)
    np.save(tmp_path / "a.npy", x.numpy())
    save_file({"activations": x}, str(tmp_path / "b.safetensors"))
    torch.save(x, tmp_path / "c.pt")
    for name in ("a.npy", "b.safetensors", "c.pt"):
        assert torch.equal(load_activation_file(tmp_path / name), x), name


def test_refuses_pickles_and_names_the_problem(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"obj.npy: cannot read activations"):
        load_activation_file(tmp_path / "obj.npy")
    torch.save({"weights": torch.ones(2)}, tmp_path / "dict.pt")
    with pytest.raises(ValueError, match=r"dict.pt: expected a tensor named 'activations'"):
        load_activation_file(tmp_path / "dict.pt")
    torch.save([torch.ones(2)], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="list.pt: expected one tensor, found list"):
        load_activation_file(tmp_path / "list.pt")
    save_file({"other": torch.ones(2, 2)}, str(tmp_path / "k.safetensors"))
    with pytest.raises(
        ValueError, match=r"expected a tensor named 'activations', found \['other'\]"
    ):
        load_activation_file(tmp_path / "k.safetensors")


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npy does not exist"):
        load_activation_file(tmp_path / "missing.npy")
    (tmp_path / "acts.csv").write_text("1,2\n")
    with pytest.raises(ValueError, match="unknown activation file type '.csv'"):
        load_activation_file(tmp_path / "acts.csv")
