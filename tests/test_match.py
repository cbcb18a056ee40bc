"""match() on hand-set dictionaries whose events are known exactly."""

import math

import numpy as np
import polars as pl
import pytest
import torch

from tracker import SAEConfig
from tracker.config import MatchConfig
from tracker.match import match
from tracker.sae import TopKSAE

D = 64


def e(i: int) -> torch.Tensor:
    v = torch.zeros(D)
    v[i] = 1.0
    return v


def sae_of(rows, frequency=None) -> TopKSAE:
    W = torch.stack(rows)
    sae = TopKSAE(D, len(rows), SAEConfig(d_sae=len(rows), k=1))
    with torch.no_grad():
        sae.W_dec.copy_(W / W.norm(dim=1, keepdim=True))
        sae.W_enc.copy_(sae.W_dec)
        sae.frequency.copy_(torch.tensor(frequency or [0.1] * len(rows)))
    return sae


def events(result):
    return sorted(
        (r["kind"], tuple(r["sources"]), tuple(r["targets"]))
        for r in result.events.iter_rows(named=True)
    )


# prev: 0 continues, 1 continues, 2 splits, 3 + 4 merge, 5 dies, 6 stops firing at next.
PREV = sae_of([e(0), e(1), e(2), e(3), e(4), e(5), e(6)])
NEXT = sae_of(
    [e(0), e(1) + 0.1 * e(20), e(2) + e(10), e(2) - e(10), e(3) + e(4), e(30), e(6)],
    frequency=[0.1] * 6 + [0.0],
)


def test_each_kind_is_found_exactly():
    result = match(PREV, NEXT, MatchConfig())
    assert events(result) == [
        ("birth", (), (5,)),
        ("death", (5,), ()),
        ("death", (6,), ()),
        ("merge", (3, 4), (4,)),
        ("split", (2,), (2, 3)),
    ]
    cont = result.edges.filter(pl.col("kind") == "continuation").sort("source")
    assert cont["source"].to_list() == [0, 1] and cont["target"].to_list() == [0, 1]
    assert cont["cosine"][1] == pytest.approx(1 / math.sqrt(1.01), abs=1e-6)
    split = result.edges.filter(pl.col("kind") == "split")
    assert sorted(split["target"].to_list()) == [2, 3]
    assert split["cosine"].to_list() == pytest.approx([1 / math.sqrt(2)] * 2, abs=1e-6)
    assert result.edges["act_corr"].null_count() == len(result.edges), "no activations given"
    assert (result.events["confidence"] == 1.0).all()
    assert result.tau == 0.7 and result.chance.quantile < 0.7


def test_split_gain_is_measured_against_the_best_single_child():
    result = match(PREV, NEXT, MatchConfig())
    split = result.events.filter(pl.col("kind") == "split")
    # The parent is rebuilt exactly by its two children (R² = 1); one child alone gives
    # cos² = 1/2, so the gain is 1/2.
    assert split["score"][0] == pytest.approx(0.5, abs=1e-6)


def test_a_near_duplicate_child_is_not_a_split():
    nxt = sae_of([e(0), e(1), e(2), e(2) + 0.3 * e(10)])
    assert events(match(sae_of([e(0), e(1), e(2)]), nxt, MatchConfig())) == [("birth", (), (3,))]


def test_a_feature_that_continues_is_no_merge_parent_nor_split_child():
    # Next row 1 = e0 + e1 is rebuilt exactly by prev rows 0 and 1, but prev 0 continues as
    # next 0 at cosine 1: it is no parent of a merge (its lineage must not end there).
    nxt = sae_of([e(0), e(0) + e(1), e(2)])
    result = match(sae_of([e(0), e(1), e(2)]), nxt, MatchConfig())
    cont = result.edges.filter(pl.col("kind") == "continuation").sort("source")
    assert list(zip(cont["source"], cont["target"], strict=True)) == [(0, 0), (1, 1), (2, 2)]
    assert events(result) == []
    # The mirror: prev 1 = e0 + e1 splits into next 0 and 1 only if next 0 is not prev 0's.
    result = match(nxt, sae_of([e(0), e(1), e(2)]), MatchConfig())
    assert events(result) == [] and len(result.edges) == 3


def test_only_drift_gives_no_event_at_all():
    g = torch.Generator().manual_seed(0)
    rows = [e(i) for i in range(20)]
    drifted = [r + 0.05 * torch.randn(D, generator=g) for r in rows]
    result = match(sae_of(rows), sae_of(drifted), MatchConfig())
    assert len(result.events) == 0 and len(result.edges) == 20


def test_stability_and_activation_witness_lower_confidence():
    stable_next = torch.ones(7, dtype=torch.bool)
    stable_next[5] = False  # the born feature has no cross-seed match
    result = match(PREV, NEXT, MatchConfig(), stable_next=stable_next)
    birth = result.events.filter(pl.col("kind") == "birth")
    assert birth["confidence"][0] == pytest.approx(0.25)


def test_activations_give_edge_correlations_and_veto_a_disguised_birth():
    g = torch.Generator().manual_seed(1)
    # Probe inputs that each fire one of the first 8 basis directions.
    which = torch.randint(0, 8, (400,), generator=g)
    coef = 0.5 + torch.rand(400, generator=g)
    x = torch.zeros(400, D)
    x[torch.arange(400), which] = coef
    prev = sae_of([e(i) for i in range(8)])
    # At next, feature 7's decoder has rotated past tau, but it fires on the same inputs.
    rotated = e(7) + 1.2 * e(40)
    nxt = sae_of([e(i) for i in range(7)] + [rotated])
    x_next = x.clone()
    x_next[which == 7] = coef[which == 7, None] * rotated / rotated.norm()
    result = match(prev, nxt, MatchConfig(), x, x_next)
    cont = result.edges.filter(pl.col("kind") == "continuation")
    assert cont["act_corr"].to_list() == pytest.approx([1.0] * 7, abs=1e-5)
    # Feature 7's own encoder still finds it in the later activations (cos 0.64, same
    # inputs): no death but a `missed` edge; the rotated one was already in the earlier
    # activations: its birth is contradicted by the witness and capped.
    missed = result.edges.filter(pl.col("kind") == "missed")
    assert missed["source"].to_list() == [7] and missed["target"].to_list() == [None]
    assert missed["act_corr"][0] == pytest.approx(1.0, abs=1e-5)
    birth = result.events.row(0, named=True)
    assert result.events.height == 1 and birth["kind"] == "birth"
    assert birth["witness"] == "present" and birth["confidence"] <= 0.25
    assert birth["presence"] == pytest.approx(1 / (1 + 1.2**2) ** 0.5, abs=1e-4)


def test_chance_raises_tau_in_few_dimensions():
    small = TopKSAE(5, 4, SAEConfig(d_sae=4, k=1))
    with torch.no_grad():
        small.W_dec.copy_(torch.eye(5)[:4])
        small.frequency.fill_(0.1)
    result = match(small, small, MatchConfig())
    assert result.tau > 0.9 and result.chance.quantile == result.tau


def test_sparse_and_dense_assignment_give_the_same_events():
    g = torch.Generator().manual_seed(2)
    rows = [torch.randn(D, generator=g) for _ in range(60)]
    drifted = [r + 0.6 * torch.randn(D, generator=g) / D**0.5 for r in rows[:50]]
    drifted += [torch.randn(D, generator=g) for _ in range(5)]
    prev, nxt = sae_of(rows), sae_of(drifted)
    dense = match(prev, nxt, MatchConfig(hungarian_max=4096))
    sparse = match(prev, nxt, MatchConfig(hungarian_max=16))
    assert events(dense) == events(sparse)
    key = ["source", "target"]
    assert dense.edges.sort(key).equals(sparse.edges.sort(key))


def test_bad_inputs_give_clear_errors_and_an_empty_side_gives_births_or_deaths():
    with pytest.raises(ValueError, match="SAEs have different widths: sae_prev d=64, sae_next d=5"):
        match(PREV, TopKSAE(5, 4, SAEConfig(d_sae=4, k=1)))
    broken = sae_of([e(0), e(1)])
    with torch.no_grad():
        broken.W_dec[1, 3] = float("nan")
    with pytest.raises(ValueError, match="sae_next: the decoder holds NaN or Inf"):
        match(PREV, broken)
    dead = sae_of([e(0), e(1)], frequency=[0.0, 0.0])
    result = match(PREV, dead)
    assert result.note == "sae_next has no live features"
    assert len(result.edges) == 0
    live_prev = (
        PREV.live(MatchConfig().min_frequency, MatchConfig().min_activation)
        .nonzero()
        .flatten()
        .tolist()
    )
    assert result.events["kind"].to_list() == ["death"] * len(live_prev)
    assert result.events["sources"].to_list() == [[f] for f in live_prev]
    born = match(dead, NEXT)
    assert born.note == "sae_prev has no live features"
    assert born.events["kind"].unique().to_list() == ["birth"]
    assert (born.events["confidence"] == 1.0).all()
    with pytest.raises(ValueError, match="same probe inputs, got 10 and 12 rows"):
        match(PREV, NEXT, acts_prev=torch.randn(10, D), acts_next=torch.randn(12, D))
    with pytest.raises(ValueError, match=r"activations for sae_prev must be \[n, 64\]"):
        match(PREV, NEXT, acts_prev=torch.randn(10, 3), acts_next=torch.randn(10, 3))
    with pytest.raises(ValueError, match="give both acts_prev and acts_next"):
        match(PREV, NEXT, acts_prev=torch.randn(10, D))


def test_match_config_validation_names_the_field():
    with pytest.raises(ValueError, match=r"MatchConfig.tau_match must be in \[0, 1\], got 1.5"):
        MatchConfig(tau_match=1.5)
    with pytest.raises(ValueError, match="MatchConfig.candidates must be positive"):
        MatchConfig(candidates=0)
    assert np.isclose(MatchConfig().tau_match, 0.7)


def spread_directions(n: int, d: int, max_cos: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    rows: list[torch.Tensor] = []
    while len(rows) < n:
        v = torch.randn(d, generator=g)
        v /= v.norm()
        if all(abs(float(v @ r)) < max_cos for r in rows):
            rows.append(v)
    return torch.stack(rows)


def one_hot_acts(W: torch.Tensor, who: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    return value[:, None] * W[who]


def test_in_five_dimensions_features_are_matched_on_their_activations():
    d, n, F = 5, 3000, 8
    g = torch.Generator().manual_seed(0)
    W_prev = spread_directions(F, d, 0.75, seed=1)
    rotation = torch.linalg.qr(torch.randn(d, d, generator=g))[0]
    perm = torch.randperm(F, generator=g)  # next SAE's latent i is prev's perm[i]
    W_next = (W_prev @ rotation)[perm]
    who = torch.randint(0, F, (n,), generator=g)
    value = 0.5 + torch.rand(n, generator=g)
    acts_prev = one_hot_acts(W_prev, who, value)
    # At next, true feature 7's inputs are taken by a new feature (a death and a birth).
    who_next = torch.argsort(perm)[who]  # latent index at next
    reborn = who == 7
    who_next[reborn] = torch.argsort(perm)[7]
    value_next = value.clone()
    value_next[reborn] = 0.0
    fresh = torch.randperm(n, generator=g)[:400]
    who_next[fresh] = torch.argsort(perm)[7]
    value_next[fresh] = 0.5 + torch.rand(400, generator=g)
    acts_next = one_hot_acts(W_next, who_next, value_next)

    def sae(W):
        s = TopKSAE(d, F, SAEConfig(d_sae=F, k=1))
        with torch.no_grad():
            s.W_dec.copy_(W)
            s.W_enc.copy_(W)
            s.b_dec.zero_()
            s.frequency.fill_(0.1)
        return s

    result = match(sae(W_prev), sae(W_next), MatchConfig(), acts_prev, acts_next)
    assert result.signal == "activation"
    assert result.chance.quantile < 0.2  # chance in the probe's dimensions, not in d = 5
    cont = result.edges.filter(pl.col("kind") == "continuation")
    pairs = dict(zip(cont["source"].to_list(), cont["target"].to_list(), strict=True))
    inverse = torch.argsort(perm).tolist()
    assert pairs == {i: inverse[i] for i in range(7)}
    assert (cont["act_corr"] > 0.9).all()
    confident = result.events.filter(pl.col("confidence") >= 0.5)
    assert events(result._replace(events=confident)) == [
        ("birth", (), (inverse[7],)),
        ("death", (7,), ()),
    ]
    # The decoder alone cannot tell: in five dimensions chance is ~0.98.
    decoder = match(sae(W_prev), sae(W_next), MatchConfig(signal="decoder"))
    assert decoder.signal == "decoder" and decoder.tau > 0.95
    with pytest.raises(ValueError, match="signal='activation' needs acts_prev and acts_next"):
        match(sae(W_prev), sae(W_next), MatchConfig(signal="activation"))


def test_min_activation_counts_small_features_as_dead():
    sae = sae_of([e(0), e(1), e(2)])
    with torch.no_grad():
        sae.mean_activation.copy_(torch.tensor([0.5, 0.05, 2.0]))
        sae.input_scale.fill_(2.0)  # raw activations: 1.0, 0.1, 4.0
    assert sae.live(0.01).tolist() == [True, True, True]
    assert sae.live(0.01, min_activation=0.5).tolist() == [True, False, True]
    result = match(PREV, sae, MatchConfig(min_activation=0.5))
    assert set(result.edges["target"].to_list()) <= {0, 2}
    with pytest.raises(ValueError, match="min_activation must be finite and >= 0"):
        MatchConfig(min_activation=-1.0)
    with pytest.raises(ValueError, match="MatchConfig.signal must be one of"):
        MatchConfig(signal="cosine")
