"""Training on several processes (recbole_bifair/trainer/distributed.py): two gloo processes on
this machine, on the tiny generated dataset.

The workers are module-level functions: ``torch.multiprocessing.spawn`` starts fresh
interpreters that import them from here. Each writes what the test compares into files.
"""

import glob
import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from tests.bifair_fixtures import bifair_config, bifair_setup

WORLD = 2
TIMEOUT = 240  # seconds for a pair of workers; a hang in a collective fails the test instead of pytest


@pytest.fixture
def setup(tmp_path, monkeypatch):
    return bifair_setup(tmp_path, monkeypatch)


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _spawn(fn, *args):
    context = mp.spawn(fn, args=args, nprocs=WORLD, join=False)
    for _ in range(TIMEOUT):
        if context.join(timeout=1):
            return
    for process in context.processes:
        process.kill()
    pytest.fail(f"{fn.__name__} did not finish within {TIMEOUT} s (a collective that one rank never reached?)")


def _distributed_keys(rank, port):
    return dict(world_size=WORLD, nproc=WORLD, offset=0, ip="localhost", port=str(port), local_rank=rank)


def _config(root, emb, rank=None, port=None, **overrides):
    from recbole_bifair.quick_start import build_config

    overrides = dict(overrides)
    model = overrides.pop("model", "BiFairSASRec")
    config_dict = bifair_config(root, emb, **overrides)
    if rank is not None:
        config_dict.update(_distributed_keys(rank, port))
    return build_config(model=model, config_dict=config_dict)


def _parameters(model):
    state = {n: p.detach().clone() for n, p in model.named_parameters()}
    if getattr(model, "group_offset", None) is not None:
        state["group_offset"] = model.group_offset.detach().clone()
    return state


# ----- one epoch: every rank ends with the same parameters -------------------------------------
def _epoch_worker(rank, tmp, root, emb, port, overrides):
    from recbole_bifair.quick_start import prepare_run
    from recbole_bifair.trainer import distributed

    os.chdir(tmp)
    config = _config(root, emb, rank, port, **overrides)
    _, (train, _, _), model, trainer = prepare_run(config)
    before = _parameters(model)
    trainer.fit(train, None, saved=False)
    sampler = train.sampler
    torch.save({"before": before, "after": _parameters(model), "batches": len(train), "batch": train.step,
                "sharded": isinstance(sampler, torch.utils.data.distributed.DistributedSampler),
                "shard": list(sampler) if isinstance(sampler, torch.utils.data.distributed.DistributedSampler) else None},
               os.path.join(tmp, f"rank{rank}.pt"))
    distributed.destroy()


EPOCH_CASES = {
    # the bi-level loop: outer level on, group offsets, mgda on both levels, finite differences
    "bifair": dict(group_offsets="outer"),
    # the sampled outer step (ranks touch different rows of E: merged row by row) and sampled inner CE
    "bifair-sampled": dict(group_offsets="outer", outer_softmax="sampled", outer_negatives=5,
                           train_softmax="sampled", train_negatives=5),
    # RecBole's loop under DDP: the LLM-SASRec baseline and stock SASRec (sequence-level training)
    "baseline": dict(fair_method="none"),
    "sasrec": dict(model="SASRec"),
}


@pytest.mark.parametrize("case", list(EPOCH_CASES))
def test_one_epoch_on_two_ranks_leaves_identical_parameters_on_both(setup, tmp_path, case):
    """One epoch on two ranks, each reading its own half of the training windows (RecBole's
    DistributedSampler, disjoint shards). Afterwards every parameter (E, the projector, the
    backbone, the group offsets) is the same on both ranks, to the bit, and has moved: the
    bi-level loop by its explicit all-reduces, RecBole's loop by DDP."""
    root, emb = setup
    _spawn(_epoch_worker, str(tmp_path), str(root), str(emb), _free_port(), dict(EPOCH_CASES[case], epochs=1))
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    assert ranks[0]["sharded"] and ranks[0]["batches"] == ranks[1]["batches"] > 1
    # disjoint halves, but for the one window DistributedSampler repeats to even them out
    assert len(set(ranks[0]["shard"]) & set(ranks[1]["shard"])) <= WORLD - 1
    a, b = ranks[0]["after"], ranks[1]["after"]
    if case.startswith("bifair"):
        assert "item_embedding.E" in a and "group_offset" in a
        assert not torch.equal(a["item_embedding.E"], ranks[0]["before"]["item_embedding.E"])
        assert not torch.equal(a["group_offset"], ranks[0]["before"]["group_offset"])
    for name in a:
        assert torch.equal(ranks[0]["before"][name], ranks[1]["before"][name]), f"{name} starts apart"
        assert torch.equal(a[name], b[name]), f"{name}: max diff {(a[name] - b[name]).abs().max().item()}"
    assert any(not torch.equal(a[n], ranks[0]["before"][n]) for n in a)


# ----- one step: two ranks against one process on the same global batch -------------------------
N_WINDOWS = 8  # windows in the global batch; rank r takes windows r, r + 2, ... of it


def _step_worker(rank, tmp, root, emb, port, overrides, distributed_run):
    from recbole_bifair.quick_start import prepare_run
    from recbole_bifair.trainer import distributed

    os.chdir(tmp)
    torch.set_num_threads(1)
    config = _config(root, emb, rank if distributed_run else None, port, **overrides)
    _, (train, _, _), model, trainer = prepare_run(config)
    trainer._setup(train)

    def batch(loader, n):
        # the global batch is windows 0 .. n-1 of the loader, in order; a rank gets every other one
        index = range(n) if not distributed_run else range(rank, n, WORLD)
        return loader.collate_fn(list(index))

    if trainer._meta is not None:
        meta = batch(trainer._meta.loader, N_WINDOWS)
        trainer._next_meta_batch = lambda: meta
    stats = {"inner_loss": 0.0, "steps": 0, "outer_loss": 0.0, "outer_steps": 0}
    K = trainer.item_groups.n_groups
    for key in ("group_loss", "group_steps", "inner_w", "outer_w"):
        stats[key] = torch.zeros(K)
    before = _parameters(model)
    trainer.global_step = 1
    trainer._group_step(batch(trainer._inner_data, N_WINDOWS), stats, 0)
    out = {"before": before, "after": _parameters(model), "inner_w": stats["inner_w"],
           "outer_w": stats["outer_w"], "inner_loss": stats["inner_loss"]}
    torch.save(out, os.path.join(tmp, f"step-{'dist' if distributed_run else 'single'}-{rank}.pt"))
    distributed.destroy()


# No dropout: the masks of two processes cannot be those of one. Plain SGD on both levels: a
# parameter's change is the (clipped) gradient times the learning rate, so the comparison reads
# the gradients themselves (Adam's first step is lr * sign(g) and would hide them).
STEP_CONFIG = dict(hidden_dropout_prob=0.0, attn_dropout_prob=0.0, projector_dropout=0.0,
                   learner="sgd", learning_rate=0.1, outer_learner="sgd", outer_learning_rate=10.0,
                   hypergrad_unroll="sgd", outer_clip_grad_norm=None, clip_grad_norm=None,
                   meta_split="holdout", meta_fraction=0.3)


def _assert_same_step(name, single, dist):
    change = (single["after"][name] - single["before"][name]).abs().max().item()
    error = (dist["after"][name] - single["after"][name]).abs().max().item()
    assert error <= 1e-4 * change + 1e-10, f"{name}: error {error:.2e}, change {change:.2e}"


def _run_step(tmp_path, root, emb, overrides):
    _spawn(_step_worker, str(tmp_path), str(root), str(emb), _free_port(), overrides, True)
    ctx = mp.get_context("spawn")
    single = ctx.Process(target=_step_worker, args=(0, str(tmp_path), str(root), str(emb), None, overrides, False))
    single.start()
    single.join(TIMEOUT)
    assert single.exitcode == 0
    dist = [torch.load(tmp_path / f"step-dist-{r}.pt") for r in range(WORLD)]
    return torch.load(tmp_path / "step-single-0.pt"), dist


@pytest.mark.parametrize("balance", ["mgda", "dro"])
def test_inner_step_on_two_ranks_equals_one_process_on_the_global_batch(setup, tmp_path, balance):
    """One inner step (outer level off) on a global batch of 8 windows: one process takes all 8,
    two ranks take windows 0,2,4,6 and 1,3,5,7. Same starting parameters (same seed; rank 1's
    are rank 0's, broadcast), no dropout, SGD. Compared: the group weights lambda and every
    parameter after the step.

    Exact up to float rounding, by construction: the group means are those of the global batch
    (sums and counts all-reduced), so the balancer (mgda's Gram, summed from both ranks' parts,
    or dro) sees the same losses, and the summed per-rank gradients are the global gradient; the
    sums differ from one process's only in their order. Tolerance per tensor: 1e-4 of the
    largest change of that tensor, + 1e-10 (seen: 1e-9 against changes of 1e-3)."""
    root, emb = setup
    single, dist = _run_step(tmp_path, root, emb, dict(STEP_CONFIG, outer_level=False, balance=balance))
    for name, value in single["after"].items():
        assert torch.equal(dist[0]["after"][name], dist[1]["after"][name]), name
        _assert_same_step(name, single, dist[0])
    moved = sum((single["after"][n] - single["before"][n]).abs().sum().item() for n in single["after"])
    assert moved > 1e-3  # the step did something to compare
    assert torch.allclose(dist[0]["inner_w"], single["inner_w"], atol=1e-6)
    assert dist[0]["inner_loss"] == pytest.approx(single["inner_loss"], abs=1e-6)


def test_outer_step_on_two_ranks_approximates_one_process(setup, tmp_path):
    """The same step with the outer level on (first-order hypergradient, SGD on E, meta batch of
    8 held-out windows split like the training batch). The inner step, the outer weights w (global
    group means and Gram) and theta are exact as above. The hypergradient is the mean of the two
    ranks' hypergradients, each taken with its own meta shard's group means: the gradient of the
    mean of the two ranks' outer losses, not of the global batch's, so E's change is compared
    by direction (cosine > 0.99) and size (within 5%), not entry by entry (seen: cosine 0.9991,
    sizes 0.2% apart, largest entry error 7% of the largest change)."""
    root, emb = setup
    single, dist = _run_step(tmp_path, root, emb, dict(STEP_CONFIG, hypergrad="first_order"))
    E = "item_embedding.E"
    for name, value in single["after"].items():
        assert torch.equal(dist[0]["after"][name], dist[1]["after"][name]), name
        if name != E:
            _assert_same_step(name, single, dist[0])
    assert torch.allclose(dist[0]["outer_w"], single["outer_w"], atol=1e-6)
    d_single = (single["after"][E] - single["before"][E]).flatten()
    d_dist = (dist[0]["after"][E] - dist[0]["before"][E]).flatten()
    assert d_single.norm() > 0
    cosine = torch.nn.functional.cosine_similarity(d_single, d_dist, dim=0).item()
    assert cosine > 0.99, cosine
    assert d_dist.norm().item() == pytest.approx(d_single.norm().item(), rel=0.05)


# ----- whole runs through the entry point ---------------------------------------------------------
def _run_two_processes(root, emb, tmp_path, **overrides):
    from recbole_bifair.quick_start import run

    model = overrides.pop("model", "BiFairSASRec")
    config_dict = bifair_config(root, emb, results_dir=str(tmp_path / "results"), **overrides)
    return run(model=model, config_dict=config_dict, nproc=WORLD, port=str(_free_port()))


@pytest.mark.parametrize("model, extra", [("LLMSASRec", {}), ("SASRec", {})])
def test_baseline_and_stock_models_train_on_two_processes(setup, tmp_path, model, extra):
    """The LLM-SASRec baseline (``LLMSASRec``) and stock SASRec train through RecBole's loop,
    whose DDP wrapper needs the CPU workaround (compat item 13); the run ends with a result."""
    root, emb = setup
    result = _run_two_processes(root, emb, tmp_path, model=model, epochs=2, **extra)
    assert result is not None and result["world_size"] == WORLD
    assert result["epochs_trained"] == 2
    assert "ndcg@10" in result["test_result"]


def test_bifair_run_on_two_processes_writes_one_result_file_from_rank_0(setup, tmp_path):
    """``run(nproc=2)``: one result JSON (rank 0's), the one the returned result names, one
    checkpoint, and the test metrics of the best checkpoint."""
    root, emb = setup
    result = _run_two_processes(root, emb, tmp_path, epochs=2)
    files = glob.glob(str(tmp_path / "results" / "*.json"))
    assert files == [result["result_file"]]
    with open(files[0]) as f:
        written = json.load(f)
    assert written["world_size"] == WORLD and written["test_result"] == pytest.approx(result["test_result"])
    assert len(glob.glob(str(tmp_path / "saved" / "*.pth"))) in (1, 2)  # best (+ last) of rank 0 only
    assert os.path.isfile(result["checkpoint"])


def test_command_line_flags_reach_run(monkeypatch):
    """``run_recbole_bifair --nproc=2 --world_size=4 --offset=2 --ip=... --port=...`` (RecBole's
    flags) go to ``quick_start.run``; the rest stay config overrides."""
    import recbole_bifair.quick_start as quick_start
    from recbole_bifair.errors import ConfigError
    from recbole_bifair.run import main

    seen = {}
    monkeypatch.setattr(quick_start, "run", lambda **kwargs: seen.update(kwargs))
    main(["--model=BiFairSASRec", "--dataset=ml-100k", "--nproc=2", "--world_size=4", "--offset=2",
          "--ip=10.0.0.1", "--port=29500", "--backend=gloo"])
    assert (seen["nproc"], seen["world_size"], seen["offset"], seen["ip"], seen["port"]) == (2, 4, 2, "10.0.0.1", "29500")
    assert seen["cmd_args"] == ["--backend=gloo"]
    main(["--model=SASRec", "--dataset=ml-100k"])
    assert (seen["nproc"], seen["world_size"]) == (1, -1)
    with pytest.raises(ConfigError, match="--nproc"):
        main(["--model=SASRec", "--dataset=ml-100k", "--nproc=two"])
