"""The sparse TopK kernels against dense reference computations."""

import torch
from torch.testing import assert_close

from tracker.sae.sparse import ActivePattern, gather_preacts, select_topk, sparse_decode

B, D, F, K = 12, 5, 16, 3


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, D, generator=g, dtype=torch.float64)
    W_enc = torch.randn(F, D, generator=g, dtype=torch.float64)
    b_enc = torch.randn(F, generator=g, dtype=torch.float64)
    W_dec = torch.randn(F, D, generator=g, dtype=torch.float64)
    return x, W_enc, b_enc, W_dec


def test_select_topk_returns_the_k_largest_sorted_by_index():
    pre = torch.tensor([[0.1, 5.0, -1.0, 3.0, 4.0], [9.0, 0.0, 8.0, 7.0, -2.0]])
    assert select_topk(pre, 3).tolist() == [[1, 3, 4], [0, 2, 3]]


def test_pattern_rows_and_cols_are_transposes():
    idx = select_topk(torch.randn(B, F, generator=torch.Generator().manual_seed(1)), K)
    pattern = ActivePattern.build(idx, F)
    values = torch.arange(B * K, dtype=torch.float64).reshape(B, K)
    dense = torch.zeros(B, F, dtype=torch.float64).scatter(1, idx, values)
    assert torch.equal(pattern.rows(values).to_dense(), dense)
    assert torch.equal(pattern.cols(values).to_dense(), dense.t())
    with torch.sparse.check_sparse_tensor_invariants():
        torch.sparse_csr_tensor(pattern.crow, idx.reshape(-1), values.reshape(-1), (B, F))
        torch.sparse_csr_tensor(
            pattern.t_crow, pattern.t_col, values.reshape(-1)[pattern.t_perm], (F, B)
        )


def test_sparse_encode_decode_matches_dense_autograd():
    x, W_enc, b_enc, W_dec = _inputs()
    leaves = [t.clone().requires_grad_() for t in (x, W_enc, b_enc, W_dec)]
    ref = [t.clone().requires_grad_() for t in (x, W_enc, b_enc, W_dec)]

    pre = torch.addmm(leaves[2], leaves[0], leaves[1].t()).detach()
    pattern = ActivePattern.build(select_topk(pre, K), F)
    acts = gather_preacts(leaves[0], leaves[1], leaves[2], pattern, pre).relu()
    out = sparse_decode(acts, pattern, leaves[3])

    pre_ref = ref[0] @ ref[1].t() + ref[2]
    mask = torch.zeros(B, F, dtype=torch.bool).scatter(1, pattern.idx_BK, True)
    out_ref = (pre_ref * mask).relu() @ ref[3]

    assert_close(out, out_ref)
    target = torch.randn(B, D, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    (out - target).pow(2).sum().backward()
    (out_ref - target).pow(2).sum().backward()
    for name, ours, theirs in zip(("x", "W_enc", "b_enc", "W_dec"), leaves, ref, strict=True):
        assert_close(ours.grad, theirs.grad, msg=lambda m, name=name: f"grad {name}: {m}")


def test_pattern_handles_latents_that_no_row_uses():
    idx = torch.tensor([[0, 1], [0, 1]])  # latents 2..F-1 unused
    pattern = ActivePattern.build(idx, F)
    assert pattern.t_crow.tolist() == [0, 2, 4] + [4] * (F - 2)
    grad = pattern.cols(torch.ones(2, 2)) @ torch.ones(2, 1)
    assert grad.squeeze(1).tolist() == [2.0, 2.0] + [0.0] * (F - 2)
