"""Every viewer page, run with streamlit's AppTest on a small planted lineage database."""

import json
import os
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest
from tiny import one_of_each

from tracker import SAEConfig
from tracker.panels import Panel
from tracker.pipeline import analyze
from tracker.planted import true_feature_of
from tracker.reader import VIEWER_DBS_ENV, open_db
from tracker.snapshots import RunDir
from tracker.store import Writer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "experiments" / "bench"))
from viewer_server import CHROMIUM, launch, serve

APP = str(Path(__file__).parent.parent / "app" / "main.py")


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("app") / "planted.duckdb"
    run = one_of_each(1024)
    writer = analyze(
        run.acts,
        path,
        "planted",
        layer="mlp",
        sae=SAEConfig(d_sae=40, k=4, steps=200, batch_size=512),
    )
    writer.write_metrics(
        "planted",
        pl.DataFrame(
            {
                "step": [0, 5, 10, 15, 20],
                "name": ["train_loss"] * 5,
                "value": [1.0, 0.5, 0.3, 0.2, 0.1],
            }
        ),
    )
    return path


def app(db, monkeypatch, page=None, **params):
    monkeypatch.setenv(VIEWER_DBS_ENV, str(db))
    at = AppTest.from_file(APP, default_timeout=30)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_runs_page_shows_curves_quality_and_event_counts(db, monkeypatch):
    at = app(db, monkeypatch)
    assert at.title[0].value == "Runs"
    assert [s.value for s in at.sidebar.selectbox] == [str(db), "planted", "mlp"]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Checkpoints"] == "3"
    shares = open_db(db).checkpoints("planted", "mlp")["stable_share"].drop_nulls()
    assert metrics["Latest stable share"] == f"{shares[-1]:.2f}"
    confident = len(open_db(db).events("planted", "mlp", min_confidence=0.5))
    assert metrics["Confident events"] == str(confident) and confident >= 8
    assert len(at.get("vega_lite_chart")) == 4
    assert at.query_params["run"] == ["planted"] or at.query_params["run"] == "planted"


def test_events_against_noise_counts_events_and_unstable_features(db, monkeypatch):
    reader = open_db(db)
    noise = reader.events_against_noise("planted", "mlp", 0.5)
    steps = reader.checkpoints("planted", "mlp")["step"].to_list()
    assert noise["step"].to_list() == steps[1:] and noise["prev_step"].to_list() == steps[:-1]
    events = reader.events("planted", "mlp")
    for row in noise.iter_rows(named=True):
        here = events.filter(pl.col("step") == row["step"])
        assert row["events"] == len(here)
        assert row["confident"] == len(here.filter(pl.col("confidence") >= 0.5))
        unstable = [
            len(reader.features("planted", "mlp", s).filter(~pl.col("stable")))
            for s in (row["prev_step"], row["step"])
        ]
        assert row["unstable"] == sum(unstable)
    assert noise["events"].sum() > noise["confident"].sum() > 0
    # The Runs page draws the three series on the run's step axis.
    at = app(db, monkeypatch)
    spec = json.loads(at.get("vega_lite_chart")[3].proto.spec)
    drawn = [
        row
        for d in at.get("vega_lite_chart")[3].proto.datasets
        for row in pa.ipc.open_stream(d.data.data).read_all().to_pylist()
        if "variable" in row
    ]
    assert {r["variable"] for r in drawn} == {
        "all events",
        "confident",
        "unstable features",
    }
    assert "layer" in spec and len(drawn) == 3 * len(noise)


def test_events_against_noise_is_empty_of_noise_with_one_seed(tmp_path):
    run = one_of_each(512)
    analyze(
        run.acts,
        tmp_path / "one.duckdb",
        "one",
        sae=SAEConfig(d_sae=40, k=4, steps=100, batch_size=256, seeds=1),
    )
    noise = open_db(tmp_path / "one.duckdb").events_against_noise("one", "default")
    assert len(noise) == len(run.acts) - 1 and noise["unstable"].null_count() == len(noise)


def test_lineages_are_named_by_their_latest_label(db, monkeypatch, tmp_path):
    path = tmp_path / "labelled.duckdb"
    path.write_bytes(db.read_bytes())
    reader = open_db(path)
    at = app(path, monkeypatch, "views/lineage.py")
    spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    drawn = json.loads(spec["layer"][0]["encoding"]["y"]["axis"]["labelExpr"].split("[datum")[0])
    lineage = int(drawn[0])  # a drawn lineage, first in its order; the run named none
    story = reader.lineage("planted", "mlp", lineage).sort("step")
    writer = Writer(path)
    for (step, feature), text in zip(
        story.select("step", "feature").rows(), ["old name", 'x"3'][-story.height :], strict=False
    ):
        writer.write_panels("planted", "mlp", step, {feature: [Panel("label", text=text)]})
    labels = reader.lineage_labels("planted", "mlp")
    assert labels.rows() == [(lineage, story["step"][-1], 'x"3')]
    # The Lineage page's rows and picker, and the Feature page's picker, carry the label
    # (once the viewer's 5 s cache of the first visit's reads has expired).
    st.cache_data.clear()
    at = app(path, monkeypatch, "views/lineage.py", lineage=str(lineage))
    spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    names = json.loads(spec["layer"][0]["encoding"]["y"]["axis"]["labelExpr"].split("[datum")[0])
    assert names[0] == f'{lineage} · x"3' and names[1:] == drawn[1:]
    assert at.main.selectbox[0].value == lineage
    assert f'{lineage} · x"3' in at.main.selectbox[0].options
    # Filtered by label: only that lineage's row, and only events that concern it.
    at.sidebar.text_input[0].input('X"3').run()
    spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    assert json.loads(
        spec["layer"][0]["encoding"]["y"]["axis"]["labelExpr"].split("[datum")[0]
    ) == [f'{lineage} · x"3']
    table = at.dataframe[0].value
    at_step = dict(story.select("step", "feature").rows())
    concerning = [
        e
        for e in reader.events("planted", "mlp", min_confidence=0.5).iter_rows(named=True)
        if at_step.get(e["prev_step"]) in e["sources"] or at_step.get(e["step"]) in e["targets"]
    ]
    assert len(table) == len(concerning) > 0
    at.sidebar.text_input[0].input("no such label").run()
    assert at.info[0].value == "No event matches these filters." and at.dataframe[0].value.empty
    at = app(path, monkeypatch, "views/feature.py", lineage=str(lineage))
    picker = at.sidebar.selectbox[-1]
    assert picker.value == lineage
    assert any(o.startswith(f'{lineage} · x"3: ') for o in picker.options)
    assert at.subheader[0].value.startswith(f'Lineage {lineage} · x"3: steps ')


def test_lineages_sort_by_label_naturally(db, monkeypatch, tmp_path):
    path = tmp_path / "labelled.duckdb"
    path.write_bytes(db.read_bytes())
    at = app(path, monkeypatch, "views/lineage.py")
    spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    drawn = json.loads(spec["layer"][0]["encoding"]["y"]["axis"]["labelExpr"].split("[datum")[0])
    fmap = open_db(path).feature_map("planted", "mlp").sort("step")
    last = fmap.group_by("lineage", maintain_order=True).last()
    # Three drawn lineages, in their first-seen order, named x10, x2 and x3.
    named = [last.row(by_predicate=pl.col("lineage") == int(i), named=True) for i in drawn[:3]]
    by_step: dict[int, dict[int | None, list[Panel]]] = {}  # a checkpoint's panels: one write
    for row, text in zip(named, ["x10", "x2", "x3"], strict=True):
        by_step.setdefault(row["step"], {})[row["feature"]] = [Panel("label", text=text)]
    for step, panels in by_step.items():
        Writer(path).write_panels("planted", "mlp", step, panels)
    st.cache_data.clear()
    at = app(path, monkeypatch, "views/lineage.py")
    at.sidebar.radio[0].set_value("label").run()
    spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    names = json.loads(spec["layer"][0]["encoding"]["y"]["axis"]["labelExpr"].split("[datum")[0])
    ids = [row["lineage"] for row in named]
    assert names[:3] == [f"{ids[1]} · x2", f"{ids[2]} · x3", f"{ids[0]} · x10"]
    rest = [int(name) for name in names[3:]]  # the unnamed ones after, by id
    assert rest == sorted(rest) and not set(rest) & set(ids)


def test_a_label_is_one_short_line():
    with pytest.raises(ValueError, match="one line of 1 to 40 characters"):
        Panel("label", text="x" * 41)
    with pytest.raises(ValueError, match="one line"):
        Panel("label", text="two\nlines")
    with pytest.raises(ValueError, match="one line"):
        Panel("label")


def test_lineage_page_draws_events_and_offers_their_lineages(db, monkeypatch):
    at = app(db, monkeypatch, "views/lineage.py")
    assert at.title[0].value == "Lineage"
    assert "events" in at.caption[0].value and "lineages drawn" in at.caption[0].value
    assert len(at.main.selectbox) == 1
    assert len(at.get("vega_lite_chart")) == 1
    spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    scales = [
        layer["encoding"][channel]["scale"]
        for layer in spec["layer"]
        for channel in ("color", "shape")
        if channel in layer.get("encoding", {})
    ]
    assert [s["domain"] for s in scales] == [["birth", "death", "split", "merge"]] * 2
    assert scales[0]["range"] == ["#009E73", "#D55E00", "#0072B2", "#CC79A7"]
    assert scales[1]["range"] == ["triangle-up", "cross", "diamond", "square"]
    # Every event at its own step in the chart as in the table, on its lineage's row, and a
    # link to that lineage's story.
    reader = open_db(db)
    events = reader.events("planted", "mlp", min_confidence=0.5)
    table = at.dataframe[0].value
    assert list(table.columns[:5]) == ["step", "kind", "lineage", "story", "evidence"]
    assert table["step"].tolist() == events["step"].to_list()
    death = events.filter(pl.col("kind") == "death").row(0, named=True)
    lineage = reader.features("planted", "mlp", death["prev_step"]).filter(
        pl.col("feature") == death["sources"][0]
    )["lineage"][0]
    row = table[(table["kind"] == "death") & (table["step"] == death["step"])].iloc[0]
    assert row["lineage"] == lineage and row["story"].endswith(f"&lineage={lineage}")
    drawn = [  # the chart's data sets, as Streamlit sends them (Arrow)
        pa.ipc.open_stream(d.data.data).read_all().to_pylist()
        for d in at.get("vega_lite_chart")[0].proto.datasets
    ]
    points = next(rows for rows in drawn if rows and "kind" in rows[0])
    assert {"kind": "death", "step": death["step"], "lineage": lineage} in [
        {k: p[k] for k in ("kind", "step", "lineage")} for p in points
    ]
    at.sidebar.radio[0].set_value("most events").run()
    labels = json.loads(at.get("vega_lite_chart")[0].proto.spec)["layer"][0]["encoding"]["y"]
    busiest = table.groupby("lineage").size().max()
    assert busiest >= 2 and "datum.value" in labels["axis"]["labelExpr"]
    at.sidebar.multiselect[0].set_value(["split"]).run()
    splits = events.filter(pl.col("kind") == "split")
    assert at.caption[0].value.startswith(f"{len(splits)} events")


def split_child(db) -> tuple[dict, int]:
    """The first confident split of the fixture, and the lineage of its first child."""
    reader = open_db(db)
    split = (
        reader.events("planted", "mlp", min_confidence=0.5)
        .filter(pl.col("kind") == "split")
        .row(0, named=True)
    )
    child = reader.features("planted", "mlp", split["step"]).filter(
        pl.col("feature") == split["targets"][0]
    )["lineage"][0]
    return split, child


def test_feature_page_tells_one_lineage_story(db, monkeypatch):
    split, child = split_child(db)
    at = app(db, monkeypatch, "views/feature.py", lineage=str(child))
    assert at.title[0].value == "Feature"
    assert at.subheader[0].value.startswith(f"Lineage {child}: steps {split['step']} to 20")
    assert any("Started by a **split**" in m.value for m in at.markdown)
    assert len(at.dataframe) == 2  # its events and its top examples
    shown = at.dataframe[0].value
    assert shown.columns[0] == "evidence"
    evidence = shown[shown["kind"] == "split"]["evidence"].iloc[0]
    assert evidence.startswith(f"activations agree: absent at step {split['prev_step']}")
    assert len(at.dataframe[1].value) == 23  # top 20 + 3 activation quantiles
    assert len(at.get("vega_lite_chart")) == 3  # frequency, mean activation, cosine: one each
    assert at.sidebar.selectbox[-1].value == child


def test_feature_page_opens_on_the_longest_confident_story(db, monkeypatch):
    reader = open_db(db)
    fmap = reader.feature_map("planted", "mlp")
    length = dict(fmap["lineage"].value_counts().iter_rows())
    touched = set()
    for e in reader.events("planted", "mlp", min_confidence=0.5).iter_rows(named=True):
        for at_step, feats in ((e["prev_step"], e["sources"]), (e["step"], e["targets"])):
            for f in feats:
                row = fmap.filter((pl.col("step") == at_step) & (pl.col("feature") == f))
                touched |= set(row["lineage"].to_list())
    best = min(touched, key=lambda lin: (-length[lin], lin))
    at = app(db, monkeypatch, "views/feature.py")
    picker = at.sidebar.selectbox[-1]
    assert picker.value == best and picker.options[0].startswith(f"{best}: {length[best]} ")
    assert at.subheader[0].value.startswith(f"Lineage {best}: ")
    picker.set_value(sorted(length)[0]).run()  # choosing another writes it to the URL
    assert at.query_params["lineage"] in (str(sorted(length)[0]), [str(sorted(length)[0])])


def test_compare_page_draws_a_heatmap_and_keeps_its_checkpoints_in_the_url(db, monkeypatch):
    at = app(db, monkeypatch, "views/compare.py")
    assert at.title[0].value == "Compare"
    assert [s.value for s in at.main.selectbox] == [10, 20]
    assert at.query_params["a"] in ("10", ["10"]) and at.query_params["b"] in ("20", ["20"])
    assert "Decoder cosine of A = step 10" in at.caption[0].value
    assert "beat the 99th percentile" in at.caption[1].value
    assert not at.get("imgs") and len(at.get("vega_lite_chart")) == 2
    heat = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    assert heat["mark"]["type"] == "rect"
    assert heat["encoding"]["color"]["scale"] == {"scheme": "redblue", "domain": [-1, 1]}
    assert heat["encoding"]["y"]["title"] == "A feature"

    at = app(db, monkeypatch, "views/compare.py", a="0", b="20")
    assert [s.value for s in at.main.selectbox] == [0, 20]
    at = app(db, monkeypatch, "views/compare.py", a="7")
    assert [s.value for s in at.main.selectbox] == [10, 20]
    assert "?a='7' is not a checkpoint of this run" in at.warning[0].value


def test_the_reader_orders_a_comparison_by_the_assignment(db):
    reader = open_db(db)
    found = reader.compare("planted", "mlp", 10, 20)
    assert found.signal == "decoder", "no activations beside this file: the decoders"
    live = {s: len(reader.features("planted", "mlp", s)) for s in (10, 20)}
    assert found.sim.shape == (live[10], live[20])
    assert sorted(found.a_features) == sorted(reader.features("planted", "mlp", 10)["feature"])
    n = min(found.sim.shape)
    diagonal = np.diag(found.sim[:n, :n])
    assert (np.diff(diagonal) <= 1e-12).all(), "best matches first, on the diagonal"
    assert diagonal.sum() >= np.trace(found.sim[:n, np.random.default_rng(0).permutation(n)])
    assert np.allclose(np.sort(found.best), np.sort(found.sim.max(axis=1)))
    assert 0 < found.chance.mean < found.chance.quantile < 1


def test_a_comparison_in_few_dimensions_uses_activation_correlation(tmp_path):
    # In d = 5 every decoder cosine is near chance, so matching correlated the features'
    # activations over the probe set; Compare shows that signal while the snapshots exist.
    gen = torch.Generator().manual_seed(0)
    codes = torch.rand(2048, 8, generator=gen) * (torch.rand(2048, 8, generator=gen) < 0.1)
    W = torch.randn(8, 5, generator=gen)
    run = RunDir(tmp_path / "low")
    for step in (0, 10):
        run.write_activations("h", step, codes @ W, "float32")
    sae = SAEConfig(d_sae=8, k=1, steps=300, batch_size=512)
    analyze(run.activations, run.path / "lineage.duckdb", "low", sae=sae)
    reader = open_db(run.path / "lineage.duckdb")
    found = reader.compare("low", "h", 0, 10)
    assert found.signal == "activation"
    assert (np.abs(found.sim) <= 1 + 1e-6).all(), "correlations"
    n = min(found.sim.shape)
    assert n >= 4 and (np.diag(found.sim[:n, :n])[:4] > 0.99).all(), "same inputs, same features"
    assert found.chance.quantile < 0.5, "chance of correlations over 2048 inputs, not of d = 5"
    for path in run.activations.rglob("*.safetensors"):
        path.unlink()
    assert reader.compare("low", "h", 0, 10).signal == "decoder", "snapshots gone: decoders"


@pytest.mark.parametrize("page", ["views/feature.py", "views/lineage.py"])
@pytest.mark.parametrize("value", ["abc", "-3", "99999999999999999999999", "1e3"])
def test_a_bad_lineage_parameter_falls_back_with_one_line(db, monkeypatch, page, value):
    monkeypatch.setenv(VIEWER_DBS_ENV, str(db))
    at = AppTest.from_file(APP, default_timeout=30)
    at.query_params["lineage"] = value
    at.run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(f"?lineage='{value}' is not a lineage id" in w.value for w in at.warning)


def test_an_unknown_run_falls_back_to_the_first_with_one_line(db, monkeypatch):
    at = app(db, monkeypatch, run="nope")
    assert at.sidebar.selectbox[1].value == "planted"
    assert any("?run='nope' is not one of this run's choices" in w.value for w in at.warning)


def test_a_database_missing_tables_gives_one_line_not_a_traceback(tmp_path, monkeypatch):
    import duckdb

    from tracker.store import Writer

    Writer(tmp_path / "cut.duckdb")
    con = duckdb.connect(str(tmp_path / "cut.duckdb"))
    con.execute("DROP TABLE events")
    con.close()
    with pytest.raises(ValueError, match=r"lacks the lineage tables \['events'\]: rebuild it"):
        open_db(tmp_path / "cut.duckdb")
    at = app(tmp_path / "cut.duckdb", monkeypatch)
    assert len(at.error) == 1 and "lacks the lineage tables ['events']" in at.error[0].value


def test_without_a_database_the_app_says_how_to_start(monkeypatch):
    monkeypatch.setenv(VIEWER_DBS_ENV, "")
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    assert "tracker app DB" in at.error[0].value


# Each page's path, title, and a text it shows only once its data has been drawn.
PAGES = [
    ("", "Runs", "Confident events per checkpoint"),
    ("lineage", "Lineage", "lineages drawn"),
    ("feature", "Feature", "Started by a"),
    ("compare", "Compare", "beat the 99th percentile"),
]


@pytest.mark.slow
def test_every_page_renders_in_a_real_browser(db, tmp_path):
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(
                "CI must run the browser test, but Chromium is missing (.ci/run installs "
                "it with apt-get)"
            )
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    shots = Path(os.environ.get("TRACKER_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    # The fixture's run, each feature labelled by the planted feature its decoder points at,
    # as a replay publishes its labels.
    db = label_planted(db, tmp_path / "labelled.duckdb")
    _, child = split_child(db)
    seconds = {}
    problems: list[str] = []
    with serve(db) as base, sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda m: problems.append(f"{m.type}: {m.text}"))
        page.on("response", lambda r: problems.append(f"{r.status} {r.url}"))
        for path, title, known in PAGES:
            start = time.perf_counter()
            page.goto(f"{base}/{path}?run=planted&layer=mlp&lineage={child}")
            page.get_by_role("heading", name=title).first.wait_for(timeout=30_000)
            page.get_by_text(known).first.wait_for(timeout=30_000)
            page.locator(".vega-embed").first.wait_for(timeout=30_000)
            if title == "Feature":
                page.locator("[data-testid='stDataFrame']").nth(1).wait_for(timeout=30_000)
            if title == "Lineage":  # the events table is drawn last
                page.locator("[data-testid='stDataFrame']").first.wait_for(timeout=30_000)
                page.get_by_role("button", name="Open this lineage's story").wait_for()
                page.get_by_text(f"{child} · planted ").first.wait_for()  # the picker's label
            seconds[title] = time.perf_counter() - start
            page.screenshot(path=str(shots / f"{title.lower()}.png"), full_page=True)
        browser.close()
    assert all((shots / f"{t.lower()}.png").stat().st_size > 10_000 for _, t, _ in PAGES)
    print("page seconds:", {k: round(v, 2) for k, v in seconds.items()})
    # No console error or warning (Vega's "Infinite extent" is a warning) and no failed
    # request, but Streamlit's own: served under a page's path it asks for
    # /<page>/_stcore/health and host-config, gets a 404 and falls back to /_stcore/.
    failed = [p for p in problems if p[:3].isdigit() and int(p[:3]) >= 400]
    theirs = [p for p in failed if p.endswith(("/_stcore/health", "/_stcore/host-config"))]
    console = [p for p in problems if p.startswith(("error:", "warning:"))]
    assert failed == theirs, failed
    assert [c for c in console if "status of 404" not in c] == [], console
    assert len(console) <= len(theirs), (console, theirs)


def label_planted(db: Path, path: Path) -> Path:
    """A copy of the `db` fixture whose features carry the label "planted i": the true
    feature of `one_of_each(1024)` their decoder points at (cosine >= 0.9)."""
    path.write_bytes(db.read_bytes())
    reader, writer, truth = open_db(path), Writer(path), one_of_each(1024).directions
    for step in reader.checkpoints("planted", "mlp")["step"].to_list():
        sae = reader.sae("planted", "mlp", step)
        found = true_feature_of(sae.W_dec.detach(), truth[step], 0.9)
        labels = {f: [Panel("label", text=f"planted {t}")] for f, t in found.items()}
        writer.write_panels("planted", "mlp", step, labels)
    return path


@pytest.mark.slow
def test_every_page_works_on_a_real_training_run(tmp_path, monkeypatch):
    from lightning.pytorch import seed_everything
    from tiny import TinyNet, dataset, loader, trainer

    from tracker import FeatureTracker

    seed_everything(0)
    tracker = FeatureTracker(
        layers=["body.0", "body.2"],
        probe=dataset(512, seed=1).tensors[0],
        schedule="log:6",
        run="real",
        root=tmp_path,
        sae=SAEConfig(d_sae=32, k=3, steps=100, batch_size=256),
        fit="background",
    )
    trainer(tmp_path, max_steps=200, callbacks=[tracker]).fit(TinyNet(hidden=16), loader(512))
    at = app(tmp_path / "real" / "lineage.duckdb", monkeypatch)
    assert {m.label: m.value for m in at.metric}["Checkpoints"] == "7"
    assert len(at.get("vega_lite_chart")) == 4, "training curves, SAE quality, events, noise"
    for page in ("views/lineage.py", "views/feature.py", "views/compare.py"):
        at.switch_page(page).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        # the Feature page: one chart per unit; Compare: the heatmap and the histogram
        charts = {"views/feature.py": 3, "views/compare.py": 2}.get(page, 1)
        assert len(at.get("vega_lite_chart")) == charts, page
    at.sidebar.selectbox[2].set_value("body.2").run()
    assert not at.exception and at.query_params["layer"] in ("body.2", ["body.2"])


def test_the_live_banner_shows_only_while_a_run_is_being_written(db, tmp_path, monkeypatch):
    at = app(db, monkeypatch)  # analyze() marked the fixture's run finished
    assert not [i for i in at.info if "Run is live" in i.value]
    copy = tmp_path / "writing.duckdb"
    copy.write_bytes(db.read_bytes())
    with duckdb.connect(str(copy)) as con:  # a writer still at work: recent, not finished
        con.execute("UPDATE runs SET finished_at = NULL")
        con.execute("UPDATE checkpoints SET written_at = now()")
    at = app(copy, monkeypatch)
    assert [i for i in at.info if i.value.startswith("Run is live: showing the newest")]


def test_the_overview_queries_agree_with_the_whole_feature_map(db):
    """What the Lineage and Feature pages ask of SQL is what reading every feature row and
    joining in the page gave."""
    reader = open_db(db)
    fmap = reader.feature_map("planted", "mlp")
    spans = reader.lineage_spans("planted", "mlp", 5, 15)
    expected = (
        fmap.filter(pl.col("step").is_between(5, 15))
        .group_by("lineage")
        .agg(
            pl.col("step").min().alias("first"),
            pl.col("step").max().alias("last"),
            pl.len().alias("checkpoints"),
        )
        .sort("lineage")
    )
    assert spans.rows() == expected.rows() and spans.height > 10
    some = spans["lineage"].head(3).to_list()
    assert reader.lineage_spans("planted", "mlp", 5, 15, some).rows() == spans.head(3).rows()
    assert reader.lineage_count("planted", "mlp") == fmap["lineage"].n_unique()
    rows = reader.lineage_rows("planted", "mlp", some, 5, 15)
    assert rows.equals(
        fmap.filter(pl.col("lineage").is_in(some) & pl.col("step").is_between(5, 15))
    )
    events = reader.event_lineages("planted", "mlp", 0.5)
    plain = reader.events("planted", "mlp", None, 0.5)
    assert events.drop("lineages").sort(pl.all()).equals(plain.sort(pl.all()))
    assert {"birth", "death", "split", "merge"} <= set(events["kind"])
    for event in events.iter_rows(named=True):
        ends = [(event["prev_step"], f) for f in event["sources"]]
        ends += [(event["step"], f) for f in event["targets"]]
        found = {r[2] for r in fmap.select("step", "feature", "lineage").rows() if r[:2] in ends}
        assert event["lineages"] == sorted(found), event
