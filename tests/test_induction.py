"""Replay 3: induction heads. Its data, its measures of the phase change, and a tiny tracked
run (too short for induction heads to form) that stores what the report and figure read."""

from dataclasses import replace
from pathlib import Path

import golden
import polars as pl
import pytest
import torch
from streamlit.testing.v1 import AppTest

from experiments.induction.analysis import phase_change, window
from experiments.induction.config import LAYERS, TINY, InductionConfig
from experiments.induction.data import PRINTABLE, Windows, probe, repeat_span, repeated_random
from experiments.induction.figures import draw
from experiments.induction.labels import token_r2
from experiments.induction.measures import attention_scores
from experiments.induction.run import run
from experiments.textlm import ALPHABET, CharLM, corpus, encode
from tracker.reader import VIEWER_DBS_ENV, open_db

APP = str(Path(__file__).resolve().parent.parent / "app" / "main.py")


def tiny(tmp: Path) -> InductionConfig:
    return replace(InductionConfig(**TINY), root=tmp)  # type: ignore[arg-type]


def test_a_repeated_span_appears_twice_at_offsets_that_vary():
    g = torch.Generator().manual_seed(0)
    offsets = set()
    for _ in range(50):
        window = torch.zeros(129, dtype=torch.long)
        first, later, m = repeat_span(window, g)
        assert 129 // 4 <= m <= 129 // 2
        assert first + m <= later and later + m <= 129
        assert torch.equal(window[first : first + m], window[later : later + m])
        assert int((window != 0).sum()) >= m  # random characters, never the newline
        assert window.max() <= PRINTABLE
        offsets.add(later - first)
    assert len(offsets) > 10


def test_the_probe_marks_exactly_the_second_copies():
    cfg = InductionConfig(**TINY)  # type: ignore[arg-type]
    _, held = corpus()
    text_probe, second = probe(encode(held), cfg)
    again, second_again = probe(encode(held), cfg)
    assert torch.equal(text_probe.tokens, again.tokens) and torch.equal(second, second_again)
    assert second.shape == (cfg.probe_sequences, cfg.seq_len)
    assert not second[0::2].any() and second[1::2].any(dim=1).all()
    for row in range(1, cfg.probe_sequences, 2):
        where = second[row].nonzero().flatten()
        m = len(where)
        tokens = text_probe.tokens[row]
        copies = [
            s for s in range(where[0] - m + 1) if torch.equal(tokens[s : s + m], tokens[where])
        ]
        assert copies, "the marked tokens repeat an earlier span"


def test_training_windows_repeat_with_a_seeded_generator():
    cfg = replace(InductionConfig(**TINY), repeat=1.0)  # type: ignore[arg-type]
    ids = torch.arange(5000) % 90 + 1
    a, b = next(iter(Windows(ids, cfg))), next(iter(Windows(ids, cfg)))
    assert a.shape == (cfg.batch_size, cfg.seq_len + 1) and torch.equal(a, b)


def test_uniform_attention_has_the_scores_of_chance():
    cfg = InductionConfig(**TINY)  # type: ignore[arg-type]
    model = CharLM(cfg.lm)
    with torch.no_grad():
        for block in model.blocks:
            block.attn.qkv.weight.zero_()  # all scores 0: causal attention is uniform
    half = 10
    ids = repeated_random(3, half, seed=0)[:, :-1]
    scores = attention_scores(model, ids, half)
    prefix = sum(1 / (q + 1) for q in range(half, 2 * half)) / half
    previous = sum(1 / (q + 1) for q in range(1, 2 * half)) / (2 * half - 1)
    for name, chance in (("prefix", prefix), ("previous", previous)):
        assert len(scores[name]) == 2 and all(len(h) == cfg.n_heads for h in scores[name])
        flat = [s for heads in scores[name] for s in heads]
        assert flat == pytest.approx([chance] * 2 * cfg.n_heads)


def test_token_r2_is_one_for_a_function_of_the_token_and_near_zero_for_noise():
    g = torch.Generator().manual_seed(0)
    token = torch.randint(0, len(ALPHABET), (4000,), generator=g)
    table = torch.rand(len(ALPHABET), generator=g)
    z = torch.stack([table[token], torch.rand(4000, generator=g), table[token.roll(1)]], dim=1)
    r2 = token_r2(z, token)
    assert r2[0] == pytest.approx(1.0)
    assert r2[1] < 0.05 and r2[2] < 0.05  # 96 groups over 4 000 rows: ~0.024 by chance
    assert token_r2(z, token.roll(1))[2] == pytest.approx(1.0)


def curves(gain: list[float]) -> pl.DataFrame:
    steps = [100 * i for i in range(len(gain))]
    return pl.DataFrame(
        {
            "step": steps * 2,
            "name": ["first_copy_loss"] * len(steps) + ["repeat_loss"] * len(steps),
            "value": [4.6] * len(steps) + [4.6 - g for g in gain],
        }
    )


def test_the_phase_change_is_where_the_copying_gain_rises():
    phase = phase_change(curves([0, 0, 0, 0.1, 0.5, 1.5, 1.9, 2.0, 2.0]))
    assert phase is not None
    assert (phase["onset"], phase["end"], phase["steepest"]) == (400, 600, 500)
    assert phase["gain"] == pytest.approx(2.0)
    assert phase_change(curves([0, 0.1, 0.2, 0.3])) is None
    checkpoints = [0, 1, 10, 100, 200, 400, 600, 800]
    assert window(checkpoints, phase) == (200, 800)


def test_a_tiny_tracked_run_stores_the_measures_labels_and_figure(tmp_path, monkeypatch):
    cfg = tiny(tmp_path)
    report = run(cfg, progress_bar=False)
    golden.check("induction_tiny", golden.snapshot(cfg.db, tmp_path))
    reader = open_db(cfg.db)
    metrics = reader.metrics(cfg.run)
    names = set(metrics["name"].to_list())
    assert {"repeat_loss", "first_copy_loss", "icl_score", "prefix/L0", "prefix/L1"} <= names
    assert {f"prefix/L1H{h}" for h in range(cfg.n_heads)} <= names
    assert {f"previous/L0H{h}" for h in range(cfg.n_heads)} <= names
    steps = sorted(set(metrics.filter(pl.col("name") == "repeat_loss")["step"].to_list()))
    assert steps == list(range(0, cfg.steps + 1, cfg.eval_every))
    shares = reader.table("induction_features", cfg.run)
    assert set(shares["layer"].to_list()) == set(LAYERS)
    for column in ("repeat_share", "previous_r2", "token_r2"):
        assert shares[column].is_between(0, 1).all()
    for layer in LAYERS:
        checkpoints = reader.checkpoints(cfg.run, layer)["step"].to_list()
        assert checkpoints == cfg.schedule()
        live = reader.features(cfg.run, layer, cfg.steps)
        mine = shares.filter((pl.col("layer") == layer) & (pl.col("step") == cfg.steps))
        assert sorted(mine["feature"].to_list()) == sorted(live["feature"].to_list())
        r = report["layers"][layer]
        assert r["checkpoints_in"] + r["checkpoints_out"] == len(checkpoints) - 1
    assert report["final"]["repeat_loss"] > 3.0, "120 steps are too few to copy"
    assert report["phase"] is None
    paths = draw(cfg, report, tmp_path / "figures")
    assert [p.name for p in paths] == ["induction_phase.png"] and paths[0].stat().st_size > 10_000
    assert reader.replay(cfg.run)[0] == "induction"  # type: ignore[index]
    the_viewer_shows_a_feature_with_its_share_and_contexts(cfg, monkeypatch)


def the_viewer_shows_a_feature_with_its_share_and_contexts(cfg, monkeypatch):
    last = open_db(cfg.db).features(cfg.run, LAYERS[1], cfg.steps).row(0, named=True)
    monkeypatch.setenv(VIEWER_DBS_ENV, str(cfg.db))
    app = AppTest.from_file(APP, default_timeout=60)
    app.query_params["layer"] = LAYERS[1]
    app.query_params["lineage"] = str(last["lineage"])
    app.run()
    app.switch_page("views/feature.py").run()
    assert not app.exception, [e.value for e in app.exception]
    text = " ".join(m.value for m in app.markdown)
    assert "falls on the second copy of a repeated random span" in text
    assert "the previous token's identity explains" in text
    contexts = [str(v) for df in app.dataframe for v in df.value.to_numpy().ravel()]
    assert any("⟦" in c for c in contexts), "top rows are shown as text in context"
