"""Two runs side by side: lineages paired on activation correlation over a shared probe set."""

import os
import shutil
from pathlib import Path

import polars as pl
import pytest
import torch
from tiny import one_of_each

from tracker import SAEConfig, train_sae
from tracker.across import Snapshot, pairs_at
from tracker.config import MatchConfig
from tracker.pipeline import analyze
from tracker.reader import open_db
from tracker.snapshots import RunDir
from tracker.store import Writer

SAE = dict(d_sae=40, k=4, steps=300, batch_size=512)


def run_dir(root, name, acts, seed):
    """A run directory holding `acts` ({step: [n, d]}) and its lineage, fitted with `seed`."""
    run = RunDir(root / name)
    for step, x in acts.items():
        run.write_activations("mlp", step, x, "float32")
    analyze(run.activations, run.path / "lineage.duckdb", name, sae=SAEConfig(seed=seed, **SAE))
    return run.path / "lineage.duckdb"


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    root = tmp_path_factory.mktemp("across")
    acts = one_of_each(1024).acts
    return acts, run_dir(root, "a", acts, seed=0), run_dir(root, "b", acts, seed=7)


def test_two_fits_of_one_model_grow_the_same_lineages(two):
    acts, db_a, db_b = two
    shared = open_db(db_a).shared_lineages("a", "mlp", db_b, "b", "mlp")
    lineages_a = open_db(db_a).feature_map("a", "mlp")["lineage"].unique()
    assert set(shared["lineage_a"]) <= set(lineages_a)
    # Same activations, another SAE seed: the lineages of the 20 true features (not every
    # spare latent of a dictionary twice their size) have a partner in B, one to one at every
    # step, paired over the whole time both had them, at high correlation.
    assert shared["lineage_a"].n_unique() >= 20
    for col in ("lineage_a", "lineage_b"):
        assert not shared.select("shared_from", col).is_duplicated().any(), "one to one"
    assert (shared["mean_corr"] >= 0.7).all(), "no pair below tau_match"
    whole = shared.filter(shared["steps"] == len(acts))
    assert len(whole) >= 5 and whole["mean_corr"].median() > 0.95
    assert whole["shared_from"].to_list() == [0] * len(whole), "longest stories first"
    assert (shared["shared_from"] >= shared[["first_a", "first_b"]].max_horizontal()).all()


def test_runs_are_compared_on_the_probe_inputs_they_describe(two, tmp_path):
    # Copies of both run directories (snapshots and lineage), so the shared ones stay as made.
    db_a, db_b = (
        Path(shutil.copytree(db.parent, tmp_path / db.parent.name)) / db.name for db in two[1:]
    )
    rows = pl.DataFrame(
        {"probe_index": range(1024), "label": ["p"] * 1024, "payload": ["{}"] * 1024}
    )
    for db, run in ((db_a, "a"), (db_b, "b")):  # two run names, one probe set
        Writer(db).write_probe(run, rows)
    assert len(open_db(db_a).shared_lineages("a", "mlp", db_b, "b", "mlp")) >= 20
    Writer(db_b).write_probe("b", rows.with_columns(pl.lit('{"x": 1}').alias("payload")))
    with pytest.raises(ValueError, match="runs 'a' and 'b' describe different probe inputs"):
        open_db(db_a).shared_lineages("a", "mlp", db_b, "b", "mlp")


def test_runs_on_different_probe_sets_are_refused(two, tmp_path):
    acts, db_a, _ = two
    shorter = {0: acts[0][:512]}
    db_c = run_dir(tmp_path, "c", shorter, seed=0)
    with pytest.raises(ValueError, match=r"probe sets differ \(1024 and 512 rows\)"):
        open_db(db_a).shared_lineages("a", "mlp", db_c, "c", "mlp")


def test_without_snapshots_there_is_nothing_to_correlate(two, tmp_path):
    acts, db_a, _ = two
    db_d = run_dir(tmp_path, "d", {0: acts[0]}, seed=1)
    for path in (tmp_path / "d" / "activations").rglob("*.safetensors"):
        path.unlink()
    with pytest.raises(FileNotFoundError, match="no snapshot of run 'd' layer 'mlp' step 0"):
        open_db(db_a).shared_lineages("a", "mlp", db_d, "d", "mlp")
    with pytest.raises(ValueError, match="no checkpoint step in common"):
        other = {1: acts[0]}
        db_e = run_dir(tmp_path, "e", other, seed=0)
        open_db(db_a).shared_lineages("a", "mlp", db_e, "e", "mlp")


def test_the_pairs_need_correlation_above_chance():
    torch.manual_seed(0)
    codes = torch.rand(2048, 12) * (torch.rand(2048, 12) < 0.15)
    x = codes @ torch.randn(12, 8)
    sae = train_sae(x, SAEConfig(d_sae=16, k=2, steps=200, batch_size=512))
    feats = pl.DataFrame({"feature": list(range(16)), "lineage": list(range(100, 116))})
    live = feats.filter(sae.live(5e-3, 0.0).numpy())
    same = pairs_at(5, Snapshot(sae, live, x), Snapshot(sae, live, x), MatchConfig())
    assert same["lineage_a"].to_list() == same["lineage_b"].to_list() == live["lineage"].to_list()
    assert (same["corr"] > 0.999).all() and (same["step"] == 5).all()
    unrelated = torch.rand(2048, 12) * (torch.rand(2048, 12) < 0.15) @ torch.randn(12, 8)
    other = pairs_at(5, Snapshot(sae, live, x), Snapshot(sae, live, unrelated), MatchConfig())
    assert other.is_empty(), "other inputs: no feature correlates with another"


def test_the_two_runs_page_pairs_the_open_runs(two, monkeypatch):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from tracker.reader import VIEWER_DBS_ENV

    app = str(Path(__file__).parent.parent / "app" / "main.py")
    _, db_a, db_b = two
    monkeypatch.setenv(VIEWER_DBS_ENV, os.pathsep.join([str(db_a), str(db_b)]))
    at = AppTest.from_file(app, default_timeout=60)
    at.run()
    at.switch_page("views/two_runs.py").run()
    assert not at.exception, [e.value for e in at.exception]
    shared = open_db(db_a).shared_lineages("a", "mlp", db_b, "b", "mlp")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Pairs of lineages"] == str(len(shared))
    assert metrics["A's lineages with a partner"].startswith(f"{shared['lineage_a'].n_unique()} / ")
    assert at.query_params["other"] in (f"{db_b} | b", [f"{db_b} | b"])
    assert len(at.get("vega_lite_chart")) == 1 and "longest shared stories" in at.caption[0].value

    monkeypatch.setenv(VIEWER_DBS_ENV, str(db_a))
    at = AppTest.from_file(app, default_timeout=60)
    at.run()
    at.switch_page("views/two_runs.py").run()
    assert "Only one run is open" in at.info[0].value
