"""``run_hyper``: hyperparameter search with Ray Tune over RecBole configs.

    run_hyper --model=BiFairSASRec --dataset=ml-100k --params_file=properties/hyper/bifair_ml100k.test
              [--config_files="a.yaml b.yaml"] [--objective=ndcg@10 | --objective=ndcg@10,ndcggap@10]
              [--constraint="ndcggap@10<=0.3"] [--algo=exhaustive|random] [--num_samples=N]
              [--scheduler=asha|fifo] [--grace_period=EPOCHS] [--reduction_factor=R]
              [--max_concurrent=N] [--cpus_per_trial=N] [--gpus_per_trial=N] [--max_failures=N]
              [--address=auto|HOST:PORT] [--storage_path=DIR] [--name=NAME] [--output_dir=DIR]
              [--resume] [--key=value ...] [--debug]

Other --key=value arguments are fixed RecBole config overrides for every trial. Writes
trials.csv, trials.md, best.yaml (reruns with run_recbole_bifair --config_files=best.yaml),
summary.json and pareto.png (when a second metric is named, by --objective=ACC,UNFAIR or
--constraint) to --output_dir.
"""

import sys

from recbole_bifair import setup
from recbole_bifair.cli import run_cli, split_flags
from recbole_bifair.errors import ConfigError

USAGE = __doc__.strip()
PLAN_FLAGS = {
    "model": str, "dataset": str, "params_file": str, "config_files": str, "objective": str, "constraint": str,
    "algo": str, "num_samples": int, "scheduler": str, "grace_period": int, "reduction_factor": float,
    "max_concurrent": int, "cpus_per_trial": float, "gpus_per_trial": float, "max_failures": int,
    "storage_path": str, "name": str, "output_dir": str,
}
RUN_FLAGS = {"address": str}


def parse_args(argv):
    """(plan keyword arguments, run keyword arguments) from the command line."""
    argv = list(argv)
    resume = "--resume" in argv
    if any(a.startswith("--resume=") for a in argv):
        raise ConfigError("--resume takes no value: write --resume")
    argv = [a for a in argv if a != "--resume"]
    values, _, overrides = split_flags(argv, set(PLAN_FLAGS) | set(RUN_FLAGS))
    plan, run = {}, {"resume": resume}
    for name, text in values.items():
        kind = PLAN_FLAGS.get(name) or RUN_FLAGS[name]
        try:
            value = kind(text)
        except ValueError:
            raise ConfigError(f"--{name}={text}: expected {'an integer' if kind is int else 'a number'}") from None
        (plan if name in PLAN_FLAGS else run)[name] = value
    for required in ("model", "dataset", "params_file"):
        if required not in plan:
            raise ConfigError(f"--{required} is required (see --help)")
    plan["config_files"] = plan.get("config_files", "").split()
    plan["overrides"] = overrides
    return plan, run


def main(argv):
    from recbole_bifair.tune.runner import plan_search, run_search  # loads Ray: not for --help

    plan_args, run_args = parse_args(argv)
    setup()
    result = run_search(plan_search(**plan_args), **run_args)
    print(f"chosen trial: {result.chosen}")
    print(f"test result: {result.test_result}")
    print(f"report: {', '.join(result.files.values())}")
    return result


def console_main():
    sys.exit(run_cli(main, usage=USAGE))


if __name__ == "__main__":
    console_main()
