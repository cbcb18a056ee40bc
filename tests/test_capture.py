import pytest
import torch
from torch import nn

from tracker.capture import capture, resolve_modules, select


class Seq(nn.Module):
    """Returns a tuple whose first element is [batch, seq, d], as attention blocks do."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 3)

    def forward(self, x):
        out = self.proj(x)
        return out, out.sum()


def test_unknown_module_names_the_close_matches():
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    model.add_module("mlp_out", nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"module 'mlp_ot' is not in .*close matches: 'mlp_out'"):
        resolve_modules(model, ["mlp_ot"])
    with pytest.raises(ValueError, match="module '' is not in"):
        resolve_modules(model, [""])


def test_selectors_flatten_token_position_and_function():
    out = torch.arange(2 * 3 * 4.0).reshape(2, 3, 4)
    assert select(out, "flatten", "m").shape == (2, 12)
    assert torch.equal(select((out, None), -1, "m"), out[:, -1, :])
    assert torch.equal(select(out, lambda t: t.mean(1), "m"), out.mean(1))
    with pytest.raises(
        ValueError, match=r"module 'm': the selector must give \[batch=2, d\], got \(2, 3, 4\)"
    ):
        select(out, lambda t: t, "m")
    with pytest.raises(
        ValueError, match=r"a token selector \(0\) needs a \[batch, seq, d\] output"
    ):
        select(torch.ones(2, 4), 0, "m")


def test_capture_runs_in_eval_no_grad_and_restores_each_mode():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5), nn.Linear(4, 2))
    model.train()
    model[1].eval()  # a frozen batch norm must stay frozen
    stats = model[1].running_mean.clone()
    model[0].register_forward_hook(lambda m, i, o: seen.append((m.training, o.requires_grad)))
    seen: list = []
    x = torch.randn(10, 4)
    rng_before = torch.get_rng_state()
    acts = capture(
        model,
        {"0": model[0], "2": model[2]},
        {"0": "flatten", "2": "flatten"},
        iter([x[:6], x[6:]]),
        model,
    )
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert seen == [(False, False), (False, False)]
    assert [m.training for m in model] == [True, False, True, True]
    assert torch.equal(model[1].running_mean, stats)
    assert acts["0"].shape == (10, 4)
    # Dropout is off in eval: its captured output is exactly the batch norm's output.
    with torch.no_grad():
        assert torch.allclose(acts["0"], model[0](x))
        assert torch.allclose(acts["2"], model[1](acts["0"]))
    assert model[0]._forward_hooks.__len__() == 1, "capture must remove its hooks"


def test_tuple_outputs_use_the_first_element():
    model = Seq()
    acts = capture(
        model,
        {"proj": model.proj, "": model},
        {"proj": 0, "": -1},
        iter([torch.randn(5, 7, 4)]),
        model,
    )
    assert acts["proj"].shape == (5, 3) and acts[""].shape == (5, 3)
