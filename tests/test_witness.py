"""The activation witness: a feature's own encoder run on another checkpoint's activations."""

import pytest
import torch

from tracker import SAEConfig
from tracker.config import MatchConfig
from tracker.match import match
from tracker.sae import TopKSAE
from tracker.witness import presence

D = 16
N = 900


def e(i: int) -> torch.Tensor:
    return torch.eye(D)[i]


def sae_of(dirs: list[int]) -> TopKSAE:
    """A k=1 SAE whose features are basis directions, encoder = decoder transposed."""
    sae = TopKSAE(D, len(dirs), SAEConfig(d_sae=len(dirs), k=1))
    with torch.no_grad():
        sae.W_dec.copy_(torch.stack([e(i) for i in dirs]))
        sae.W_enc.copy_(sae.W_dec)
        sae.frequency.fill_(0.1)
        sae.mean_activation.fill_(1.0)
    return sae


def probe() -> tuple[torch.Tensor, torch.Tensor]:
    """Which of 9 groups each probe input belongs to, and its coefficient."""
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 9, (N,), generator=g), 0.5 + torch.rand(N, generator=g)


def acts(groups: dict[int, tuple[int, float]]) -> torch.Tensor:
    """Activations where group g fires direction groups[g][0] at scale groups[g][1]."""
    which, coef = probe()
    x = torch.zeros(N, D)
    for group, (direction, scale) in groups.items():
        rows = which == group
        x[rows] = scale * coef[rows, None] * e(direction)
    return x


def own(sae: TopKSAE, x: torch.Tensor, feature: int) -> torch.Tensor:
    return sae.latents(x, columns=torch.tensor([feature]))


def test_presence_measures_strength_on_the_support_and_pattern_correlation():
    sae = sae_of([0, 1])
    x = acts({0: (0, 1.0), 1: (1, 1.0)})
    z = own(sae, x, 0)
    kw = dict(min_corr=0.8, min_strength=0.5)
    same = presence(sae, [0], z, x, **kw)
    assert same.corr[0] == pytest.approx(1.0) and same.strength[0] == pytest.approx(1.0)
    assert same.present.tolist() == [True]
    weaker = presence(sae, [0], z, acts({0: (0, 0.3), 1: (1, 1.0)}), **kw)
    assert weaker.strength[0] == pytest.approx(0.3, abs=1e-6) and weaker.corr[0] > 0.99
    assert weaker.present.tolist() == [False], "a third as strong: not there yet"
    elsewhere = presence(sae, [0], z, acts({1: (1, 1.0), 2: (0, 1.0)}), **kw)
    assert elsewhere.strength[0] == 0 and elsewhere.present.tolist() == [False]
    # min_activation in the layer's units: mean activation 1.0 where it fires, times 0.6
    assert not presence(sae, [0], z, x, **kw, min_activation=1.01).present[0]
    half = acts({0: (0, 0.6), 1: (1, 1.0)})
    assert presence(sae, [0], z, half, **kw, min_activation=0.59).present[0]
    assert not presence(sae, [0], z, half, **kw, min_activation=0.61).present[0]


def test_a_feature_the_next_sae_missed_is_not_a_death_but_a_vanished_one_is():
    before = acts({g: (g, 1.0) for g in range(8)})
    # Group 6 still fires e6 (the next SAE has no feature for it); group 7 is gone; group 8
    # fires a new direction e8 on inputs that had nothing.
    after = acts({**{g: (g, 1.0) for g in range(7)}, 8: (8, 1.0)})
    result = match(sae_of(list(range(8))), sae_of([0, 1, 2, 3, 4, 5, 8]), None, before, after)
    kinds = {r["kind"]: r for r in result.events.iter_rows(named=True)}
    assert sorted(kinds) == ["birth", "death"]
    death, birth = kinds["death"], kinds["birth"]
    assert death["sources"] == [7] and death["witness"] == "absent" and death["presence"] == 0
    assert birth["targets"] == [6] and birth["witness"] == "absent" and birth["presence"] == 0
    assert death["confidence"] == birth["confidence"] == 1.0
    missed = result.edges.filter(result.edges["kind"] == "missed")
    assert missed.select("source", "target", "gap").rows() == [(6, None, 1)]
    assert missed["act_corr"][0] == pytest.approx(1.0, abs=1e-4)


def test_a_birth_the_earlier_activations_already_show_is_contradicted():
    x = acts({g: (g, 1.0) for g in range(8)})
    result = match(sae_of([0, 1, 2, 3, 4, 5]), sae_of(list(range(7))), None, x, x)
    birth = result.events.row(0, named=True)
    assert result.events.height == 1 and birth["targets"] == [6]
    assert birth["witness"] == "present" and birth["presence"] == pytest.approx(1.0)
    assert birth["match_confidence"] == 1.0 and birth["confidence"] == 0.25


def test_seeds_cap_only_events_the_activations_do_not_witness():
    before = acts({g: (g, 1.0) for g in range(8)})
    after = acts({g: (g, 1.0) for g in range(7)})
    prev, nxt = sae_of(list(range(8))), sae_of(list(range(7)))
    unstable = torch.ones(8, dtype=torch.bool)
    unstable[7] = False
    stable_next = torch.ones(7, dtype=torch.bool)
    for trust, expected in ((True, 1.0), (False, 0.25)):
        result = match(
            prev,
            nxt,
            MatchConfig(trust_witness=trust),
            before,
            after,
            stable_prev=unstable,
            stable_next=stable_next,
        )
        death = result.events.row(0, named=True)
        assert (death["kind"], death["seeds"], death["witness"]) == ("death", 1, "absent")
        assert death["confidence"] == expected


def test_carried_reads_the_pattern_in_any_direction_in_the_layers_units():
    """Group 0 fires e0 at its own checkpoint. Moved to e3 at the other, its own encoder
    reads nothing there but the layer carries the pattern as strongly (1); at 0.3 the scale
    it carries it at 0.3; gone, with only group 1 firing elsewhere, almost nothing."""
    sae = sae_of([0, 1])
    x = acts({0: (0, 1.0)})
    z = own(sae, x, 0)
    kw = dict(min_corr=0.8, min_strength=0.5, acts_own=x, min_carried=1.0)
    moved = presence(sae, [0], z, acts({0: (3, 1.0)}), **kw)
    assert moved.strength[0] == 0 and moved.carried[0] == pytest.approx(1.0, abs=1e-5)
    assert moved.present.tolist() == [True], "the model kept it in another direction"
    weaker = presence(sae, [0], z, acts({0: (3, 0.3)}), **kw)
    assert weaker.carried[0] == pytest.approx(0.3, abs=1e-5) and not weaker.present[0]
    gone = presence(sae, [0], z, acts({1: (1, 1.0)}), **kw)
    assert gone.carried[0] < 0.2 and not gone.present[0]
    # Without its own checkpoint's activations there is nothing to compare: NaN, not present.
    blind = presence(sae, [0], z, acts({0: (3, 1.0)}), min_corr=0.8, min_strength=0.5)
    assert torch.isnan(torch.tensor(blind.carried[0])) and not blind.present[0]


def test_a_birth_the_earlier_layer_carried_in_another_direction_is_contradicted():
    """Group 6 fired e8 before and fires e6 now: the new SAE's feature 6 reads nothing from
    the earlier activations with its own encoder, but the earlier layer carried its pattern
    as strongly, so its birth is contradicted; group 8, new on inputs that had nothing
    (direction e9), is born, witnessed."""
    same = {g: (g, 1.0) for g in (0, 1, 2, 3, 4, 5, 7)}
    before = acts({**same, 6: (8, 1.0)})
    prev, nxt = sae_of([0, 1, 2, 3, 4, 5, 7]), sae_of([0, 1, 2, 3, 4, 5, 6, 7])
    after = acts({**same, 6: (6, 1.0)})
    moved = match(prev, nxt, None, before, after).events.row(0, named=True)
    assert (moved["kind"], moved["targets"], moved["witness"]) == ("birth", [6], "present")
    assert moved["presence"] == 0 and moved["carried"] == pytest.approx(1.0, abs=1e-5)
    assert moved["confidence"] == 0.25
    encoder_only = match(prev, nxt, MatchConfig(witness_carried=None), before, after)
    assert encoder_only.events["witness"].to_list() == ["absent"]
    nxt = sae_of([0, 1, 2, 3, 4, 5, 7, 9])
    new = match(prev, nxt, None, acts(same), acts({**same, 8: (9, 1.0)})).events.row(0, named=True)
    assert (new["kind"], new["targets"], new["witness"]) == ("birth", [7], "absent")
    assert new["carried"] < 0.5 and new["confidence"] == 1.0


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), float("nan")])
def test_witness_carried_must_be_a_positive_share_or_none(bad):
    with pytest.raises(ValueError, match="MatchConfig.witness_carried must be finite and > 0"):
        MatchConfig(witness_carried=bad)
