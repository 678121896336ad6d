"""A full-ranking validation pass of a trained checkpoint with and without ``trim_padding``
(``eval_speed.py``): the seconds of each way, and whether the two rank alike."""

import datetime
import os
import time


def time_passes(trainer, valid_data, repeats):
    """``({trim: [seconds per pass]}, {trim: validation metrics})``, the two ways alternating."""
    seconds = {True: [], False: []}
    metrics = {}
    for _ in range(repeats):
        for trim in (True, False):
            trainer.trim_padding = trim
            started = time.time()
            result = trainer.evaluate(valid_data, load_best_model=False)
            seconds[trim].append(time.time() - started)
            metrics[trim] = {k: float(v) for k, v in result.items()}
    return seconds, metrics


def agreement(model, valid_data):
    """``(users with the same top-10 list, users, largest score difference)`` of every validation
    batch scored both ways."""
    import torch

    from recbole_bifair.model.padding import trimmed_full_sort

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
    return same, users, max_diff


def report(args, config, model, valid_data, load_before, seconds, metrics, same, users, max_diff):
    """The JSON record of a measurement."""
    lengths = valid_data.dataset.inter_feat[model.ITEM_SEQ_LEN].float()
    return {
        "checkpoint": os.path.abspath(args.checkpoint), "model": config["model"], "dataset": config["dataset"],
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "threads": args.threads, "cores": os.cpu_count(), "load_before": load_before, "load_after": os.getloadavg(),
        "valid_users": users, "max_len": int(config["MAX_ITEM_LIST_LENGTH"]),
        "mean_history_length": float(lengths.mean()), "seconds_trimmed": seconds[True], "seconds_padded": seconds[False],
        "speedup": min(seconds[False]) / min(seconds[True]), "metrics_trimmed": metrics[True],
        "metrics_padded": metrics[False], "metrics_equal": metrics[True] == metrics[False],
        "same_top10_share": same / users, "max_abs_score_diff": max_diff,
    }


def markdown(args, r, same):
    """The .md of a record (``report``); ``same``: users with the same top-10 list."""
    seconds = {True: r["seconds_trimmed"], False: r["seconds_padded"]}
    metrics = {True: r["metrics_trimmed"], False: r["metrics_padded"]}
    lines = [
        f"# Full-ranking validation pass: {r['model']} on {r['dataset']}", "",
        f"`python benchmarks/eval_speed.py <checkpoint> --name={args.name} --repeats={args.repeats} "
        f"--threads={args.threads}` on {r['date']}; {r['valid_users']} validation users, mean history "
        f"{r['mean_history_length']:.1f} of {r['max_len']} positions; {args.threads} torch thread(s), "
        f"{os.cpu_count()} cores, load average before {r['load_before'][0]:.2f}, after {r['load_after'][0]:.2f} "
        f"(other runs may share the cores).", "",
        "| trim_padding | seconds per pass (each repeat) | best |", "| --- | --- | --- |",
        f"| True (trimmed) | {', '.join(f'{s:.1f}' for s in seconds[True])} | {min(seconds[True]):.1f} |",
        f"| False (RecBole's padded batch) | {', '.join(f'{s:.1f}' for s in seconds[False])} | {min(seconds[False]):.1f} |",
        "",
        f"Speed-up (best of each): {r['speedup']:.2f}x. Validation metrics identical: {r['metrics_equal']} "
        f"(NDCG@10 {metrics[True].get('ndcg@10')} trimmed, {metrics[False].get('ndcg@10')} padded). Users with the "
        f"same top-10 list: {same} of {r['valid_users']}; largest score difference {r['max_abs_score_diff']:.2e}.", "",
    ]
    return "\n".join(lines)
