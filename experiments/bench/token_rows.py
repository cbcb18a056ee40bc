"""A researcher's transformer, every token a row: is the suggested SAE size reproducible?

Trains a two-layer character-level transformer (d_model 128, MLPs) on the Python standard
library's source with `FeatureTracker(select="tokens")` watching the second block's MLP on
256 held-out sequences of 128 characters (32 768 rows), then runs `tracker suggest` on the
last snapshot, as a user would, and fits the default SAE size the same way for comparison.

    python experiments/bench/token_rows.py [--steps 1500] [--sequences 256]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from experiments.common import trainer
from experiments.textlm import CharLM, LMConfig, Windows, corpus, encode, probe
from tracker import FeatureTracker, SAEConfig
from tracker.activations import load_activation_file
from tracker.cli import main as tracker_cli
from tracker.suggest import suggest

LAYER = "blocks.1.mlp"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--sequences", type=int, default=256)
    args = parser.parse_args()
    cfg = LMConfig(d_model=128)
    train_text, probe_text = corpus()
    probe_set = probe(probe_text, cfg.seq_len, args.sequences)
    with tempfile.TemporaryDirectory() as root:
        tracker = FeatureTracker(
            layers=[LAYER],
            probe=probe_set,
            schedule=[args.steps],
            run="lm",
            root=root,
            select="tokens",
        )
        start = time.perf_counter()
        data = DataLoader(Windows(encode(train_text), cfg), batch_size=None)
        trainer(args.steps, [tracker], progress=False).fit(CharLM(cfg), data)
        trained = time.perf_counter() - start
        run_dir = Path(root) / "lm"
        file = run_dir / "activations" / LAYER / f"{args.steps}.safetensors"
        acts = load_activation_file(file).float()
        print(
            f"2-layer char transformer, {args.steps} steps in {trained:.0f} s; {LAYER} "
            f"on {args.sequences} sequences x {cfg.seq_len} tokens = {acts.shape[0]} rows"
        )
        start = time.perf_counter()
        tracker_cli(["suggest", str(run_dir)])
        default = SAEConfig()
        table = suggest(acts, sizes=[(default.latents(acts.shape[1]), default.k)])
        row = table.row(0, named=True)
        print(
            f"default SAEConfig ({row['d_sae']} latents, k {row['k']}): "
            f"FVU {row['fvu']:.3f}, stable share {row['stable_share']:.2f}"
        )
        print(f"suggest + the default size: {time.perf_counter() - start:.0f} s on 2 CPU cores")


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
