"""`train_sae`: fit one SAE to one checkpoint's activations [n, d]."""

from __future__ import annotations

import logging
import time

import torch
from torch import Tensor
from tqdm.auto import tqdm

from tracker.checks import as_activations, resolve_device
from tracker.config import SAEConfig
from tracker.pace import pause
from tracker.sae import ARCHITECTURES, SAE, FitMetrics, StepLoss
from tracker.sae.sparse import ActivePattern, sparse_decode

log = logging.getLogger(__name__)

EVAL_BATCH = 4096


def train_sae(
    activations: object, config: SAEConfig | None = None, *, init_from: SAE | None = None
) -> SAE:
    """Fit a sparse autoencoder to `activations` [n, d] and return it with its fit metrics.

    Args:
        activations: a tensor or numpy array [n, d] of one checkpoint's activations.
        config: how to fit; `SAEConfig()` by default.
        init_from: an SAE of the same shape to warm-start from (e.g. the previous checkpoint's);
            its weights are copied, never changed.

    Raises:
        ValueError: activations that are not 2-D, too few, non-finite or constant; a config
            whose sizes do not fit the data (k >= d_sae); an `init_from` of another shape.

    Example:
        >>> sae = train_sae(torch.randn(2000, 16), SAEConfig(k=4, steps=50))
        >>> sae.W_dec.shape
        torch.Size([128, 16])
    """
    config = config or SAEConfig()
    start = time.perf_counter()
    x_ND = as_activations(activations, min_samples=2)
    n, d = x_ND.shape
    d_sae = config.latents(d)
    if config.arch == "topk" and config.k >= d_sae:
        raise ValueError(f"SAEConfig.k must be smaller than d_sae={d_sae}, got k={config.k}")
    device = resolve_device(config.device)
    generator = torch.Generator().manual_seed(config.seed)

    x_ND = x_ND.to(device)
    # Unit mean squared norm: activation scale drifts during training and must not leak
    # into the features or the learning rate.
    scale = x_ND.pow(2).sum(1).mean().sqrt() if config.normalize else torch.ones((), device=device)
    x_ND = x_ND / scale

    sae = _build(config, d, d_sae, generator, x_ND, init_from).to(device)
    sae.input_scale.fill_(float(scale))
    steps = _optimise(sae, x_ND, config, generator)
    sae.metrics = _measure(sae, x_ND, steps, start)
    sae.release_workspace()
    log.info("fitted %s SAE d=%d d_sae=%d on n=%d: %s", config.arch, d, d_sae, n, sae.metrics)
    return sae


def _build(
    config: SAEConfig,
    d: int,
    d_sae: int,
    generator: torch.Generator,
    x_ND: Tensor,
    init_from: SAE | None,
) -> SAE:
    sae = ARCHITECTURES[config.arch](d, d_sae, config)
    if init_from is None:
        sae.init_weights(generator, x_ND.mean(0).cpu())
        return sae
    if (init_from.d, init_from.d_sae) != (d, d_sae):
        raise ValueError(
            f"init_from must have d={d}, d_sae={d_sae}, "
            f"got d={init_from.d}, d_sae={init_from.d_sae}"
        )
    with torch.no_grad():
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            getattr(sae, name).copy_(getattr(init_from, name).detach().cpu())
    return sae


def _optimise(sae: SAE, x_ND: Tensor, config: SAEConfig, generator: torch.Generator) -> int:
    n = x_ND.shape[0]
    batch = min(config.batch_size, n)
    dead_after = config.dead_after or n
    optimiser = make_optimiser(sae, config)
    since_fired_F = torch.zeros(sae.d_sae, dtype=torch.long, device=x_ND.device)
    order = torch.randperm(n, generator=generator).to(x_ND.device)
    cursor = 0
    bar = tqdm(total=config.steps, desc=f"SAE {config.arch}", disable=not config.progress)
    for _ in range(config.steps):
        if cursor + batch > n:
            order, cursor = torch.randperm(n, generator=generator).to(x_ND.device), 0
        x_BD = x_ND[order[cursor : cursor + batch]]
        cursor += batch

        out = train_step(sae, optimiser, x_BD, since_fired_F >= dead_after)
        pause()  # a background fit yields the cores here (tracker.pace)
        since_fired_F += batch
        since_fired_F[out.fired_F] = 0
        bar.update()
        if config.progress:
            bar.set_postfix(fvu=f"{float(out.fvu):.4f}", refresh=False)
    bar.close()
    return config.steps


def make_optimiser(sae: SAE, config: SAEConfig) -> torch.optim.Adam:
    """Adam at the config's learning rate, fused (one kernel over all parameters) where this
    torch build has it: on CUDA, and on CPU from torch 2.4."""
    params, lr = list(sae.parameters()), config.learning_rate(sae.d_sae)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except RuntimeError:
        return torch.optim.Adam(params, lr=lr)


def train_step(
    sae: SAE, optimiser: torch.optim.Optimizer, x_BD: Tensor, dead_F: Tensor
) -> StepLoss:
    """One optimiser step on a batch of normalised inputs; decoder rows stay unit norm."""
    out = sae.training_loss(x_BD, dead_F)
    optimiser.zero_grad(set_to_none=True)
    out.loss.backward()
    sae.remove_parallel_grads()
    optimiser.step()
    sae.normalize_decoder()
    return out


@torch.no_grad()
def _measure(sae: SAE, x_ND: Tensor, steps: int, start: float) -> FitMetrics:
    """Fit metrics on the whole data; also sets the SAE's per-latent statistics."""
    n = x_ND.shape[0]
    count_F = torch.zeros(sae.d_sae, device=x_ND.device)
    total_F = torch.zeros(sae.d_sae, device=x_ND.device)
    sse = torch.zeros((), device=x_ND.device)
    for i in range(0, n, EVAL_BATCH):
        x_BD = x_ND[i : i + EVAL_BATCH]
        active = sae.active_codes(x_BD, out=sae.workspace(x_BD.shape[0], sae.d_sae))
        if active is None:
            z_BF = sae.encode_normalized(x_BD)
            sse += (z_BF @ sae.W_dec + sae.b_dec - x_BD).pow(2).sum()
            count_F += (z_BF > 0).sum(0)
            total_F += z_BF.sum(0)
            continue
        # k latents per row: decode, counts and sums over those only (a dense [B, d_sae]
        # pass cost more than 8 training steps per fit at d_sae 2048).
        values_BK, idx_BK = active
        x_hat_BD = sparse_decode(values_BK, ActivePattern.build(idx_BK, sae.d_sae), sae.W_dec)
        sse += (x_hat_BD + sae.b_dec - x_BD).pow(2).sum()
        fired = values_BK > 0
        count_F += torch.bincount(idx_BK[fired], minlength=sae.d_sae)
        total_F += torch.bincount(idx_BK.reshape(-1), values_BK.reshape(-1), minlength=sae.d_sae)
    total_variance = (x_ND - x_ND.mean(0)).pow(2).sum()
    sae.frequency.copy_(count_F / n)
    sae.mean_activation.copy_(torch.where(count_F > 0, total_F / count_F.clamp_min(1), 0.0))
    return FitMetrics(
        fvu=float(sse / total_variance),
        l0=float(count_F.sum() / n),
        dead_fraction=float((count_F == 0).float().mean()),
        fit_seconds=time.perf_counter() - start,
        steps=steps,
    )
