import pytest
import torch

from tracker import SAEConfig, config
from tracker.sae import registry
from tracker.sae.topk import TopKSAE


def test_defaults_are_topk_with_documented_values():
    cfg = SAEConfig()
    assert (cfg.arch, cfg.k, cfg.expansion, cfg.aux_coef) == ("topk", 32, 8, 1 / 32)
    assert cfg.latents(16) == 128
    assert SAEConfig(d_sae=100).latents(16) == 100


def test_learning_rate_follows_gao_scaling():
    assert SAEConfig().learning_rate(2**14) == pytest.approx(2e-4)
    assert SAEConfig().learning_rate(2**12) == pytest.approx(4e-4)
    assert SAEConfig(lr=1e-3).learning_rate(2**12) == 1e-3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"arch": "gated"}, r"SAEConfig.arch must be one of \['relu', 'topk'\], got 'gated'"),
        ({"d_sae": 0}, "SAEConfig.d_sae must be positive, got 0"),
        ({"k": -1}, "SAEConfig.k must be positive, got -1"),
        ({"steps": 0}, "SAEConfig.steps must be positive, got 0"),
        ({"batch_size": 0}, "SAEConfig.batch_size must be positive, got 0"),
        ({"lr": 0.0}, "SAEConfig.lr must be positive, got 0.0"),
        ({"l1_coef": float("nan")}, "SAEConfig.l1_coef must be finite and >= 0, got nan"),
        ({"device": "tpu"}, r"SAEConfig.device must be one of \['auto', 'cpu', 'cuda'\]"),
        ({"d_sae": 32, "k": 32}, "SAEConfig.k must be smaller than d_sae=32, got k=32"),
        (
            {"arch": "relu", "k": 8},
            r"SAEConfig.k is a field of arch='topk', not of arch='relu' \(its own: \['l1_coef'\]\)",
        ),
        ({"l1_coef": 0.2}, "SAEConfig.l1_coef is a field of arch='relu', not of arch='topk'"),
    ],
)
def test_bad_fields_name_the_field_and_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SAEConfig(**kwargs)


def test_a_registered_architecture_owns_the_fields_it_names(monkeypatch):
    monkeypatch.setattr(config, "ARCHITECTURES", dict(config.ARCHITECTURES))
    monkeypatch.setattr(registry, "ARCHITECTURES", dict(registry.ARCHITECTURES))
    registry.register("batchtopk", fields=("k", "k_aux"))(type("BatchTopK", (TopKSAE,), {}))
    assert SAEConfig(arch="batchtopk", k=4).k == 4
    with pytest.raises(ValueError, match="SAEConfig.aux_coef is a field of arch='topk'"):
        SAEConfig(arch="batchtopk", aux_coef=0.5)
    with pytest.raises(ValueError, match=r"'gated': no SAEConfig field\(s\) \['gate_coef'\]"):
        registry.register("gated", fields=("gate_coef",))


def test_round_trips_through_a_dict():
    cfg = SAEConfig(arch="relu", d_sae=64, l1_coef=0.2, seed=3)
    assert SAEConfig.from_dict(cfg.to_dict()) == cfg


def test_seeds_read_from_a_config_written_before_them():
    assert SAEConfig.from_dict({"noise_floor": False}).seeds == 1
    assert SAEConfig.from_dict({"noise_floor": True, "k": 8}).seeds == 2
    assert SAEConfig.from_dict({"noise_floor": False, "seeds": 3}).seeds == 3
    with pytest.raises(ValueError, match="SAEConfig.seeds must be positive, got 0"):
        SAEConfig(seeds=0)


@pytest.mark.parametrize("seeds", [1, 2, 3])
def test_a_checkpoint_is_stable_where_most_of_its_seeds_agree(seeds):
    from tiny import one_of_each

    from tracker.checkpoint import fit_checkpoint
    from tracker.config import MatchConfig

    x = one_of_each(1024).acts[0]
    config = SAEConfig(d_sae=40, k=4, steps=300, batch_size=512, seeds=seeds)
    cp = fit_checkpoint(0, x, config, MatchConfig())
    if seeds == 1:
        assert cp.stable is None and cp.stable_share is None
    else:
        assert cp.stable is not None and cp.stable.dtype == torch.bool
        assert cp.stable.shape == (40,) and cp.stable_share is not None
        live = cp.sae.live(MatchConfig().min_frequency, MatchConfig().min_activation)
        assert not cp.stable[~live].any(), "only live features can be stable"
        assert cp.stable_share >= 0.75, "a planted dictionary is found by most seeds"
