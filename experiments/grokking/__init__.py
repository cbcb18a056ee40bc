"""Replay 2: grokking on modular addition (Power et al. 2022; Nanda et al. 2023), tracked.

The published setup: `a + b mod p` with p = 113, 30% of the p² pairs for training, a
one-layer transformer without layer norm (d_model 128, 4 heads of 32, d_mlp 512, ReLU), input
`a b =` read out at `=`, full-batch AdamW (lr 1e-3, 10 warm-up steps, weight decay 1.0, betas
0.9/0.98). `FeatureTracker` watches the MLP hidden activations at `=` (`--layer resid` for
the residual stream after the MLP) on every pair, at log-spaced steps plus a dense window
around the transition; the SAEs are warm-started from the previous checkpoint.

Because the probe set is every pair, each SAE feature is a p × p map over (a, b). Its 2-D
Fourier spectrum gives it a label: the frequency holding most of its (non-constant) power.
The key frequencies are read from the trained embedding, as the paper does, and compared with
the frequencies the SAE features carry. Progress measures are computed from weights recorded
every `eval_every` steps: train and test loss and accuracy, the paper's restricted loss (the
logits kept only along the key frequencies' cos/sin(w(a+b)) directions) and excluded loss
(those directions removed, on the training pairs), and the total squared weight.

    python -m experiments.grokking            # p = 113, the published run (~25 minutes)
    python -m experiments.grokking --p 53     # a smaller modulus, same schedule
    python -m experiments.grokking --report   # redo report and figures from the DB

Modules: `config`, `model` (data and transformer), `fourier` (key frequencies, map
spectra), `progress` (progress measures and phases), `features` (labels and the viewer's
panels), `analysis` (the report from the DB), `report` (printing it), `figures`, `run`.
"""

from experiments.grokking.analysis import analyse
from experiments.grokking.config import LAYERS, TINY, GrokConfig
from experiments.grokking.run import run

__all__ = ["LAYERS", "TINY", "GrokConfig", "analyse", "run"]
