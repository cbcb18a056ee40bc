"""Chains of hand-set checkpoints: gaps a lineage survives, deaths and births dated by the
activations, and what each link hands the store."""

import polars as pl
import pytest
from test_witness import acts, sae_of

from tracker.chain import Chain
from tracker.checkpoint import Checkpoint
from tracker.config import MatchConfig

ALL = list(range(8))
WITHOUT_6 = [0, 1, 2, 3, 4, 5, 7]
STEPS = (0, 10, 20, 30, 40)


def chain_of(dictionaries, activations, config=None):
    chain = Chain(config or MatchConfig())
    links = [
        chain.add(Checkpoint(step, sae_of(dirs), x))
        for step, dirs, x in zip(STEPS, dictionaries, activations, strict=False)
    ]
    return links


def everything(groups=range(8)):
    return acts({g: (g, 1.0) for g in groups})


def kinds(link):
    return sorted(link.events["kind"].to_list())


def test_a_feature_one_sae_missed_continues_its_lineage_across_the_gap():
    x = everything()
    first, missed, found = chain_of([ALL, WITHOUT_6, ALL], [x, x, x])
    assert kinds(missed) == [] and kinds(found) == [], "no death, no rebirth"
    lost = missed.edges.filter(pl.col("kind") == "missed")
    assert lost.select("prev_step", "source", "target", "gap").rows() == [(0, 6, None, 1)]
    across = found.edges.filter(pl.col("gap") > 0)
    assert across.select("prev_step", "source", "target", "kind", "gap").rows() == [
        (0, 6, 6, "continuation", 1)
    ]
    assert found.ids[6] == first.ids[6], "the lineage id survives the gap"
    assert first.ids[6] not in missed.ids.values(), "no feature carries it while it is lost"


def test_a_lineage_ends_unwitnessed_when_the_gap_runs_out():
    x = everything()
    links = chain_of([ALL, WITHOUT_6, WITHOUT_6, WITHOUT_6], [x] * 4, MatchConfig(max_gap=2))
    assert [kinds(link) for link in links[1:3]] == [[], []]
    assert links[2].edges.filter(pl.col("kind") == "missed")["gap"].to_list() == [2]
    death = links[3].events.row(0, named=True)
    assert (death["kind"], death["prev_step"], death["sources"], death["gap"]) == (
        "death",
        0,
        [6],
        2,
    )
    assert death["witness"] == "present" and death["confidence"] <= 0.25


def test_a_lost_feature_dies_where_the_activations_stop_showing_it():
    x, gone = everything(), everything(g for g in range(8) if g != 6)
    links = chain_of([ALL, WITHOUT_6, WITHOUT_6], [x, x, gone])
    death = links[2].events.row(0, named=True)
    assert links[2].events.height == 1
    assert (death["kind"], death["prev_step"], death["sources"], death["gap"]) == (
        "death",
        0,
        [6],
        1,
    )
    assert death["witness"] == "absent" and death["confidence"] == 1.0


def test_gaps_off_gives_the_sae_flicker_as_unconfident_events():
    x = everything()
    _, missed, found = chain_of([ALL, WITHOUT_6, ALL], [x, x, x], MatchConfig(max_gap=0))
    assert kinds(missed) == ["death"] and kinds(found) == ["birth"]
    for link in (missed, found):
        event = link.events.row(0, named=True)
        assert event["witness"] == "present" and event["confidence"] <= 0.25


def test_a_birth_an_sae_found_late_is_dated_back_to_where_the_activations_lack_it():
    before, after = everything(range(6)), everything(range(7))
    six = [0, 1, 2, 3, 4, 5]
    # Direction 6 appears between steps 0 and 10; the SAE at 10 misses it, the one at 20 has it.
    links = chain_of([six, six, list(range(7))], [before, after, after])
    birth = links[2].events.row(0, named=True)
    assert links[2].events.height == 1 and links[1].events.height == 0
    assert (birth["kind"], birth["prev_step"], birth["targets"], birth["gap"]) == (
        "birth",
        0,
        [6],
        1,
    )
    assert birth["witness"] == "absent" and birth["confidence"] == 1.0
    assert birth["presence"] == pytest.approx(0.0)
