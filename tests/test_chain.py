"""Chains of hand-set checkpoints: gaps a lineage survives, deaths and births dated by the
activations, and what each link hands the store."""

import re

import polars as pl
import pytest
import torch
from test_app import app
from test_witness import acts, sae_of

from tracker import chain as chain_module
from tracker.chain import Chain
from tracker.checkpoint import Checkpoint
from tracker.config import MatchConfig
from tracker.pipeline import Analyzer
from tracker.reader import open_db, with_evidence
from tracker.sae import FitMetrics
from tracker.store import Writer
from tracker.witness import check

ALL = list(range(8))
WITHOUT_6 = [0, 1, 2, 3, 4, 5, 7]
STEPS = (0, 10, 20, 30, 40)
ENCODER_ONLY = MatchConfig(witness_carried=None)


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


def stable_but(sae_size, missing=()):
    mask = torch.ones(sae_size, dtype=torch.bool)
    mask[list(missing)] = False
    return mask


def chain_with_seeds(dictionaries, activations, stable, config=None):
    chain = Chain(config or MatchConfig())
    return [
        chain.add(Checkpoint(step, sae_of(dirs), x, stable=mask))
        for step, dirs, x, mask in zip(STEPS, dictionaries, activations, stable, strict=False)
    ]


@pytest.mark.parametrize(
    ("seed_finds_it_at_20", "confirm", "confirmed"),
    [(True, True, True), (False, True, False), (True, False, False)],
)
def test_a_birth_no_second_seed_found_is_confirmed_when_one_finds_its_lineage_next(
    seed_finds_it_at_20, confirm, confirmed
):
    before, after = everything(range(6)), everything(range(7))
    six, seven = [0, 1, 2, 3, 4, 5], list(range(7))
    later = stable_but(7) if seed_finds_it_at_20 else stable_but(7, [6])
    links = chain_with_seeds(
        [six, seven, seven],
        [before, after, after],
        [stable_but(6), stable_but(7, [6]), later],
        MatchConfig(confirm=confirm),
    )
    birth = links[1].events.row(0, named=True)
    assert (birth["kind"], birth["targets"], birth["seeds"], birth["witness"]) == (
        "birth",
        [6],
        1,
        "absent",
    )
    if confirmed:
        assert birth["confidence"] == 1.0 and birth["confirmed"] == 20
        assert links[2].revised is not None and links[2].revised.equals(links[1].events)
    else:
        assert birth["confidence"] <= 0.25 and birth["confirmed"] is None
        assert links[2].revised is None


@pytest.mark.parametrize(("found_at", "confirmed"), [((0, 10), 10), ((0,), None), ((), None)])
def test_a_death_no_second_seed_found_is_confirmed_when_one_found_its_lineage_just_before(
    found_at, confirmed
):
    # Direction 6 is last seen at 20 (its second seed missed it there) and gone at 30.
    x, gone = everything(), everything(g for g in range(8) if g != 6)
    masks = [stable_but(8) if s in found_at else stable_but(8, [6]) for s in (0, 10)]
    links = chain_with_seeds(
        [ALL, ALL, ALL, WITHOUT_6],
        [x, x, x, gone],
        [*masks, stable_but(8, [6]), stable_but(7)],
    )
    death = links[3].events.row(0, named=True)
    assert (death["kind"], death["prev_step"], death["sources"], death["seeds"]) == (
        "death",
        20,
        [6],
        1,
    )
    assert death["witness"] == "absent" and death["confirmed"] == confirmed
    # Found by a second seed only long before (at 0), a fading feature is no proof.
    assert death["confidence"] == (1.0 if confirmed else pytest.approx(0.25))


def test_a_resumed_chain_still_confirms_the_last_stored_births():
    before, after = everything(range(6)), everything(range(7))
    six, seven = [0, 1, 2, 3, 4, 5], list(range(7))
    first = Chain()
    first.add(Checkpoint(0, sae_of(six), before, stable=stable_but(6)))
    at_10 = Checkpoint(10, sae_of(seven), after, stable=stable_but(7, [6]))
    link = first.add(at_10)
    resumed = Chain()
    resumed.resume(at_10, link.ids, first.ids.next_id, first.confirm.stable_at, link.events, 0)
    revised = resumed.add(Checkpoint(20, sae_of(seven), after, stable=stable_but(7))).revised
    assert revised is not None
    assert revised.select("kind", "confidence", "confirmed").rows() == [("birth", 1.0, 20)]


def test_the_evidence_of_a_confirmed_birth_says_where_a_second_seed_found_it():
    before, after = everything(range(6)), everything(range(7))
    six, seven = [0, 1, 2, 3, 4, 5], list(range(7))
    links = chain_with_seeds(
        [six, seven, seven],
        [before, after, after],
        [stable_but(6), stable_but(7, [6]), stable_but(7)],
    )
    shown = with_evidence(links[1].events.with_columns(pl.lit(10, pl.Int64).alias("step")))
    assert shown["evidence"][0].startswith("activations agree: absent at step 0 (strength 0.0")
    assert re.search(r", corr -?[0-9.]+, carried 0\.[0-9]+\);", shown["evidence"][0])
    assert shown["evidence"][0].endswith("; not stable across seeds, its lineage stable at step 20")


def test_a_resumed_analyzer_follows_the_features_lost_where_it_stopped(tmp_path, monkeypatch):
    """A run resumed right after a checkpoint whose SAE missed feature 6 gives the same
    tables as one that never stopped: the lost lineage continues across the gap."""
    x = everything()
    saes = {0: ALL, 10: WITHOUT_6, 20: ALL}

    def fitted(step, acts, config, match_config, previous=None):
        sae = sae_of(saes[step])
        sae.metrics = FitMetrics(fvu=0.1, l0=1.0, dead_fraction=0.0, fit_seconds=0.0, steps=1)
        return Checkpoint(step, sae, acts)

    monkeypatch.setattr(chain_module, "fit_checkpoint", fitted)

    def run(db, stop_after=None):
        writer = Writer(db)
        analyzer = Analyzer(writer, "r", "L")
        for step in saes:
            if step == stop_after:
                analyzer = Analyzer(writer, "r", "L")  # a new process: nothing in memory
                analyzer.resume(step, lambda s: x)
            analyzer.add(step, x)
        return open_tables(db)

    def open_tables(db):
        reader = open_db(db)
        return {
            table: reader.sql(f"SELECT * EXCLUDE (written_at) FROM {table}").sort(pl.all())
            if table == "checkpoints"
            else reader.sql(f"SELECT * FROM {table}").sort(pl.all())
            for table in ("checkpoints", "features", "edges", "events", "lineages")
        }

    straight, resumed = run(tmp_path / "a.duckdb"), run(tmp_path / "b.duckdb", stop_after=20)
    for table in straight:
        assert straight[table].equals(resumed[table]), table
    across = resumed["edges"].filter(pl.col("step") == 20, pl.col("gap") > 0)
    assert across.select("prev_step", "source", "target", "kind").rows() == [
        (0, 6, 6, "continuation")
    ]
    assert resumed["events"].filter(pl.col("step") == 20).is_empty(), "no rebirth"


def moved_six():
    """Group 6 fires direction 6 at step 0 and direction 8 from step 10 on."""
    moved = {g: (g, 1.0) for g in range(8)} | {6: (8, 1.0)}
    return everything(), acts(moved)


WITH_8 = [0, 1, 2, 3, 4, 5, 7, 8]


def test_a_feature_whose_direction_moved_is_carried_so_no_death_is_claimed():
    """The SAE at 10 has nothing on group 6, whose direction moved: feature 6's own encoder
    reads nothing there, but the layer at 10 carries group 6's pattern as strongly as at 0
    (in direction 8), so the SAE missed it: a missed edge, and the lineage goes on at 20."""
    x0, x1 = moved_six()
    first, gone, found = chain_of([ALL, WITHOUT_6, WITH_8], [x0, x1, x1])
    assert kinds(gone) == [] and kinds(found) == []
    missed = gone.edges.filter(pl.col("kind") == "missed")
    assert missed.select("prev_step", "source", "target").rows() == [(0, 6, None)]
    assert found.ids[7] == first.ids[6]
    # By its own encoder alone feature 6 is absent at 10; what the layer carries says present.
    sae = sae_of(ALL)
    z = sae.latents(x0, columns=torch.tensor([6]))
    here = check(sae, [6], z, x1, MatchConfig(), acts_own=x0)
    assert here.strength[0] == pytest.approx(0.0, abs=1e-6) and here.present[0]
    assert here.carried[0] == pytest.approx(1.0, abs=1e-4)
    assert not check(sae, [6], z, x1, ENCODER_ONLY, x0).present[0]


def test_a_death_is_taken_back_when_the_next_sae_finds_the_feature_moved():
    """With the encoder test alone (witness_carried=None): the SAE at 10 has nothing on group
    6, whose direction moved, and feature 6's own encoder reads nothing there, a witnessed
    death. The SAE at 20 finds the moved direction, and its encoder reads group 6's pattern
    from step 10's activations: the model never lost it."""
    x0, x1 = moved_six()
    first, gone, found = chain_of([ALL, WITHOUT_6, WITH_8], [x0, x1, x1], ENCODER_ONLY)
    assert kinds(gone) == [], "the death is revised away"
    assert found.revised is not None and found.revised.is_empty()
    assert kinds(found) == [], "no birth: the lineage continues"
    across = found.edges.filter(pl.col("gap") > 0)
    assert across.select("prev_step", "source", "target", "kind", "gap").rows() == [
        (0, 6, 7, "continuation", 1)
    ]
    assert across["act_corr"][0] == pytest.approx(1.0, abs=1e-4)
    assert found.ids[7] == first.ids[6]


def test_a_death_stays_when_the_feature_found_next_fires_on_other_inputs():
    """Group 6 is gone at 10 and group 8 (direction 8) is there, missed by the SAE at 10
    and found at 20: present at 10, but not with the dead feature's pattern."""
    groups = {g: (g, 1.0) for g in range(8) if g != 6} | {8: (8, 1.0)}
    x0, x1 = everything(), acts(groups)
    _, gone, found = chain_of([ALL, WITHOUT_6, WITH_8], [x0, x1, x1])
    assert kinds(gone) == ["death"] and gone.events["witness"][0] == "absent"
    assert found.revised is None
    birth = found.events.row(0, named=True)
    assert (birth["kind"], birth["prev_step"], birth["targets"]) == ("birth", 0, [7])


def test_a_death_is_not_taken_back_by_a_feature_that_was_not_there_yet():
    """Group 6 moves to direction 8 only at step 20: at 10 nothing carries it, so the death
    at 10 is the model's and the feature at 20 is born."""
    x0, x2 = moved_six()
    x1 = everything(g for g in range(8) if g != 6)
    _, gone, found = chain_of([ALL, WITHOUT_6, WITH_8], [x0, x1, x2])
    assert kinds(gone) == ["death"] and kinds(found) == ["birth"]
    assert found.events["prev_step"][0] == 10 and found.revised is None


def test_a_resumed_analyzer_can_still_take_back_the_death_where_it_stopped(tmp_path, monkeypatch):
    """With the encoder test alone, as in the test before."""
    x0, x1 = moved_six()
    saes, xs = {0: ALL, 10: WITHOUT_6, 20: WITH_8}, {0: x0, 10: x1, 20: x1}

    def fitted(step, acts, config, match_config, previous=None):
        sae = sae_of(saes[step])
        sae.metrics = FitMetrics(fvu=0.1, l0=1.0, dead_fraction=0.0, fit_seconds=0.0, steps=1)
        return Checkpoint(step, sae, acts)

    monkeypatch.setattr(chain_module, "fit_checkpoint", fitted)
    tables = []
    for name, stop_after in (("a", None), ("b", 20)):
        writer = Writer(tmp_path / f"{name}.duckdb")
        analyzer = Analyzer(writer, "r", "L", match_config=ENCODER_ONLY)
        for step in saes:
            if step == stop_after:
                analyzer = Analyzer(writer, "r", "L", match_config=ENCODER_ONLY)
                analyzer.resume(step, xs.__getitem__)
            analyzer.add(step, xs[step])
        reader = open_db(tmp_path / f"{name}.duckdb")
        tables.append({t: reader.sql(f"SELECT * FROM {t}").sort(pl.all()) for t in TABLES})
    straight, resumed = tables
    for table in TABLES:
        assert straight[table].equals(resumed[table]), table
    assert resumed["events"].is_empty(), "the death at 10 is revised in the store"
    lineage = resumed["features"].filter(pl.col("step") == 0, pl.col("feature") == 6)["lineage"]
    gaps = open_db(tmp_path / "b.duckdb").lineage_gaps("r", "L", lineage[0])
    assert gaps.select("kind", "prev_step", "step", "source", "gap").rows() == [
        ("continuation", 0, 20, 6, 1)
    ]
    Writer(tmp_path / "b.duckdb").write_run("r", {})
    at = app(tmp_path / "b.duckdb", monkeypatch, "views/feature.py", lineage=str(lineage[0]))
    assert any(
        c.value.startswith(
            "Step 20: found again after 1 checkpoint(s) without it (pattern corr 1.00"
        )
        for c in at.caption
    )
    assert (
        resumed["features"]
        .filter(pl.col("step") == 20, pl.col("feature") == 7)["lineage"]
        .to_list()
        == resumed["features"]
        .filter(pl.col("step") == 0, pl.col("feature") == 6)["lineage"]
        .to_list()
    )


TABLES = ("features", "edges", "events", "lineages")
