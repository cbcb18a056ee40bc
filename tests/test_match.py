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
    kinds = dict(zip(result.events["kind"], result.events["confidence"], strict=True))
    assert set(kinds) == {"birth", "death"}
    assert kinds["birth"] <= 0.25 and kinds["death"] <= 0.25, "activations say it continued"


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


def test_bad_inputs_give_clear_errors_or_an_explicit_empty_result():
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
    assert len(result.events) == 0 and len(result.edges) == 0
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
