"""What a run prints and where it logs: a quiet console, one complete log file per run.

The console carries what a person watching a run needs: a first line saying what runs where
(model, dataset, torch threads, device, log file), one line per validated epoch (``epoch_line``),
the test result, the result file, and every warning and error. The rest of what RecBole and the
plugin log (the config dump, the dataset and model summaries, the validation tables, the BiFair
trainer's per-epoch details, the per-group report) goes to the log file only; with
``state: DEBUG`` the console shows it too. A log call reaches the console by passing
``extra=CONSOLE``.

RecBole names the log file, and its trainer the TensorBoard folder after it, by the time to the
second and a hash of the config, so that two runs of one config started in the same second
shared both. Here the caller names the file after its run id: ``log/<model>/<run id>.log``, and
RecBole's ``get_tensorboard`` (the file name up to its first dot) gives
``log_tensorboard/<run id>``.
"""

import logging
import os
import warnings

#: ``extra=`` of a log call whose line belongs on the console.
CONSOLE = {"console": True}

#: Columns of a per-epoch console line, its time included.
WIDTH = 120
TIME_FORMAT = "%H:%M:%S"

#: RecBole's ``init_logger``: the config key ``state`` names the level; anything else is INFO.
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR, "critical": logging.CRITICAL}


def log_level(state):
    return LEVELS.get(str(state).lower(), logging.INFO) if state is not None else logging.INFO


def log_path(model, run_id):
    return os.path.join("log", model, f"{run_id}.log")


class ConsoleFilter(logging.Filter):
    """Warnings and errors, and the records logged with ``extra=CONSOLE``; everything when
    ``everything`` (``state: DEBUG``)."""

    def __init__(self, everything=False):
        super().__init__()
        self.everything = everything

    def filter(self, record):
        return self.everything or record.levelno >= logging.WARNING or getattr(record, "console", False)


def _console_formatter():
    import colorlog
    from recbole.utils.logger import log_colors_config

    class ConsoleFormatter(colorlog.ColoredFormatter):
        """The time, then the message; a warning or an error says which it is."""

        def formatMessage(self, record):
            record.level_tag = f"{record.levelname}: " if record.levelno >= logging.WARNING else ""
            return super().formatMessage(record)

    return ConsoleFormatter("%(log_color)s%(asctime)s %(level_tag)s%(message)s", TIME_FORMAT,
                            log_colors=log_colors_config)


def init_logger(config, log_file):
    """RecBole's ``init_logger`` (recbole/utils/logger.py), with the log file named by the caller
    and the console filtered by ``ConsoleFilter``. It replaces the handlers a previous run of this
    process installed (RecBole's ``logging.basicConfig`` is a no-op the second time)."""
    from colorama import init
    from recbole.utils.logger import RemoveColorFilter

    init(autoreset=True)
    os.makedirs(os.path.dirname(log_file) or ".", exist_ok=True)
    level = log_level(config["state"])
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
        handler.close()
    console = logging.StreamHandler()
    console.setLevel(level)
    console.setFormatter(_console_formatter())
    console.addFilter(ConsoleFilter(everything=level <= logging.DEBUG))
    to_file = logging.FileHandler(log_file)
    to_file.setLevel(level)
    to_file.setFormatter(logging.Formatter("%(asctime)-15s %(levelname)s  %(message)s", "%a %d %b %Y %H:%M:%S"))
    to_file.addFilter(RemoveColorFilter())  # after the console's handler: it strips the colours in place
    root.setLevel(level)
    root.addHandler(console)
    root.addHandler(to_file)


def header_line(model, dataset, threads, device, log_file, processes=1):
    """The first console line of a run."""
    spread = f", {processes} processes" if processes > 1 else ""
    return (f"recbole-bifair: {model} on {dataset}, {threads} thread{'' if threads == 1 else 's'}, "
            f"{device}{spread}; log: {log_file}")


def epoch_line(epoch_idx, epochs, seconds, train_loss, metric, score, improved, extras=(), mean=None):
    """The console line of a validated epoch: the epoch, its training seconds, the training loss
    and the validation metric, with ``mean``, the trailing mean early stopping follows
    (``valid_window`` > 1), after it (``best`` when the followed score improved, i.e. the
    checkpoint was saved), then
    as many of ``extras`` (strings, most important first) as fit in ``WIDTH`` columns with the
    console's time in front."""
    line = (f"epoch {epoch_idx}/{epochs}  {seconds:.1f} s  loss {train_loss:.4f}  "
            f"valid {metric} {score:.4f}{'' if mean is None else f' (mean {mean:.4f})'}{' best' if improved else ''}")
    room = WIDTH - len("00:00:00 ")
    for extra in extras:
        if len(line) + 2 + len(extra) <= room:
            line += "  " + extra
    return line


def bifair_extras(record):
    """The BiFair figures of an epoch worth a glance (``FairTrainer.epoch_stats`` record): the
    spread of the groups' training losses and how far E moved from E0."""
    group_loss = record["group_loss"]
    return [f"group loss {min(group_loss):.3f}-{max(group_loss):.3f}",
            f"E drift {100 * record['E_drift_relative']:.3f}%"]


def metrics_line(label, result):
    """``label: name value  name value ...`` of a metrics dict."""
    return f"{label}: " + "  ".join(f"{name} {value:.4f}" for name, value in dict(result or {}).items())


#: Third-party warnings of calls that are not ours, filtered by category, message and module.
#: RecBole 1.2.1's Dataset calls ``df[field].fillna(..., inplace=True)`` (a chained assignment
#: that pandas 2.x still performs, and warns will stop working in pandas 3; requirements pin
#: pandas<3) and ``Series.agg(len)``; its Trainer builds ``torch.cuda.amp.GradScaler``, which torch
#: 2.13 deprecates in favour of ``torch.amp.GradScaler``. All three lines are inside RecBole.
KNOWN_WARNINGS = [
    (FutureWarning, r"A value is trying to be set on a copy of a DataFrame or Series through chained assignment",
     r"recbole\.data\.dataset\.dataset"),
    (FutureWarning, r"using <built-in function len> in Series\.agg cannot aggregate",
     r"recbole\.data\.dataset\.dataset"),
    (FutureWarning, r"`torch\.cuda\.amp\.GradScaler\(args\.\.\.\)` is deprecated", r"recbole\.trainer\.trainer"),
]


def quiet_known_warnings():
    """Install the filters of ``KNOWN_WARNINGS`` (idempotent: ``warnings`` drops a duplicate)."""
    for category, message, module in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
