"""RowwiseAdam (E's optimiser under outer_softmax: sampled, ``outer_second_moment: row``) against
torch's SparseAdam and a numpy transcription of the update."""

import copy
import math

import numpy as np
import pytest
import torch

from recbole_bifair.trainer.row_adam import RowwiseAdam


def _sparse(rows, values, shape):
    return torch.sparse_coo_tensor(torch.tensor([rows]), values, shape).coalesce()


def test_equal_to_sparse_adam_when_squared_gradients_are_equal_along_rows():
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(6, 4))
    b = torch.nn.Parameter(a.detach().clone())
    ours, ref = RowwiseAdam([a], lr=0.05), torch.optim.SparseAdam([b], lr=0.05)
    for rows in ([0, 2, 5], [2, 3], [0, 5], [1, 2, 3, 4]):
        # +/- the same magnitude within a row: the row mean of g^2 is each entry's g^2
        mags = torch.rand(len(rows), 1) + 0.1
        signs = torch.randint(0, 2, (len(rows), 4)) * 2.0 - 1
        g = mags * signs
        a.grad, b.grad = _sparse(rows, g, a.shape), _sparse(rows, g.clone(), b.shape)
        ours.step()
        ref.step()
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_row_second_moment_by_hand_and_untouched_rows_keep_everything():
    lr, (b1, b2), eps = 0.1, (0.9, 0.999), 1e-8
    E = torch.nn.Parameter(torch.arange(12, dtype=torch.float64).reshape(4, 3) / 10)
    opt = RowwiseAdam([E], lr=lr, betas=(b1, b2), eps=eps)
    x = E.detach().numpy().copy()
    m, v = np.zeros((4, 3)), np.zeros(4)
    steps = [([1, 3], [[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]]), ([1], [[0.5, 0.5, -4.0]]), ([0, 3], [[2.0, 0.0, 0.0], [1.0, 1.0, 1.0]])]
    for t, (rows, g) in enumerate(steps, 1):
        g = np.array(g)
        E.grad = _sparse(rows, torch.tensor(g), E.shape)
        opt.step()
        for r, gr in zip(rows, g):
            m[r] = b1 * m[r] + (1 - b1) * gr
            v[r] = b2 * v[r] + (1 - b2) * np.mean(gr ** 2)
            x[r] -= lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m[r] / (math.sqrt(v[r]) + eps)
        np.testing.assert_allclose(E.detach().numpy(), x, rtol=1e-12, atol=1e-12)
    # row 2 never had a gradient: value and moments untouched
    np.testing.assert_array_equal(E.detach().numpy()[2], np.arange(6, 9) / 10)
    state = opt.state[E]
    assert state["exp_avg_sq_row"].shape == (4,) and state["exp_avg_sq_row"][2] == 0
    assert torch.all(state["exp_avg"][2] == 0)


def test_one_dimensional_parameters_are_sparse_adam():
    a = torch.nn.Parameter(torch.tensor([0.3, -0.2, 0.9]))
    b = torch.nn.Parameter(a.detach().clone())
    ours, ref = RowwiseAdam([a], lr=0.01), torch.optim.SparseAdam([b], lr=0.01)
    for g in ([1.0, -3.0, 0.2], [0.5, 0.0, -1.0]):
        idx = torch.arange(3).unsqueeze(0)
        a.grad = torch.sparse_coo_tensor(idx, torch.tensor(g), (3,)).coalesce()
        b.grad = torch.sparse_coo_tensor(idx, torch.tensor(g), (3,)).coalesce()
        ours.step()
        ref.step()
    torch.testing.assert_close(a, b)


def test_dense_gradients_are_refused():
    a = torch.nn.Parameter(torch.zeros(2, 2))
    a.grad = torch.ones(2, 2)
    with pytest.raises(RuntimeError, match="row-sparse"):
        RowwiseAdam([a]).step()


def test_state_is_smaller_than_sparse_adam_and_round_trips():
    E = torch.nn.Parameter(torch.randn(100, 64))
    opt = RowwiseAdam([E], lr=0.01)
    E.grad = _sparse([3, 7], torch.randn(2, 64), E.shape)
    opt.step()
    state = opt.state[E]
    assert state["exp_avg"].numel() + state["exp_avg_sq_row"].numel() == 100 * 64 + 100
    E2 = torch.nn.Parameter(E.detach().clone())
    opt2 = RowwiseAdam([E2], lr=0.01)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))  # as from a checkpoint file
    g = _sparse([3, 9], torch.randn(2, 64), E.shape)
    E.grad, E2.grad = g, g.clone()
    opt.step()
    opt2.step()
    torch.testing.assert_close(E, E2)
