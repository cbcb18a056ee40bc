"""The induction-heads replay: train the two-layer attention-only model with the tracker on
both attention outputs and the residual stream, measuring the phase change as it trains; then
fit the SAEs and store the measures and each feature's labels (copying, previous-token)."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

import lightning as L
import polars as pl
import torch
from torch.utils.data import DataLoader

from experiments import common
from experiments.induction.analysis import analyse
from experiments.induction.config import LAYERS, InductionConfig
from experiments.induction.data import Windows, probe, repeated_random
from experiments.induction.labels import feature_labels
from experiments.induction.measures import Progress, progress
from experiments.textlm import CharLM, corpus, encode
from tracker.pipeline import fit_run
from tracker.store import Writer


class Measure(L.Callback):
    """The phase-change measures every `every` optimiser steps (and at step 0) on fixed
    repeated random spans and held-out text."""

    def __init__(self, every: int, repeated: torch.Tensor, text: torch.Tensor) -> None:
        self.every, self.repeated, self.text = every, repeated, text
        self.rows: list[Progress] = []

    def _measure(self, trainer: L.Trainer, model: L.LightningModule) -> None:
        step = trainer.global_step
        if step % self.every == 0 and not any(r.step == step for r in self.rows):
            device = model.device
            assert isinstance(model, CharLM)
            self.rows.append(progress(model, step, self.repeated.to(device), self.text.to(device)))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._measure(trainer, pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *_: Any) -> None:
        self._measure(trainer, pl_module)


def metric_rows(rows: list[Progress]) -> pl.DataFrame:
    """The measures as the store's metrics (step, name, value); prefix-matching and
    previous-token scores per head as `prefix/L<layer>H<head>` (`previous/...`) and their
    maximum per layer as `prefix/L<layer>`."""
    out = []
    for r in rows:
        out += [
            (r.step, "repeat_loss", r.repeat_loss),
            (r.step, "first_copy_loss", r.first_loss),
            (r.step, "icl_score", r.icl_score),
        ]
        for kind, scores in (("prefix", r.prefix), ("previous", r.previous)):
            for layer, heads in enumerate(scores):
                out += [(r.step, f"{kind}/L{layer}H{h}", s) for h, s in enumerate(heads)]
                out.append((r.step, f"{kind}/L{layer}", max(heads)))
    return pl.DataFrame(out, schema=["step", "name", "value"], orient="row")


def run(cfg: InductionConfig, progress_bar: bool = True) -> dict[str, Any]:
    """Train with the tracker, fit the SAEs, store the measures and labels; return the
    report `analyse` gives."""
    start = time.perf_counter()
    run_dir = cfg.run_dir
    common.fresh(run_dir)
    train_text, held_out = corpus()
    held = encode(held_out)
    text_probe, second = probe(held, cfg)
    tracker = common.feature_tracker(
        cfg, LAYERS, text_probe, cfg.schedule(), {"batch_size": cfg.sae_batch}, select="tokens"
    )
    span = cfg.seq_len + 1
    n_eval = 32
    tail = held[cfg.probe_sequences * cfg.seq_len :]
    text = torch.stack([tail[i * span : (i + 1) * span] for i in range(n_eval)])
    measure = Measure(cfg.eval_every, repeated_random(n_eval, cfg.seq_len // 2, cfg.seed + 7), text)
    trainer = common.trainer(cfg.steps, [tracker, measure], progress_bar)
    model = CharLM(cfg.lm)
    trainer.fit(model, DataLoader(Windows(encode(train_text), cfg), batch_size=None))
    if cfg.fit == "defer":
        fit_run(run_dir, progress=progress_bar)
    trained = time.perf_counter() - start
    writer = Writer(cfg.db)
    writer.write_replay(cfg.run, "induction", asdict(cfg))
    writer.write_metrics(cfg.run, metric_rows(measure.rows))
    labels = feature_labels(cfg, text_probe.tokens, second, writer)
    writer.write_table("induction_features", cfg.run, labels)
    report = analyse(cfg)
    report["seconds"] = {"total": time.perf_counter() - start, "training_and_sae": trained}
    return report
