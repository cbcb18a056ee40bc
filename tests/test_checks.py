import numpy as np
import pytest
import torch

from tracker import SAEConfig, train_sae
from tracker.checks import as_activations, resolve_device

CFG = SAEConfig(d_sae=16, k=2, steps=2)


def test_accepts_numpy_and_returns_float32():
    x = as_activations(np.arange(12, dtype=np.float64).reshape(4, 3))
    assert x.dtype == torch.float32 and x.shape == (4, 3)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (torch.randn(10), r"activations must be 2-D \[n, d\], got shape \(10,\)"),
        (torch.randn(2, 3, 4), r"activations must be 2-D \[n, d\], got shape \(2, 3, 4\)"),
        (torch.randn(1, 4), r"activations needs at least 2 samples \(rows\), got 1"),
        (torch.randn(5, 0), r"activations must have at least one column"),
        (torch.ones(6, 3), "activations has zero variance: all 6 rows are identical"),
        ([[1.0, 2.0]], "activations must be a tensor or numpy array"),
    ],
)
def test_bad_activations_give_one_clear_error(value, message):
    with pytest.raises(ValueError, match=message):
        train_sae(value, CFG)


@pytest.mark.parametrize(("bad", "kind"), [(float("nan"), "NaN"), (float("inf"), "Inf")])
def test_non_finite_activations_name_the_first_bad_entry(bad, kind):
    x = torch.randn(8, 4)
    x[5, 2] = bad
    with pytest.raises(
        ValueError, match=rf"activations holds {kind} values \(first at row 5, column 2\)"
    ):
        train_sae(x, CFG)


def test_k_must_be_smaller_than_the_derived_d_sae():
    with pytest.raises(ValueError, match="SAEConfig.k must be smaller than d_sae=16, got k=32"):
        train_sae(torch.randn(50, 2), SAEConfig(k=32))


def test_cuda_requested_without_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="device='cuda' was asked for, but CUDA is not available"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")
