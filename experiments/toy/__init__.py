"""Replay 1: toy models of superposition (Elhage et al. 2022), tracked against ground truth.

The model is `x' = ReLU(WᵀW x + b)` with n = 20 features squeezed into m = 5 hidden
dimensions, importance 0.7^i, each feature zero with probability S and else uniform on [0, 1],
and importance-weighted MSE. `FeatureTracker` watches the hidden layer `h = W x` on a fixed
probe set; the true feature directions are the columns of W at every checkpoint, so every
lineage event can be checked.

W starts small (std 0.01), so features form from nothing during training, most important
first. The SAEs see each checkpoint scaled to unit size, and a tiny random W is still a
random projection in which they find directions; `MatchConfig.min_activation = 0.25` (the
mean activation of a feature of norm 0.5 on inputs uniform on [0, 1]) makes features count
only once they have the size the ground truth calls represented. Decoder cosine means little
in 5 dimensions (chance ≈ 0.98), so matching runs on activation correlation (`signal="auto"`).

    python -m experiments.toy             # the demo: S = 0.9, ~1 minute
    python -m experiments.toy --sweep     # + the sparsity sweep and figures

Modules: `config` (ToyConfig), `model` (the model and its data), `truth` (the ground truth
at each checkpoint), `validate` (events against it), `panels` (what the viewer draws), `run`,
`sweep` (the paper's sparsity sweep and figures); `python -m experiments.toy` runs it.
"""

from experiments.toy.config import LAYER, ToyConfig
from experiments.toy.run import print_report, run
from experiments.toy.truth import geometry, represented_states

__all__ = ["LAYER", "ToyConfig", "geometry", "print_report", "represented_states", "run"]
