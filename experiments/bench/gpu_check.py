"""Does the CUDA path agree with the CPU one, and what does it buy? Ratios measured in one run.

On `--device` (default cuda) against the CPU, with the same seeds and data:
  * one SAE training step at (d 512, d_sae 8192, k 64, batch 4096): CPU time over device time;
  * one fit of planted activations (d 64, 48 true features, the events benchmark's first
    checkpoint): each fit's MMCS against the truth, and the decoder MMCS between the two fits;
  * the events benchmark's first planted run tracked with SAEs fitted on each: confident
    events on each and whether they are the same events.
`--device cpu` runs every comparison CPU against CPU: how this script is checked on a machine
without a GPU (every figure is then 1.00 or equal). Asked for CUDA where there is none, it
says so and exits with status 2.

    python experiments/bench/gpu_check.py [--device cuda] [--repeats 20]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import polars as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from experiments.bench.planted_events import QUIET, STEPS
from experiments.bench.sae_speed import make_sae, our_step
from tracker import SAEConfig, train_sae
from tracker.config import MatchConfig
from tracker.lineage import track
from tracker.planted import PlantedConfig, planted_run
from tracker.synthetic import mean_max_cosine

SHAPE = (512, 8192, 64, 4096)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def step_seconds(devices: tuple[str, str], repeats: int) -> list[float]:
    """Median seconds of one training step on each device, timed in turns (round-robin, so
    machine noise hits both alike)."""
    d, d_sae, k, batch = SHAPE
    x = torch.randn(batch, d, generator=torch.Generator().manual_seed(0)) / d**0.5
    steps = []
    for device in devices:
        sae = make_sae(d, d_sae, k, x).to(device)
        dead = torch.zeros(d_sae, dtype=torch.bool, device=device)
        steps.append(our_step(sae, x.to(device), dead))
    times: list[list[float]] = [[] for _ in devices]
    for i in range(repeats + 3):
        for device, step, spent in zip(devices, steps, times, strict=True):
            sync(device)
            start = time.perf_counter()
            step()
            sync(device)
            if i >= 3:  # the first steps warm caches and kernels up
                spent.append(time.perf_counter() - start)
    return [sorted(spent)[len(spent) // 2] for spent in times]


def confident_events(lineage: object, cfg: MatchConfig) -> set[tuple]:
    events = lineage.events().filter(pl.col("confidence") >= cfg.min_confidence)  # type: ignore[attr-defined]
    return {
        (r["prev_step"], r["step"], r["kind"], tuple(r["sources"]), tuple(r["targets"]))
        for r in events.iter_rows(named=True)
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print(f"no CUDA device here (torch {torch.__version__}): nothing to compare")
        return 2
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU"
    print(
        f"torch {torch.__version__}: {device} ({name}) against CPU, "
        f"{torch.get_num_threads()} CPU threads"
    )

    cpu_step, dev_step = step_seconds(("cpu", device), args.repeats)
    print(
        f"SAE step {SHAPE}: CPU {cpu_step * 1e3:.1f} ms, {device} {dev_step * 1e3:.1f} ms, "
        f"speed-up {cpu_step / dev_step:.2f}x"
    )

    planted = planted_run(PlantedConfig(d=64, n_true=48, steps=STEPS, quiet=(QUIET,), seed=0))
    truth = torch.stack(list(planted.directions[STEPS[0]].values()))
    sae_cfg = SAEConfig(d_sae=96, k=4, steps=600, batch_size=1024, seed=0)
    fits = {}
    for side, where in (("reference", "cpu"), ("device", device)):
        start = time.perf_counter()
        fits[side] = train_sae(
            planted.acts[STEPS[0]], SAEConfig(**{**sae_cfg.to_dict(), "device": where})
        )
        print(
            f"fit on {where}: {time.perf_counter() - start:.2f} s, MMCS to the truth "
            f"{mean_max_cosine(fits[side].W_dec.detach().cpu(), truth):.3f}"
        )
    between = mean_max_cosine(
        fits["reference"].W_dec.detach().cpu(), fits["device"].W_dec.detach().cpu()
    )
    print(f"decoder MMCS between the CPU and {device} fits: {between:.3f}")

    match_cfg = MatchConfig()
    events = {}
    for side, where in (("reference", "cpu"), ("device", device)):
        start = time.perf_counter()
        lineage = track(
            planted.acts, SAEConfig(**{**sae_cfg.to_dict(), "device": where}), match_cfg
        )
        events[side] = confident_events(lineage, match_cfg)
        print(
            f"tracked on {where}: {time.perf_counter() - start:.1f} s, "
            f"{len(events[side])} confident events"
        )
    same = events["reference"] == events["device"]
    differ = len(events["reference"] ^ events["device"])
    print(f"confident events the same on both: {'yes' if same else f'no ({differ} differ)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
