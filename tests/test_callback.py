"""FeatureTracker on a tiny model: files, schedule, resume, no effect on training, errors."""

import copy
import json
import socket
import subprocess
import sys

import pytest
import torch
from lightning.pytorch import seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from safetensors.torch import load_file
from tiny import TinyNet, dataset, loader, trainer
from torch.utils.data import DataLoader, Dataset

from tracker import FeatureTracker
from tracker.lock import LOCK_NAME
from tracker.schedule import Schedule
from tracker.snapshots import RunDir

PROBE = dataset(20, seed=1).tensors[0]


def track(tmp_path, **kwargs):
    args = dict(
        layers=["body.0", "body.2"],
        probe=PROBE,
        schedule=[0, 3, 7],
        run="r",
        root=tmp_path / "runs",
    )
    return FeatureTracker(**{**args, **kwargs})


def files(tracker, layer):
    return sorted(int(p.stem) for p in (tracker.run_dir.activations / layer).glob("*.safetensors"))


def test_files_appear_exactly_at_scheduled_steps_with_shapes_and_dtype(tmp_path):
    seed_everything(0)
    model = TinyNet()
    initial = copy.deepcopy(model).eval()
    tracker = track(tmp_path)
    trainer(tmp_path, max_steps=10, callbacks=[tracker]).fit(model, loader())
    for layer in ("body.0", "body.2"):
        assert files(tracker, layer) == [0, 3, 7, 10], f"{layer}: 0, 3, 7 and the last step"
        x = load_file(str(tracker.run_dir.activation_path(layer, 3)))["activations"]
        assert x.shape == (20, 8) and x.dtype == torch.float16
    # Step 0 is before any update: the initial weights' outputs, in probe order.
    step0 = load_file(str(tracker.run_dir.activation_path("body.0", 0)))["activations"]
    with torch.no_grad():
        expected = initial.body[0](PROBE)
    torch.testing.assert_close(step0.float(), expected, atol=2e-3, rtol=2e-3)
    manifest = tracker.run_dir.read_manifest()
    assert manifest["layers"] == {"body.0": 8, "body.2": 8} and manifest["n_probe"] == 20
    assert manifest["steps"] == [0, 3, 7, 10]
    assert sorted(RunDir(tracker.run_dir.path).written()) == [
        (layer, s) for layer in ("body.0", "body.2") for s in (0, 3, 7, 10)
    ]


def test_log_schedule_float32_and_metrics(tmp_path):
    tracker = track(tmp_path, schedule="log:5", dtype="float32", metrics_every=4)
    trainer(tmp_path, max_steps=40, callbacks=[tracker]).fit(TinyNet(), loader())
    assert files(tracker, "body.0") == Schedule.parse("log:5").resolve(40) == [0, 1, 3, 6, 16, 40]
    x = load_file(str(tracker.run_dir.activation_path("body.0", 40)))["activations"]
    assert x.dtype == torch.float32
    metrics = tracker.run_dir.metrics()
    steps = sorted({row["step"] for row in metrics if row["name"] == "train_loss"})
    assert {1, 3, 6, 16, 40} <= set(steps) and {4, 8, 12} <= set(steps)
    assert all(isinstance(row["value"], float) for row in metrics)


@pytest.mark.parametrize("probe_kind", ["tensor", "dataset", "loader"])
def test_training_is_bit_identical_with_and_without_the_callback(tmp_path, probe_kind):
    probe = {
        "tensor": PROBE,
        "dataset": dataset(20, seed=1),
        "loader": DataLoader(dataset(20, seed=1), batch_size=6),
    }[probe_kind]

    def final_state(callbacks):
        seed_everything(123)
        model = TinyNet(dropout=0.5)
        trainer(tmp_path, max_steps=25, callbacks=callbacks).fit(model, loader())
        return model.state_dict()

    plain = final_state([])
    tracked = final_state([track(tmp_path, probe=probe, schedule="every:2")])
    assert plain.keys() == tracked.keys()
    for name in plain:  # weights and batch-norm running statistics alike
        assert torch.equal(plain[name], tracked[name]), f"{name} differs with the callback"


def test_resume_continues_the_schedule_without_duplicates_or_gaps(tmp_path):
    ckpt_dir = tmp_path / "ckpt"
    seed_everything(0)
    first = track(tmp_path, schedule="every:2")
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=5, save_top_k=-1)
    trainer(tmp_path, max_steps=5, callbacks=[first, checkpoint], enable_checkpointing=True).fit(
        TinyNet(), loader()
    )
    assert files(first, "body.0") == [0, 2, 4, 5]

    second = track(tmp_path, schedule="every:2")
    ckpt = next(ckpt_dir.glob("*.ckpt"))
    trainer(tmp_path, max_steps=10, callbacks=[second]).fit(TinyNet(), loader(), ckpt_path=ckpt)
    assert second.taken == {0, 2, 4, 5, 6, 8, 10}
    written = [step for layer, step in second.run_dir.written() if layer == "body.0"]
    assert written == [0, 2, 4, 5, 6, 8, 10], "each snapshot written once, in order"


def test_dataset_and_dataloader_probes_give_the_same_snapshots(tmp_path):
    probes = {
        "tensor": PROBE,
        "dataset": dataset(20, seed=1),
        "loader": DataLoader(dataset(20, seed=1), batch_size=6),
    }
    for name, probe in probes.items():
        seed_everything(0)
        tracker = track(tmp_path, probe=probe, run=name, schedule=[0], probe_batch_size=7)
        trainer(tmp_path, max_steps=2, callbacks=[tracker]).fit(TinyNet(), loader())
    loaded = {
        name: load_file(str(RunDir(tmp_path / "runs" / name).activation_path("body.0", 2)))
        for name in probes
    }
    assert torch.equal(loaded["tensor"]["activations"], loaded["dataset"]["activations"])
    assert torch.equal(loaded["tensor"]["activations"], loaded["loader"]["activations"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layers": "body.0"}, "layers must be a non-empty list"),
        ({"layers": []}, "layers must be a non-empty list"),
        ({"modules": ["body.0"]}, r"give the layers to watch once: layers=\[...\]"),
        ({"fit": "later"}, "fit must be 'inline', 'background' or 'defer'"),
        ({"queue_size": 0}, "queue_size must be positive"),
        ({"dtype": "int8"}, "dtype must be 'float16' or 'float32', got 'int8'"),
        ({"at_end": "never"}, "at_end must be 'wait' or 'leave', got 'never'"),
        ({"threads": 0}, "threads must be a positive int or None, got 0"),
        ({"run": "a/b"}, "run must be a plain name"),
        ({"select": {"body.0": "flatten"}}, "select must give a selector for each watched"),
        ({"probe": torch.empty(0, 6)}, "probe set is empty"),
        ({"probe": DataLoader(PROBE, shuffle=True)}, "probe DataLoader must read in a fixed"),
        ({"schedule": "log:0"}, "schedule must be"),
    ],
)
def test_bad_arguments_fail_at_construction(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        track(tmp_path, **kwargs)


def test_modules_is_the_old_name_of_layers(tmp_path):
    with pytest.warns(DeprecationWarning, match="modules= is now layers="):
        old = FeatureTracker(modules=["body.2", "body.0"], probe=PROBE, root=tmp_path)
    assert old.layers == ["body.2", "body.0"]
    assert (
        old.layers == FeatureTracker(layers=["body.2", "body.0"], probe=PROBE, root=tmp_path).layers
    )


def _fails_before_training(tmp_path, tracker, message, model=None):
    model = model or TinyNet()
    before = copy.deepcopy(model.state_dict())
    fit = trainer(tmp_path, max_steps=3, callbacks=[tracker])
    with pytest.raises(ValueError, match=message):
        fit.fit(model, loader())
    assert fit.global_step == 0
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), "training must not have started"


def test_unknown_module_fails_before_training_naming_close_matches(tmp_path):
    tracker = track(tmp_path, layers=["body.O"])
    _fails_before_training(
        tmp_path, tracker, r"module 'body.O' is not in .*close matches: 'body.0', 'body.1'"
    )


def test_selector_of_the_wrong_rank_fails_before_training(tmp_path):
    tracker = track(tmp_path, select=lambda t: t.reshape(-1))
    _fails_before_training(tmp_path, tracker, r"the selector must give \[batch=20, d\]")


def test_run_directory_of_another_width_fails_before_training(tmp_path):
    trainer(tmp_path, max_steps=2, callbacks=[track(tmp_path)]).fit(TinyNet(), loader())
    wider = track(tmp_path)
    _fails_before_training(
        tmp_path,
        wider,
        r"holds snapshots of layer 'body.0' with width 8, "
        r"this run's is 16",
        model=TinyNet(hidden=16),
    )


class Growing(Dataset):
    """A probe set that grows after its first snapshot: a bug the tracker must catch."""

    def __init__(self):
        self.n = 20

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.n = 21 if i == 19 and self.n == 20 and getattr(self, "armed", False) else self.n
        return PROBE[i % 20]


def test_probe_set_that_changes_size_is_an_error(tmp_path):
    probe = Growing()
    tracker = track(tmp_path, probe=probe, schedule=[0, 2])
    probe.armed = True  # grows once the dry run and step 0 have read it
    with pytest.raises(ValueError, match="probe set size changed from 20 to 21"):
        trainer(tmp_path, max_steps=4, callbacks=[tracker]).fit(TinyNet(), loader())


def test_state_dict_round_trips(tmp_path):
    tracker = track(tmp_path)
    tracker.taken = {0, 3}
    other = track(tmp_path)
    other.load_state_dict(json.loads(json.dumps(tracker.state_dict())))
    assert other.taken == {0, 3}


def write_lock(tmp_path, pid, host=None):
    lock = tmp_path / "runs" / "r" / LOCK_NAME
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname()}))
    return lock


def test_a_second_writer_of_the_same_run_stops_before_training_naming_the_first(tmp_path):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = write_lock(tmp_path, other.pid)
        model = TinyNet()
        before = copy.deepcopy(model.state_dict())
        fit = trainer(tmp_path, max_steps=3, callbacks=[track(tmp_path)])
        with pytest.raises(RuntimeError, match=f"run 'r' is being written by process {other.pid}"):
            fit.fit(model, loader())
        assert fit.global_step == 0 and not (tmp_path / "runs" / "r" / "activations").exists()
        assert all(torch.equal(t, before[k]) for k, t in model.state_dict().items())
        assert json.loads(lock.read_text())["pid"] == other.pid, "the other's lock is kept"
    finally:
        other.kill()
        other.wait()


def test_a_lock_of_another_host_is_not_taken_over(tmp_path):
    write_lock(tmp_path, 1, host="elsewhere.example")
    fit = trainer(tmp_path, max_steps=3, callbacks=[track(tmp_path)])
    with pytest.raises(RuntimeError, match="process 1 on elsewhere.example: give this run"):
        fit.fit(TinyNet(), loader())


def test_a_stale_lock_is_taken_over_with_a_warning_and_dropped_at_the_end(tmp_path, caplog):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    lock = write_lock(tmp_path, gone.pid)
    tracker = track(tmp_path)
    trainer(tmp_path, max_steps=4, callbacks=[tracker]).fit(TinyNet(), loader())
    assert f"taking over the lock of run 'r' from process {gone.pid}" in caplog.text
    assert files(tracker, "body.0") == [0, 3, 4]
    assert not lock.exists(), "released when training ends"


def test_an_sae_too_small_for_a_layer_fails_before_training_naming_it(tmp_path):
    tracker = track(tmp_path, sae={"expansion": 1, "k": 8}, fit="background")
    assert tracker.sae.k == 8, "a dict of fields is a config"
    _fails_before_training(
        tmp_path,
        tracker,
        r"SAEConfig.k=8 must be smaller than the 8 latents of layer 'body.0' \(width 8\)",
    )


def test_metrics_are_recorded_once_per_step_under_accumulation(tmp_path):
    tracker = track(tmp_path, metrics_every=2, schedule=[0, 4])
    fit = trainer(tmp_path, max_steps=6, callbacks=[tracker], accumulate_grad_batches=2)
    fit.fit(TinyNet(), loader())
    rows = [json.loads(line) for line in (tracker.run_dir.path / "metrics.jsonl").open()]
    keys = [(r["step"], r["name"]) for r in rows]
    assert len(keys) == len(set(keys)) and {s for s, _ in keys} >= {2, 4}


@pytest.mark.parametrize("precision", ["bf16-mixed", "bf16-true"])
def test_snapshots_are_taken_at_the_trainers_precision(tmp_path, precision):
    """The probe runs as training computes: under autocast with bf16-mixed (bf16 values, not
    a float32 forward), and with bf16 weights and inputs converted with bf16-true."""
    seed_everything(0)
    x = torch.randn(16, 6, generator=torch.Generator().manual_seed(1))
    tracker = FeatureTracker(
        layers=["body.0"], probe=x, schedule=[0], root=tmp_path, dtype="float32"
    )
    model = TinyNet()
    reference = copy.deepcopy(model).eval()
    trainer(tmp_path, max_steps=1, callbacks=[tracker], precision=precision).fit(model, loader())
    taken = RunDir(tmp_path / "run").activation_path("body.0", 0)
    snapshot = load_file(str(taken))["activations"]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = reference.body[0](x).float()
    torch.testing.assert_close(snapshot, expected)
    assert not torch.equal(snapshot, reference.body[0](x).detach())  # not the float32 forward
