"""What every SAE architecture shares: parameters, raw-unit encode/decode, metrics, save/load."""

from __future__ import annotations

import json
from abc import abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch
from safetensors.torch import load_file, save_file
from safetensors.torch import save as save_bytes
from torch import Tensor, nn

from tracker.config import SAEConfig

FORMAT_VERSION = 1


class StepLoss(NamedTuple):
    """One training step's loss, for the optimiser and for dead-latent bookkeeping."""

    loss: Tensor
    """Scalar to minimise."""
    fvu: Tensor
    """Detached reconstruction FVU of the batch."""
    fired_F: Tensor
    """Bool [d_sae]: which latents were active on at least one sample of the batch."""


@dataclass(frozen=True)
class FitMetrics:
    """How well an SAE fits the activations it was trained on (the probe set)."""

    fvu: float
    """Fraction of variance unexplained: Σ‖x − x̂‖² / Σ‖x − mean(x)‖²."""
    l0: float
    """Mean number of active latents per sample."""
    dead_fraction: float
    """Share of latents that fire on no sample."""
    fit_seconds: float
    """Wall time of the fit, evaluation included."""
    steps: int
    """Optimiser steps taken."""

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


class SAE(nn.Module):
    """A sparse autoencoder over activations of width d with d_sae latents.

    `encode` takes raw activations; `decode` gives raw activations back. Internally inputs are
    divided by `input_scale` (the root mean squared norm of the training data), so latent values
    are in scale-free units that compare across checkpoints.

    Attributes:
        W_enc: [d_sae, d] encoder rows.
        b_enc: [d_sae] encoder bias.
        W_dec: [d_sae, d] decoder rows, unit norm.
        b_dec: [d] decoder bias, subtracted before encoding (in normalised units).
        metrics: fit metrics, set by `train_sae`.
        frequency: [d_sae] share of training samples on which each latent fires.
        mean_activation: [d_sae] mean value of each latent where it fires (0 where it never does).
    """

    arch: ClassVar[str]
    input_scale: Tensor
    frequency: Tensor
    mean_activation: Tensor

    def __init__(self, d: int, d_sae: int, config: SAEConfig) -> None:
        super().__init__()
        self.d, self.d_sae, self.config = d, d_sae, config
        self.W_enc = nn.Parameter(torch.zeros(d_sae, d))
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(torch.zeros(d_sae, d))
        self.b_dec = nn.Parameter(torch.zeros(d))
        self.register_buffer("input_scale", torch.ones(()))
        self.register_buffer("frequency", torch.zeros(d_sae))
        self.register_buffer("mean_activation", torch.zeros(d_sae))
        self.metrics: FitMetrics | None = None
        self._workspace: Tensor | None = None

    # -- initialisation and constraints -------------------------------------------------------

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator, mean_D: Tensor) -> None:
        """Random unit decoder rows, encoder = decoder transpose, decoder bias = data mean."""
        W = torch.randn(self.d_sae, self.d, generator=generator)
        self.W_dec.copy_(W / W.norm(dim=1, keepdim=True))
        self.W_enc.copy_(self.W_dec)
        self.b_enc.zero_()
        self.b_dec.copy_(mean_D)

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        norms = self.W_dec.norm(dim=1, keepdim=True).clamp_min(torch.finfo(self.W_dec.dtype).eps)
        self.W_dec.div_(norms)

    @torch.no_grad()
    def remove_parallel_grads(self) -> None:
        """Drop the decoder gradient along each (unit) row: it would only change the norm,
        which `normalize_decoder` undoes, and it disturbs Adam's moment estimates."""
        if self.W_dec.grad is not None:
            parallel = (self.W_dec.grad * self.W_dec).sum(dim=1, keepdim=True)
            self.W_dec.grad.sub_(parallel * self.W_dec)

    def workspace(self, *shape: int) -> Tensor | None:
        """A float buffer reused across training steps on CPU (None on CUDA, whose caching
        allocator already reuses memory). A fresh [4096, 2048] float32 tensor is 32 MiB, which
        glibc maps anew on every allocation; the page faults of its first touch cost a third
        of a matmul. Its contents are overwritten by the next step."""
        if self.W_enc.is_cuda:
            return None
        buffer = self._workspace
        if buffer is None or tuple(buffer.shape) != shape:
            buffer = self._workspace = torch.empty(shape, dtype=self.W_enc.dtype)
        return buffer

    def release_workspace(self) -> None:
        """Free the training buffer: a fitted SAE should hold only its weights."""
        self._workspace = None

    # -- the architecture's part --------------------------------------------------------------

    @abstractmethod
    def encode_normalized(self, x_BD: Tensor) -> Tensor:
        """Dense latents [B, d_sae] of inputs already divided by `input_scale`."""

    @abstractmethod
    def training_loss(self, x_BD: Tensor, dead_F: Tensor) -> StepLoss:
        """The loss of one batch of normalised inputs; `dead_F` marks latents seen as dead."""

    def active_codes(self, x_BD: Tensor, out: Tensor | None = None) -> tuple[Tensor, Tensor] | None:
        """(values [B, k], latent indices [B, k]) of normalised inputs where the architecture
        keeps a fixed number of latents per row (None where it does not): what a pass over
        all samples needs without the dense [B, d_sae] latents. `out`: a workspace for the
        pre-activations."""
        return None

    # -- raw-unit interface -------------------------------------------------------------------

    def encode(self, x_BD: Tensor) -> Tensor:
        """Latents [n, d_sae] of raw activations [n, d]."""
        return self.encode_normalized(x_BD.to(self.W_enc) / self.input_scale)

    def decode(self, z_BF: Tensor) -> Tensor:
        """Raw activations [n, d] rebuilt from latents [n, d_sae]."""
        return (z_BF.to(self.W_dec) @ self.W_dec + self.b_dec) * self.input_scale

    def forward(self, x_BD: Tensor) -> Tensor:
        return self.decode(self.encode(x_BD))

    def live(self, min_frequency: float, min_activation: float = 0.0) -> Tensor:
        """Bool [d_sae]: features firing on more than `min_frequency` of the probe set the SAE
        was fitted on, with a mean activation where they fire of at least `min_activation` in
        the layer's own units (before scaling). Matching, stability and lineage ids all use
        this one definition."""
        live = self.frequency.cpu() > min_frequency
        if min_activation > 0:
            raw = (self.mean_activation * self.input_scale).cpu()
            live &= raw >= min_activation
        return live

    @torch.no_grad()
    def latents(self, x_ND: Tensor, columns: Tensor | None = None, batch: int = 4096) -> Tensor:
        """Latents [n, d_sae] (or only `columns`) of raw activations, on CPU, encoded in
        batches so that memory stays bounded for large probe sets."""
        parts = []
        for start in range(0, x_ND.shape[0], batch):
            z = self.encode(x_ND[start : start + batch]).cpu()
            parts.append(z if columns is None else z[:, columns])
        return torch.cat(parts)

    # -- persistence: cfg.json + sae.safetensors, the layout of SAELens and sparsify ----------

    def meta(self) -> dict[str, Any]:
        """What cfg.json holds: format version, architecture, sizes, config, metrics."""
        return {
            "format_version": FORMAT_VERSION,
            "arch": self.arch,
            "d": self.d,
            "d_sae": self.d_sae,
            "config": self.config.to_dict(),
            "metrics": self.metrics.to_dict() if self.metrics else None,
        }

    def tensors(self) -> dict[str, Tensor]:
        return {name: t.detach().cpu().contiguous() for name, t in self.state_dict().items()}

    def to_bytes(self) -> bytes:
        """The weights as safetensors bytes (what the lineage store keeps)."""
        return save_bytes(self.tensors())

    @classmethod
    def from_parts(cls, meta: dict[str, Any], tensors: dict[str, Tensor], where: str) -> SAE:
        """Rebuild an SAE from `meta()` and its tensors; `where` names the source in errors."""
        from tracker.sae.registry import ARCHITECTURES

        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{where}: SAE format version {meta.get('format_version')!r}, "
                f"this tracker reads version {FORMAT_VERSION}"
            )
        arch = meta["arch"]
        if arch not in ARCHITECTURES:
            raise ValueError(f"{where}: unknown SAE architecture {arch!r}")
        sae = ARCHITECTURES[arch](meta["d"], meta["d_sae"], SAEConfig.from_dict(meta["config"]))
        sae.load_state_dict(tensors)
        if meta.get("metrics"):
            sae.metrics = FitMetrics(**meta["metrics"])
        return sae

    def save(self, path: str | Path) -> Path:
        """Write `path/cfg.json` and `path/sae.safetensors`; returns the directory."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        meta = self.meta()
        tensors = self.tensors()
        # Write to temporary names and rename, so a crash never leaves half an SAE behind.
        tmp_weights, tmp_cfg = out / "sae.safetensors.tmp", out / "cfg.json.tmp"
        save_file(tensors, str(tmp_weights))
        tmp_cfg.write_text(json.dumps(meta, indent=2))
        tmp_weights.replace(out / "sae.safetensors")
        tmp_cfg.replace(out / "cfg.json")
        return out

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> SAE:
        """Read an SAE written by `save` (no pickle is involved)."""
        src = Path(path)
        cfg_file, weights_file = src / "cfg.json", src / "sae.safetensors"
        for file in (cfg_file, weights_file):
            if not file.is_file():
                raise FileNotFoundError(f"SAE file {file} does not exist")
        meta = json.loads(cfg_file.read_text())
        return cls.from_parts(meta, load_file(str(weights_file)), str(cfg_file)).to(device)
