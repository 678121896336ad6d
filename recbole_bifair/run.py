"""``run_recbole_bifair``: train and evaluate one model on one dataset, RecBole style.

    run_recbole_bifair --model=BiFairSASRec --dataset=ml-100k [--config_files="a.yaml b.yaml"] [--key=value ...] [--debug]
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
