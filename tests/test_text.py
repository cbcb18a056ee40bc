"""Text probes: every token a row, each row shown as its context with the token marked."""

import json
from pathlib import Path

import pytest
import torch
from lightning.pytorch import LightningModule, seed_everything
from streamlit.testing.v1 import AppTest
from tiny import trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tracker import FeatureTracker
from tracker.capture import select
from tracker.cli import main
from tracker.reader import VIEWER_DBS_ENV, open_db
from tracker.text import CharTokenizer, text_probe

TEXT = "the cat sat on the mat. the dog sat on the log. " * 4
VOCAB = "".join(sorted(set(TEXT)))
APP = str(Path(__file__).resolve().parent.parent / "app" / "main.py")


class CharModel(LightningModule):
    """Embedding, one causal-free mixing layer, a next-character head: [batch, seq] ids in."""

    def __init__(self, vocab: int = len(VOCAB), d: int = 12) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.mix = nn.Sequential(nn.Linear(d, d), nn.ReLU())
        self.head = nn.Linear(d, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.mix(self.embed(ids)))

    def training_step(self, batch, batch_idx):
        (ids,) = batch
        logits = self(ids[:, :-1])
        return nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:])

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def test_sequences_and_what_each_row_is():
    probe = text_probe(TEXT, CharTokenizer(VOCAB), seq_len=16, n=5)
    assert probe.tokens.shape == (5, 16) and probe.tokens.dtype == torch.long
    rows = probe.rows("tokens")
    assert [r["probe_index"] for r in rows] == list(range(80))
    # row 3 is sequence 0, token 3: "the cat..." with the space after "the" marked
    assert rows[3]["label"] == "the⟦ ⟧cat sat on t"
    assert json.loads(rows[20]["payload"]) == {"sequence": 1, "position": 4}
    last = probe.rows(-1)
    assert len(last) == 5 and last[0]["label"].endswith("⟦" + TEXT[15] + "⟧")
    assert probe.rows("flatten")[0]["label"] == TEXT[:16]


def test_the_tokens_selector_makes_every_position_a_row():
    out = torch.arange(2 * 3 * 4.0).reshape(2, 3, 4)
    rows = select(out, "tokens", "m")
    assert rows.shape == (6, 4) and torch.equal(rows[4], out[1, 1])
    with pytest.raises(
        ValueError, match=r"a token selector \('tokens'\) needs a \[batch, seq, d\]"
    ):
        select(torch.zeros(2, 4), "tokens", "m")


def test_a_character_the_tokenizer_does_not_know_is_named():
    with pytest.raises(
        ValueError, match=r"a character the tokenizer does not know: 'Z' \(first at"
    ):
        text_probe("the Zoo", CharTokenizer(VOCAB), seq_len=4)
    with pytest.raises(ValueError, match="gives 7 tokens: too few for 1 sequences of 8"):
        text_probe("the cat", CharTokenizer(VOCAB), seq_len=8)


def test_a_run_on_a_text_probe_shows_contexts_in_the_viewer(tmp_path, monkeypatch):
    seed_everything(0)
    probe = text_probe(TEXT, CharTokenizer(VOCAB), seq_len=16, n=6)
    tracker = FeatureTracker(
        layers=["mix"],
        probe=probe,
        select="tokens",
        schedule=[0, 10, 20],
        run="chars",
        root=tmp_path,
        fit="inline",
        sae={"d_sae": 24, "k": 2, "steps": 60},
    )
    ids = text_probe(TEXT, CharTokenizer(VOCAB), seq_len=16).tokens
    data = DataLoader(TensorDataset(ids), batch_size=4, shuffle=True)
    trainer(tmp_path, max_steps=20, callbacks=[tracker]).fit(CharModel(), data)
    db = open_db(tmp_path / "chars" / "lineage.duckdb")
    assert db.checkpoints("chars", "mix")["n_probe"].to_list() == [96, 96, 96]  # 6 x 16 tokens
    rows = db.probe("chars")
    assert rows.height == 96 and rows["label"][3] == "the⟦ ⟧cat sat on t"
    feature = db.features("chars", "mix", 20).row(0, named=True)
    monkeypatch.setenv(VIEWER_DBS_ENV, str(tmp_path / "chars" / "lineage.duckdb"))
    app = AppTest.from_file(APP, default_timeout=30)
    app.query_params["lineage"] = str(feature["lineage"])
    app.run()
    app.switch_page("views/feature.py").run()
    assert not app.exception, [e.value for e in app.exception]
    shown = app.dataframe[-1].value
    assert "label" in shown.columns and shown["label"].str.contains("⟦").all()


def test_tracker_capture_takes_a_text_file(tmp_path):
    torch.manual_seed(0)
    model = CharModel()
    (tmp_path / "w").mkdir()
    torch.save(model.state_dict(), tmp_path / "w" / "step5.pt")
    (tmp_path / "text.txt").write_text(TEXT)
    (tmp_path / "vocab.txt").write_text(VOCAB)
    argv = [
        "capture", str(tmp_path / "w"), "--model", "test_text:CharModel", "--layers", "mix",
        "--text", str(tmp_path / "text.txt"), "--chars", str(tmp_path / "vocab.txt"),
        "--seq-len", "8", "--sequences", "3", "--select", "tokens", "--run", "t",
        "--root", str(tmp_path), "--k", "2",
    ]  # fmt: skip
    assert main(argv) == 0
    rows = [json.loads(line) for line in (tmp_path / "t" / "probe.jsonl").read_text().splitlines()]
    assert len(rows) == 24 and rows[0]["label"] == "⟦t⟧he cat "


def test_token_rows_of_any_probe_say_which_input_and_position(tmp_path):
    ids = text_probe(TEXT, CharTokenizer(VOCAB), seq_len=8, n=3).tokens  # a plain tensor
    tracker = FeatureTracker(
        layers=["mix"], probe=ids, select="tokens", schedule=[0], root=tmp_path
    )
    trainer(tmp_path, max_steps=1, callbacks=[tracker]).fit(
        CharModel(), DataLoader(TensorDataset(ids), batch_size=3)
    )
    rows = [
        json.loads(line) for line in (tmp_path / "run" / "probe.jsonl").read_text().splitlines()
    ]
    assert len(rows) == 24 and rows[11]["label"] == "input 1, position 3"
    assert json.loads(rows[11]["payload"]) == {"input": 1, "position": 3}
