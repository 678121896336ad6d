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
  --nproc=N             train on N processes on this machine (torch.distributed; one GPU each
                        on GPU, gloo on CPU; the key `backend` overrides)
  --world_size=W --offset=O --ip=IP --port=PORT
                        several machines: W processes in all; this machine's run the global
                        ranks O .. O+N-1; IP:PORT is rank 0's machine
  --debug               show the full traceback of an error
  -h, --help            show this help

Precedence (RecBole's): built-in defaults < config files < --KEY=VALUE.
Keys of this plugin: results_dir (./results), data_path (dataset/), download_url (a mirror of
the dataset zip), resume_checkpoint (a .pth file to continue training from), threads (torch CPU
threads; default ~: the cores other processes leave idle, at most OMP_NUM_THREADS or torch's
default; --threads=1 on a machine shared with other jobs).

The console shows what runs where (model, dataset, threads, device, log file), one line per
validated epoch, the test result and the result file, and every warning; the log file holds
everything (--state=DEBUG shows it all on the console too). Each run writes, under one run id
<model>-<dataset>-<time>-<6 hex digits>: RESULTS_DIR/<run id>.json (best validation and test
metrics, seconds per epoch, the config values that matter, the checkpoint path), the log file
./log/<model>/<run id>.log, tensorboard events in ./log_tensorboard/<run id>, and the checkpoint
into ./saved (checkpoint_dir).

example: run_recbole_bifair --model=SASRec --dataset=ml-100k --epochs=5 --train_batch_size=512
         run_recbole_bifair --model=BiFairSASRec --dataset=ml-100k --nproc=2
"""

import sys

from recbole_bifair import setup
from recbole_bifair.cli import run_cli, split_flags
from recbole_bifair.errors import ConfigError

USAGE = __doc__.strip()


#: RecBole's run_recbole.py flags for several processes, with their defaults (recbole.quick_start.run).
DISTRIBUTED_FLAGS = {"nproc": 1, "world_size": -1, "offset": 0, "ip": "localhost", "port": "5678"}


def main(argv):
    flags, _, overrides = split_flags(argv, {"model", "dataset", "config_files", *DISTRIBUTED_FLAGS})
    setup()
    from recbole_bifair.quick_start import run  # loads torch and RecBole: not for --help or a bad flag

    config_files = flags.get("config_files", "").split() or None
    spread = {}
    for name, default in DISTRIBUTED_FLAGS.items():
        value = flags.get(name, default)
        if isinstance(default, int):
            try:
                value = int(value)
            except ValueError:
                raise ConfigError(f"--{name} must be an integer, got {value!r}") from None
        spread[name] = value
    if spread["nproc"] < 1:
        raise ConfigError(f"--nproc must be at least 1, got {spread['nproc']}")
    return run(
        model=flags.get("model"), dataset=flags.get("dataset"),
        config_file_list=config_files, cmd_args=overrides, **spread,
    )


def console_main():
    sys.exit(run_cli(main, usage=USAGE))


if __name__ == "__main__":
    console_main()
