"""Every benchmark script runs both as ``python -m benchmarks.<name>`` from the repository root and
as ``python benchmarks/<name>.py`` from anywhere, finding ``benchmarks.lib`` without editing
``sys.path`` itself (``benchmarks/_path.py`` is the one place that does, for runs by path)."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(p.stem for p in (REPO / "benchmarks").glob("*.py") if p.stem not in ("__init__", "_path"))


def test_the_scripts_are_the_documented_fifteen():
    assert SCRIPTS == ["anomaly_overhead", "cost", "distributed_speed", "e_refinement", "embedding_speed",
                       "eval_checkpoint", "eval_speed", "fairness", "reference_sasrec", "select_backbone",
                       "select_recipe", "seq_accuracy", "stopping_replay", "tune_backbone", "tune_bifair"]


def test_only_the_bootstrap_edits_sys_path():
    editing = sorted(str(p.relative_to(REPO)) for p in (REPO / "benchmarks").rglob("*.py")
                     if "sys.path" in p.read_text(encoding="utf-8") or "importlib" in p.read_text(encoding="utf-8"))
    assert editing == ["benchmarks/_path.py"]
    for name in SCRIPTS:  # each imports it only when run by path
        assert "if not __package__:  # run by path: see benchmarks/_path.py\n    import _path  # noqa: F401\n" in (
            REPO / "benchmarks" / f"{name}.py").read_text(encoding="utf-8"), name


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_script_runs_by_path_from_elsewhere_and_as_a_module(name, tmp_path):
    by_path = subprocess.run([sys.executable, str(REPO / "benchmarks" / f"{name}.py"), "--help"], cwd=tmp_path,
                             capture_output=True, text=True)
    assert by_path.returncode == 0, by_path.stderr
    assert by_path.stdout.startswith(f"usage: {name}.py ")
    as_module = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--help"], cwd=REPO,
                               capture_output=True, text=True)
    assert as_module.returncode == 0, as_module.stderr
    assert as_module.stdout.split("\n", 1)[1] == by_path.stdout.split("\n", 1)[1]  # the same flags


def test_the_bootstrap_puts_the_scripts_checkout_first(tmp_path):
    """Run by path, a script has ``benchmarks/`` first on ``sys.path``; ``_path`` puts the repository
    before it, so that ``benchmarks`` and ``recbole_bifair`` come from the script's checkout."""
    code = (f"import sys; sys.path.insert(0, {str(REPO / 'benchmarks')!r})\n"
            "import _path, benchmarks.lib, recbole_bifair\n"
            "print(sys.path[0]); print(benchmarks.lib.__file__); print(recbole_bifair.__file__)")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [str(REPO), str(REPO / "benchmarks" / "lib" / "__init__.py"),
                                        str(REPO / "recbole_bifair" / "__init__.py")]
