"""train_sae on planted dictionaries: recovery, metrics, determinism, warm starts."""

import pytest
import torch
from torch.testing import assert_close

from tracker import SAEConfig, train_sae
from tracker.sae import TopKSAE
from tracker.synthetic import mean_max_cosine, planted_sparse


@pytest.fixture(scope="module")
def planted():
    # The recovery setting: d=32, 64 true unit directions, about 3 active, 20k samples.
    return planted_sparse(20_000, 32, 64, 3, seed=0)


@pytest.fixture(scope="module")
def topk_sae(planted):
    # Wider than the truth (a user never knows its size); k a little above the mean of 3
    # because the number active per sample varies.
    return train_sae(planted.x_ND, SAEConfig(d_sae=128, k=6, steps=300))


def test_topk_recovers_the_planted_dictionary(planted, topk_sae):
    mmcs = mean_max_cosine(topk_sae.W_dec.detach(), planted.dictionary_TD)
    assert mmcs >= 0.97, f"TopK MMCS {mmcs:.3f} < 0.97"
    assert topk_sae.metrics.fvu <= 0.1, f"TopK FVU {topk_sae.metrics.fvu:.3f} > 0.1"


def test_relu_l1_recovers_the_planted_dictionary(planted):
    sae = train_sae(planted.x_ND, SAEConfig(arch="relu", d_sae=128, steps=1000))
    mmcs = mean_max_cosine(sae.W_dec.detach(), planted.dictionary_TD)
    assert mmcs >= 0.9, f"ReLU-L1 MMCS {mmcs:.3f} < 0.9"
    assert sae.metrics.l0 < 20, f"ReLU-L1 is not sparse: L0 {sae.metrics.l0:.1f}"


def test_metrics_agree_with_a_recomputation_in_raw_units(planted, topk_sae):
    x = planted.x_ND
    with torch.no_grad():
        z = topk_sae.encode(x)
        x_hat = topk_sae.decode(z)
    fvu = float((x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum())
    m = topk_sae.metrics
    assert m.fvu == pytest.approx(fvu, rel=1e-4)
    assert m.l0 == pytest.approx(float((z > 0).sum(1).float().mean()), rel=1e-6)
    assert m.l0 <= 6
    assert m.dead_fraction == pytest.approx(float(((z > 0).sum(0) == 0).float().mean()))
    assert m.steps == 300 and m.fit_seconds > 0
    # Σ_f frequency_f is the mean number of active latents per sample.
    assert float(topk_sae.frequency.sum()) == pytest.approx(m.l0, rel=1e-5)
    fires = z > 0
    expected_mean = z.sum(0) / fires.sum(0).clamp_min(1)
    assert_close(topk_sae.mean_activation, expected_mean)
    assert topk_sae._workspace is None, "a fitted SAE must not keep its training buffer"


def test_decoder_rows_stay_unit_norm(planted):
    for steps in (1, 17):
        sae = train_sae(planted.x_ND[:2000], SAEConfig(d_sae=64, k=4, steps=steps))
        assert_close(sae.W_dec.detach().norm(dim=1), torch.ones(64))


def test_same_seed_same_weights_other_seed_other_weights(planted):
    x = planted.x_ND[:4000]
    cfg = SAEConfig(d_sae=64, k=4, steps=40, batch_size=512)
    a, b = train_sae(x, cfg), train_sae(x, cfg)
    c = train_sae(x, SAEConfig(d_sae=64, k=4, steps=40, batch_size=512, seed=1))
    for name, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[name]), f"{name} differs with the same seed"
    assert not torch.equal(a.W_dec, c.W_dec)


def test_activation_scale_does_not_leak_into_features(planted):
    x = planted.x_ND[:4000]
    cfg = SAEConfig(d_sae=64, k=4, steps=40, batch_size=512)
    small, large = train_sae(x, cfg), train_sae(100.0 * x, cfg)
    assert_close(small.W_dec, large.W_dec, atol=1e-4, rtol=1e-4)
    assert float(large.input_scale) == pytest.approx(100.0 * float(small.input_scale), rel=1e-5)
    with torch.no_grad():
        assert_close(small.encode(x), large.encode(100.0 * x), atol=1e-4, rtol=1e-4)
        assert_close(100.0 * small(x), large(100.0 * x), atol=1e-2, rtol=1e-4)


def test_initialisation_follows_the_recipe():
    x = torch.randn(100, 8) + 3.0
    sae = TopKSAE(8, 32, SAEConfig(d_sae=32, k=4))
    sae.init_weights(torch.Generator().manual_seed(0), x.mean(0))
    assert torch.equal(sae.W_enc, sae.W_dec), "encoder must start as the decoder's transpose"
    assert_close(sae.W_dec.detach().norm(dim=1), torch.ones(32))
    assert torch.equal(sae.b_dec.detach(), x.mean(0)), "decoder bias must start at the data mean"
    assert torch.equal(sae.b_enc.detach(), torch.zeros(32))


def test_warm_start_begins_from_the_given_sae_and_leaves_it_unchanged(planted):
    x = planted.x_ND[:4000]
    previous = train_sae(x, SAEConfig(d_sae=64, k=4, steps=40, batch_size=512))
    before = {name: t.clone() for name, t in previous.state_dict().items()}
    # A vanishing learning rate: the warm-started SAE must sit where it started.
    warm = train_sae(x, SAEConfig(d_sae=64, k=4, steps=1, lr=1e-12, seed=5), init_from=previous)
    assert_close(warm.W_dec, previous.W_dec)
    assert_close(warm.W_enc, previous.W_enc)
    for name, tensor in previous.state_dict().items():
        assert torch.equal(tensor, before[name]), f"init_from.{name} was modified"
    with pytest.raises(ValueError, match="init_from must have d=32, d_sae=128, got d=32, d_sae=64"):
        train_sae(x, SAEConfig(d_sae=128, k=4, steps=1), init_from=previous)


def test_auxk_revives_latents_that_lose_every_topk(planted):
    # Start with 3/4 of the encoder rows shrunk so those latents never win the top-k.
    x = planted.x_ND[:8000]
    results = {}
    for aux_coef in (0.0, 1 / 32):
        cfg = SAEConfig(
            d_sae=128, k=4, steps=300, batch_size=1024, aux_coef=aux_coef, dead_after=2048
        )
        start = TopKSAE(32, 128, cfg)
        scale = x.pow(2).sum(1).mean().sqrt()
        start.init_weights(torch.Generator().manual_seed(0), x.mean(0) / scale)
        with torch.no_grad():
            start.W_enc[:96] *= 0.1
        results[aux_coef] = train_sae(x, cfg, init_from=start).metrics
    without, with_aux = results[0.0], results[1 / 32]
    assert with_aux.dead_fraction < 0.6 * without.dead_fraction, (without, with_aux)
    assert with_aux.fvu < 0.8 * without.fvu, (without, with_aux)


def test_progress_bar_is_optional(planted, capsys):
    train_sae(planted.x_ND[:1000], SAEConfig(d_sae=32, k=4, steps=3, progress=True))
    assert "SAE topk" in capsys.readouterr().err
    train_sae(planted.x_ND[:1000], SAEConfig(d_sae=32, k=4, steps=3))
    assert capsys.readouterr().err == ""
