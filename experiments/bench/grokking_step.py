"""The grokking model's training step: the `=`-only path over the textbook forward, in one run.

One full-batch AdamW step (forward, float64 cross-entropy, backward, update) on the 3 830
training pairs of p = 113 with `Transformer.forward` (keys, values and their output per token,
attention, MLP and unembedding at `=` only) and with `forward_sequence` (all three positions,
as a plain transformer computes them). Both start from the same weights; steps alternate and
the ratio of medians is printed, with each over one dense [3830, 128] x [128, 512] matmul (the
MLP's input projection), the floor of any forward.

    python experiments/bench/grokking_step.py [--steps 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere
from experiments.grokking.config import GrokConfig
from experiments.grokking.model import Transformer, split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    cfg = GrokConfig()
    pairs, train = split(cfg)
    x, y = pairs[train], pairs[train].sum(1) % cfg.p
    models = {"fast": Transformer(cfg), "textbook": Transformer(cfg)}
    optims = {name: m.configure_optimizers()["optimizer"] for name, m in models.items()}
    forwards = {"fast": models["fast"].forward, "textbook": models["textbook"].forward_sequence}
    times: dict[str, list[float]] = {name: [] for name in models}
    for i in range(args.steps + 3):
        for name in models:
            start = time.perf_counter()
            loss = F.cross_entropy(forwards[name](x).double(), y)
            optims[name].zero_grad()
            loss.backward()
            optims[name].step()
            if i >= 3:  # warm-up steps are not timed
                times[name].append(time.perf_counter() - start)
    a, w = torch.randn(len(x), cfg.d_model), torch.randn(cfg.d_model, cfg.d_mlp)
    matmul = []
    for _ in range(args.steps):
        start = time.perf_counter()
        a @ w
        matmul.append(time.perf_counter() - start)
    fast, textbook = statistics.median(times["fast"]), statistics.median(times["textbook"])
    floor = statistics.median(matmul)
    print(f"threads {torch.get_num_threads()}, {args.steps} steps each, medians")
    print(f"  fast step      {fast * 1e3:7.1f} ms = {fast / floor:6.1f} x one MLP matmul")
    print(f"  textbook step  {textbook * 1e3:7.1f} ms = {textbook / floor:6.1f} x one MLP matmul")
    print(f"  textbook / fast: {textbook / fast:.2f}")


if __name__ == "__main__":
    main()
