"""The phase change, measured on the model itself (Olsson et al. 2022): how much of a repeated
random span it predicts from the first copy, how much later tokens of text gain over early
ones, and how strongly each head attends to the token after the current one's earlier
occurrence (prefix matching)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from experiments.textlm import CharLM


@dataclass(frozen=True)
class Progress:
    """The measures at one step."""

    step: int
    repeat_loss: float
    """Mean loss on the second copy of a random span (nats): ln 95 = 4.55 with no copying."""
    first_loss: float
    """Mean loss on the first copy (nothing to copy from: stays near ln 95)."""
    icl_score: float
    """Held-out text: mean loss at the last quarter of positions minus at positions 8-24
    (Olsson et al.'s in-context learning score; negative: later tokens are predicted better)."""
    prefix: list[list[float]]
    """[layer][head] prefix-matching score on repeated random spans: the mean attention from
    each token of the second copy to the token after its first occurrence."""
    previous: list[list[float]]
    """[layer][head] previous-token score: the mean attention from each token to the one
    before it (what the first layer of an induction circuit does)."""


@torch.no_grad()
def progress(model: CharLM, step: int, repeated: Tensor, text: Tensor) -> Progress:
    """The measures of `model` on repeated random spans [n, 2h + 1] and on held-out text
    windows [n, seq_len + 1] (eval mode, restored after)."""
    was_training = model.training
    model.eval()
    try:
        half = (repeated.shape[1] - 1) // 2
        losses = model.token_losses(repeated)
        text_losses = model.token_losses(text)
        quarter = text_losses.shape[1] * 3 // 4
        return Progress(
            step=step,
            repeat_loss=float(losses[:, half:].mean()),
            first_loss=float(losses[:, 1 : half - 1].mean()),
            icl_score=float(text_losses[:, quarter:].mean() - text_losses[:, 8:24].mean()),
            **attention_scores(model, repeated[:, :-1], half),
        )
    finally:
        model.train(was_training)


def attention_scores(model: CharLM, ids: Tensor, half: int) -> dict[str, list[list[float]]]:
    """On `ids` [n, 2 * half] (a span, then the same again), per [layer][head]: "prefix",
    the mean attention from query q of the second copy to key q - half + 1; "previous",
    from every query q >= 1 to q - 1."""
    inputs: list[Tensor] = []
    hooks = [
        block.attn.register_forward_pre_hook(lambda _, args: inputs.append(args[0]))
        for block in model.blocks
    ]
    try:
        model(ids)
    finally:
        for hook in hooks:
            hook.remove()
    second, later = torch.arange(half, ids.shape[1]), torch.arange(1, ids.shape[1])
    scores: dict[str, list[list[float]]] = {"prefix": [], "previous": []}
    for block, x in zip(model.blocks, inputs, strict=True):
        pattern = block.attn.pattern(x)  # [batch, head, query, key]
        scores["prefix"].append(pattern[:, :, second, second - half + 1].mean(dim=(0, 2)).tolist())
        scores["previous"].append(pattern[:, :, later, later - 1].mean(dim=(0, 2)).tolist())
    return scores
