"""Apply a selection rule of docs/METHOD.md to finished fairness-benchmark runs (validation only).

    python benchmarks/select_backbone.py --dataset=ml-1m --candidates='LLM-SASRec,LLM-SASRec[id_fusion=sum]'
    python benchmarks/select_backbone.py --rule=bifair --dataset=ml-1m \
        --candidates='BiFair,BiFair[dro_tau=3.0],BiFair[dro_tau=10.0]'

The candidates are method names or sweep points of ``benchmarks/fairness.py`` whose runs of
each of ``--seeds`` under the ``--profile`` budget (default ``converge``) have finished (in the work folder or the archive,
``benchmarks/results/runs/``); nothing is trained here. Every figure is the mean over the seeds.

- ``--rule=backbone`` (``select_backbone``, the LLM-enhanced backbone): among the candidates
  whose validation NDCG@10 is at least 98% of the best, the lowest validation CV of group
  NDCG@10. SASRec's runs of the same seeds, if finished, are shown for reference.
- ``--rule=bifair`` (``select_bifair``, BiFair's strength, METHOD.md 4a): against LLM-SASRec's
  runs of the same seeds (the reference, which must have finished), the lowest validation CV among
  the candidates with validation NDCG@10 at least 0.97x LLM-SASRec's; if none, the most accurate
  among those with validation CV at most 0.75x LLM-SASRec's; if none either, no choice.
- ``--rule=no-harm`` (``select_no_harm``, METHOD.md 4c), over the comma-separated ``--dataset``s:
  a candidate is admissible when on every dataset its validation CV is at most 0.9x and its
  validation NDCG@10 at least 0.95x LLM-SASRec's (finished on each); among the admissible, the
  lowest mean over the datasets of validation CV / LLM-SASRec's. Writes
  ``select-no-harm-<d1>+<d2>....md``.
- ``--rule=erase`` (METHOD.md 3f): the same over datasets with the erasure screen's bounds, validation
  CV at most 1.0x and validation NDCG@10 at least 0.98x LLM-SASRec's; ``select-erase-<d1>+<d2>....md``.
- ``--rule=posthoc-front`` (``beyond_front``, a screen of METHOD.md 4a): a candidate passes when
  no point of LLM-SASRec's post-hoc curve (LLM-SASRec itself and ``PostHoc[posthoc_beta=b]`` for
  each b of ``--front_betas``, all finished for the same seeds) has validation NDCG@10 at least and
  validation CV at most the candidate's. Every passing candidate is "chosen" (a screen, not a
  default); the front's points are shown as reference rows.

Test columns are printed for the record only. Writes
``benchmarks/results/select-<rule>-<dataset>.md``. The rules are in ``benchmarks.lib.selection``.
"""

import argparse
import datetime
import os

if not __package__:  # run by path: see benchmarks/_path.py
    import _path  # noqa: F401

from benchmarks.lib import selection  # noqa: E402
from benchmarks.lib.paths import ARCHIVE, DEFAULT_DATA_PATH, RESULTS, WORK  # noqa: E402
from benchmarks.lib.protocol import BUDGETS, PROFILES  # noqa: E402


def parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rule", choices=sorted(selection.RULES), default="backbone")
    p.add_argument("--dataset", required=True, help="--rule=no-harm or erase: comma-separated datasets")
    p.add_argument("--profile", default="converge", choices=sorted(PROFILES),
                   help="the fairness benchmark's profile of the runs")
    p.add_argument("--data_path", default=DEFAULT_DATA_PATH)
    p.add_argument("--candidates", required=True, help="comma-separated methods / sweep points")
    p.add_argument("--seeds", default="2020", help="comma-separated; the rule reads means over them")
    p.add_argument("--front_betas", default=selection.FRONT_BETAS,
                   help="--rule=posthoc-front: the posthoc_beta values of the PostHoc points of the front")
    p.add_argument("--workdir", default=WORK)
    p.add_argument("--archive", default=ARCHIVE)
    p.add_argument("--out_dir", default=RESULTS)
    return p


def header(args, rule_text, chosen, why):
    rule_flag = "" if args.rule == "backbone" else f" --rule={args.rule}"
    if args.rule == "posthoc-front" and args.front_betas != selection.FRONT_BETAS:
        rule_flag += f" --front_betas={args.front_betas}"
    if args.profile != "converge":
        rule_flag += f" --profile={args.profile}"
    return (f"`python benchmarks/select_backbone.py{rule_flag} --dataset={args.dataset} "
            f"--candidates='{args.candidates}'"
            f"{'' if args.seeds == '2020' else f' --seeds={args.seeds}'}` on "
            f"{datetime.date.today()}, seeds {args.seeds} (means), the fairness benchmark's {args.profile} budget "
            f"({BUDGETS[PROFILES[args.profile]['budget']]}).\n\nRule (docs/METHOD.md, fixed before the runs): {rule_text}. "
            + (f"Outcome: {why}. " if why else "")
            + f"**{'Passed' if args.rule == 'posthoc-front' else 'Chosen'}: {chosen['name'] if chosen else 'none'}**. "
            "Test columns are for the record only.")


def main_no_harm(args, names, seeds):
    """``--rule=no-harm`` (METHOD.md 4c) or ``erase`` (3f): the rule over the datasets of ``--dataset``."""
    import pandas as pd

    from recbole_bifair.fileio import write_text_atomic

    reference_name, reference_label, rule_text = selection.RULES[args.rule]
    datasets = [d.strip() for d in args.dataset.split(",") if d.strip()]
    rows, reference = {}, {}
    for d in datasets:
        paths = selection.finished_paths(args, d, [reference_name] + names, seeds, [reference_name] + names)
        rows[d] = [selection.mean_row(n, paths[n]) for n in names]
        reference[d] = selection.mean_row(reference_label, paths[reference_name])
    chosen, why, table = selection.select_no_harm(rows, reference, selection.MULTI_DATASET_BOUNDS[args.rule])
    frames = [pd.DataFrame(table)] + [pd.DataFrame([reference[d]] + rows[d]).assign(dataset=d) for d in datasets]
    text = (header(args, rule_text, chosen, why) + "\n\n" + frames[0].to_markdown(index=False, floatfmt=".3f")
            + "\n\nValidation and test figures per dataset (test for the record only):\n\n"
            + pd.concat(frames[1:]).to_markdown(index=False, floatfmt=".4f") + "\n")
    os.makedirs(args.out_dir, exist_ok=True)
    write_text_atomic(os.path.join(args.out_dir, f"select-{args.rule}-{'+'.join(datasets)}.md"), text)
    print(frames[0].to_string())
    print("chosen:", chosen["name"] if chosen else None)
    return chosen


def main(argv=None):
    args = parser().parse_args(argv)
    names = [c.strip() for c in args.candidates.split(",") if c.strip()]
    seeds = [int(x) for x in args.seeds.split(",")]
    if args.rule in selection.MULTI_DATASET_BOUNDS:
        return main_no_harm(args, names, seeds)
    reference_name, reference_label, rule_text = selection.RULES[args.rule]
    front = ([f"PostHoc[posthoc_beta={b.strip()}]" for b in args.front_betas.split(",") if b.strip()]
             if args.rule == "posthoc-front" else [])
    required = names + front + ([reference_name] if args.rule != "backbone" else [])
    paths = selection.finished_paths(args, args.dataset, [reference_name] + front + names, seeds, required)
    rows = [selection.mean_row(n, paths[n]) for n in names]
    finished_reference = None not in paths[reference_name]
    reference = [selection.mean_row(reference_label, paths[reference_name])] if finished_reference else []
    reference += [selection.mean_row(f"{n} (front)", paths[n]) for n in front]
    chosen, why = selection.apply_rule(args.rule, rows, reference)
    import pandas as pd

    from recbole_bifair.fileio import write_text_atomic

    frame = pd.DataFrame(reference + rows)
    os.makedirs(args.out_dir, exist_ok=True)
    write_text_atomic(os.path.join(args.out_dir, f"select-{args.rule}-{args.dataset}.md"),
                      header(args, rule_text, chosen, why) + "\n\n" + frame.to_markdown(index=False, floatfmt=".4f")
                      + "\n")
    print(frame.to_string())
    print("chosen:", chosen["name"] if chosen else None)
    return chosen


if __name__ == "__main__":
    main()
