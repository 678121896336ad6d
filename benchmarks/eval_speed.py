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
import os

if not __package__:  # run by path: see benchmarks/_path.py
    import _path  # noqa: F401

from benchmarks.lib import eval_speed  # noqa: E402
from benchmarks.lib.paths import RESULTS  # noqa: E402


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
    from recbole_bifair.model.padding import trims_padding
    from recbole_bifair.quick_start import load_data_and_model
    from recbole_bifair.utils import get_trainer

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    config, model, dataset, train_data, valid_data, _ = load_data_and_model(args.checkpoint)
    if not trims_padding(model):
        parser.error(f"{config['model']} is not a causal backbone: trim_padding does not apply to it")
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.eval_collector.data_collect(train_data)
    seconds, metrics = eval_speed.time_passes(trainer, valid_data, args.repeats)
    same, users, max_diff = eval_speed.agreement(model, valid_data)
    record = eval_speed.report(args, config, model, valid_data, load_before, seconds, metrics, same, users, max_diff)
    stem = os.path.join(args.out_dir, f"eval-speed-{args.name}")
    write_json_atomic(stem + ".json", record)
    text = eval_speed.markdown(args, record, same)
    write_text_atomic(stem + ".md", text)
    print(text)


if __name__ == "__main__":
    main()
