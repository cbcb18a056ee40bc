import numpy as np
import pytest
import torch

from tracker.assign import assign_dense, assign_sparse, neighbours


def unit(x):
    return x / x.norm(dim=1, keepdim=True)


@pytest.mark.parametrize(("n_prev", "n_next", "seed"), [(40, 50, 0), (70, 45, 1), (30, 30, 2)])
@pytest.mark.parametrize("tau", [0.3, 0.7])
def test_sparse_graph_matching_equals_hungarian(n_prev, n_next, seed, tau):
    g = torch.Generator().manual_seed(seed)
    A = unit(torch.randn(n_prev, 16, generator=g))
    m = min(n_prev, n_next)
    B = unit(
        torch.cat(
            [
                A[torch.randperm(n_prev, generator=g)[:m]] + 0.35 * torch.randn(m, 16, generator=g),
                torch.randn(n_next - m, 16, generator=g),
            ]
        )
    )
    dense = assign_dense((A @ B.t()).double().numpy(), tau)
    sparse = assign_sparse(neighbours(A, B, 8), n_prev, n_next, tau)
    assert sorted(zip(dense.prev, dense.next, strict=True)) == sorted(
        zip(sparse.prev, sparse.next, strict=True)
    )
    assert sparse.cosine.sum() == pytest.approx(dense.cosine.sum())
    assert (sparse.cosine >= tau).all()


def test_sparse_matching_survives_when_no_full_matching_exists():
    # Three rows all want the same single column: only one can have it.
    A = unit(torch.tensor([[1.0, 0.1, 0.0], [1.0, 0.0, 0.1], [1.0, -0.1, 0.0]]))
    B = unit(torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    result = assign_sparse(neighbours(A, B, 2), 3, 2, 0.7)
    assert result.next.tolist() == [0] and len(result.prev) == 1
    free = np.array([True, False, True])
    masked = assign_sparse(neighbours(A, B, 2), 3, 2, 0.7, free_prev=free)
    assert 1 not in masked.prev.tolist()


def test_neighbours_are_the_top_cosines_both_ways():
    A = unit(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    B = unit(torch.tensor([[1.0, 0.2], [0.1, 1.0]]))
    nb = neighbours(A, B, 2)
    assert nb.of_prev[:, 0].tolist() == [0, 1, 0]  # (1, 1): 0.83 to B0, 0.77 to B1
    assert nb.of_next[:, 0].tolist() == [0, 1]
    torch.testing.assert_close(nb.of_prev_cos, (A @ B.t()).sort(dim=1, descending=True).values)


@pytest.mark.parametrize(("rows", "cols"), [(7, 5), (64, 3), (1, 1000)])
def test_neighbours_tile_by_tile_equal_the_whole_matrix(monkeypatch, rows, cols):
    # Tiles smaller than both dictionaries, not dividing them: per-tile winners merged.
    monkeypatch.setattr("tracker.assign.ROWS", rows)
    monkeypatch.setattr("tracker.assign.COLS", cols)
    g = torch.Generator().manual_seed(0)
    A, B = unit(torch.randn(50, 8, generator=g)), unit(torch.randn(33, 8, generator=g))
    nb = neighbours(A, B, 6)
    # Exact products: every tile's sums are each entry's own, in float64.
    cos = A.double() @ B.double().t()
    torch.testing.assert_close(nb.of_prev_cos.double(), cos.topk(6, dim=1).values)
    torch.testing.assert_close(nb.of_next_cos.double(), cos.topk(6, dim=0).values.t())
    # The indices point at those cosines (whatever order a near tie takes).
    torch.testing.assert_close(cos.gather(1, nb.of_prev), cos.topk(6, dim=1).values)
    torch.testing.assert_close(cos.t().gather(1, nb.of_next), cos.topk(6, dim=0).values.t())
    assert nb.of_prev.shape == (50, 6) and nb.of_next.shape == (33, 6)


def test_wide_dictionaries_are_searched_in_bfloat16_and_reranked_exactly(monkeypatch):
    monkeypatch.setattr("tracker.assign.APPROX_FROM", 1)  # every size takes the wide path
    monkeypatch.setattr("tracker.assign.bf16_fast", lambda device: True)  # on any CPU
    monkeypatch.setattr("tracker.assign.ROWS", 64)
    monkeypatch.setattr("tracker.assign.COLS", 96)
    g = torch.Generator().manual_seed(0)
    A = unit(torch.randn(300, 64, generator=g))
    order = torch.randperm(300, generator=g)
    B = unit(A[order] + 0.2 * torch.randn(300, 64, generator=g) / 8)  # B[i] drifted A[order[i]]
    nb = neighbours(A, B, 4)
    # Each feature's drifted self (cosine ~0.98 against ~0.1 for the rest) is found both ways.
    assert (nb.of_next[:, 0] == order).all()
    assert (order[nb.of_prev[:, 0]] == torch.arange(300)).all()
    # Every cosine returned is the exact float32 one of the pair it names, best first.
    cos = A.double() @ B.double().t()
    exact = {"rtol": 0, "atol": 1e-6}  # float32's own rounding, not bfloat16's (~4e-3)
    torch.testing.assert_close(nb.of_prev_cos.double(), cos.gather(1, nb.of_prev), **exact)
    torch.testing.assert_close(nb.of_next_cos.double(), cos.t().gather(1, nb.of_next), **exact)
    assert (nb.of_prev_cos.diff(dim=1) <= 0).all() and nb.of_prev.shape == (300, 4)
    assert nb.of_prev_cos.dtype == torch.float32
