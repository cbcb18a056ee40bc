"""Background fitting's share of the cores, and stopping the fit under way (tracker.pace)."""

import threading

import pytest
from lightning.pytorch import seed_everything
from tiny import TinyNet, dataset, loader, trainer

import tracker.pace
from tracker import FeatureTracker, MatchConfig, SAEConfig
from tracker.fitter import SnapshotFitter
from tracker.pace import Pacer, Stopped, pause
from tracker.reader import open_db
from tracker.snapshots import RunDir


class Clock:
    """perf_counter of a clock the test moves, and a pause that moves it."""

    def __init__(self) -> None:
        self.now, self.slept = 0.0, []

    def perf_counter(self) -> float:
        return self.now

    def wait(self, seconds: float) -> None:  # stands in for Pacer._wait
        self.slept.append(seconds)
        self.now += seconds


@pytest.mark.parametrize(("share", "sleep"), [(1.0, []), (0.5, [2.0]), (0.25, [6.0])])
def test_the_pacer_sleeps_what_its_share_leaves(monkeypatch, share, sleep):
    clock = Clock()
    monkeypatch.setattr(tracker.pace, "time", clock)
    monkeypatch.setattr(Pacer, "_wait", clock.wait)
    pacer = Pacer(share)
    clock.now = 2.0  # two seconds of work since the pacer started
    pacer.pause()
    assert clock.slept == sleep
    clock.now += 1.0  # the clock restarted after the sleep: one second of work
    pacer.pause()
    assert clock.slept[len(sleep) :] == ([] if share == 1.0 else [1.0 * (1 - share) / share])


def test_pause_obeys_only_the_thread_that_installed_a_pacer():
    pacer = Pacer(1.0)
    pacer.stop()
    pause()  # this thread runs unpaced: a no-op
    seen = []

    def worker():
        with tracker.pace.paced(pacer):
            try:
                pause()
            except Stopped:
                seen.append("stopped")
        pause()  # uninstalled on the way out
        seen.append("after")

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(timeout=60)
    assert seen == ["stopped", "after"]


@pytest.mark.parametrize("how", ["release", "stop"])
def test_a_long_pause_ends_when_the_pacer_is_released_or_stopped(how):
    pacer, seen = Pacer(1e-6), []  # a millionth of the time: its pause would last for days
    entered = threading.Event()

    def worker():
        with tracker.pace.paced(pacer):
            pacer._since -= 1.0  # one second of work to pay for
            entered.set()
            try:
                pause()
                seen.append("went on")
            except Stopped:
                seen.append("stopped")

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    assert entered.wait(timeout=60)
    getattr(pacer, how)()
    thread.join(timeout=60)
    assert seen == ["went on" if how == "release" else "stopped"]
    assert pacer.share == (1.0 if how == "release" else 1e-6)


def test_share_is_checked_at_construction(tmp_path):
    for bad in (0, 1.5, -0.1, True, "half"):
        with pytest.raises(ValueError, match=r"share must be a number in \(0, 1\], got "):
            FeatureTracker(layers=["body.0"], probe=dataset(8).tensors[0], root=tmp_path, share=bad)


def test_an_interrupted_background_fit_stops_at_its_next_sae_step(tmp_path, monkeypatch):
    seed_everything(0)
    deferred = FeatureTracker(
        layers=["body.0"],
        probe=dataset(128, seed=1).tensors[0],
        schedule=[0, 4],
        run="r",
        root=tmp_path,
        fit="defer",
    )
    trainer(tmp_path, max_steps=4, callbacks=[deferred]).fit(TinyNet(), loader())
    endless = SAEConfig(d_sae=16, k=2, steps=10**9, batch_size=64)  # hours, unless stopped
    fitter = SnapshotFitter(
        RunDir(tmp_path / "r"), "r", ["body.0"], endless, MatchConfig(), background=True
    )
    started, real_pause = threading.Event(), Pacer.pause

    def first_step(self):
        started.set()
        real_pause(self)

    monkeypatch.setattr(Pacer, "pause", first_step)
    fitter.submit(0)
    assert started.wait(timeout=60), "the fit never reached its first SAE step"
    fitter.close(wait=False)
    assert fitter._finished.wait(timeout=60), "the worker kept fitting after close"
    assert fitter.missing() == [0] and fitter.failures == 0
    reader = open_db(tmp_path / "r" / "lineage.duckdb")
    assert reader.checkpoints("r").is_empty() and reader.failures("r").is_empty()


def test_a_background_run_at_a_small_share_writes_the_same_lineage(tmp_path):
    """Pacing sleeps between steps and changes no number: tables equal full speed's."""
    tables = []
    for share in (1.0, 0.3):
        seed_everything(0)
        watcher = FeatureTracker(
            layers=["body.0"],
            probe=dataset(128, seed=1).tensors[0],
            schedule=[0, 4, 8],
            run=f"s{share}",
            root=tmp_path,
            sae=SAEConfig(d_sae=16, k=2, steps=60, batch_size=64),
            fit="background",
            threads=1,
            share=share,
        )
        trainer(tmp_path, max_steps=12, callbacks=[watcher]).fit(TinyNet(), loader())
        reader = open_db(tmp_path / f"s{share}" / "lineage.duckdb")
        assert reader.runs()["finished_at"][0] is not None, "the callback marks it finished"
        tables.append(
            (
                reader.sql("SELECT step, feature, lineage, frequency FROM features ORDER BY ALL"),
                reader.sql("SELECT step, kind, sources, targets FROM events ORDER BY ALL"),
            )
        )
    assert tables[0][0].height > 0
    assert tables[0][0].equals(tables[1][0]) and tables[0][1].equals(tables[1][1])
