"""The selection rules of docs/METHOD.md, each fixed before the runs it reads, applied to
validation figures of finished runs (test figures are printed for the record only)."""

import json
import sys

from benchmarks.lib import runs
from benchmarks.lib.methods import parse_method
from benchmarks.lib.protocol import work_folder
from benchmarks.lib.stats import curve_cv

#: METHOD.md 4a: the issue's accuracy floor and fairness target, read on validation.
ACCURACY_FLOOR, CV_TARGET = 0.97, 0.75
#: METHOD.md 3c: a recipe replaces R0 when its validation NDCG@10 beats R0's by more than this (relative).
MIN_GAIN = 0.02
#: METHOD.md 3c: a recipe's model keys become plugin-wide defaults only if, at another dataset's own
#: window, they lower its validation NDCG@10 against R0 by no more than this (relative).
MAX_LOSS = 0.01
#: METHOD.md 4a's screen of a BiFair variant against LLM-SASRec's post-hoc curve (seed 2020 points).
FRONT_BETAS = "0.25,0.5,1.0,1.5,2.0"
#: METHOD.md 4c: a candidate is admissible when on every dataset its validation CV is at most
#: NO_HARM_CV x LLM-SASRec's and its validation NDCG@10 at least NO_HARM_NDCG x LLM-SASRec's.
NO_HARM_CV, NO_HARM_NDCG = 0.9, 0.95
#: METHOD.md 3f: the erasure screen's bounds for the LLM-enhanced backbone (same shape, its own bounds):
#: validation CV at most LLM-SASRec's and validation NDCG@10 at least 0.98x, on every dataset.
ERASE_CV, ERASE_NDCG = 1.0, 0.98
#: the multi-dataset rules: their (CV bound, NDCG@10 bound) against LLM-SASRec
MULTI_DATASET_BOUNDS = {"no-harm": (NO_HARM_CV, NO_HARM_NDCG), "erase": (ERASE_CV, ERASE_NDCG)}
#: METHOD.md 4d: refining E *matters* on a dataset when, in every seed, the defaults' validation
#: NDCG@10 differs from the run with E frozen by at least MATTERS_NDCG (relative) in the same
#: direction, or their validation CV by at least MATTERS_CV.
MATTERS_NDCG, MATTERS_CV = 0.02, 0.05
#: ``select_backbone.py --rule``: (reference method, its row's name, the rule in words).
RULES = {
    "backbone": ("SASRec", "SASRec (ID, reference)",
                 "among the candidates with validation NDCG@10 >= 98% of the best, the lowest validation CV of "
                 "group NDCG@10"),
    "bifair": ("LLM-SASRec", "LLM-SASRec (reference)",
               f"against LLM-SASRec's validation figures, the lowest validation CV among the candidates with "
               f"validation NDCG@10 >= {ACCURACY_FLOOR}x LLM-SASRec's; if none, the most accurate among those with "
               f"validation CV <= {CV_TARGET}x LLM-SASRec's"),
    "no-harm": ("LLM-SASRec", "LLM-SASRec (reference)",
                f"over several datasets (METHOD.md 4c): admissible when on every dataset validation CV <= {NO_HARM_CV}x "
                f"and validation NDCG@10 >= {NO_HARM_NDCG}x LLM-SASRec's; among the admissible, the lowest mean over "
                f"the datasets of validation CV / LLM-SASRec's"),
    "erase": ("LLM-SASRec", "LLM-SASRec (reference)",
              f"over several datasets (METHOD.md 3f): passes when on every dataset validation CV <= {ERASE_CV}x and "
              f"validation NDCG@10 >= {ERASE_NDCG}x LLM-SASRec's; among the passing, the lowest mean CV ratio"),
    "posthoc-front": ("LLM-SASRec", "LLM-SASRec (front, posthoc_beta 0)",
                      "a candidate passes when no point of LLM-SASRec's post-hoc curve (LLM-SASRec and its "
                      "PostHoc points) has validation NDCG@10 at least and validation CV at most the candidate's"),
}


def finished_run(name, dataset, data_path, seed, workdir, archive_root, profile="converge"):
    """The result JSON of the finished ``profile`` run of ``name`` (a method or sweep point), or None."""
    method, extra = parse_method(name)
    try:
        path, _ = runs.run_one(method, seed, profile, workdir, 1, dataset, data_path, extra=extra or None,
                               label=name if extra else None, archive_root=archive_root, base_only=True)
    except RuntimeError:
        return None
    return path


def finished_paths(args, dataset, names, seeds, required):
    """``{name: [result path or None per seed]}`` of the ``args.profile`` runs of ``names`` on
    ``dataset`` (``args``: a selection script's ``workdir``, ``archive``, ``data_path``, ``seeds``);
    exits naming the unfinished runs of ``required`` and the command that makes them."""
    workdir = work_folder(args.workdir, dataset, args.profile)
    paths = {n: [finished_run(n, dataset, args.data_path, seed, workdir, args.archive or None, args.profile)
                 for seed in seeds] for n in names}
    missing = [f"{n} (seed {seed})" for n in required for seed, p in zip(seeds, paths[n]) if p is None]
    if missing:
        sys.exit(f"not finished (run them with benchmarks/fairness.py --profile={args.profile} --dataset={dataset} "
                 f"--seeds={args.seeds}): " + ", ".join(missing))
    return paths


def row(name, path):
    """A run's validation and test figures."""
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


def select_backbone(rows):
    """The backbone rule (the strong-backbone issue): among the candidates (rows other than SASRec)
    whose validation NDCG@10 is at least 98% of the best, the lowest validation CV."""
    candidates = [r for r in rows if r["name"] != "SASRec"]
    best = max(r["valid_ndcg@10"] for r in candidates)
    eligible = [r for r in candidates if r["valid_ndcg@10"] >= 0.98 * best]
    return min(eligible, key=lambda r: r["valid_cv"])


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


def posthoc_front(rows, front):
    """``(passed, why)`` of the post-hoc front screen: ``passed`` names every candidate no front
    point dominates (``beyond_front``; None if none). For the record, not the rule, each row gets
    ``valid_cv_minus_curve``: its validation CV minus the interpolated curve's at its validation
    NDCG@10 (``stats.curve_cv``; NaN above the curve's most accurate point)."""
    dominated = beyond_front(rows, front)
    passed = [r for r in rows if not dominated[r["name"]]]
    why = "; ".join(f"{n}: " + (f"dominated by {', '.join(d)}" if d else "beyond the front")
                    for n, d in dominated.items())
    curve = [(f["valid_ndcg@10"], f["valid_cv"]) for f in front]
    for r in rows:
        at = curve_cv(curve, r["valid_ndcg@10"])
        r["valid_cv_minus_curve"] = float("nan") if at is None else r["valid_cv"] - at
    why += (" (`valid_cv_minus_curve`, for the record: the candidate's validation CV minus the interpolated "
            "curve's at its validation NDCG@10, benchmarks.lib.stats.curve_cv; below 0 beyond the curve)")
    return ({"name": ", ".join(r["name"] for r in passed)} if passed else None), why


def select_no_harm(rows_by_dataset, reference_by_dataset, bounds=(NO_HARM_CV, NO_HARM_NDCG)):
    """``(chosen row or None, why, table)``: METHOD.md 4c's rule over datasets (``bounds``: the CV
    and NDCG@10 ratio bounds; 3f's erasure screen uses ``ERASE_CV, ERASE_NDCG``). ``rows_by_dataset``:
    ``{dataset: [candidate rows]}`` (the same names on each), ``reference_by_dataset``: ``{dataset:
    LLM-SASRec's row}``. ``table``: one row per candidate with its ratios per dataset."""
    cv_bound, ndcg_bound = bounds
    datasets = list(rows_by_dataset)
    names = [r["name"] for r in rows_by_dataset[datasets[0]]]
    table = []
    for name in names:
        entry = {"name": name}
        for d in datasets:
            r = next(x for x in rows_by_dataset[d] if x["name"] == name)
            ref = reference_by_dataset[d]
            entry[f"{d} ndcg ratio"] = r["valid_ndcg@10"] / ref["valid_ndcg@10"]
            entry[f"{d} cv ratio"] = r["valid_cv"] / ref["valid_cv"]
        entry["admissible"] = all(entry[f"{d} cv ratio"] <= cv_bound and entry[f"{d} ndcg ratio"] >= ndcg_bound
                                  for d in datasets)
        entry["mean cv ratio"] = sum(entry[f"{d} cv ratio"] for d in datasets) / len(datasets)
        table.append(entry)
    admissible = [e for e in table if e["admissible"]]
    if not admissible:
        return None, "no candidate is admissible on every dataset: the defaults stay", table
    chosen = min(admissible, key=lambda e: e["mean cv ratio"])
    return chosen, f"the lowest mean CV ratio among {len(admissible)} admissible", table


def refinement_effect(refined, frozen):
    """METHOD.md 4d's part A on one dataset: ``refined`` and ``frozen`` are ``row``s of the same
    seeds, in the same order. Returns ``{"ndcg change": [...], "cv change": [...], "matters": bool,
    "by": the figures that moved}``, the changes relative (refined / frozen - 1) per seed."""
    if not refined or len(refined) != len(frozen):
        raise ValueError("refinement_effect needs one refined and one frozen row per seed")
    out = {"ndcg change": [r["valid_ndcg@10"] / f["valid_ndcg@10"] - 1 for r, f in zip(refined, frozen)],
           "cv change": [r["valid_cv"] / f["valid_cv"] - 1 for r, f in zip(refined, frozen)]}

    def moved(changes, bound):
        # "at least": a change on the bound counts (1e-12 absorbs the float error of the ratio)
        return all(abs(c) >= bound - 1e-12 for c in changes) and (all(c > 0 for c in changes) or all(c < 0 for c in changes))

    out["by"] = [k for k, bound in (("ndcg change", MATTERS_NDCG), ("cv change", MATTERS_CV))
                 if moved(out[k], bound)]
    out["matters"] = bool(out["by"])
    return out


def apply_rule(rule, rows, reference):
    """``(chosen row or None, why or None)`` of ``RULES[rule]`` on the candidates' ``rows``;
    ``reference``: the reference rows (LLM-SASRec's first; the front's points for ``posthoc-front``)."""
    if rule == "bifair":
        return select_bifair(rows, reference[0])
    if rule == "posthoc-front":
        return posthoc_front(rows, reference)
    return select_backbone(rows), None


def choose_recipe(rows):
    """The rule of METHOD.md 3c on the rows' validation NDCG@10: the best candidate if it beats R0
    by more than ``MIN_GAIN``, else R0."""
    base = next(r for r in rows if r["name"] == "R0")
    best = max(rows, key=lambda r: r["valid_ndcg@10"])
    return best if best["valid_ndcg@10"] > (1 + MIN_GAIN) * base["valid_ndcg@10"] else base


def model_keys_check(rows):
    """METHOD.md 3c's check of R1's model keys on a dataset they were not chosen on: ``(passes,
    relative change of validation NDCG@10 of R1-model against R0)``."""
    base = next(r for r in rows if r["name"] == "R0")["valid_ndcg@10"]
    change = next(r for r in rows if r["name"] == "R1-model")["valid_ndcg@10"] / base - 1
    return change >= -MAX_LOSS, change
