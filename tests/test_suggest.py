"""`tracker suggest`: the widest SAE a second seed reproduces, and a warning when none is."""

import logging
from dataclasses import replace

import torch
from tiny import one_of_each

from tracker.cli import main
from tracker.config import MatchConfig, SAEConfig
from tracker.pipeline import Analyzer
from tracker.store import Writer
from tracker.suggest import REPRODUCIBLE, suggest, sweep_sizes

SAE = SAEConfig(steps=200, batch_size=1024)


def test_the_sweep_covers_widths_and_sparsities():
    assert sweep_sizes(8) == [(8, 4), (16, 4), (32, 4), (32, 16), (64, 4), (64, 16)]


def test_planted_features_are_reproducible_and_noise_is_not():
    planted = one_of_each(2048).acts[0]  # 20 true features in d = 32
    table = suggest(planted, sizes=[(24, 2), (128, 16)], sae=SAE)
    assert table.columns == ["d_sae", "k", "fvu", "l0", "live", "stable_share", "recommended"]
    small, wide = table.rows(named=True)
    assert small["stable_share"] >= REPRODUCIBLE and small["recommended"]
    assert wide["stable_share"] < small["stable_share"] and not wide["recommended"]
    noise = torch.randn(2048, 32, generator=torch.Generator().manual_seed(0))
    assert not suggest(noise, sizes=[(128, 16)], sae=SAE)["recommended"].any()


def test_an_unreproducible_dictionary_warns_once(tmp_path, caplog):
    noise = torch.randn(1024, 16, generator=torch.Generator().manual_seed(0))
    analyzer = Analyzer(
        Writer(tmp_path / "n.duckdb"), "r", "mlp", replace(SAE, d_sae=128, k=16), MatchConfig()
    )
    with caplog.at_level(logging.WARNING, logger="tracker.pipeline"):
        analyzer.add(0, noise)
        analyzer.add(1, noise * 1.1)
    warnings = [r.getMessage() for r in caplog.records if "not reproducible" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith("layer mlp step 0: a second seed finds")
    assert "`tracker suggest`" in warnings[0]


def test_the_command_prints_the_table_and_the_choice(tmp_path, capsys):
    torch.save(one_of_each(1024).acts[0], tmp_path / "5.pt")
    assert main(["suggest", str(tmp_path), "--steps", "100"]) == 0
    out = capsys.readouterr().out
    assert "d_sae    k     FVU     L0  live  stable share" in out
    assert out.count("\n") >= 10 and "5.pt: 1024 rows of width 32" in out
