"""Replay 2: the grokking model, its Fourier analysis, and a tiny tracked run that groks."""

import json
import math
from dataclasses import replace
from pathlib import Path

import golden
import numpy as np
import polars as pl
import pytest
import torch
from streamlit.testing.v1 import AppTest

from experiments.grokking.config import TINY, GrokConfig
from experiments.grokking.figures import draw, pick_maps
from experiments.grokking.fourier import (
    CHANCE,
    embedding_power,
    key_frequencies,
    label_spectrum,
    map_spectrum,
)
from experiments.grokking.model import Transformer, split
from experiments.grokking.progress import phase_of, phases
from experiments.grokking.run import run
from tracker.reader import VIEWER_DBS_ENV, open_db

APP = str(Path(__file__).resolve().parent.parent / "app" / "main.py")


def tiny(tmp: Path, **changes: object) -> GrokConfig:
    return replace(GrokConfig(**TINY), root=tmp, **changes)  # type: ignore[arg-type]


def test_the_fast_forward_is_the_textbook_transformer():
    torch.manual_seed(0)
    model = Transformer(replace(GrokConfig(**TINY), p=11)).double()  # type: ignore[arg-type]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))  # off the initial point, attention not uniform
    pairs, _ = split(model.cfg)
    fast, plain = model(pairs), model.forward_sequence(pairs)
    assert fast.shape == (121, 12)
    torch.testing.assert_close(fast, plain, rtol=1e-10, atol=1e-10)


def test_maps_are_labelled_with_their_frequency():
    p = 31
    a = torch.arange(p, dtype=torch.float64)[:, None].expand(p, p)
    b = a.T
    w = 2 * math.pi / p
    maps = torch.stack(
        [
            torch.cos(w * 5 * (a + b)),  # a + b at frequency 5
            torch.relu(torch.cos(w * 7 * a) + torch.cos(w * 7 * b)),  # a and b, frequency 7
            torch.cos(w * 3 * a) * torch.cos(w * 11 * b),  # two frequencies mixed
            torch.rand(p, p, generator=torch.Generator().manual_seed(0)),  # memorising noise
        ]
    )
    spectrum = map_spectrum(maps)
    freq, dominant, share = label_spectrum(spectrum, p)
    assert freq[:3].tolist() == [5, 7, 0]  # the mixed map has no power on any one frequency
    assert dominant[:2].tolist() == [5, 7]
    assert share[0] > 0.99 and share[1] > 0.6 and share[2] < 1e-9
    # white noise: each frequency holds ~8 of the p² - 1 coefficients' power
    assert share[3] < CHANCE * 8 / (p * p - 1) * 2
    assert spectrum.shape == (4, p // 2 + 1)
    # Parseval: every non-constant coefficient lands somewhere.
    total = torch.fft.fft2(maps).abs().pow(2).sum((1, 2)) - torch.fft.fft2(maps)[:, 0, 0].abs() ** 2
    torch.testing.assert_close(spectrum.sum(1), total)


def test_key_frequencies_are_read_off_the_embedding():
    p, d = 31, 16
    x = torch.arange(p, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    W_E = 0.01 * torch.randn(p + 1, d, generator=g, dtype=torch.float64)
    for k, strength in [(4, 1.0), (9, 0.9), (13, 0.8)]:
        direction = torch.randn(2, d, generator=g, dtype=torch.float64)
        angle = 2 * math.pi * k * x / p
        W_E[:p] += strength * (torch.cos(angle)[:, None] * direction[0])
        W_E[:p] += strength * (torch.sin(angle)[:, None] * direction[1])
    power = embedding_power(W_E, p)
    assert power.shape == (15,) and int(power.argmax()) + 1 == 4
    assert key_frequencies(power) == [4, 9, 13]
    # As in the p = 113 run: five key frequencies, then 2 and 36 above the uniform share
    # (1/56) but far below the key ones, which the largest drop in power leaves out.
    shares = torch.full((56,), 0.002)
    for k, share in [(15, 0.21), (39, 0.2), (11, 0.19), (1, 0.16), (18, 0.14), (2, 0.05)]:
        shares[k - 1] = share
    shares[35] = 0.027
    assert key_frequencies(shares) == [1, 11, 15, 18, 39]
    assert key_frequencies(torch.ones(15)) == []


def test_phases_are_measured_on_the_curves():
    steps = list(range(0, 1000, 100))
    progress = pl.DataFrame(
        {
            "step": steps,
            "train_acc": [0.1, 0.5, 1.0, 0.98, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
            "test_acc": [0.0, 0.0, 0.0, 0.0, 0.1, 0.3, 0.6, 0.96, 0.94, 0.99],
            "test_loss": [4.0, 8.0, 20.0, 30.0, 25.0, 10.0, 1.0, 0.1, 0.05, 0.01],
            # shrinks slowly, then fast from 500 to 800 (clean-up), then slowly again
            "weight_norm": [100.0, 99, 98, 97, 96, 95, 60, 40, 30, 29.5],
        }
    )
    bounds = phases(progress)
    assert bounds == {
        "memorised": 400,  # train accuracy stays >= 99% from here
        "memorisation_end": 300,  # the test-loss peak
        "cleanup_start": 500,
        "cleanup_end": 800,
        "grokked": 900,
    }
    assert [phase_of(s, bounds) for s in (0, 300, 400, 500, 600, 800, 900)] == [
        "memorisation",
        "memorisation",
        "circuit formation",
        "circuit formation",
        "cleanup",
        "cleanup",
        "after cleanup",
    ]


@pytest.fixture(scope="module")
def grokked(tmp_path_factory):
    cfg = tiny(tmp_path_factory.mktemp("grok"))
    report = run(cfg, progress=False)
    golden.check("grokking_tiny", golden.snapshot(cfg.db, cfg.root))
    return cfg, report


def test_a_tiny_run_groks_and_its_features_carry_the_key_frequencies(grokked):
    cfg, report = grokked
    bounds = report["bounds"]
    assert report["final"]["test_acc"] >= 0.95 and report["final"]["train_acc"] == 1.0
    assert max(bounds["memorised"], bounds["memorisation_end"]) < bounds["grokked"], bounds
    assert bounds["memorisation_end"] <= bounds["cleanup_start"] < bounds["cleanup_end"], bounds
    # After grokking the logits live on the key frequencies: keeping only them loses little,
    # removing them destroys the training fit.
    assert report["final"]["restricted_loss"] < 0.5
    assert report["final"]["excluded_loss"] > 10 * report["final"]["train_loss"]
    assert 1 <= len(report["keys"]) <= 6
    covered = [k for k, n in report["coverage"].items() if n > 0]
    assert len(covered) >= len(report["keys"]) - 1, report["coverage"]
    # the SAE features move onto the key frequencies: from chance to most of them
    live = report["live"]
    first, last = (live.row(i, named=True) for i in (0, -1))
    assert first["on_key"] / first["live"] < 2 * report["chance"]
    assert last["on_key"] / last["live"] > 0.8
    assert report["steps"] == cfg.schedule()


def test_the_run_stores_curves_labels_maps_and_phases(grokked):
    cfg, report = grokked
    db = open_db(cfg.db)
    names = set(db.metrics(cfg.run)["name"].unique())
    assert {"train_loss", "test_acc", "restricted_loss", "excluded_loss"} <= names
    labels = db.table("grok_features", cfg.run)
    features = db.sql("SELECT step, feature FROM features WHERE run = ?", [cfg.run])
    assert labels.height == features.height
    # Each live feature gets its panels: the label, its map, its folded spectrum, its bars.
    counts = db.sql(
        "SELECT step, feature, count(*) AS n FROM panels WHERE run = ? GROUP BY ALL", [cfg.run]
    )
    assert counts.height == features.height and set(counts["n"]) == {5}
    row = labels.filter(pl.col("step") == cfg.steps).row(0, named=True)
    note, grid, folded, bars, short = db.panels(cfg.run, "mlp", cfg.steps, row["feature"])
    assert short.kind == "label" and short.text == (
        f"frequency {row['frequency']}{' (key)' if row['frequency'] in report['keys'] else ''}"
        if row["frequency"]
        else "no single frequency"
    )
    # Each lineage's latest label names it on the Lineage page and in the Feature picker.
    named = db.lineage_labels(cfg.run, "mlp")
    final = db.features(cfg.run, "mlp", cfg.steps).join(named, on="lineage")
    assert final.height == db.features(cfg.run, "mlp", cfg.steps).height
    assert (final["step"] == cfg.steps).all()
    assert (note.kind == "note" and f"**{row['frequency']}**" in note.text) or not row["frequency"]
    assert grid.values.shape == (cfg.p, cfg.p) and grid.values.min() >= 0
    assert folded.values.shape == (cfg.p // 2 + 1,) * 2
    assert bars.values.shape == (1, cfg.p // 2)
    assert sum(bars.strong) == len(report["keys"])
    np.testing.assert_allclose(bars.values[0], row["spectrum"][1:], atol=1e-6)
    # A label is the dominant frequency where its share clears chance, else 0. Whether a
    # feature right at the threshold clears it depends on float summation order, so only
    # shares clearly on one side are checked.
    threshold = CHANCE * 8 / (cfg.p**2 - 1)
    last = labels.filter(pl.col("step") == cfg.steps)
    assert last["share"].is_between(0, 1).all()
    assert ((last["frequency"] == 0) | (last["frequency"] == last["dominant"])).all()
    clear = last.filter((pl.col("share") - threshold).abs() > 0.01 * threshold)
    assert ((clear["frequency"] > 0) == (clear["share"] > threshold)).all()
    assert (last["frequency"] > 0).mean() > 0.8
    probe = db.probe(cfg.run)
    assert probe.height == cfg.p**2
    payload = json.loads(probe["payload"][cfg.p + 2])
    assert (payload["a"], payload["b"]) == (1, 2) and isinstance(payload["train"], bool)
    assert probe["label"][cfg.p + 2] == "1 + 2 = 3"
    _, train = split(cfg)
    assert sum(json.loads(x)["train"] for x in probe["payload"]) == int(train.sum())
    live = db.table("grok_live", cfg.run)
    assert live["step"].to_list() == sorted(set(labels["step"]))
    assert (live["on_key"] <= live["labelled"]).all() and (live["labelled"] <= live["live"]).all()
    onsets = report["settled"]
    assert (
        set(onsets["how"]) <= {"born", "changed"}
        and onsets["frequency"].is_in(report["keys"]).all()
    )
    phases = db.table("grok_phases", cfg.run)
    assert phases["count"].sum() > 0
    replay, config = db.replay(cfg.run)
    assert replay == "grokking" and config["p"] == cfg.p and config["key_frequencies"]


def test_the_viewer_draws_a_feature_map_and_its_spectrum(grokked, monkeypatch):
    cfg, _ = grokked
    db = open_db(cfg.db)
    last = db.features(cfg.run, "mlp", cfg.steps).row(0, named=True)
    monkeypatch.setenv(VIEWER_DBS_ENV, str(cfg.db))
    app = AppTest.from_file(APP, default_timeout=60)
    app.query_params["lineage"] = str(last["lineage"])
    app.run()
    app.switch_page("views/feature.py").run()
    assert not app.exception, [e.value for e in app.exception]
    specs = [json.loads(c.proto.spec) for c in app.get("vega_lite_chart")]
    titles = [spec.get("title") for spec in specs]
    feature = last["feature"]
    assert f"Feature {feature} over (a, b) at step {cfg.steps}" in titles
    assert "2-D Fourier power (folded)" in titles
    heat = specs[titles.index(f"Feature {feature} over (a, b) at step {cfg.steps}")]
    assert heat["mark"]["type"] == "rect"
    assert any("key frequencies (from its embedding)" in m.value for m in app.markdown)


def test_the_figures_are_drawn(grokked, tmp_path):
    cfg, report = grokked
    paths = draw(cfg, report, tmp_path)
    assert [p.name for p in paths] == ["grokking_curves.png", "grokking_maps.png"]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000
    chosen = pick_maps(open_db(cfg.db).table("grok_features", cfg.run), report)
    assert len(chosen) == 8 and {s for s, _ in chosen[4:]} == {cfg.steps}


def test_the_residual_stream_can_be_watched_instead(tmp_path):
    cfg = tiny(tmp_path, layer="resid", steps=400, log_snapshots=3, dense=(100, 300, 2))
    report = run(cfg, progress=False)
    db = open_db(cfg.db)
    assert db.layers(cfg.run) == ["resid"]
    assert db.saes(cfg.run, "resid")["d_in"].unique().to_list() == [cfg.d_model]
    labels = db.table("grok_features", cfg.run)
    assert (
        set(labels["layer"]) == {"resid"}
        and labels.height
        == db.sql(
            "SELECT count(*) AS n FROM features WHERE run = ? AND layer = 'resid'", [cfg.run]
        )["n"][0]
    )
    assert report["steps"] == cfg.schedule() == [0, 1, 20, 100, 300, 400]
