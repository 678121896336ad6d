"""The search's record: one table row per trial, the chosen configuration as RecBole YAML, the
Pareto figure. Everything is written atomically (``recbole_bifair.fileio``)."""

import json
import math
import os

import pandas as pd
import yaml

from recbole_bifair.fileio import atomic_path, write_json_atomic, write_text_atomic
from recbole_bifair.tune.objective import select, smaller_is_better

STATUS_COMPLETED = "completed"  # trained to its last epoch or stopped by RecBole's early stopping
STATUS_STOPPED = "stopped"  # stopped early by the scheduler (ASHA)
STATUS_FAILED = "failed"  # raised on every attempt (the first plus FailureConfig's retries)

OUTPUT_FILES = ("trials.csv", "trials.md", "best.yaml", "pareto.png", "summary.json")


def trial_row(result, space):
    """One ``ray.air.Result`` as a flat dict: id, status, epochs, parameters, validation metrics.

    The metrics are those of the epoch RecBole keeps (best ``valid_metric``), reported by the
    trainable as ``best/<metric>``.
    """
    metrics = result.metrics or {}
    trial_dir = str(result.path)
    params = result.config if result.config is not None else _params_file(trial_dir)
    if result.error is not None:
        status = STATUS_FAILED
    else:
        status = STATUS_COMPLETED if metrics.get("finished") else STATUS_STOPPED
    row = {
        "trial": os.path.basename(trial_dir.rstrip("/")),
        "status": status,
        "epochs": int(metrics.get("epoch", 0) or 0),
        "best_epoch": metrics.get("best_epoch"),
    }
    for name in space.names:
        row[name] = _cell(params.get(name)) if params else None
    row.update({key[len("best/"):]: value for key, value in metrics.items() if key.startswith("best/")})
    row["error"] = _last_line(result.error) if result.error is not None else ""
    return row


def _params_file(trial_dir):
    # A trial that failed before its first report has no result (and so no ``config``); Tune's
    # JSON logger wrote its parameters when it started.
    try:
        with open(os.path.join(trial_dir, "params.json"), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _cell(value):
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def _last_line(error):
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def build_table(results, space, objective):
    """The trials table and the chosen row's index (None when no trial qualifies).

    Columns: trial, status, epochs, best_epoch, the searched parameters, the validation metrics,
    ``feasible`` (with a constraint), ``pareto`` (with a second metric), ``chosen``, ``error``.
    """
    rows = [trial_row(r, space) for r in results]
    table = pd.DataFrame(rows)
    ok = [i for i, r in enumerate(rows) if r["status"] != STATUS_FAILED]
    feasible, pareto, pick = select([rows[i] for i in ok], objective)
    chosen = ok[pick] if pick is not None else None
    error = table.pop("error")

    def per_trial(flags):  # failed trials: False
        column = [False] * len(rows)
        for i, flag in zip(ok, flags):
            column[i] = bool(flag)
        return column

    if objective.constraint:
        table["feasible"] = per_trial(feasible)
    if objective.pareto_axes:
        table["pareto"] = per_trial(pareto)
    table["chosen"] = [i == chosen for i in range(len(rows))]
    table["error"] = error
    return table, chosen


def metric_columns(table, space):
    fixed = {"trial", "status", "epochs", "best_epoch", "feasible", "pareto", "chosen", "error"}
    return [c for c in table.columns if c not in fixed and c not in space.names]


def best_config(model, dataset, fixed, params):
    """The chosen trial's full external config: model, dataset, fixed settings, searched values."""
    return {"model": model, "dataset": dataset, **fixed, **{k: plain(v) for k, v in params.items()}}


def best_yaml_text(config, searched, header):
    """RecBole YAML that ``run_recbole_bifair --config_files`` reads as is."""
    fixed = {k: v for k, v in config.items() if k not in searched}
    chosen = {k: config[k] for k in searched}
    lines = [f"# {line}" for line in header]
    lines += [yaml.safe_dump(fixed, sort_keys=False, default_flow_style=False).rstrip()]
    lines += ["# searched parameters", yaml.safe_dump(chosen, sort_keys=False, default_flow_style=False).rstrip()]
    return "\n".join(lines) + "\n"


def plain(value):
    """Plain Python values (YAML/JSON-safe) from Ray's samples."""
    if hasattr(value, "item"):  # numpy scalars from Ray's samplers
        return value.item()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def markdown_report(table, space, objective, title, chosen=None, test_result=None, note=None):
    counts = table["status"].value_counts()
    lines = [
        f"# {title}", "",
        f"Objective: {objective.describe()}. Selection uses validation metrics only; the metrics "
        f"below are those of each trial's best epoch (RecBole's `valid_metric`).", "",
        "Trials: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in (STATUS_COMPLETED, STATUS_STOPPED, STATUS_FAILED)),
        "",
    ]
    if chosen is not None:
        lines += [f"Chosen trial: `{table.loc[chosen, 'trial']}` (configuration in `best.yaml`).", ""]
    if note:
        lines += [note, ""]
    lines += ["## Validation", "", table.to_markdown(index=False), ""]
    if test_result:
        lines += [
            "## Test (chosen trial only, evaluated once after selection)", "",
            pd.DataFrame([test_result]).to_markdown(index=False), "",
        ]
    return "\n".join(lines)


def plot_pareto(path, table, objective, chosen):
    """Accuracy against unfairness for every trial with metrics, the front joined, the choice
    starred and the constraint drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    accuracy, unfairness = objective.pareto_axes
    usable = table[table["status"] != STATUS_FAILED].dropna(subset=[accuracy, unfairness])
    fig, ax = plt.subplots(figsize=(6, 4.5))
    feasible = usable["feasible"] if "feasible" in usable else pd.Series(True, index=usable.index)
    if feasible.any():
        ax.scatter(usable.loc[feasible, unfairness], usable.loc[feasible, accuracy], color="tab:gray", label="trial")
    if (~feasible).any():
        ax.scatter(usable.loc[~feasible, unfairness], usable.loc[~feasible, accuracy], color="tab:gray",
                   marker="x", label="violates constraint")
    front = usable[usable["pareto"]].sort_values(unfairness)
    if len(front):
        ax.plot(front[unfairness], front[accuracy], "o-", color="tab:blue", label="Pareto front")
    if chosen is not None:
        ax.scatter([table.loc[chosen, unfairness]], [table.loc[chosen, accuracy]], marker="*", s=250,
                   color="tab:red", zorder=3, label=f"chosen ({table.loc[chosen, 'trial']})")
    constraint = objective.constraint
    if constraint is not None and constraint.metric in (accuracy, unfairness):
        draw = ax.axvline if constraint.metric == unfairness else ax.axhline
        draw(constraint.bound, color="tab:orange", linestyle="--", label=f"constraint {constraint}")
    ax.set_xlabel(f"{unfairness} (validation, {_direction(unfairness)})")
    ax.set_ylabel(f"{accuracy} (validation, {_direction(accuracy)})")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def _direction(metric):
    return "lower is better" if smaller_is_better(metric) else "higher is better"


def write_outputs(output_dir, table, space, objective, title, chosen=None, config=None, test_result=None,
                  summary=None, note=None):
    """Write trials.csv/.md, pareto.png (with a second metric) and, with a chosen trial,
    best.yaml and summary.json. Files of an earlier search in ``output_dir`` that this one does
    not produce are removed, so that a stale best.yaml never sits beside a new table."""
    os.makedirs(output_dir, exist_ok=True)
    written = {}

    def target(name):
        written[name] = os.path.join(output_dir, name)
        return written[name]

    with atomic_path(target("trials.csv")) as tmp:
        table.to_csv(tmp, index=False)
    write_text_atomic(target("trials.md"), markdown_report(table, space, objective, title, chosen, test_result, note))
    if objective.pareto_axes and set(objective.pareto_axes) <= set(table.columns):
        plot_pareto(target("pareto.png"), table, objective, chosen)
    if chosen is not None:
        header = [
            f"{title}: trial {table.loc[chosen, 'trial']}, chosen by {objective.describe()} on validation.",
            "validation: " + ", ".join(f"{m}={_fmt(table.loc[chosen, m])}" for m in metric_columns(table, space)),
        ]
        if test_result:
            header.append("test: " + ", ".join(f"{k}={_fmt(v)}" for k, v in test_result.items()))
        write_text_atomic(target("best.yaml"), best_yaml_text(config, space.names, header))
        write_json_atomic(target("summary.json"), summary)
    for name in OUTPUT_FILES:
        path = os.path.join(output_dir, name)
        if name not in written and os.path.exists(path):
            os.remove(path)
    return written


def _fmt(value):
    return f"{value:.4f}" if isinstance(value, float) and math.isfinite(value) else str(value)
