"""SAE persistence and the raw-unit interface."""

import json

import pytest
import torch

from tracker import SAE, SAEConfig, train_sae
from tracker.synthetic import planted_sparse


@pytest.fixture(scope="module", params=["topk", "relu"])
def fitted(request):
    x = planted_sparse(3000, 16, 24, 2, seed=1).x_ND * 7.0
    own = {"k": 3} if request.param == "topk" else {}
    return train_sae(x, SAEConfig(arch=request.param, d_sae=48, steps=30, **own)), x


def test_save_then_load_gives_identical_outputs(fitted, tmp_path):
    sae, x = fitted
    out = sae.save(tmp_path / "sae")
    assert sorted(p.name for p in out.iterdir()) == ["cfg.json", "sae.safetensors"]
    loaded = SAE.load(out)
    assert type(loaded) is type(sae) and loaded.config == sae.config
    assert loaded.metrics == sae.metrics
    for name, tensor in sae.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    with torch.no_grad():
        assert torch.equal(sae.encode(x), loaded.encode(x))
        assert torch.equal(sae(x), loaded(x))


def test_encode_and_decode_shapes(fitted):
    sae, x = fitted
    z = sae.encode(x[:10])
    assert z.shape == (10, 48) and sae.decode(z).shape == (10, 16)
    assert sae.W_dec.shape == (48, 16)
    if sae.arch == "topk":
        assert int((z > 0).sum(1).max()) <= 3


def test_load_errors_name_the_file(fitted, tmp_path):
    sae, _ = fitted
    with pytest.raises(FileNotFoundError, match="cfg.json does not exist"):
        SAE.load(tmp_path / "nowhere")
    out = sae.save(tmp_path / "old")
    meta = json.loads((out / "cfg.json").read_text())
    meta["format_version"] = 99
    (out / "cfg.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="SAE format version 99, this tracker reads version 1"):
        SAE.load(out)


def test_topk_fit_metrics_from_active_latents_equal_the_dense_pass(monkeypatch):
    # A TopK fit measures FVU, L0 and per-latent statistics from its k active latents per
    # row; the dense [n, d_sae] latents every architecture has give the same numbers.
    from tracker import fit

    x = planted_sparse(5000, 16, 24, 2, seed=1).x_ND * 7.0  # 5000: a partial last batch
    monkeypatch.setattr(fit, "EVAL_BATCH", 2048)
    sae = train_sae(x, SAEConfig(d_sae=48, k=3, steps=30))
    sparse = sae.metrics
    freq, mean = sae.frequency.clone(), sae.mean_activation.clone()
    monkeypatch.setattr(type(sae), "active_codes", lambda self, x_BD, out=None: None)
    dense = fit._measure(sae, x / sae.input_scale, sparse.steps, 0.0)
    assert dense.fvu == pytest.approx(sparse.fvu, rel=1e-5)
    assert dense.l0 == pytest.approx(sparse.l0) and dense.dead_fraction == sparse.dead_fraction
    assert torch.equal(sae.frequency, freq)
    torch.testing.assert_close(sae.mean_activation, mean)
