"""Lineage ids, the checkpoint sequence, and a planted run scored end to end."""

import itertools

import polars as pl
import pytest
import torch
from tiny import one_of_each

from tracker import SAEConfig
from tracker.calibration import chance_cosine, cross_seed_stable
from tracker.checkpoint import Checkpoint
from tracker.config import MatchConfig
from tracker.lineage import assign_lineages, track
from tracker.match import match
from tracker.planted import score_events
from tracker.sae import TopKSAE

D = 64


def sae_of(rows) -> TopKSAE:
    W = torch.stack(rows)
    sae = TopKSAE(D, len(rows), SAEConfig(d_sae=len(rows), k=1))
    with torch.no_grad():
        sae.W_dec.copy_(W / W.norm(dim=1, keepdim=True))
        sae.frequency.fill_(0.1)
    return sae


def e(i):
    return torch.eye(D)[i]


def test_continuations_keep_lineage_and_events_start_new_ones_with_parents():
    saes = [
        sae_of([e(0), e(1), e(2), e(3)]),
        sae_of([e(1), e(0), e(2) + e(10), e(2) - e(10), e(3)]),  # 2 splits into 2 and 3
        sae_of([e(0), e(1), e(3) + e(2) + e(10)]),  # (2+10) and 3 merge; (2-10) dies
    ]
    checkpoints = [
        Checkpoint(step, sae, torch.zeros(0)) for step, sae in zip((0, 5, 9), saes, strict=True)
    ]
    matches = [match(a.sae, b.sae) for a, b in itertools.pairwise(checkpoints)]
    lineage = assign_lineages(checkpoints, matches)
    assert lineage.ids[0] == {0: 0, 1: 1, 2: 2, 3: 3}
    ids5 = lineage.ids[5]
    assert (ids5[0], ids5[1], ids5[4]) == (1, 0, 3), "continuations keep their lineage"
    assert {ids5[2], ids5[3]} == {4, 5}, "split children start new lineages"
    assert lineage.ids[9][0] == 0 and lineage.ids[9][1] == 1
    merged = lineage.ids[9][2]
    assert merged not in {0, 1, 2, 3, 4, 5}
    parents = lineage.parents.sort(["step", "lineage", "parent"])
    assert parents.filter(pl.col("kind") == "split").rows() == [
        (4, 2, "split", 5),
        (5, 2, "split", 5),
    ]
    merge_parents = parents.filter(pl.col("kind") == "merge")
    assert merge_parents["lineage"].unique().to_list() == [merged]
    assert sorted(merge_parents["parent"].to_list()) == sorted([ids5[2], 3])


def test_chance_matches_the_known_figures():
    assert chance_cosine(128, 2048).mean == pytest.approx(0.30, abs=0.02)
    assert chance_cosine(5, 2048).mean > 0.95
    assert chance_cosine(128, 2048).quantile > chance_cosine(128, 2048).mean


def test_cross_seed_stability_marks_features_another_seed_finds():
    W = torch.eye(4, D)
    other = torch.stack([e(0), e(1) + e(2), e(3) + 0.1 * e(9)])
    other = other / other.norm(dim=1, keepdim=True)
    # e1 and e2 each sit at cos 0.707 to the other seed's (e1 + e2).
    assert cross_seed_stable(W, other, 0.7).tolist() == [True, True, True, True]
    assert cross_seed_stable(W, other, 0.8).tolist() == [True, False, False, True]
    assert cross_seed_stable(W, torch.zeros(0, D), 0.7).tolist() == [False] * 4


@pytest.mark.slow
def test_planted_events_are_recovered_end_to_end():
    run = one_of_each(2048, steps=(0, 1, 2, 3), quiet=(3,))
    lineage = track(
        run.acts, SAEConfig(d_sae=40, k=4, steps=300, batch_size=1024, init="random"), MatchConfig()
    )
    assert all(c.stable_share >= 0.9 for c in lineage.checkpoints), [
        c.stable_share for c in lineage.checkpoints
    ]
    reported = []
    for a, b, m in zip(lineage.checkpoints, lineage.checkpoints[1:], lineage.matches, strict=False):
        for row in m.events.filter(pl.col("confidence") >= 0.5).iter_rows(named=True):
            reported.append((a.step, b.step, row["kind"], row["sources"], row["targets"]))
    assert not [r for r in reported if r[1] == 3], "drift alone must give no confident event"
    decoders = {c.step: c.sae.W_dec.detach() for c in lineage.checkpoints}
    scores = score_events(run, reported, decoders)
    for kind, s in scores.items():
        assert s.recall == 1.0, f"{kind}: {s}"
    assert sum(s.fp for s in scores.values()) <= 1, scores
