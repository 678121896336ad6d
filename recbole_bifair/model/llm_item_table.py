"""The LLM item table ``E`` and the projector ``P``: item vectors ``V = P(E)`` (METHOD.md section 3).

``ProjectedItemTable`` stands in for a RecBole backbone's ``nn.Embedding`` item table: calling it
with item ids gives rows of ``V`` and ``.weight`` gives the whole ``V``. Backbones therefore run
unchanged, for input sequences and output scores alike.

The conditioning of the LLM table (``llm_emb_transform``), the erasure of its popularity
information (``llm_emb_erase``) and the ID view's PCA initialisation (``id_init: pca``) are pure
functions of the table here, computed over the real item rows only: row 0 is padding, zero in and
out.
"""

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from recbole_bifair.errors import ConfigError

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "leakyrelu": nn.LeakyReLU, "identity": nn.Identity}
TRANSFORMS = ("none", "center", "standardize", "whiten")
ERASURES = ("none", "popularity")
DROPOUT_PLACES = ("hidden", "input")
ID_FUSIONS = ("none", "sum", "concat", "residual")
# Singular values below this share of the largest are rank deficiency (fewer items than LLM
# dimensions, or duplicated rows), not directions of the data.
_RANK_TOL = 1e-6


def _choice(key, value, allowed):
    if value not in allowed:
        raise ConfigError(f"{key} '{value}' is unknown; use one of {', '.join(allowed)}")
    return value


def _principal_axes(X):
    """``(centred X, U, s, Vt)`` of the real rows ``X`` (float64), each axis' sign fixed so that its
    largest loading is positive: the same table gives the same axes on every machine."""
    Xc = X - X.mean(0, keepdim=True)
    U, s, Vt = torch.linalg.svd(Xc, full_matrices=False)
    flip = torch.sign(Vt.gather(1, Vt.abs().argmax(1, keepdim=True))).squeeze(1)
    flip[flip == 0] = 1.0
    return Xc, U * flip, s, Vt * flip.unsqueeze(1)


def _table_and_rows(E0, key, mode, allowed):
    """``(a float copy of E0 with row 0 zeroed, its real rows in float64 or None for mode none)``,
    after checking ``mode`` among ``allowed`` for ``key``: the start of every table transform here."""
    _choice(key, mode, allowed)
    E0 = E0.detach().float().clone()
    E0[0] = 0.0
    return E0, (None if mode == "none" else E0[1:].double())


def condition_llm_table(E0, mode):
    """``E0`` conditioned by ``llm_emb_transform``, statistics over the real rows (row 0 stays 0).

    - ``none``: as loaded;
    - ``center``: minus the mean row (the component every item text shares, e.g. field names);
    - ``standardize``: centred, each dimension divided by its standard deviation (population,
      ddof 0; a constant dimension is left at zero);
    - ``whiten``: PCA whitening that keeps every dimension: the coordinates of the centred rows on
      the principal axes divided by their standard deviations, so the covariance is the identity.
      With fewer items than dimensions (or a rank-deficient table) the directions the items do not
      span get zero columns: identity covariance on the span, zero elsewhere.
    """
    E0, X = _table_and_rows(E0, "llm_emb_transform", mode, TRANSFORMS)
    if X is None:
        return E0
    m, D = X.shape
    if mode == "center":
        out = X - X.mean(0, keepdim=True)
    elif mode == "standardize":
        std = X.std(0, unbiased=False)
        out = (X - X.mean(0, keepdim=True)) / torch.where(std > 0, std, torch.ones_like(std))
    else:
        _, U, s, _ = _principal_axes(X)
        keep = s > _RANK_TOL * s.max().clamp(min=1e-300)
        out = X.new_zeros(m, D)
        # X_c V / (s / sqrt(m)) = U sqrt(m): unit population variance along every kept axis
        out[:, : int(keep.sum())] = U[:, keep] * m ** 0.5
    E0[1:] = out.float()
    return E0


def erase_popularity(E0, train_counts, mode="popularity"):
    """``E0`` with the linear information on training popularity erased (``llm_emb_erase``,
    METHOD.md 3f), row 0 kept at 0; ``mode`` ``none`` returns it unchanged.

    The concept is ``z_i = log(1 + n_i)`` for item ``i``'s ``n_i`` training interactions, over the
    real rows. LEACE (Belrose et al., NeurIPS 2023) for one scalar concept: with ``c = Cov(X, z)`` and
    ``S`` the covariance of the rows ``X``, ``X' = X - c (c^T S^+ (X - mean)) / (c^T S^+ c)``, the
    smallest change (in the mean squared sense) after which no linear function of a row correlates
    with ``z``: ``Cov(X', z) = 0``. One direction of the table is removed; everything orthogonal to it
    in the ``S^+`` metric is kept. A table without popularity information (``c = 0``) is unchanged."""
    E0, X = _table_and_rows(E0, "llm_emb_erase", mode, ERASURES)
    if X is None:
        return E0
    z = torch.log1p(torch.as_tensor(train_counts, dtype=torch.float64)[1:])
    if z.shape[0] != X.shape[0]:
        raise ConfigError(f"llm_emb_erase: {X.shape[0]} item rows but {z.shape[0]} training counts")
    Xc = X - X.mean(0, keepdim=True)
    c = Xc.T @ (z - z.mean()) / X.shape[0]
    # S^+ c by least squares on the centred rows (S = Xc^T Xc / m): the minimum-norm solution is the
    # pseudo-inverse's, so a rank-deficient table (fewer items than dimensions) needs no special case
    u = torch.linalg.lstsq(Xc.T @ Xc / X.shape[0], c.unsqueeze(1), rcond=None, driver="gelsd").solution.squeeze(1)
    denom = c @ u
    if not torch.isfinite(denom) or denom <= 0:  # c = 0: nothing to erase
        return E0
    E0[1:] = (X - torch.outer(Xc @ u, c) / denom).float()
    return E0


def pca_rows(E0, k):
    """``[n_items, k]``: the real rows' coordinates on the ``k`` leading principal axes of ``E0``
    (centred, not scaled: sklearn's ``PCA(k).fit_transform``, as LLM-ESR initialises its ID view),
    row 0 zero."""
    X = E0[1:].detach().double()
    if k > min(X.shape):
        raise ConfigError(
            f"id_init: pca needs the hidden size ({k}) at most min(items, LLM dimensions) = {min(X.shape)}; "
            f"use id_init: normal"
        )
    Xc, _, _, Vt = _principal_axes(X)
    out = torch.zeros(E0.shape[0], k, dtype=torch.float64)
    out[1:] = Xc @ Vt[:k].T
    return out.float()


def build_projector(in_dim, out_dim, n_layers=2, hidden_size=None, activation="gelu", dropout=0.0,
                    dropout_on="hidden", layernorm=False):
    """MLP ``in_dim -> out_dim`` with ``n_layers`` linear layers (1 = a single linear map).

    ``dropout_on: hidden`` puts dropout between the layers; ``input`` leaves it out of ``P``
    (``ProjectedItemTable`` applies it to the input sequence's item vectors instead).
    ``layernorm`` appends a LayerNorm over the output.
    """
    if not isinstance(n_layers, int) or n_layers < 1:
        raise ConfigError(f"projector_layers must be an integer >= 1, got {n_layers!r}")
    act = ACTIVATIONS.get(str(activation).lower())
    if act is None:
        raise ConfigError(f"projector_activation '{activation}' is unknown; use one of {sorted(ACTIVATIONS)}")
    _choice("projector_dropout_on", dropout_on, DROPOUT_PLACES)
    hidden_size = hidden_size or out_dim
    dims = [in_dim] + [hidden_size] * (n_layers - 1) + [out_dim]
    layers = []
    for i in range(n_layers):
        if i > 0:
            layers.append(act())
            if dropout_on == "hidden":
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(dims[i], dims[i + 1]))
    if layernorm:
        layers.append(nn.LayerNorm(out_dim))
    return nn.Sequential(*layers)


@torch.no_grad()
def rescale_output(projector, E, target_std):
    """Scale the projector's last affine module so that the entries of ``P(E[1:])`` (no dropout)
    have standard deviation ``target_std``: the output is linear in that module's parameters."""
    if not target_std or target_std <= 0:
        raise ConfigError(f"projector_output_std must be a positive number or ~, got {target_std!r}")
    was_training = projector.training
    projector.eval()
    std = projector(E[1:]).std().item()
    projector.train(was_training)
    last = next(m for m in reversed(projector) if isinstance(m, (nn.Linear, nn.LayerNorm)))
    if std > 0:
        for p in last.parameters():
            p.mul_(target_std / std)


class ProjectedItemTable(nn.Module):
    """Item vectors ``V = P(E)`` with row 0 (padding) kept at zero, as ``padding_idx=0`` does.

    Args:
        E0: LLM item table, ``[n_items, d_llm]``, row = RecBole internal item id (already
            conditioned: ``E`` and its anchor ``E0`` live in the same space).
        projector: module ``d_llm -> d``.
        extra_rows: trainable rows appended after the items (BERT4Rec's mask token).
        id_fusion: ``none`` | ``sum`` | ``concat`` | ``residual``: fuse ``V`` with a trainable ID
            view (``residual``: the ID view plus ``text_scale * P(E)``, a learned scalar scale that
            starts at ``text_scale_init``).
        train_E: whether ``E`` is a trainable parameter (the outer level's) or a frozen buffer.
        id_weight: initial ID view ``[n_items, d]`` (row 0 zero); required with ``id_fusion``.
        input_dropout: dropout on the item vectors looked up by id (the backbone's input sequence),
            never on ``.weight`` (the table scored against).
        id_gate: ``[n_items]`` weight of each item's ID view (``id_count_half``), or None (1).
    """

    def __init__(self, E0, projector, out_dim, extra_rows=0, id_fusion="none", train_E=True,
                 id_weight=None, input_dropout=0.0, text_scale_init=0.0, id_gate=None):
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
        self.id_fusion = _choice("id_fusion", id_fusion, ID_FUSIONS)
        if id_fusion != "none":
            self.id_embedding = nn.Embedding(E0.shape[0], out_dim, padding_idx=0)
            if id_weight is None:
                raise ValueError("id_fusion needs the ID view's initial table (id_weight)")
            with torch.no_grad():
                self.id_embedding.weight.copy_(id_weight)
                self.id_embedding.weight[0] = 0.0
            self.fuse = None
            # not persistent: a function of the training counts, rebuilt with the model
            self.register_buffer("id_gate", None if id_gate is None else id_gate.float().unsqueeze(1),
                                 persistent=False)
            if id_fusion == "residual":
                # The ID view at full strength, the text view a residual whose weight is learned
                # from text_scale_init (0: the model starts as the ID model, ReZero's init).
                self.text_scale = nn.Parameter(torch.tensor(float(text_scale_init)))
            if id_fusion == "concat":
                # [I I]: the fused table starts as the sum of the two views, neither view shrunk or
                # mixed at random before training; the fuse then learns its own mix.
                self.fuse = nn.Linear(2 * out_dim, out_dim)
                with torch.no_grad():
                    self.fuse.weight.copy_(torch.eye(out_dim).repeat(1, 2))
                    self.fuse.bias.zero_()
        self.extra = nn.Parameter(torch.zeros(extra_rows, out_dim)) if extra_rows else None
        self.input_dropout = input_dropout
        self._scoped = None
        self._rows = None  # a RowTable inside row_scope
        self._eval_cache = None

    @property
    def num_embeddings(self):
        return self.E.shape[0] + (self.extra.shape[0] if self.extra is not None else 0)

    @property
    def embedding_dim(self):
        return self.out_dim

    def _id_rows(self, rows):
        """Rows ``rows`` (ids or a slice) of the ID view, each times its ``id_gate``; None without one."""
        if self.id_fusion == "none":
            return None
        ids = self.id_embedding.weight[rows]
        return ids if self.id_gate is None else ids * self.id_gate[rows]

    def _fuse(self, V, ids):
        """The text view ``V = P(E)`` rows fused with the same rows ``ids`` of the ID view."""
        if self.id_fusion == "sum":
            return V + ids
        if self.id_fusion == "concat":
            return self.fuse(torch.cat([V, ids], dim=-1))
        if self.id_fusion == "residual":
            return ids + self.text_scale * V
        return V

    def compute(self, E=None):
        """``V`` from ``E`` (default: the table's own), padding row zero, extra rows appended."""
        E = self.E if E is None else E
        V = self._fuse(self.projector(E[1:]), self._id_rows(slice(1, None)))
        parts = [V.new_zeros(1, V.shape[1]), V]
        if self.extra is not None:
            parts.append(self.extra)
        return torch.cat(parts, dim=0)

    def compute_rows(self, rows, E_rows=None):
        """``V`` of the item ids ``rows`` only, ``[len(rows), d]`` (padding id 0 gives a zero row):
        ``compute()[rows]`` without projecting the whole table. ``E_rows`` stands in for
        ``E[rows]`` (the outer level's sampled step differentiates w.r.t. those rows alone)."""
        E_rows = self.E[rows] if E_rows is None else E_rows
        V = self._fuse(self.projector(E_rows), self._id_rows(rows))
        return V * (rows != 0).unsqueeze(-1).to(V.dtype)

    @contextlib.contextmanager
    def row_scope(self, rows, E_rows=None):
        """Inside, item lookups read ``V`` of ``rows`` (sorted unique item ids) only, so a training
        step costs what its batch touches, not the catalog (sampled softmax, METHOD.md 3b). The
        full table (``weight``) is not available inside; a lookup of an id outside ``rows`` is an
        error."""
        if self.extra is not None:
            raise ValueError("a row scope covers item rows only; this table has extra rows (BERT4Rec's mask)")
        table = RowTable(rows, self.compute_rows(rows, E_rows))
        outer = (self._scoped, self._rows)
        self._scoped, self._rows = None, table
        try:
            yield table
        finally:
            self._scoped, self._rows = outer

    @property
    def row_table(self):
        """The ``RowTable`` of the enclosing ``row_scope``, or None."""
        return self._rows

    def _state_key(self):
        tensors = [self.E, *self.parameters()]
        return tuple((id(t), t._version) for t in tensors)

    @property
    def weight(self):
        if self._rows is not None:
            raise RuntimeError("the full item table is not computed inside a row scope (sampled softmax)")
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
        if self._rows is not None:
            rows = self._rows.lookup(item_ids)
        else:
            rows = F.embedding(item_ids, self.weight)
        if self.input_dropout:
            rows = F.dropout(rows, self.input_dropout, self.training)
        return rows

    @contextlib.contextmanager
    def scope(self):
        """Compute ``V`` once for everything inside (one training step's inputs and scores)."""
        outer = self._scoped
        self._scoped = self.compute() if outer is None else outer
        try:
            yield self._scoped
        finally:
            self._scoped = outer


class RowTable:
    """Item vectors of some item ids: ``V[i]`` is the vector of item ``rows[i]`` (``rows`` sorted, unique)."""

    def __init__(self, rows, V):
        self.rows = rows
        self.V = V

    def index(self, item_ids):
        """Positions of ``item_ids`` in ``rows``; ValueError if one is missing."""
        idx = torch.searchsorted(self.rows, item_ids).clamp(max=len(self.rows) - 1)
        if not bool((self.rows[idx] == item_ids).all()):
            missing = item_ids[self.rows[idx] != item_ids]
            raise ValueError(f"item ids {missing[:5].tolist()} are not in the row scope")
        return idx

    def lookup(self, item_ids):
        return self.V[self.index(item_ids)]
