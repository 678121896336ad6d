"""Row-wise lazy Adam for E under ``outer_softmax: sampled`` (METHOD.md 4b).

``torch.optim.SparseAdam`` keeps two moments per entry, each as large as E: on a 100k x 1024
table, 0.8 GB on top of E and E0 (the project's memory target is 1.5x the baseline's peak). Here the
second moment is one number per row, the mean over the row of the squared gradient, as in
FBGEMM's ``PARTIAL_ROWWISE_ADAM`` for embedding tables; the first moment stays per entry. Rows
without gradient keep their values and moments (lazy, as SparseAdam). For a 1-D parameter (the
group offsets) a row is one entry, so the update is SparseAdam's.

The arithmetic follows ``torch.optim._functional.sparse_adam`` line by line except for the
second moment's shape: with equal squared gradients along each row the two optimisers agree
exactly (tests/test_row_adam.py).
"""

import math

import torch


class RowwiseAdam(torch.optim.Optimizer):
    """Adam over row-sparse (``torch.sparse_coo_tensor``, coalesced) gradients, with a row-wise
    second moment."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        if not lr > 0:
            raise ValueError(f"RowwiseAdam needs a learning rate > 0, got {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"RowwiseAdam needs betas in [0, 1), got {betas}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if not p.grad.is_sparse:
                    raise RuntimeError("RowwiseAdam takes row-sparse gradients (torch.sparse_coo_tensor)")
                grad = p.grad.coalesce()
                rows, values = grad.indices()[0], grad.values()
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq_row"] = p.new_zeros(p.shape[0])
                state["step"] += 1
                if rows.numel() == 0:
                    continue
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq_row"]
                sq = values.pow(2).reshape(len(rows), -1).mean(1)
                old_m, old_v = exp_avg[rows], exp_avg_sq[rows]
                m = old_m + (values - old_m) * (1 - beta1)
                v = old_v + (sq - old_v) * (1 - beta2)
                exp_avg[rows] = m
                exp_avg_sq[rows] = v
                step = state["step"]
                step_size = group["lr"] * math.sqrt(1 - beta2 ** step) / (1 - beta1 ** step)
                denom = v.sqrt().add_(group["eps"]).reshape((-1,) + (1,) * (values.dim() - 1))
                p.index_add_(0, rows, m.div(denom).mul_(-step_size))
        return loss
