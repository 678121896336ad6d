"""The LLM item table ``E`` and the projector ``P``: item vectors ``V = P(E)`` (METHOD.md section 3).

``ProjectedItemTable`` stands in for a RecBole backbone's ``nn.Embedding`` item table: calling it
with item ids gives rows of ``V`` and ``.weight`` gives the whole ``V``. Backbones therefore run
unchanged, for input sequences and output scores alike.
"""

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from recbole_bifair.errors import ConfigError

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "leakyrelu": nn.LeakyReLU, "identity": nn.Identity}


def build_projector(in_dim, out_dim, n_layers=2, hidden_size=None, activation="gelu", dropout=0.0):
    """MLP ``in_dim -> out_dim`` with ``n_layers`` linear layers (1 = a single linear map)."""
    if n_layers < 1:
        raise ConfigError(f"projector_layers must be >= 1, got {n_layers}")
    act = ACTIVATIONS.get(str(activation).lower())
    if act is None:
        raise ConfigError(f"projector_activation '{activation}' is unknown; use one of {sorted(ACTIVATIONS)}")
    hidden_size = hidden_size or out_dim
    dims = [in_dim] + [hidden_size] * (n_layers - 1) + [out_dim]
    layers = []
    for i in range(n_layers):
        if i > 0:
            layers += [act(), nn.Dropout(dropout)]
        layers.append(nn.Linear(dims[i], dims[i + 1]))
    return nn.Sequential(*layers)


class ProjectedItemTable(nn.Module):
    """Item vectors ``V = P(E)`` with row 0 (padding) kept at zero, as ``padding_idx=0`` does.

    Args:
        E0: LLM item table, ``[n_items, d_llm]``, row = RecBole internal item id.
        projector: module ``d_llm -> d``.
        extra_rows: trainable rows appended after the items (BERT4Rec's mask token).
        id_fusion: ``none`` | ``sum`` | ``concat``: fuse ``V`` with a trainable ID embedding.
        train_E: whether ``E`` is a trainable parameter (the outer level's) or a frozen buffer.
    """

    def __init__(self, E0, projector, out_dim, extra_rows=0, id_fusion="none", train_E=True):
        super().__init__()
        E0 = E0.detach().float().clone()
        E0[0] = 0.0
        self.register_buffer("E0", E0)
        if train_E:
            self.E = nn.Parameter(E0.clone())
        else:
            self.register_buffer("E", E0.clone())
        self.projector = projector
        self.out_dim = out_dim
        self.id_fusion = id_fusion
        if id_fusion not in ("none", "sum", "concat"):
            raise ConfigError(f"id_fusion '{id_fusion}' is unknown; use none, sum or concat")
        if id_fusion != "none":
            self.id_embedding = nn.Embedding(E0.shape[0], out_dim, padding_idx=0)
            self.fuse = nn.Linear(2 * out_dim, out_dim) if id_fusion == "concat" else None
        self.extra = nn.Parameter(torch.zeros(extra_rows, out_dim)) if extra_rows else None
        self._scoped = None
        self._eval_cache = None

    @property
    def num_embeddings(self):
        return self.E.shape[0] + (self.extra.shape[0] if self.extra is not None else 0)

    @property
    def embedding_dim(self):
        return self.out_dim

    def compute(self, E=None):
        """``V`` from ``E`` (default: the table's own), padding row zero, extra rows appended."""
        E = self.E if E is None else E
        V = self.projector(E[1:])
        if self.id_fusion == "sum":
            V = V + self.id_embedding.weight[1:]
        elif self.id_fusion == "concat":
            V = self.fuse(torch.cat([V, self.id_embedding.weight[1:]], dim=-1))
        parts = [V.new_zeros(1, V.shape[1]), V]
        if self.extra is not None:
            parts.append(self.extra)
        return torch.cat(parts, dim=0)

    def _state_key(self):
        tensors = [self.E, *self.parameters()]
        return tuple((id(t), t._version) for t in tensors)

    @property
    def weight(self):
        if self._scoped is not None:
            return self._scoped
        if not torch.is_grad_enabled() and not self.training:
            # Evaluation: one P(E) per evaluation pass, reused by every batch until a parameter
            # changes (an optimiser step bumps the tensors' version counters).
            key = self._state_key()
            if self._eval_cache is None or self._eval_cache[0] != key:
                self._eval_cache = (key, self.compute())
            return self._eval_cache[1]
        return self.compute()

    def forward(self, item_ids):
        return F.embedding(item_ids, self.weight)

    @contextlib.contextmanager
    def scope(self):
        """Compute ``V`` once for everything inside (one training step's inputs and scores)."""
        outer = self._scoped
        self._scoped = self.compute() if outer is None else outer
        try:
            yield self._scoped
        finally:
            self._scoped = outer
