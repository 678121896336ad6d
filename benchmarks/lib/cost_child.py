"""One measurement of ``cost.py``, in a process of its own (fresh memory, so that its peak RSS is its
own): ``python -m benchmarks.lib.cost_child`` with the spec in ``$COST_SPEC`` (JSON: ``config``,
``threads`` and the options below); prints ``COST_RESULT <json>``.

It builds the data, the model and the trainer exactly as ``run_recbole_bifair.py`` does and times
``trainer._train_epoch`` (the code a run executes) and one full-ranking evaluation of the test
split. Options: ``max_batches`` (time the first N batches, scaled to the epoch), ``warmup``
(untimed batches first), ``random_table`` (a random table of that width stands in for the
encoder's output: synthetic catalogs have no text), ``profile`` (cProfile of the epoch),
``skip_eval``, ``floor`` (the epoch against its matmul floor, ``benchmarks/lib/floor.py``)."""

import json
import os
import resource
import time


class FirstBatches:
    """The first n batches of a dataloader (the rest of its interface unchanged)."""

    def __init__(self, loader, n):
        self.loader, self.n = loader, n

    def __iter__(self):
        for i, batch in enumerate(self.loader):
            if i == self.n:
                return
            yield batch

    def __len__(self):
        return min(self.n, len(self.loader))

    def __getattr__(self, name):
        return getattr(self.loader, name)


def use_random_table(dim):
    """Make the embedding module hand out a random ``dim``-wide table instead of encoding item text."""
    import torch

    import recbole_bifair.embedding as emb

    def fake(config, dataset, path=None):
        g = torch.Generator().manual_seed(0)
        E = torch.randn(dataset.item_num, dim, generator=g)
        E[0] = 0
        return E

    emb.load_item_embeddings = fake
    emb.ensure_item_embeddings = lambda config: "<random>"


def timed_data(trainer, train, spec, out):
    """The data ``_train_epoch`` gets, cut to ``max_batches`` (BiFair: its inner loader); records
    the epoch's batches in ``out`` and returns ``(epoch data, timed batches)``."""
    epoch_data = train
    if getattr(trainer, "group_loop", False):
        trainer._setup(train)
        out["inner_batches"] = len(trainer._inner_data)
        if spec.get("max_batches"):
            trainer._inner_data = FirstBatches(trainer._inner_data, spec["max_batches"])
        return epoch_data, len(trainer._inner_data)
    out["inner_batches"] = len(train)
    if spec.get("max_batches"):
        epoch_data = FirstBatches(train, spec["max_batches"])
    return epoch_data, len(epoch_data)


def warm_up(trainer, epoch_data, batches):
    """Untimed batches first: the optimisers' state allocation (E's Adam moments are as large as
    E) and other one-time costs must not be scaled to the epoch with the timed batches."""
    if getattr(trainer, "group_loop", False):
        timed, trainer._inner_data = trainer._inner_data, FirstBatches(trainer._inner_data, batches)
        trainer._train_epoch(epoch_data, 0)
        trainer._inner_data = timed
    else:
        trainer._train_epoch(FirstBatches(epoch_data, batches), 0)


def time_epoch_level(trainer):
    """A list whose one entry sums the seconds of once-per-epoch work (BiFair's epoch log computes
    ||E - E0|| over the whole table): timed on its own and added once, not scaled with the batches."""
    epoch_level = [0.0]
    if hasattr(trainer, "_log_epoch"):
        log_epoch = trainer._log_epoch

        def timed_log(*args, **kwargs):
            t0 = time.perf_counter()
            log_epoch(*args, **kwargs)
            epoch_level[0] += time.perf_counter() - t0

        trainer._log_epoch = timed_log
    return epoch_level


def measure(spec):
    import torch

    torch.set_num_threads(spec.get("threads", 2))
    import recbole_bifair  # noqa: F401
    from recbole_bifair.quick_start import build_config, prepare_run

    if spec.get("random_table"):
        use_random_table(spec["random_table"])
    config = build_config(config_dict=spec["config"])
    dataset, (train, valid, test), model, trainer = prepare_run(config)
    out = {"train_samples": len(train._dataset), "items": dataset.item_num}
    if spec.get("floor"):  # seconds per epoch against the matmul floor (benchmarks/lib/floor.py)
        from benchmarks.lib import floor

        out.update(floor.measure(trainer, train, spec.get("max_batches") or 20, spec.get("warmup", 2)))
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return out
    epoch_data, timed = timed_data(trainer, train, spec, out)
    if spec.get("warmup"):
        warm_up(trainer, epoch_data, spec["warmup"])
    epoch_level = time_epoch_level(trainer)
    if spec.get("profile"):
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    t = time.perf_counter()
    trainer._train_epoch(epoch_data, 0)
    seconds = time.perf_counter() - t
    # A measurement of the first batches only is scaled to the epoch (time per batch is flat after
    # the warm-up, and every variant here scales the same way).
    out["timed_batches"] = timed
    out["epoch_level_seconds"] = epoch_level[0]
    out["epoch_seconds"] = (seconds - epoch_level[0]) * out["inner_batches"] / timed + epoch_level[0]
    if spec.get("profile"):
        import io
        import pstats

        prof.disable()
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(40)
        out["profile"] = s.getvalue()
    if not spec.get("skip_eval"):
        trainer.evaluate(test, load_best_model=False)  # warm-up (first call builds the item tensor)
        t = time.perf_counter()
        trainer.evaluate(test, load_best_model=False)
        out["eval_seconds"] = time.perf_counter() - t
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main():
    print("COST_RESULT " + json.dumps(measure(json.loads(os.environ["COST_SPEC"]))))


if __name__ == "__main__":
    main()
