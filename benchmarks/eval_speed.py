"""Seconds of one full-ranking validation pass of a trained checkpoint with and without
``trim_padding`` (model/padding.py), and whether the rankings agree.

    python benchmarks/eval_speed.py <checkpoint.pth> --name=amazon-beauty-5core [--repeats=2] [--threads=1]

The checkpoint is loaded with its own config and data split (``load_data_and_model``); the
validation pass is the trainer's ``evaluate`` (scores, masking, the collector and every metric
of the run), timed ``--repeats`` times each way, alternating. Agreement: the validation metrics of
both ways, and the share of validation users whose top-10 list is identical (scores of every
batch computed both ways). Written to ``benchmarks/results/eval-speed-<name>.json`` and ``.md``
with the load average, since the machine may be shared.
"""

import argparse
import datetime
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
RESULTS = os.path.join(REPO, "benchmarks", "results")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--name", required=True, help="output name: eval-speed-<name>.json/.md")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out_dir", default=RESULTS)
    args = parser.parse_args(argv)
    import torch

    from recbole_bifair.fileio import write_json_atomic, write_text_atomic
    from recbole_bifair.quick_start import load_data_and_model
    from recbole_bifair.model.padding import trimmed_full_sort, trims_padding
    from recbole_bifair.utils import get_trainer

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    config, model, dataset, train_data, valid_data, _ = load_data_and_model(args.checkpoint)
    if not trims_padding(model):
        parser.error(f"{config['model']} is not a causal backbone: trim_padding does not apply to it")
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.eval_collector.data_collect(train_data)
    seconds = {True: [], False: []}
    metrics = {}
    for _ in range(args.repeats):
        for trim in (True, False):
            trainer.trim_padding = trim
            started = time.time()
            result = trainer.evaluate(valid_data, load_best_model=False)
            seconds[trim].append(time.time() - started)
            metrics[trim] = {k: float(v) for k, v in result.items()}
    model.eval()
    same = users = 0
    max_diff = 0.0
    with torch.no_grad():
        for batch in valid_data:
            interaction = batch[0]
            padded = model.full_sort_predict(interaction).view(len(interaction), -1)
            trimmed = trimmed_full_sort(model, interaction)
            max_diff = max(max_diff, float((padded - trimmed).abs().max()))
            same += int((padded.topk(10).indices == trimmed.topk(10).indices).all(1).sum())
            users += len(interaction)
    lengths = valid_data.dataset.inter_feat[model.ITEM_SEQ_LEN].float()
    report = {
        "checkpoint": os.path.abspath(args.checkpoint), "model": config["model"], "dataset": config["dataset"],
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "threads": args.threads, "cores": os.cpu_count(), "load_before": load_before, "load_after": os.getloadavg(),
        "valid_users": users, "max_len": int(config["MAX_ITEM_LIST_LENGTH"]),
        "mean_history_length": float(lengths.mean()), "seconds_trimmed": seconds[True], "seconds_padded": seconds[False],
        "speedup": min(seconds[False]) / min(seconds[True]), "metrics_trimmed": metrics[True],
        "metrics_padded": metrics[False], "metrics_equal": metrics[True] == metrics[False],
        "same_top10_share": same / users, "max_abs_score_diff": max_diff,
    }
    stem = os.path.join(args.out_dir, f"eval-speed-{args.name}")
    write_json_atomic(stem + ".json", report)
    lines = [
        f"# Full-ranking validation pass: {config['model']} on {config['dataset']}", "",
        f"`python benchmarks/eval_speed.py <checkpoint> --name={args.name} --repeats={args.repeats} "
        f"--threads={args.threads}` on {report['date']}; {users} validation users, mean history "
        f"{report['mean_history_length']:.1f} of {report['max_len']} positions; {args.threads} torch thread(s), "
        f"{os.cpu_count()} cores, load average before {load_before[0]:.2f}, after {report['load_after'][0]:.2f} "
        f"(other runs may share the cores).", "",
        "| trim_padding | seconds per pass (each repeat) | best |", "| --- | --- | --- |",
        f"| True (trimmed) | {', '.join(f'{s:.1f}' for s in seconds[True])} | {min(seconds[True]):.1f} |",
        f"| False (RecBole's padded batch) | {', '.join(f'{s:.1f}' for s in seconds[False])} | {min(seconds[False]):.1f} |",
        "",
        f"Speed-up (best of each): {report['speedup']:.2f}x. Validation metrics identical: {report['metrics_equal']} "
        f"(NDCG@10 {metrics[True].get('ndcg@10')} trimmed, {metrics[False].get('ndcg@10')} padded). Users with the "
        f"same top-10 list: {same} of {users}; largest score difference {max_diff:.2e}.", "",
    ]
    write_text_atomic(stem + ".md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
