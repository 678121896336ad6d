"""Train and evaluate one model on one dataset through recbole-bifair, RecBole style.

usage: run_recbole_bifair --model=MODEL --dataset=DATASET [--config_files="A.yaml B.yaml"]
                          [--KEY=VALUE ...] [--debug]

  --model=MODEL         a recbole-bifair model (BiFair<Backbone>) or any RecBole model
                        (SASRec, GRU4Rec, ...); an unknown name lists the available ones
  --dataset=DATASET     ml-100k works offline (the copy inside RecBole); other RecBole datasets
                        (ml-1m, ...) are downloaded into DATA_PATH/DATASET on first use; your own
                        data: atomic files DATA_PATH/DATASET/DATASET.inter (.item, .user)
  --config_files="A B"  YAML files of `key: value` lines, space separated; later files win
  --KEY=VALUE           any config key, VALUE read as YAML: --epochs=5 --learning_rate=1e-3
                        --topk=[10,20] --eval_args="{'order': 'TO'}" --load_col=~
  --debug               show the full traceback of an error
  -h, --help            show this help

Precedence (RecBole's): built-in defaults < config files < --KEY=VALUE.
Keys of this plugin: results_dir (./results), data_path (dataset/), download_url (a mirror of
the dataset zip), resume_checkpoint (a .pth file to continue training from).

Each run writes RESULTS_DIR/<model>-<dataset>-<time>.json (best validation and test metrics,
seconds per epoch, the config values that matter, the checkpoint path), the checkpoint into
./saved (checkpoint_dir), a log file into ./log and tensorboard events into ./log_tensorboard.

example: run_recbole_bifair --model=SASRec --dataset=ml-100k --epochs=5 --train_batch_size=512
"""

import sys

from recbole_bifair.cli import run_cli, split_flags

USAGE = __doc__.strip()


def main(argv):
    flags, _, overrides = split_flags(argv, {"model", "dataset", "config_files"})
    from recbole_bifair.quick_start import run_bifair

    config_files = flags.get("config_files", "").split() or None
    return run_bifair(
        model=flags.get("model"), dataset=flags.get("dataset"),
        config_file_list=config_files, cmd_args=overrides,
    )


def console_main():
    sys.exit(run_cli(main, usage=USAGE))


if __name__ == "__main__":
    console_main()
