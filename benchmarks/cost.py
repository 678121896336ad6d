"""What BiFair costs (shared/docs/BENCHMARK.md part B; issue targets: default <= 2x, first_order
<= 1.3x the LLM-enhanced baseline's seconds per training epoch; evaluation <= 1.2x SASRec's).

    python benchmarks/cost.py ml100k      # ratios on ml-100k, alternating rounds, peak memory
    python benchmarks/cost.py synthetic --max_batches=20   # 100k items with 1024-d vectors, and scaling
    python benchmarks/cost.py profile     # where one BiFair epoch spends its time
    python benchmarks/cost.py seqtrain --dataset=ml-1m --max_batches=30 --threads=1
                                          # sequence-level vs prefix training, s per epoch
    python benchmarks/cost.py padding --dataset=amazon-beauty-5core --max_batches=20 --threads=1
                                          # trim_padding on vs off, s per training epoch

Every measurement is one child process (fresh memory, so its peak RSS is its own) that builds
the data, the model and the trainer exactly as ``run_recbole_bifair.py`` does and times
``trainer._train_epoch`` (the code a run executes) and one full-ranking evaluation of the test
split. Variants alternate within a round so that a load change of the machine hits all of them.
Results go to ``benchmarks/results/cost-<part>.md`` / ``.json``.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
WORK = os.path.join(REPO, "benchmarks", "work", "cost")
RESULTS = os.path.join(REPO, "benchmarks", "results")

BASE = {"dataset": "ml-100k", "show_progress": False, "state": "WARNING", "seed": 2020,
        "llm_emb_fields": "movie_title,release_year,class",
        "llm_emb_dir": os.path.join(REPO, "benchmarks", "work", "embeddings"),
        "metrics": ["NDCG", "Recall"], "valid_metric": "NDCG@10", "prior_probe": False}

ML100K_VARIANTS = {
    "SASRec (ID)": {"model": "SASRec"},
    "LLM-SASRec": {"model": "BiFairSASRec", "bifair": False},
    "BiFair finite_difference (default)": {"model": "BiFairSASRec"},
    "BiFair first_order": {"model": "BiFairSASRec", "hypergrad": "first_order"},
    "BiFair finite_difference, outer_interval 1, full-size meta/HVP batches":
        {"model": "BiFairSASRec", "meta_batch_size": 2048, "hvp_batch_size": None},
}

CHILD = r"""
import json, os, resource, sys, time
sys.path.insert(0, os.environ["REPO"])
spec = json.loads(os.environ["COST_SPEC"])
import torch
torch.set_num_threads(spec.get("threads", 2))
import recbole_bifair
from recbole_bifair.quick_start import build_config, prepare_run
if spec.get("random_table"):
    # Synthetic catalogs have no text: a random table stands in for the encoder's output.
    import recbole_bifair.embedding as emb
    def fake(config, dataset, path=None):
        g = torch.Generator().manual_seed(0)
        E = torch.randn(dataset.item_num, spec["random_table"], generator=g); E[0] = 0
        return E
    emb.load_item_embeddings = fake
    emb.ensure_item_embeddings = lambda config: "<random>"
config = build_config(config_dict=spec["config"])
dataset, (train, valid, test), model, trainer = prepare_run(config)
out = {"train_samples": len(train._dataset), "items": dataset.item_num}
class FirstBatches:  # the first n batches of a dataloader (the rest of its interface unchanged)
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
epoch_data = train
if getattr(trainer, "bifair", False):
    trainer._setup(train)
    out["inner_batches"] = len(trainer._inner_data)
    if spec.get("max_batches"):
        trainer._inner_data = FirstBatches(trainer._inner_data, spec["max_batches"])
    timed = len(trainer._inner_data)
else:
    out["inner_batches"] = len(train)
    if spec.get("max_batches"):
        epoch_data = FirstBatches(train, spec["max_batches"])
    timed = len(epoch_data)
if spec.get("warmup"):
    # untimed batches first: the optimisers' state allocation (E's Adam moments are as large as
    # E) and other one-time costs must not be scaled to the epoch with the timed batches
    if getattr(trainer, "bifair", False):
        timed_data, trainer._inner_data = trainer._inner_data, FirstBatches(trainer._inner_data, spec["warmup"])
        trainer._train_epoch(epoch_data, 0)
        trainer._inner_data = timed_data
    else:
        trainer._train_epoch(FirstBatches(epoch_data, spec["warmup"]), 0)
# Once-per-epoch work (BiFair's epoch log computes ||E - E0|| over the whole table) is timed on
# its own and added once, not scaled with the batches.
epoch_level = [0.0]
if hasattr(trainer, "_log_epoch"):
    log_epoch = trainer._log_epoch
    def timed_log(*args, **kwargs):
        t0 = time.perf_counter(); log_epoch(*args, **kwargs); epoch_level[0] += time.perf_counter() - t0
    trainer._log_epoch = timed_log
if spec.get("profile"):
    import cProfile, pstats, io
    prof = cProfile.Profile(); prof.enable()
t = time.perf_counter(); trainer._train_epoch(epoch_data, 0); seconds = time.perf_counter() - t
# A measurement of the first batches only is scaled to the epoch (time per batch is flat after
# the warm-up, and every variant here scales the same way).
out["timed_batches"] = timed
out["epoch_level_seconds"] = epoch_level[0]
out["epoch_seconds"] = (seconds - epoch_level[0]) * out["inner_batches"] / timed + epoch_level[0]
if spec.get("profile"):
    prof.disable(); s = io.StringIO(); pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(40)
    out["profile"] = s.getvalue()
if not spec.get("skip_eval"):
    trainer.evaluate(test, load_best_model=False)  # warm-up (first call builds the item tensor)
    t = time.perf_counter(); trainer.evaluate(test, load_best_model=False); out["eval_seconds"] = time.perf_counter() - t
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("COST_RESULT " + json.dumps(out))
"""


def measure(config, threads, **extra):
    os.makedirs(WORK, exist_ok=True)
    spec = {"config": config, "threads": threads, **extra}
    env = dict(os.environ, REPO=REPO, COST_SPEC=json.dumps(spec), OMP_NUM_THREADS=str(threads))
    proc = subprocess.run([sys.executable, "-c", CHILD], cwd=WORK, env=env, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("COST_RESULT "):
            return json.loads(line[len("COST_RESULT "):])
    raise RuntimeError(f"measurement failed ({config}):\n{proc.stderr[-3000:]}")


def machine():
    return f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or platform.platform()}"


def ml100k(rounds, threads, only=None):
    variants = {n: v for n, v in ML100K_VARIANTS.items() if not only or n in only}
    samples = {name: [] for name in variants}
    for r in range(rounds):
        for name, variant in variants.items():
            res = measure(dict(BASE, **variant), threads)
            samples[name].append(res)
            print(f"round {r + 1}: {name}: {res['epoch_seconds']:.1f} s/epoch, eval {res.get('eval_seconds', 0):.2f} s, "
                  f"peak {res['peak_rss_mb']:.0f} MB", flush=True)
    med = {n: {k: statistics.median(s[k] for s in v) for k in ("epoch_seconds", "eval_seconds", "peak_rss_mb")}
           for n, v in samples.items()}
    base = med["LLM-SASRec"]
    sas = med.get("SASRec (ID)", base)
    rows = ["| variant | s / epoch | x LLM-SASRec | eval s | x SASRec eval | peak RSS MB |", "|---|---|---|---|---|---|"]
    for name, m in med.items():
        rows.append(f"| {name} | {m['epoch_seconds']:.1f} | {m['epoch_seconds'] / base['epoch_seconds']:.2f} | "
                    f"{m['eval_seconds']:.3f} | {m['eval_seconds'] / sas['eval_seconds']:.2f} | {m['peak_rss_mb']:.0f} |")
    return med, samples, rows


SYNTHETIC_GRID = "100000x100000,20000x100000,50000x100000,100000x50000,100000x200000"
#: Variants of the synthetic scaling benchmark. Each BiFair row names its outer step (full: every
#: pass over the whole table; sampled: the rows the batch touches, row-wise updates of E; METHOD.md
#: 4b); ``auto`` (the default) is sampled above 20,000 items. The "sampled inner" rows train every
#: method with train_softmax sampled (METHOD.md 3b), the large-catalog configuration.
SYNTHETIC_VARIANTS = {
    "LLM-SASRec": {"model": "BiFairSASRec", "bifair": False},
    "BiFair finite_difference (outer full)": {"model": "BiFairSASRec", "outer_softmax": "full"},
    "BiFair first_order (outer full)": {"model": "BiFairSASRec", "hypergrad": "first_order", "outer_softmax": "full"},
    "BiFair finite_difference (outer sampled)": {"model": "BiFairSASRec", "outer_softmax": "sampled"},
    "BiFair first_order (outer sampled)": {"model": "BiFairSASRec", "hypergrad": "first_order",
                                          "outer_softmax": "sampled"},
    "BiFair first_order (outer sampled; mgda_interval 4)": {"model": "BiFairSASRec", "hypergrad": "first_order",
                                                           "outer_softmax": "sampled", "mgda_interval": 4},
    "BiFair finite_difference (outer sampled; outer_second_moment entry)":
        {"model": "BiFairSASRec", "outer_softmax": "sampled", "outer_second_moment": "entry"},
    "LLM-SASRec (sampled inner)": {"model": "BiFairSASRec", "bifair": False, "train_softmax": "sampled"},
    "BiFair finite_difference (outer sampled + sampled inner)": {"model": "BiFairSASRec", "outer_softmax": "sampled",
                                                                "train_softmax": "sampled"},
    "BiFair first_order (outer sampled + sampled inner)": {"model": "BiFairSASRec", "hypergrad": "first_order",
                                                         "outer_softmax": "sampled", "train_softmax": "sampled"},
}
#: Which row each variant's ratio is taken against (the baseline trained the same way).
SYNTHETIC_BASE = {name: "LLM-SASRec (sampled inner)" if "sampled inner" in name else "LLM-SASRec"
                  for name in SYNTHETIC_VARIANTS}


def synthetic(threads, grid, max_batches, only=None, dim=1024):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from synthetic_data import make_catalog

    rows = ["| items | interactions | variant | inner batches | timed | s / batch | s / epoch | x baseline | "
            "peak RSS MB | x baseline RSS |", "|---|---|---|---|---|---|---|---|---|---|"]
    results = {}
    variants = {n: v for n, v in SYNTHETIC_VARIANTS.items() if not only or n in only}
    for needed in {SYNTHETIC_BASE[n] for n in variants}:
        variants.setdefault(needed, SYNTHETIC_VARIANTS[needed])
    for n_items, n_inter in grid:
        name = make_catalog(os.path.join(WORK, "data"), n_items=n_items, n_inter=n_inter)
        cfg = dict(BASE, dataset=name, data_path=os.path.join(WORK, "data"), train_batch_size=512,
                   meta_batch_size=128, hvp_batch_size=128, eval_batch_size=512,
                   load_col={"inter": ["user_id", "item_id", "timestamp"]},
                   user_inter_num_interval="[0,inf)", item_inter_num_interval="[0,inf)")
        res = {}
        for v, o in variants.items():
            try:
                res[v] = measure(dict(cfg, **o), threads, random_table=dim, skip_eval=True, max_batches=max_batches,
                                 warmup=1)
            except RuntimeError as err:  # e.g. out of memory: the row says so, the others still run
                res[v] = {"error": str(err)[-300:]}
        results[f"{n_items}x{n_inter}"] = res
        for v, m in res.items():
            base = res[SYNTHETIC_BASE[v]]
            if "error" in m or "error" in base:
                rows.append(f"| {n_items} | {n_inter} | {v} | failed: {m.get('error', 'baseline failed')[-120:]!r} "
                            f"| | | | | | |")
                continue
            per_batch = m["epoch_seconds"] / m["inner_batches"]
            rows.append(f"| {n_items} | {n_inter} | {v} | {m['inner_batches']} | {m['timed_batches']} | {per_batch:.2f} | "
                        f"{m['epoch_seconds']:.1f} | {m['epoch_seconds'] / base['epoch_seconds']:.2f} | "
                        f"{m['peak_rss_mb']:.0f} | {m['peak_rss_mb'] / base['peak_rss_mb']:.2f} |")
            print(rows[-1], flush=True)
    return results, rows


SEQTRAIN_MODELS = {
    "SASRec": {"model": "SASRec"},
    "LLM-SASRec": {"model": "BiFairSASRec", "bifair": False},
    "BiFairSASRec": {"model": "BiFairSASRec"},
}
# Settings the shared copies need whatever the plugin's dataset defaults are: the time-ordered
# split needs timestamps, the LLM table needs the item text fields.
SEQTRAIN_DATA = {
    "ml-1m": {"load_col": {"inter": ["user_id", "item_id", "timestamp"],
                           "item": ["item_id", "movie_title", "release_year", "genre"]},
              "llm_emb_fields": "movie_title,release_year,genre"},
    "amazon-beauty-5core": {"load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "title"]},
                            "llm_emb_fields": "title"},
}


def seqtrain(threads, dataset, data_path, max_batches, models):
    """Seconds per training epoch with train_mode sequence vs prefix, same model and data; the
    two modes of a model are measured one after the other."""
    cfg = dict(BASE, dataset=dataset, data_path=data_path, **SEQTRAIN_DATA.get(dataset, {}),
               user_inter_num_interval="[0,inf)", item_inter_num_interval="[0,inf)")
    rows = ["| model | train_mode | targets | batches | timed | s / batch | s / epoch | prefix / sequence | peak RSS MB |",
            "|---|---|---|---|---|---|---|---|---|"]
    results = {}
    for name in models:
        res = {mode: measure(dict(cfg, train_mode=mode, **SEQTRAIN_MODELS[name]), threads, skip_eval=True,
                             max_batches=max_batches)
               for mode in ("sequence", "prefix")}
        results[name] = res
        ratio = res["prefix"]["epoch_seconds"] / res["sequence"]["epoch_seconds"]
        for mode, m in res.items():
            rows.append(f"| {name} | {mode} | {m['train_samples']} | {m['inner_batches']} | {m['timed_batches']} | "
                        f"{m['epoch_seconds'] / m['inner_batches']:.3f} | {m['epoch_seconds']:.1f} | "
                        f"{ratio:.1f}x | {m['peak_rss_mb']:.0f} |")
            print(rows[-1], flush=True)
    return results, rows


def padding(threads, dataset, data_path, max_batches, models, rounds):
    """Seconds per training epoch (sequence-level) with ``trim_padding`` on and off, same model and
    data, the two alternating within each round."""
    cfg = dict(BASE, dataset=dataset, data_path=data_path, **SEQTRAIN_DATA.get(dataset, {}),
               user_inter_num_interval="[0,inf)", item_inter_num_interval="[0,inf)", train_mode="sequence")
    rows = ["| model | trim_padding | batches | timed | s / epoch (each round) | median | padded / trimmed | peak RSS MB |",
            "|---|---|---|---|---|---|---|---|"]
    results = {}
    for name in models:
        res = {True: [], False: []}
        for _ in range(rounds):
            for trim in (True, False):
                res[trim].append(measure(dict(cfg, trim_padding=trim, **SEQTRAIN_MODELS[name]), threads,
                                         skip_eval=True, max_batches=max_batches, warmup=2))
        med = {trim: statistics.median(m["epoch_seconds"] for m in ms) for trim, ms in res.items()}
        results[name] = {"trimmed": res[True], "padded": res[False], "median_trimmed": med[True],
                         "median_padded": med[False]}
        for trim in (True, False):
            m = res[trim][0]
            each = ", ".join(f"{x['epoch_seconds']:.1f}" for x in res[trim])
            rows.append(f"| {name} | {trim} | {m['inner_batches']} | {m['timed_batches']} | "
                        f"{each} | {med[trim]:.1f} | "
                        f"{med[False] / med[True]:.2f}x | {max(x['peak_rss_mb'] for x in res[trim]):.0f} |")
            print(rows[-1], flush=True)
    return results, rows


def profile(threads):
    res = measure(dict(BASE, model="BiFairSASRec"), threads, profile=True, skip_eval=True)
    return res, ["```", res["profile"], "```"]


def write(part, header, rows, payload):
    from recbole_bifair.fileio import write_json_atomic, write_text_atomic

    os.makedirs(RESULTS, exist_ok=True)
    stem = os.path.join(RESULTS, f"cost-{part}")
    write_text_atomic(stem + ".md", header + "\n\n" + "\n".join(rows) + "\n")
    write_json_atomic(stem + ".json", payload)
    print(f"wrote {stem}.md")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["ml100k", "synthetic", "profile", "seqtrain", "padding"])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--variants", default="", help="comma-separated subset of the ml100k or synthetic variants "
                                                          "(synthetic: the baselines they are compared with are added)")
    parser.add_argument("--dim", type=int, default=1024, help="synthetic: width of the random LLM table")
    parser.add_argument("--tag", default="", help="suffix of the result files")
    parser.add_argument("--grid", default=SYNTHETIC_GRID, help="synthetic: ITEMSxINTERACTIONS,...")
    parser.add_argument("--max_batches", type=int, default=0,
                        help="synthetic: time the first N training batches and scale to the epoch (0: whole epoch)")
    parser.add_argument("--dataset", default="ml-1m", help="seqtrain, padding: dataset")
    parser.add_argument("--data_path", default=os.path.join(os.path.dirname(REPO), "shared", "datasets"),
                        help="seqtrain: folder holding the dataset (default: ../shared/datasets)")
    parser.add_argument("--models", default=",".join(SEQTRAIN_MODELS),
                        help="seqtrain, padding: comma-separated models")
    args = parser.parse_args(argv)
    started = time.time()
    header = (f"`python benchmarks/cost.py {args.part}` on {datetime.date.today()}, {machine()}, "
              f"torch threads {args.threads}; one training epoch per measurement (medians over rounds).")
    if args.part == "ml100k":
        only = [v for v in args.variants.split(",") if v]
        med, samples, rows = ml100k(args.rounds, args.threads, only)
        write("ml100k" + args.tag, header, rows, {"median": med, "samples": samples})
    elif args.part == "synthetic":
        grid = [tuple(int(n) for n in point.split("x")) for point in args.grid.split(",") if point]
        only = [v for v in args.variants.split(",") if v]
        results, rows = synthetic(args.threads, grid, args.max_batches, only, args.dim)
        header += (f" Synthetic: a random {args.dim}-d table stands in for the encoder (no item text); "
                   f"sequence-level training, batch 512 targets, meta and Hessian-vector batches 128; "
                   f"'x baseline': against LLM-SASRec trained the same way (full or sampled inner softmax).")
        if args.max_batches:
            header += (f" After one untimed warm-up batch (optimiser state allocation), the first "
                       f"{args.max_batches} training batches are timed and scaled to the epoch's batch count.")
        write("synthetic" + args.tag, header, rows, results)
    elif args.part == "seqtrain":
        models = [m for m in args.models.split(",") if m]
        results, rows = seqtrain(args.threads, args.dataset, args.data_path, args.max_batches, models)
        header += (f" Dataset {args.dataset} from {args.data_path}; RecBole's SASRec settings (hidden 64, "
                   f"2 layers, MAX_ITEM_LIST_LENGTH 50, batch 2048 targets); "
                   + (f"the first {args.max_batches} batches timed and scaled to the epoch." if args.max_batches
                      else "whole epochs."))
        write("seqtrain-" + args.dataset + args.tag, header, rows, results)
    elif args.part == "padding":
        models = [m for m in args.models.split(",") if m]
        results, rows = padding(args.threads, args.dataset, args.data_path, args.max_batches, models, args.rounds)
        header += (f" Dataset {args.dataset} from {args.data_path}; sequence-level training with RecBole's SASRec "
                   f"settings (hidden 64, 2 layers, MAX_ITEM_LIST_LENGTH 50, batch 2048 targets); after 2 untimed "
                   f"batches, " + (f"the first {args.max_batches} batches timed and scaled to the epoch"
                                   if args.max_batches else "whole epochs")
                   + "; trimmed and padded alternate within each round.")
        write("padding-" + args.dataset + args.tag, header, rows, results)
    else:
        res, rows = profile(args.threads)
        write("profile", header, rows, res)
    print(f"done in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
