"""`tracker capture` over a finished run: time per checkpoint over the probe forward it must do.

Saves 20 checkpoints of a 2-layer GPT-2-style language model (d_model 256, 4 heads,
vocabulary 512, state_dicts of ~8 MB), then captures the residual stream after each block
(last token) on 256 probe sequences of 128 tokens. The ratio divides the capture's time per
checkpoint (loading the file, building the model, the probe pass, writing the snapshots) by
one probe pass of an already-built model, measured in the same run.

    python experiments/bench/capture_speed.py [--checkpoints 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from tracker.capture import capture, resolve_modules
from tracker.posthoc import capture_checkpoints
from tracker.probe import ProbeSet

CONFIG = GPT2Config(
    n_layer=2, n_embd=256, n_head=4, vocab_size=512, n_positions=128, bos_token_id=0, eos_token_id=0
)
MODULES = ["transformer.h.0", "transformer.h.1"]


def build() -> GPT2LMHeadModel:
    return GPT2LMHeadModel(CONFIG)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    probe = torch.randint(0, CONFIG.vocab_size, (256, 128))
    with tempfile.TemporaryDirectory() as root:
        folder = Path(root) / "ckpts"
        folder.mkdir()
        model = build()
        for i in range(args.checkpoints):
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(0.01 * torch.randn_like(p))
            torch.save(model.state_dict(), folder / f"step{100 * (i + 1)}.pt")
        probe_set = ProbeSet(probe, 256)
        hooks = resolve_modules(model, MODULES)
        selectors = dict.fromkeys(MODULES, -1)

        def forward_once() -> float:
            start = time.perf_counter()
            capture(model, hooks, selectors, probe_set.batches(), lambda b: model(b))
            return time.perf_counter() - start

        forward_once()  # warm-up
        forwards, captures = [], []
        for r in range(args.repeats):
            forwards += [forward_once() for _ in range(3)]
            start = time.perf_counter()
            capture_checkpoints(
                folder, build, MODULES, probe, f"run{r}", root, select=-1, probe_batch_size=256
            )
            captures.append((time.perf_counter() - start) / args.checkpoints)
    forward, per_checkpoint = statistics.median(forwards), statistics.median(captures)
    print(
        f"capture of {args.checkpoints} checkpoints (2-layer GPT-2, d 256, probe 256 x 128 "
        f"tokens, {torch.get_num_threads()} threads), median of {args.repeats} runs:"
    )
    print(f"  probe forward pass:        {forward * 1000:7.1f} ms")
    print(f"  capture per checkpoint:    {per_checkpoint * 1000:7.1f} ms")
    print(f"  ratio:                     {per_checkpoint / forward:7.2f}x (target <= 1.2)")


if __name__ == "__main__":
    main()
