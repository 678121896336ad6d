"""Apply a selection rule of docs/METHOD.md to finished fairness-benchmark runs (validation only).

    python benchmarks/select_backbone.py --dataset=ml-1m --candidates='LLM-SASRec,LLM-SASRec[id_fusion=sum]'
    python benchmarks/select_backbone.py --rule=bifair --dataset=ml-1m \
        --candidates='BiFair,BiFair[dro_tau=3.0],BiFair[dro_tau=10.0]'

The candidates are method names or sweep points of ``benchmarks/fairness.py`` whose runs of
each of ``--seeds`` under the ``converge`` budget have finished (in the work folder or the archive,
``benchmarks/results/runs/``); nothing is trained here. Every figure is the mean over the seeds.

- ``--rule=backbone`` (``tune_backbone.select``, the LLM-enhanced backbone): among the candidates
  whose validation NDCG@10 is at least 98% of the best, the lowest validation CV of group
  NDCG@10. SASRec's runs of the same seeds, if finished, are shown for reference.
- ``--rule=bifair`` (``select_bifair``, BiFair's strength, METHOD.md 4a): against LLM-SASRec's
  runs of the same seeds (the reference, which must have finished), the lowest validation CV among
  the candidates with validation NDCG@10 at least 0.97x LLM-SASRec's; if none, the most accurate
  among those with validation CV at most 0.75x LLM-SASRec's; if none either, no choice.
- ``--rule=posthoc-front`` (``beyond_front``, a screen of METHOD.md 4a): a candidate passes when
  no point of LLM-SASRec's post-hoc curve (LLM-SASRec itself and ``PostHoc[posthoc_beta=b]`` for
  each b of ``--front_betas``, all finished for the same seeds) has validation NDCG@10 at least and
  validation CV at most the candidate's. Every passing candidate is "chosen" (a screen, not a
  default); the front's points are shown as reference rows.

Test columns are printed for the record only. Writes
``benchmarks/results/select-<rule>-<dataset>.md``.
"""

import argparse
import datetime
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fairness  # noqa: E402
from tune_backbone import select  # noqa: E402


def finished_run(name, dataset, data_path, seed, workdir, archive_root):
    """The result JSON of the finished converge run of ``name`` (a method or sweep point), or None."""
    method, extra = fairness.parse_method(name)
    try:
        path, _ = fairness.run_one(method, seed, "converge", workdir, 1, dataset, data_path, extra=extra or None,
                                   label=name if extra else None, archive_root=archive_root, base_only=True)
    except RuntimeError:
        return None
    return path


def row(name, path):
    with open(path) as f:
        r = json.load(f)
    v, t = r["best_valid_result"], r["test_result"]
    return {"name": name, "valid_ndcg@10": v["ndcg@10"], "valid_cv": v["ndcgcv@10"],
            "test_ndcg@10": t["ndcg@10"], "test_cv": t["ndcgcv@10"],
            "test_ndcg_pop5": t.get("groupndcg@10[pop5]", float("nan")),
            "epochs": r.get("first_epoch", 0) + r["epochs_trained"]}  # a resumed run counts them all


def mean_row(name, paths):
    """``row`` averaged over the runs of several seeds (``seeds``: how many)."""
    rows = [row(name, p) for p in paths]
    return {"name": name, **{k: sum(r[k] for r in rows) / len(rows) for k in rows[0] if k != "name"},
            "seeds": len(rows)}


#: METHOD.md 4a: the issue's accuracy floor and fairness target, read on validation.
ACCURACY_FLOOR, CV_TARGET = 0.97, 0.75


def select_bifair(rows, reference):
    """``(row, why)``: the METHOD.md 4a choice among ``rows`` against ``reference`` (LLM-SASRec's
    row), or ``(None, why)`` when no candidate meets the floor or the target."""
    floor, target = ACCURACY_FLOOR * reference["valid_ndcg@10"], CV_TARGET * reference["valid_cv"]
    accurate = [r for r in rows if r["valid_ndcg@10"] >= floor]
    if accurate:
        return min(accurate, key=lambda r: r["valid_cv"]), (
            f"the lowest validation CV among the candidates with validation NDCG@10 >= {ACCURACY_FLOOR}x "
            f"LLM-SASRec's ({floor:.4f})")
    fair = [r for r in rows if r["valid_cv"] <= target]
    if fair:
        return max(fair, key=lambda r: r["valid_ndcg@10"]), (
            f"no candidate reaches validation NDCG@10 {floor:.4f} ({ACCURACY_FLOOR}x LLM-SASRec's): the most accurate "
            f"among those with validation CV <= {CV_TARGET}x LLM-SASRec's ({target:.3f})")
    return None, (f"no candidate reaches validation NDCG@10 {floor:.4f} ({ACCURACY_FLOOR}x LLM-SASRec's) or "
                  f"validation CV {target:.3f} ({CV_TARGET}x LLM-SASRec's): no choice")


def beyond_front(rows, front):
    """``{candidate name: [names of the front rows that dominate it on validation]}``: a front row
    dominates when its validation NDCG@10 is at least and its validation CV at most the
    candidate's (ties count: a candidate must be strictly better in one of the two to pass)."""
    return {r["name"]: [f["name"] for f in front
                        if f["valid_ndcg@10"] >= r["valid_ndcg@10"] and f["valid_cv"] <= r["valid_cv"]]
            for r in rows}


#: METHOD.md 4a's screen of a BiFair variant against LLM-SASRec's post-hoc curve (seed 2020 points).
FRONT_BETAS = "0.25,0.5,1.0,1.5,2.0"

RULES = {
    "backbone": ("SASRec", "SASRec (ID, reference)",
                 "among the candidates with validation NDCG@10 >= 98% of the best, the lowest validation CV of "
                 "group NDCG@10"),
    "bifair": ("LLM-SASRec", "LLM-SASRec (reference)",
               f"against LLM-SASRec's validation figures, the lowest validation CV among the candidates with "
               f"validation NDCG@10 >= {ACCURACY_FLOOR}x LLM-SASRec's; if none, the most accurate among those with "
               f"validation CV <= {CV_TARGET}x LLM-SASRec's"),
    "posthoc-front": ("LLM-SASRec", "LLM-SASRec (front, posthoc_beta 0)",
                      "a candidate passes when no point of LLM-SASRec's post-hoc curve (LLM-SASRec and its "
                      "PostHoc points) has validation NDCG@10 at least and validation CV at most the candidate's"),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rule", choices=sorted(RULES), default="backbone")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data_path", default=fairness.DEFAULT_DATA_PATH)
    parser.add_argument("--candidates", required=True, help="comma-separated methods / sweep points")
    parser.add_argument("--seeds", default="2020", help="comma-separated; the rule reads means over them")
    parser.add_argument("--front_betas", default=FRONT_BETAS,
                        help="--rule=posthoc-front: the posthoc_beta values of the PostHoc points of the front")
    parser.add_argument("--workdir", default=os.path.join(REPO, "benchmarks", "work"))
    parser.add_argument("--archive", default=fairness.ARCHIVE)
    parser.add_argument("--out_dir", default=os.path.join(REPO, "benchmarks", "results"))
    args = parser.parse_args(argv)
    workdir = os.path.join(args.workdir, f"fairness-{args.dataset}-converge")
    names = [c.strip() for c in args.candidates.split(",") if c.strip()]
    seeds = [int(x) for x in args.seeds.split(",")]
    reference_name, reference_label, rule_text = RULES[args.rule]
    front = ([f"PostHoc[posthoc_beta={b.strip()}]" for b in args.front_betas.split(",") if b.strip()]
             if args.rule == "posthoc-front" else [])
    paths = {n: [finished_run(n, args.dataset, args.data_path, seed, workdir, args.archive or None) for seed in seeds]
             for n in [reference_name] + front + names}
    required = names + front + ([reference_name] if args.rule != "backbone" else [])
    missing = [f"{n} (seed {seed})" for n in required for seed, p in zip(seeds, paths[n]) if p is None]
    if missing:
        sys.exit(f"not finished (run them with benchmarks/fairness.py --profile=converge --dataset={args.dataset} "
                 f"--seeds={args.seeds}): " + ", ".join(missing))
    rows = [mean_row(n, paths[n]) for n in names]
    reference = [mean_row(reference_label, paths[reference_name])] if None not in paths[reference_name] else []
    reference += [mean_row(f"{n} (front)", paths[n]) for n in front]
    if args.rule == "bifair":
        chosen, why = select_bifair(rows, reference[0])
    elif args.rule == "posthoc-front":
        dominated = beyond_front(rows, reference)
        passed = [r for r in rows if not dominated[r["name"]]]
        chosen = {"name": ", ".join(r["name"] for r in passed)} if passed else None
        why = "; ".join(f"{n}: " + (f"dominated by {', '.join(d)}" if d else "beyond the front")
                        for n, d in dominated.items())
        # for the record, not the rule: the stricter reading against the interpolated curve
        curve = [(f["valid_ndcg@10"], f["valid_cv"]) for f in reference]
        for r in rows:
            at = fairness.curve_cv(curve, r["valid_ndcg@10"])
            r["valid_cv_minus_curve"] = float("nan") if at is None else r["valid_cv"] - at
        why += (" (`valid_cv_minus_curve`, for the record: the candidate's validation CV minus the interpolated "
                "curve's at its validation NDCG@10, fairness.curve_cv; below 0 beyond the curve)")
    else:
        chosen, why = select(rows), None
    import pandas as pd

    from recbole_bifair.fileio import write_text_atomic

    frame = pd.DataFrame(reference + rows)
    rule_flag = "" if args.rule == "backbone" else f" --rule={args.rule}"
    if args.rule == "posthoc-front" and args.front_betas != FRONT_BETAS:
        rule_flag += f" --front_betas={args.front_betas}"
    header = (f"`python benchmarks/select_backbone.py{rule_flag} --dataset={args.dataset} --candidates='{args.candidates}'"
              f"{'' if args.seeds == '2020' else f' --seeds={args.seeds}'}` on "
              f"{datetime.date.today()}, seeds {args.seeds} (means), the fairness benchmark's converge budget "
              f"({fairness.BUDGETS['converge']}).\n\nRule (docs/METHOD.md, fixed before the runs): {rule_text}. "
              + (f"Outcome: {why}. " if why else "")
              + f"**{'Passed' if args.rule == 'posthoc-front' else 'Chosen'}: {chosen['name'] if chosen else 'none'}**. "
              "Test columns are for the record only.")
    os.makedirs(args.out_dir, exist_ok=True)
    write_text_atomic(os.path.join(args.out_dir, f"select-{args.rule}-{args.dataset}.md"),
                      header + "\n\n" + frame.to_markdown(index=False, floatfmt=".4f") + "\n")
    print(frame.to_string())
    print("chosen:", chosen["name"] if chosen else None)
    return chosen


if __name__ == "__main__":
    main()
