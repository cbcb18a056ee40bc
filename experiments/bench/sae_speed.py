"""SAE training speed on this machine, as ratios measured in one run.

For each shape it times, with the same threads and data:
  * one dense encoder matmul [batch, d] @ [d, d_sae] (the unit of every ratio);
  * a plain dense PyTorch TopK step (dense decode, dense backward): the usual implementation;
  * our TopK step (`TopKSAE.training_loss`, sparse decode and backward, fused Adam), with no
    dead latents and with a quarter of latents dead (AuxK active).
Prints steps/s, samples/s and step / matmul ratios.

    python experiments/bench/sae_speed.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from tracker import SAEConfig
from tracker.sae import TopKSAE

SHAPES = [(128, 2048, 32, 4096), (512, 8192, 64, 4096)]


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median seconds of `fn` after two warm-up calls (the median shrugs off noisy neighbours)."""
    fn(), fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_sae(d: int, d_sae: int, k: int, x: torch.Tensor) -> TopKSAE:
    sae = TopKSAE(d, d_sae, SAEConfig(d_sae=d_sae, k=k))
    sae.init_weights(torch.Generator().manual_seed(0), x.mean(0))
    return sae


def our_step(sae: TopKSAE, x: torch.Tensor, dead: torch.Tensor) -> Callable[[], None]:
    optimiser = torch.optim.Adam(sae.parameters(), lr=1e-4, fused=True)

    def step() -> None:
        out = sae.training_loss(x, dead)
        optimiser.zero_grad(set_to_none=True)
        out.loss.backward()
        sae.remove_parallel_grads()
        optimiser.step()
        sae.normalize_decoder()

    return step


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
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
        unit = timed(lambda: torch.addmm(b, x, W.t()), args.repeats)  # noqa: B023
        none_dead = torch.zeros(d_sae, dtype=torch.bool)
        quarter_dead = torch.arange(d_sae) % 4 == 0
        variants = {
            "dense matmul (unit)": lambda: torch.addmm(b, x, W.t()),  # noqa: B023
            "plain dense TopK step": dense_step(make_sae(d, d_sae, k, x), x, k),
            "ours, no dead latents": our_step(make_sae(d, d_sae, k, x), x, none_dead),
            "ours, 25% dead (AuxK)": our_step(make_sae(d, d_sae, k, x), x, quarter_dead),
        }
        for name, fn in variants.items():
            seconds = unit if name.startswith("dense matmul") else timed(fn, args.repeats)
            shape = f"({d}, {d_sae}, {k}, {batch})"
            print(
                f"{shape:<28}{name:<26}{1 / seconds:>9.1f}{batch / seconds:>12,.0f}"
                f"{seconds / unit:>8.2f}"
            )


if __name__ == "__main__":
    main()
