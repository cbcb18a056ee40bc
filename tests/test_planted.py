from dataclasses import replace

import torch

from tracker.planted import KindScore, PlantedConfig, planted_run, score_events


def test_planted_run_has_the_asked_events_and_consistent_supports():
    cfg = PlantedConfig(d=16, n_true=10, n=500, steps=(0, 1, 2), quiet=(2,), seed=3)
    run = planted_run(cfg)
    kinds = sorted(e.kind for e in run.events)
    assert kinds == ["birth"] * 2 + ["death"] * 2 + ["merge"] * 2 + ["split"] * 2
    assert all(e.step == 1 for e in run.events), "the quiet transition has no event"
    assert len(run.directions[1]) == 10 - 2 + 2 + 2 - 2
    assert set(run.directions[2]) == set(run.directions[1])
    for step in (0, 1, 2):
        assert run.acts[step].shape == (500, 16)
    split = next(e for e in run.events if e.kind == "split")
    parent = run.directions[0][next(iter(split.sources))]
    for child in split.targets:
        assert float(run.directions[1][child] @ parent) > 0.7


def test_scores_count_right_wrong_and_missed_events():
    cfg = PlantedConfig(
        d=16, n_true=10, n=200, steps=(0, 1), births=1, deaths=1, splits=0, merges=0, seed=0
    )
    run = planted_run(cfg)
    # Decoders equal to the truth: feature i of a step is the i-th true feature (sorted ids).
    ids = {s: sorted(run.directions[s]) for s in (0, 1)}
    decoders = {s: torch.stack([run.directions[s][i] for i in ids[s]]) for s in (0, 1)}
    birth = next(e for e in run.events if e.kind == "birth")
    born = ids[1].index(next(iter(birth.targets)))
    reported = [(0, 1, "birth", [], [born]), (0, 1, "birth", [], [0]), (0, 1, "split", [0], [1, 2])]
    scores = score_events(run, reported, decoders)
    assert scores["birth"] == KindScore(tp=1, fp=1, fn=0)
    assert scores["death"] == KindScore(tp=0, fp=0, fn=1)
    assert scores["split"] == KindScore(tp=0, fp=1, fn=0)
    assert scores["birth"].precision == 0.5 and scores["death"].recall == 0.0


def test_gradual_events_span_their_ramp_and_unfinished_ones_count_neither_way():
    cfg = PlantedConfig(
        d=16, n_true=10, n=400, steps=(0, 1, 2, 3, 4), births=1, deaths=1, merges=0, splits=0
    )
    cfg = replace(cfg, ramp=3, seed=1)
    run = planted_run(cfg)
    complete = [e for e in run.events if e.complete]
    spans = sorted((e.kind, e.step, e.until) for e in complete)
    assert spans == [("birth", 1, 3), ("birth", 2, 4), ("death", 1, 3), ("death", 2, 4)]
    unfinished = sorted((e.kind, e.step, e.until) for e in run.events if not e.complete)
    assert unfinished == [("birth", 3, 4), ("birth", 4, 4), ("death", 3, 4), ("death", 4, 4)]
    birth = next(e for e in complete if e.kind == "birth" and e.step == 1)
    born = next(iter(birth.targets))
    # It grows: its share of the activations rises over the ramp.
    size = [float((run.acts[s] @ run.directions[s][born]).abs().mean()) for s in (1, 2, 3)]
    assert size[0] < size[1] < size[2]
    ids = {s: sorted(run.directions[s]) for s in cfg.steps}
    decoders = {s: torch.stack([run.directions[s][i] for i in ids[s]]) for s in cfg.steps}
    late = next(e for e in run.events if not e.complete and e.kind == "birth" and e.step == 4)
    reported = [
        (1, 2, "birth", [], [ids[2].index(born)]),  # inside the ramp: right
        (3, 4, "birth", [], [ids[4].index(next(iter(late.targets)))]),  # unfinished: neither
    ]
    scores = score_events(run, reported, decoders)
    assert scores["birth"] == KindScore(tp=1, fp=0, fn=1)  # the birth at 2 was missed
    assert scores["death"] == KindScore(tp=0, fp=0, fn=2)
