"""What BiFair costs (``cost.py``): seconds per training epoch, evaluation seconds and peak memory of
methods of ``properties/methods/`` (and sweep points on them), each measured in a child process
(``cost_child``). Variants alternate within a round so that a load change of the machine hits all
of them."""

import json
import os
import platform
import statistics
import subprocess
import sys

from benchmarks.lib.methods import method_keys, select_rows
from benchmarks.lib.paths import REPO
from benchmarks.lib.paths import WORK as WORK_ROOT

WORK = os.path.join(WORK_ROOT, "cost")

BASE = {"dataset": "ml-100k", "show_progress": False, "state": "WARNING", "seed": 2020,
        "llm_emb_fields": "movie_title,release_year,class",
        "llm_emb_dir": os.path.join(WORK_ROOT, "embeddings"),
        "metrics": ["NDCG", "Recall"], "valid_metric": "NDCG@10", "prior_probe": False}

#: Each row of a part: its name in the tables -> the method or sweep point it measures.
ML100K_VARIANTS = {
    "SASRec (ID)": "SASRec",
    "LLM-SASRec": "LLM-SASRec",
    "BiFair finite_difference (default)": "BiFair",
    "BiFair first_order": "BiFair-first-order",
    "BiFair finite_difference, outer_interval 1, full-size meta/HVP batches": "BiFair-large-batches",
}
SYNTHETIC_GRID = "100000x100000,20000x100000,50000x100000,100000x50000,100000x200000"
#: Variants of the synthetic scaling benchmark. Each BiFair row names its outer step (full: every
#: pass over the whole table; sampled: the rows the batch touches, row-wise updates of E; METHOD.md
#: 4b); ``auto`` (the default) is sampled above 20,000 items. The "sampled inner" rows train every
#: method with train_softmax sampled (METHOD.md 3b), the large-catalog configuration.
SYNTHETIC_VARIANTS = {
    "LLM-SASRec": "LLM-SASRec",
    "BiFair finite_difference (outer full)": "BiFair[outer_softmax=full]",
    "BiFair first_order (outer full)": "BiFair-first-order[outer_softmax=full]",
    "BiFair finite_difference (outer sampled)": "BiFair-sampled-outer",
    "BiFair first_order (outer sampled)": "BiFair-first-order[outer_softmax=sampled]",
    "BiFair first_order (outer sampled; mgda_interval 4)": "BiFair-first-order[outer_softmax=sampled][mgda_interval=4]",
    "BiFair finite_difference (outer sampled; outer_second_moment entry)":
        "BiFair-sampled-outer[outer_second_moment=entry]",
    "LLM-SASRec (sampled inner)": "LLM-SASRec[train_softmax=sampled]",
    "BiFair finite_difference (outer sampled + sampled inner)": "BiFair-sampled-outer[train_softmax=sampled]",
    "BiFair first_order (outer sampled + sampled inner)":
        "BiFair-first-order[outer_softmax=sampled][train_softmax=sampled]",
}
SEQTRAIN_MODELS = {"SASRec": "SASRec", "LLM-SASRec": "LLM-SASRec", "BiFairSASRec": "BiFair"}
# Settings the shared copies need whatever the plugin's dataset defaults are: the time-ordered
# split needs timestamps, the LLM table needs the item text fields.
SEQTRAIN_DATA = {
    "ml-1m": {"load_col": {"inter": ["user_id", "item_id", "timestamp"],
                           "item": ["item_id", "movie_title", "release_year", "genre"]},
              "llm_emb_fields": "movie_title,release_year,genre"},
    "amazon-beauty-5core": {"load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "title"]},
                            "llm_emb_fields": "title"},
}


def synthetic_baseline(spec):
    """The row a synthetic variant's ratios are taken against: LLM-SASRec trained the same way
    (full or sampled inner softmax)."""
    sampled = method_keys(spec).get("train_softmax") == "sampled"
    return "LLM-SASRec (sampled inner)" if sampled else "LLM-SASRec"


def measure(config, threads, **extra):
    """The child's figures for ``config`` (``cost_child``); RuntimeError with its stderr's tail."""
    os.makedirs(WORK, exist_ok=True)
    spec = {"config": config, "threads": threads, **extra}
    env = dict(os.environ, PYTHONPATH=REPO, COST_SPEC=json.dumps(spec), OMP_NUM_THREADS=str(threads))
    proc = subprocess.run([sys.executable, "-m", "benchmarks.lib.cost_child"], cwd=WORK, env=env,
                          capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("COST_RESULT "):
            return json.loads(line[len("COST_RESULT "):])
    raise RuntimeError(f"measurement failed ({config}):\n{proc.stderr[-3000:]}")


def machine():
    return f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or platform.platform()}"


def ml100k(rounds, threads, only=()):
    """Medians over ``rounds`` of each ml-100k variant, the samples, and the table's rows."""
    variants = select_rows(ML100K_VARIANTS, only)
    samples = {name: [] for name in variants}
    for r in range(rounds):
        for name, spec in variants.items():
            res = measure(dict(BASE, **method_keys(spec)), threads)
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


def synthetic_config(n_items, n_inter):
    """The config of one synthetic catalog (``synthetic_data.make_catalog``, written once)."""
    from benchmarks.lib.synthetic_data import make_catalog

    name = make_catalog(os.path.join(WORK, "data"), n_items=n_items, n_inter=n_inter)
    return dict(BASE, dataset=name, data_path=os.path.join(WORK, "data"), train_batch_size=512,
                meta_batch_size=128, hvp_batch_size=128, eval_batch_size=512,
                load_col={"inter": ["user_id", "item_id", "timestamp"]},
                user_inter_num_interval="[0,inf)", item_inter_num_interval="[0,inf)")


def synthetic_row(n_items, n_inter, name, m, base):
    if "error" in m or "error" in base:
        return (f"| {n_items} | {n_inter} | {name} | failed: {m.get('error', 'baseline failed')[-120:]!r} "
                f"| | | | | | |")
    per_batch = m["epoch_seconds"] / m["inner_batches"]
    return (f"| {n_items} | {n_inter} | {name} | {m['inner_batches']} | {m['timed_batches']} | {per_batch:.2f} | "
            f"{m['epoch_seconds']:.1f} | {m['epoch_seconds'] / base['epoch_seconds']:.2f} | "
            f"{m['peak_rss_mb']:.0f} | {m['peak_rss_mb'] / base['peak_rss_mb']:.2f} |")


def synthetic(threads, grid, max_batches, only=(), dim=1024):
    """Each variant (and the baselines its ratios need) on each (items, interactions) of ``grid``."""
    rows = ["| items | interactions | variant | inner batches | timed | s / batch | s / epoch | x baseline | "
            "peak RSS MB | x baseline RSS |", "|---|---|---|---|---|---|---|---|---|---|"]
    results = {}
    variants = select_rows(SYNTHETIC_VARIANTS, only)
    baselines = {name: synthetic_baseline(spec) for name, spec in variants.items()}
    for needed in set(baselines.values()):
        variants.setdefault(needed, SYNTHETIC_VARIANTS[needed])
        baselines.setdefault(needed, needed)
    for n_items, n_inter in grid:
        cfg = synthetic_config(n_items, n_inter)
        res = {}
        for name, spec in variants.items():
            try:
                res[name] = measure(dict(cfg, **method_keys(spec)), threads, random_table=dim, skip_eval=True,
                                    max_batches=max_batches, warmup=1)
            except RuntimeError as err:  # e.g. out of memory: the row says so, the others still run
                res[name] = {"error": str(err)[-300:]}
        results[f"{n_items}x{n_inter}"] = res
        for name, m in res.items():
            rows.append(synthetic_row(n_items, n_inter, name, m, res[baselines[name]]))
            print(rows[-1], flush=True)
    return results, rows


def seqtrain_config(dataset, data_path, **keys):
    return dict(BASE, dataset=dataset, data_path=data_path, **SEQTRAIN_DATA.get(dataset, {}),
                user_inter_num_interval="[0,inf)", item_inter_num_interval="[0,inf)", **keys)


def seqtrain(threads, dataset, data_path, max_batches, models):
    """Seconds per training epoch with train_mode sequence vs prefix, same model and data; the
    two modes of a model are measured one after the other."""
    rows = ["| model | train_mode | targets | batches | timed | s / batch | s / epoch | prefix / sequence | peak RSS MB |",
            "|---|---|---|---|---|---|---|---|---|"]
    results = {}
    for name, spec in select_rows(SEQTRAIN_MODELS, models).items():
        res = {mode: measure(seqtrain_config(dataset, data_path, train_mode=mode, **method_keys(spec)), threads,
                             skip_eval=True, max_batches=max_batches)
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
    rows = ["| model | trim_padding | batches | timed | s / epoch (each round) | median | padded / trimmed | peak RSS MB |",
            "|---|---|---|---|---|---|---|---|"]
    results = {}
    for name, spec in select_rows(SEQTRAIN_MODELS, models).items():
        res = {True: [], False: []}
        for _ in range(rounds):
            for trim in (True, False):
                config = seqtrain_config(dataset, data_path, train_mode="sequence", trim_padding=trim,
                                         **method_keys(spec))
                res[trim].append(measure(config, threads, skip_eval=True, max_batches=max_batches, warmup=2))
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


def floor(threads, dataset, data_path, max_batches, models, recipe_keys):
    """Seconds per training epoch against the matmul floor (``benchmarks/lib/floor.py``), each
    model with ``recipe_keys`` on top."""
    rows = ["| model | batches | timed | s / epoch | floor s / epoch | share of floor | TFLOP / epoch | "
            "matmul GFLOP/s | most self time (s over the timed batches) | peak RSS MB |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    results = {}
    for name, spec in select_rows(SEQTRAIN_MODELS, models).items():
        config = seqtrain_config(dataset, data_path, train_mode="sequence", **method_keys(spec), **recipe_keys)
        m = measure(config, threads, floor=True, max_batches=max_batches, warmup=2)
        results[name] = m
        top = ", ".join(f"{op.replace('aten::', '')} {sec:.2f}" for op, sec in m["top_ops"][:5])
        rows.append(f"| {name} | {m['epoch_batches']} | {m['timed_batches']} | {m['seconds_per_epoch']:.1f} | "
                    f"{m['floor_seconds_per_epoch']:.1f} | {m['share_of_floor']:.0%} | {m['tflop_per_epoch']:.2f} | "
                    f"{m['matmul_gflops']:.0f} | {top} | {m['peak_rss_mb']:.0f} |")
        print(rows[-1], flush=True)
    return results, rows


def profile(threads):
    """cProfile of one BiFair epoch on ml-100k."""
    res = measure(dict(BASE, **method_keys("BiFair")), threads, profile=True, skip_eval=True)
    return res, ["```", res["profile"], "```"]


def write(part, header, rows, payload, results_dir):
    """``cost-<part>.md`` and ``.json`` in ``results_dir``."""
    from recbole_bifair.fileio import write_json_atomic, write_text_atomic

    os.makedirs(results_dir, exist_ok=True)
    stem = os.path.join(results_dir, f"cost-{part}")
    write_text_atomic(stem + ".md", header + "\n\n" + "\n".join(rows) + "\n")
    write_json_atomic(stem + ".json", payload)
    print(f"wrote {stem}.md")
