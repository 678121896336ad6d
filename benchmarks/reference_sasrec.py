"""An independent SASRec+ outside RecBole and the plugin: the published training loop on our data.

    python benchmarks/reference_sasrec.py --data_path=../shared/datasets --epochs=15          # published layout
    python benchmarks/reference_sasrec.py --layout=recbole-R4 --epochs=8                       # RecBole's module, same loop
    python benchmarks/reference_sasrec.py --no-exclude_seen --epochs=8                          # every item ranked

A from-scratch PyTorch SASRec trained the way the published SASRec+ recipe trains it (Klenitskiy &
Vasilev, RecSys 2023): each user's last 201 training items once, the next-item cross-entropy over
the whole catalog at every position, 128 users a step, Adam at 1e-3, hidden 64, 2 blocks, 1
head, dropout 0.1, window 200. Validation NDCG@10 / HR@10 after every epoch, the user's earlier
items left out of the ranking (the published ``filter_seen``) unless ``--no-exclude_seen``; the
test figures of the best validation epoch at the end. It exists to find what separates the
plugin's pipeline from the published figure (docs/METHOD.md 3c): it shares no code with the
plugin's data, training or evaluation, reads the ``.inter`` file itself (rows in time order per
user, as the shared datasets are) and computes its metrics by hand.

``--layout``:
- ``published``: the published code's block (pmixer's SASRec.pytorch): ``q = LN(x)``, attention
  with query ``q`` over keys and values ``x``, ``x = q + attention``; ``h = LN(x)``,
  ``x = h + FFN(h)``; a final LayerNorm; item vectors scaled by sqrt(d) on input;
- ``prenorm``: textbook pre-norm, ``x + attention(LN(x))``, ``x + FFN(LN(x))``;
- ``recbole-R4``: RecBole's ``SASRec`` module in the plugin's R4 layout (``sasrec_norm: pre``,
  ``item_emb_scale: 8``, ReLU, inner 64; model/sasrec_layout.py), trained by this loop.

Prints one line per epoch; ``--out`` also writes them as JSON. One torch thread unless ``--threads``.
"""

import argparse
import json
import math
import os
import sys
import time
from collections import defaultdict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

if not __package__:  # run by path: see benchmarks/_path.py
    import _path  # noqa: F401

from benchmarks.lib.paths import DEFAULT_DATA_PATH  # noqa: E402

LAYOUTS = ("published", "prenorm", "recbole-R4")


def read_histories(path):
    """Item histories (lists of item tokens, in file order per user) of an atomic ``.inter`` file."""
    histories = defaultdict(list)
    with open(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        u_col = next(i for i, h in enumerate(header) if h.split(":")[0] == "user_id")
        i_col = next(i for i, h in enumerate(header) if h.split(":")[0] == "item_id")
        for line in f:
            row = line.rstrip("\n").split("\t")
            histories[row[u_col]].append(row[i_col])
    return list(histories.values())


class Block(nn.Module):
    def __init__(self, d, dropout, layout):
        super().__init__()
        self.layout = layout
        self.ln1, self.ln2 = nn.LayerNorm(d, eps=1e-8), nn.LayerNorm(d, eps=1e-8)
        self.attention = nn.MultiheadAttention(d, 1, dropout, batch_first=True)
        self.fc1, self.fc2 = nn.Linear(d, d), nn.Linear(d, d)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, causal, real):
        if self.layout == "published":
            q = self.ln1(x)
            x = q + self.attention(q, x, x, attn_mask=causal, need_weights=False)[0]
            h = self.ln2(x)
            x = h + self.dropout(self.fc2(F.relu(self.dropout(self.fc1(h)))))
        else:
            q = self.ln1(x)
            x = x + self.dropout(self.attention(q, q, q, attn_mask=causal, need_weights=False)[0])
            x = x + self.dropout(self.fc2(F.relu(self.dropout(self.fc1(self.ln2(x))))))
        return x * real


class ReferenceSASRec(nn.Module):
    def __init__(self, n_items, d=64, window=200, blocks=2, dropout=0.1, layout="published"):
        super().__init__()
        self.item = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.position = nn.Embedding(window, d)
        self.blocks = nn.ModuleList(Block(d, dropout, layout) for _ in range(blocks))
        self.final = nn.LayerNorm(d, eps=1e-8)
        self.dropout = nn.Dropout(dropout)
        self.scale = d ** 0.5
        for m in self.modules():  # normal(0.02) for linear and embedding weights, as published
            if isinstance(m, (nn.Linear, nn.Embedding)):
                m.weight.data.normal_(0, 0.02)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    m.bias.data.zero_()
        self.item.weight.data[0].zero_()

    def forward(self, x):
        real = (x > 0).unsqueeze(-1).float()
        h = self.item(x) * self.scale + self.position(torch.arange(x.size(1)))
        h = self.dropout(h) * real
        causal = ~torch.tril(torch.ones(x.size(1), x.size(1), dtype=torch.bool))
        for block in self.blocks:
            h = block(h, causal, real)
        return self.final(h)


class RecBoleR4(nn.Module):
    """RecBole's SASRec module in the plugin's R4 layout, with this script's interface."""

    def __init__(self, n_items, d=64, window=200):
        super().__init__()
        from recbole.model.sequential_recommender.sasrec import SASRec

        from recbole_bifair.model.sasrec_layout import Layout

        class Config(dict):
            def __getitem__(self, key):
                return self.get(key)

        class Data:
            def num(self, field):
                return n_items + 1

        config = Config(n_layers=2, n_heads=1, hidden_size=d, inner_size=d, hidden_dropout_prob=0.1,
                        attn_dropout_prob=0.1, hidden_act="relu", layer_norm_eps=1e-12, initializer_range=0.02,
                        loss_type="CE", MAX_ITEM_LIST_LENGTH=window, ITEM_ID_FIELD="item_id", LIST_SUFFIX="_list",
                        ITEM_LIST_LENGTH_FIELD="item_length", NEG_PREFIX="neg_", USER_ID_FIELD="user_id",
                        device="cpu")
        self.sasrec = SASRec(config, Data())
        self.sasrec.sasrec_layout = Layout("pre", math.sqrt(d))
        self.item = self.sasrec.item_embedding

    def forward(self, x):
        from recbole_bifair.model.sasrec_layout import sasrec_hidden

        return sasrec_hidden(self.sasrec, x)


def pad(rows, fill=0):
    out = np.full((len(rows), max(len(r) for r in rows)), fill, np.int64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return torch.from_numpy(out)


def evaluate(model, sequences, split, window, exclude_seen, k=10):
    """NDCG@k and HR@k over every user: target the second-last (valid) or last (test) item."""
    model.eval()
    ndcg = hits = 0.0
    with torch.no_grad():
        for start in range(0, len(sequences), 512):
            chunk = sequences[start:start + 512]
            cut = 2 if split == "valid" else 1
            history = [s[:-cut] for s in chunk]
            target = torch.tensor([s[-cut] for s in chunk])
            x = pad([h[-window:] for h in history])
            last = (x > 0).sum(1) - 1
            scores = model(x)[torch.arange(len(chunk)), last] @ model.item.weight.T
            scores[:, 0] = -math.inf
            if exclude_seen:
                for i, h in enumerate(history):
                    scores[i, torch.from_numpy(h)] = -math.inf
            rank = (scores > scores[torch.arange(len(chunk)), target][:, None]).sum(1)
            ndcg += (1 / torch.log2(rank[rank < k].double() + 2)).sum().item()
            hits += (rank < k).sum().item()
    model.train()
    return ndcg / len(sequences), hits / len(sequences)


def main(argv=None):
    p = argparse.ArgumentParser(prog="reference_sasrec.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--data_path", default=DEFAULT_DATA_PATH)
    p.add_argument("--dataset", default="ml-1m")
    p.add_argument("--layout", default="published", choices=LAYOUTS)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--window", type=int, default=200)
    p.add_argument("--users_per_step", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--exclude_seen", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--out", help="JSON file for the per-epoch lines")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    path = os.path.join(args.data_path, args.dataset, f"{args.dataset}.inter")
    if not os.path.isfile(path):
        p.error(f"{path} does not exist: pass --data_path (the folder holding {args.dataset}/)")
    ids = {}
    sequences = [np.array([ids.setdefault(t, len(ids) + 1) for t in h]) for h in read_histories(path)]
    sequences = [s for s in sequences if len(s) >= 3]
    n_items = len(ids)
    model = (RecBoleR4(n_items, window=args.window) if args.layout == "recbole-R4"
             else ReferenceSASRec(n_items, window=args.window, layout=args.layout))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train = [s[:-2][-(args.window + 1):] for s in sequences]
    print(f"{args.dataset}: {len(sequences)} users, {n_items} items; layout {args.layout}, "
          f"exclude_seen {args.exclude_seen}, seed {args.seed}", flush=True)
    lines, best = [], None
    for epoch in range(args.epochs):
        started, total, steps = time.time(), 0.0, 0
        order = np.random.permutation(len(train))
        for a in range(0, len(order), args.users_per_step):
            rows = [train[i] for i in order[a:a + args.users_per_step]]
            x, y = pad([r[:-1] for r in rows]), pad([r[1:] for r in rows], -100)
            logits = model(x) @ model.item.weight.T
            loss = F.cross_entropy(logits.view(-1, n_items + 1), y.view(-1), ignore_index=-100)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
        ndcg, hr = evaluate(model, sequences, "valid", args.window, args.exclude_seen)
        line = {"epoch": epoch, "loss": total / steps, "valid_ndcg@10": ndcg, "valid_hr@10": hr,
                "seconds": time.time() - started}
        if best is None or ndcg > best["valid_ndcg@10"]:
            test_ndcg, test_hr = evaluate(model, sequences, "test", args.window, args.exclude_seen)
            best = {**line, "test_ndcg@10": test_ndcg, "test_hr@10": test_hr}
        lines.append(line)
        print(f"epoch {epoch} loss {line['loss']:.3f} valid NDCG@10 {ndcg:.4f} HR@10 {hr:.4f} "
              f"{line['seconds']:.0f} s", flush=True)
    print(f"best validation epoch {best['epoch']}: valid NDCG@10 {best['valid_ndcg@10']:.4f}, "
          f"test NDCG@10 {best['test_ndcg@10']:.4f}, HR@10 {best['test_hr@10']:.4f}")
    if args.out:
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"args": vars(args), "epochs": lines, "best": best}, f, indent=1)
        os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
