"""`tracker capture`: a finished run's checkpoints give the run directory the callback gives."""

import json

import pytest
import torch
from lightning.pytorch import seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from tiny import TinyNet, loader, trainer

from tracker import FeatureTracker
from tracker.activations import load_activation_file
from tracker.cli import build_parser, main
from tracker.pipeline import fit_run
from tracker.posthoc import capture_checkpoints, load_probe
from tracker.reader import open_db
from tracker.saved import find_checkpoints

X = torch.randn(40, 6, generator=torch.Generator().manual_seed(3))
STEPS = [0, 8, 16, 24]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run with the callback attached and Lightning checkpoints every 8 steps."""
    root = tmp_path_factory.mktemp("finished")
    seed_everything(0)
    tracker = FeatureTracker(layers=["body.2"], probe=X, schedule=STEPS, run="live", root=root)
    saver = ModelCheckpoint(
        dirpath=root / "ckpts", every_n_train_steps=8, save_top_k=-1, filename="{step}"
    )
    trainer(root, max_steps=24, callbacks=[tracker, saver], enable_checkpointing=True).fit(
        TinyNet(), loader()
    )
    return root


def test_captured_checkpoints_equal_the_callbacks_snapshots(trained, tmp_path):
    done = capture_checkpoints(trained / "ckpts", TinyNet, ["body.2"], X, "after", tmp_path)
    assert done.captured == [8, 16, 24] and done.skipped == []
    for step in done.captured:
        live = load_activation_file(trained / "live/activations/body.2" / f"{step}.safetensors")
        after = load_activation_file(done.run_dir.activation_path("body.2", step))
        torch.testing.assert_close(after, live)  # same weights, same probe, same precision
    manifest = done.run_dir.read_manifest()
    assert manifest["layers"] == {"body.2": 8} and manifest["steps"] == [8, 16, 24]
    # a re-run captures nothing again
    again = capture_checkpoints(trained / "ckpts", TinyNet, ["body.2"], X, "after", tmp_path)
    assert again.captured == [] and again.skipped == [8, 16, 24]


def test_state_dict_files_then_tracker_fit_give_a_lineage(tmp_path):
    torch.manual_seed(0)
    model = TinyNet()
    folder = tmp_path / "weights"
    folder.mkdir()
    for step in (100, 200, 300):
        with torch.no_grad():
            model.body[0].weight.mul_(1.5)
        torch.save(model.state_dict(), folder / f"model_step{step}.pt")
    torch.save(X, tmp_path / "probe.pt")
    argv = [
        "capture", str(folder), "--model", "tiny:TinyNet", "--layers", "body.0",
        "--probe", str(tmp_path / "probe.pt"), "--run", "sd", "--root", str(tmp_path),
        "--d-sae", "16", "--k", "2", "--steps", "50",
    ]  # fmt: skip
    assert main(argv) == 0
    db = open_db(fit_run(tmp_path / "sd"))
    assert db.checkpoints("sd", "body.0")["step"].to_list() == [100, 200, 300]
    assert set(db.saes("sd", "body.0")["d_sae"]) == {16}  # the capture's SAE options kept


def test_capture_takes_layers_under_their_old_flag_too():
    common = ["capture", "ckpts", "--probe", "p.pt", "--run", "r"]
    for flag in ("--layers", "--modules"):
        args = build_parser().parse_args([*common, flag, "blocks.0", "blocks.1"])
        assert args.layers == ["blocks.0", "blocks.1"]


def test_transformers_model_directories_are_captured_with_their_losses(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(
        n_layer=2,
        n_embd=16,
        n_head=2,
        vocab_size=50,
        n_positions=16,
        bos_token_id=0,
        eos_token_id=0,
    )
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config)
    for step in (10, 20):
        folder = tmp_path / "hf" / f"checkpoint-{step}"
        model.save_pretrained(folder)
        history = [{"step": s, "loss": 4.0 - s / 10} for s in range(5, step + 1, 5)]
        (folder / "trainer_state.json").write_text(
            json.dumps({"global_step": step, "log_history": history})
        )
    tokens = torch.randint(0, 50, (12, 8), generator=torch.Generator().manual_seed(0))
    done = capture_checkpoints(
        tmp_path / "hf", None, ["transformer.h.1", "transformer.h.0.mlp"], tokens, "lm", tmp_path,
        select=-1,
    )  # fmt: skip
    assert done.captured == [10, 20]
    x = load_activation_file(done.run_dir.activation_path("transformer.h.1", 20))
    assert x.shape == (12, 16)  # a block's tuple output, last token
    metrics = done.run_dir.metrics()
    assert [(m["step"], m["value"]) for m in metrics] == [(5, 3.5), (10, 3.0), (15, 2.5), (20, 2.0)]


def test_steps_come_from_names_or_the_checkpoint(tmp_path):
    for name in ("step=30.pt", "run-step_10.safetensors", "checkpoint-20.bin", "40.pth"):
        (tmp_path / name).write_bytes(b"")
    assert [c.step for c in find_checkpoints(tmp_path)] == [10, 20, 30, 40]
    (tmp_path / "final.pt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"cannot read the step of .*final.pt: name it step<N>"):
        find_checkpoints(tmp_path)


def test_a_probe_file_is_read_without_pickles(tmp_path):
    torch.save(X, tmp_path / "p.pt")
    torch.testing.assert_close(load_probe(tmp_path / "p.pt"), X)
    with pytest.raises(FileNotFoundError, match="probe file .*none.pt does not exist"):
        load_probe(tmp_path / "none.pt")
