"""SAE training speed on this machine, as ratios measured in one run.

For each shape it times, with the same threads and data:
  * one dense encoder matmul [batch, d] @ [d, d_sae] (the unit of every ratio);
  * a plain dense PyTorch TopK step (dense decode, dense backward): the usual implementation;
  * our TopK step (`tracker.fit.train_step`, the step `train_sae` runs), with no
    dead latents and with a quarter of latents dead (AuxK active);
  * the pass over all samples that ends every fit (FVU, L0, per-latent statistics) on 16 384
    samples: from the k active latents per row, as a TopK fit takes it, and from the dense
    [n, d_sae] latents, as an architecture without a fixed k does.
Prints steps/s, samples/s and step / matmul ratios (median of round-robin repeats), then the
fit's fixed cost (its final pass) in steps.

    python experiments/bench/sae_speed.py [--repeats 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from tracker import SAEConfig
from tracker.fit import _measure, make_optimiser, train_step
from tracker.sae import TopKSAE

SHAPES = [(128, 2048, 32, 4096), (512, 8192, 64, 4096)]
FIT_SAMPLES = 16_384


def timed(
    variants: dict[str, Callable[[], object]], repeats: int, clock: Callable[[], float]
) -> dict[str, float]:
    """Median seconds of each variant on `clock`. Variants run round-robin, so a noisy
    neighbour slows them all alike and the ratios stay fair; the median shrugs off single
    outliers."""
    for fn in variants.values():
        fn(), fn()  # warm-up: allocator, thread pool, first-call dispatch
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            start = clock()
            fn()
            times[name].append(clock() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def make_sae(d: int, d_sae: int, k: int, x: torch.Tensor) -> TopKSAE:
    sae = TopKSAE(d, d_sae, SAEConfig(d_sae=d_sae, k=k))
    sae.init_weights(torch.Generator().manual_seed(0), x.mean(0))
    return sae


def our_step(sae: TopKSAE, x: torch.Tensor, dead: torch.Tensor) -> Callable[[], None]:
    """The step `train_sae` runs, with its optimiser."""
    optimiser = make_optimiser(sae, sae.config)
    return lambda: train_step(sae, optimiser, x, dead)


def dense_step(sae: TopKSAE, x: torch.Tensor, k: int) -> Callable[[], None]:
    """The plain implementation: scatter TopK into a dense [batch, d_sae] and decode densely."""
    optimiser = torch.optim.Adam(sae.parameters(), lr=1e-4)

    def step() -> None:
        pre = (x - sae.b_dec) @ sae.W_enc.t() + sae.b_enc
        top = pre.topk(k, dim=1)
        z = torch.zeros_like(pre).scatter(1, top.indices, top.values.relu())
        x_hat = z @ sae.W_dec + sae.b_dec
        loss = (x_hat - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            sae.W_dec.div_(sae.W_dec.norm(dim=1, keepdim=True))

    return step


def dense_pass(sae: TopKSAE, x: torch.Tensor) -> Callable[[], object]:
    """The final pass as an SAE without `active_codes` takes it."""

    class Dense(TopKSAE):
        def active_codes(self, x_BD: torch.Tensor, out: torch.Tensor | None = None) -> None:
            return None

    dense = Dense(sae.d, sae.d_sae, sae.config)
    dense.load_state_dict(sae.state_dict())
    return lambda: _measure(dense, x, 0, 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--threads", type=int, help="torch threads (default: torch's); with 1, CPU time is timed"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    # One thread: the process's CPU time, which a busy machine does not inflate as it does
    # the wall clock. More: wall-clock time (CPU time would add the threads' times up).
    one = torch.get_num_threads() == 1
    clock = time.process_time if one else time.perf_counter
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, "
        f"{'CPU time' if one else 'wall-clock time'}"
    )
    header = (
        f"{'shape (d, d_sae, k, batch)':<28}{'variant':<26}"
        f"{'steps/s':>9}{'samples/s':>12}{'ratio':>8}"
    )
    print(header)
    print("-" * len(header))
    for d, d_sae, k, batch in SHAPES:
        x = torch.randn(batch, d) / d**0.5
        W = torch.randn(d_sae, d)
        b = torch.zeros(d_sae)
        none_dead = torch.zeros(d_sae, dtype=torch.bool)
        quarter_dead = torch.arange(d_sae) % 4 == 0
        variants = {
            "dense matmul (unit)": lambda: torch.addmm(b, x, W.t()),  # noqa: B023
            "plain dense TopK step": dense_step(make_sae(d, d_sae, k, x), x, k),
            "ours, no dead latents": our_step(make_sae(d, d_sae, k, x), x, none_dead),
            "ours, 25% dead (AuxK)": our_step(make_sae(d, d_sae, k, x), x, quarter_dead),
        }
        fitted = make_sae(d, d_sae, k, x)
        x_all = torch.randn(FIT_SAMPLES, d) / d**0.5
        variants["final pass, active latents"] = lambda: _measure(fitted, x_all, 0, 0.0)  # noqa: B023
        variants["final pass, dense latents"] = dense_pass(fitted, x_all)
        seconds_by_name = timed(variants, args.repeats, clock)
        unit = seconds_by_name["dense matmul (unit)"]
        step = seconds_by_name["ours, no dead latents"]
        shape = f"({d}, {d_sae}, {k}, {batch})"
        for name, seconds in seconds_by_name.items():
            if name.startswith("final pass"):
                continue
            print(
                f"{shape:<28}{name:<26}{1 / seconds:>9.1f}{batch / seconds:>12,.0f}"
                f"{seconds / unit:>8.2f}"
            )
        sparse, dense = (seconds_by_name[f"final pass, {v} latents"] for v in ("active", "dense"))
        print(
            f"{shape:<28}a fit's final pass over {FIT_SAMPLES:,} samples: "
            f"{sparse / step:.2f} steps ({dense / step:.2f} from dense latents)"
        )


if __name__ == "__main__":
    main()
