"""Test metrics of a saved checkpoint (the best validation epoch so far of a run still going, or
of one that was stopped), with the run's own config and data split; or, with ``--config_files``,
a trained model evaluated under a config that differs only in ranking-time keys (``posthoc_beta``:
the post-hoc baseline of a trained LLM-SASRec), written as a run's result file.

    python benchmarks/eval_checkpoint.py saved/BiFairSASRec-....pth [--out=result.json]
    python benchmarks/eval_checkpoint.py saved/BiFairSASRec-....pth --config_files="A.yaml B.yaml"
"""

import argparse
import json
import os

if not __package__:  # run by path: see benchmarks/_path.py
    import _path  # noqa: F401


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--out", default=None)
    parser.add_argument("--config_files", default=None,
                        help="evaluate under these config files (recbole_bifair.quick_start.evaluate_checkpoint); "
                             "the result file goes to their results_dir")
    args = parser.parse_args(argv)
    from recbole_bifair.compat import load_checkpoint
    from recbole_bifair.fileio import write_json_atomic
    from recbole_bifair.quick_start import evaluate_checkpoint, load_data_and_model
    from recbole_bifair.utils import get_trainer

    if args.config_files:
        result = evaluate_checkpoint(args.checkpoint, config_file_list=args.config_files.split())
        print(result["result_file"])
        return
    checkpoint = load_checkpoint(args.checkpoint, "checkpoint")
    config, model, dataset, train_data, valid_data, test_data = load_data_and_model(args.checkpoint)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.eval_collector.data_collect(train_data)
    test = trainer.evaluate(test_data, load_best_model=False)
    result = {"checkpoint": os.path.abspath(args.checkpoint), "epoch": checkpoint["epoch"],
              "best_valid_score": checkpoint["best_valid_score"], "test_result": dict(test)}
    print(json.dumps(result, indent=1))
    if args.out:
        write_json_atomic(args.out, result)


if __name__ == "__main__":
    main()
