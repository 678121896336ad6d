"""The ranking-file report (``python -m recbole_bifair.fairness``) refuses broken input with one line.

Each case runs the command's ``main`` through ``run_cli``, as the console entry point does, and
reads the exit status and stderr.
"""

import json
import sys

import pandas as pd
import pytest

from recbole_bifair.cli import run_cli
from recbole_bifair.errors import ConfigError, DataError
from recbole_bifair.fairness.file_report import build_parser, console_main, file_report, main

ROWS = [{"user": "u1", "target": "i1", "topk": "i1 i2 i3"},
        {"user": "u2", "target": "i4", "topk": "i2 i4 i1"},
        {"user": "u3", "target": "i2", "topk": "i3 i1 i2"},
        {"user": "u4", "target": "i3", "topk": "i4 i3 i2"}]
ITEMS = [{"item": "i1", "group": "pop1", "train_count": 9}, {"item": "i2", "group": "pop1", "train_count": 7},
         {"item": "i3", "group": "pop2", "train_count": 2}, {"item": "i4", "group": "pop2", "train_count": 1}]


def write(folder, rows=ROWS, items=ITEMS):
    rankings, groups = folder / "run.rankings.csv", folder / "run.item_groups.csv"
    pd.DataFrame(rows).to_csv(rankings, index=False)
    pd.DataFrame(items).to_csv(groups, index=False)
    return str(rankings), str(groups)


def changed(records, index, **values):
    return [dict(r, **values) if i == index else r for i, r in enumerate(records)]


def one_error_line(capsys, argv):
    assert run_cli(main, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_an_empty_group_cell_is_refused(tmp_path, capsys):
    rankings, groups = write(tmp_path, items=changed(ITEMS, 1, group=""))
    line = one_error_line(capsys, [f"--rankings={rankings}", f"--item_groups={groups}", "--n_boot=0"])
    assert line == (f"error: {groups} row 3, column group: empty; write the name of the item's group "
                    f"(an empty name would be a group of its own)")


def test_a_blank_item_cell_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"run.item_groups.csv row 5, column item: empty; write the item's token"):
        file_report(*write(tmp_path, items=changed(ITEMS, 3, item="  ")), n_boot=0)


@pytest.mark.parametrize("column, value, item", [("topk", "i2 i4 i2", "i2"), ("target", "i4 i4", "i4")])
def test_an_item_twice_in_one_list_is_refused(tmp_path, capsys, column, value, item):
    rankings, groups = write(tmp_path, rows=changed(ROWS, 1, **{column: value}))
    line = one_error_line(capsys, [f"--rankings={rankings}", f"--item_groups={groups}", "--n_boot=0"])
    assert line == (f"error: {rankings} row 3, column {column}: item '{item}' is listed twice; "
                    f"a row lists each item once (it would count twice)")


def test_padding_slots_may_repeat(tmp_path):
    rows = changed(ROWS, 0, topk="i1 [PAD] [PAD]")
    report, _ = file_report(*write(tmp_path, rows=rows), n_boot=0)
    assert report.topk == [3]


@pytest.mark.parametrize("flag, value", [
    ("level", "2"), ("level", "0"), ("level", "1"), ("level", "-0.5"), ("level", "nan"), ("level", "high"),
    ("n_boot", "-4"), ("n_boot", "2.5"), ("n_boot", "many"), ("seed", "-1"), ("long_tail_share", "0"),
    ("long_tail_threshold", "-3"), ("topk", "0,5"),
])
def test_a_bad_flag_value_is_one_line_naming_the_flag(tmp_path, capsys, flag, value):
    rankings, groups = write(tmp_path)
    line = one_error_line(capsys, [f"--rankings={rankings}", f"--item_groups={groups}", f"--{flag}={value}"])
    assert line.startswith(f"error: argument --{flag}: '{value}'"), line
    assert line.endswith("(see --help)")


@pytest.mark.parametrize("kwargs, message", [
    ({"level": 1.5}, r"--level=1.5: the interval level is a probability strictly between 0 and 1"),
    ({"level": float("nan")}, r"--level=nan: the interval level"),
    ({"n_boot": -4}, r"--n_boot=-4: the number of bootstrap resamples is an integer >= 0"),
    ({"n_boot": 2.5}, r"--n_boot=2.5: the number of bootstrap resamples"),
])
def test_the_function_checks_level_and_resamples_too(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        file_report(*write(tmp_path), **kwargs)


def test_help_lists_every_flag_with_its_default(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["python -m recbole_bifair.fairness", "--help"])
    with pytest.raises(SystemExit) as done:
        console_main()
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for action in build_parser()._actions:
        assert action.option_strings[-1] in text
    for default in ["--n_boot N bootstrap resamples of the users; 0: no intervals (default: 1000)",
                    "--level P level of the percentile intervals (default: 0.95)",
                    "seed of the resampling (default: 0)", "(default: group)", "(default: 0.8)", "(default: 20)",
                    "(default: the length of the lists)", "(default: print only)"]:
        assert default in text, default


def test_the_table_states_its_interval_level_and_resamples(tmp_path, capsys):
    rankings, groups = write(tmp_path)
    out = tmp_path / "out" / "fair"
    assert run_cli(main, [f"--rankings={rankings}", f"--item_groups={groups}", "--n_boot=20", "--level=0.9",
                          "--seed=3", f"--output={out}"]) == 0
    printed = capsys.readouterr().out
    assert "intervals: 90% percentile bootstrap, 20 resamples of the 4 users (seed 3)" in printed
    assert json.loads(out.with_suffix(".json").read_text())["bootstrap"] == {"n_boot": 20, "level": 0.9, "seed": 3}

    assert run_cli(main, [f"--rankings={rankings}", f"--item_groups={groups}", "--n_boot=0"]) == 0
    assert "no intervals (--n_boot=0)" in capsys.readouterr().out


def test_an_unknown_flag_is_one_line(tmp_path, capsys):
    rankings, groups = write(tmp_path)
    line = one_error_line(capsys, [f"--rankings={rankings}", f"--item_groups={groups}", "--levels=0.9"])
    assert line == "error: unknown argument(s) --levels=0.9; see --help for the flags"
