"""A normal (non-editable) ``pip install .`` ships the top-level properties/ inside the package."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from recbole_bifair.config import load_yaml_file

REPO = Path(__file__).resolve().parent.parent

# Runs in a fresh interpreter whose only copy of recbole_bifair is the installed one.
PROBE = """
import json, sys
import recbole_bifair
from recbole_bifair.config import BiFairConfig, properties_dir
config = BiFairConfig(model="SASRec", dataset="tiny", config_dict={"data_path": sys.argv[1]})
print(json.dumps({
    "package": recbole_bifair.__file__,
    "properties": str(properties_dir()),
    "files": sorted(p.relative_to(properties_dir()).as_posix() for p in properties_dir().rglob("*")
                    if p.suffix in (".yaml", ".test")),
    "results_dir": config["results_dir"],
    "download_timeout": config["download_timeout"],
}))
"""


def test_properties_found_after_a_non_editable_install(tmp_path):
    # Build from a copy of what setup.py packages, so that pip's build/ and egg-info never
    # touch the working tree.
    source = tmp_path / "source"
    source.mkdir()
    for name in ["setup.py", "README.md"]:
        shutil.copy(REPO / name, source / name)
    for name in ["recbole_bifair", "properties"]:
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "installed"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", f"--target={target}", str(source)],
        check=True, capture_output=True, text=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(target)
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, str(elsewhere)],
        cwd=elsewhere, env=env, check=True, capture_output=True, text=True,
    )
    found = json.loads(probe.stdout.strip().splitlines()[-1])

    assert Path(found["package"]).is_relative_to(target)
    assert Path(found["properties"]) == target / "recbole_bifair" / "properties"
    shipped = sorted(p.relative_to(REPO / "properties").as_posix() for p in (REPO / "properties").rglob("*")
                     if p.suffix in (".yaml", ".test"))
    assert "overall.yaml" in shipped
    assert found["files"] == shipped
    defaults = load_yaml_file(REPO / "properties" / "overall.yaml")
    assert (found["results_dir"], found["download_timeout"]) == (defaults["results_dir"], defaults["download_timeout"])


def test_a_second_checkout_reads_its_own_properties(tmp_path):
    """Run from another checkout of the repository (a git worktree) with this checkout's editable
    install, the package imported from the working directory reads that checkout's properties/,
    not the ones the installed name maps to."""
    other = tmp_path / "worktree"
    other.mkdir()
    shutil.copy(REPO / "setup.py", other / "setup.py")
    for name in ["recbole_bifair", "properties"]:
        shutil.copytree(REPO / name, other / name, ignore=shutil.ignore_patterns("__pycache__"))
    probe = subprocess.run(
        [sys.executable, "-c", "import recbole_bifair.config as c; print(c.__file__); print(c.properties_dir())"],
        cwd=other, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        check=True, capture_output=True, text=True,
    )
    package, properties = probe.stdout.strip().splitlines()[-2:]
    assert Path(package).is_relative_to(other)
    assert Path(properties) == other / "properties"
