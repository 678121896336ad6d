"""``python -m recbole_bifair.embed``: generate, reuse, import, and one-line errors."""

import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.embedding_fixtures import force_offline, make_tiny_decoder

from recbole_bifair.cli import run_cli
from recbole_bifair.embed import console_main, main
from recbole_bifair.embedding.feature_file import read_feature_file, read_metadata

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    force_offline(monkeypatch)


def test_generate_then_reuse(tiny_data, tmp_path, capsys, caplog):
    encoder = make_tiny_decoder(tmp_path / "gpt")
    argv = ["--dataset=tiny", f"--data_path={tiny_data}", f"--encoder={encoder}", "--fields=movie_title,class",
            "--template={movie_title}[ ({class})]", "--pooling=mean", "--batch_size=7", "--normalize",
            f"--output={tmp_path / 'e.llmemb'}", "--state=WARNING"]
    assert run_cli(main, argv) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(tmp_path / "e.llmemb")
    table = read_feature_file(out.strip())
    assert len(table.tokens) == 30 and table.dimension == 16
    np.testing.assert_allclose(np.linalg.norm(table.matrix, axis=1), 1.0, rtol=1e-5)
    metadata = read_metadata(out.strip())
    assert metadata["template"] == "{movie_title}[ ({class})]" and metadata["pooling"] == "mean"
    assert metadata["fields"] == ["movie_title", "class"] and metadata["normalize"] is True

    mtime = os.stat(out.strip()).st_mtime_ns
    caplog.set_level(logging.INFO)
    assert run_cli(main, argv) == 0
    assert "reusing" in caplog.text and os.stat(out.strip()).st_mtime_ns == mtime


def test_import_matrix(tmp_path, capsys):
    np.save(tmp_path / "m.npy", np.eye(3, dtype=np.float32))
    (tmp_path / "t.txt").write_text("a\nb\nc\n")
    argv = [f"--import_matrix={tmp_path / 'm.npy'}", f"--tokens={tmp_path / 't.txt'}", f"--output={tmp_path / 'o.llmemb'}"]
    assert run_cli(main, argv) == 0
    assert read_feature_file(capsys.readouterr().out.strip()).tokens == ["a", "b", "c"]


@pytest.mark.parametrize("argv, message", [
    (["--import_matrix=m.npy", "--output=o"], "--import_matrix needs --tokens"),
    (["--import_llmesr=e.pkl", "--id_map=m.json"], "needs --output"),
    (["--import_matrix=m.npy", "--tokens=t", "--output=o", "--normalize"], "drop normalize"),
    (["--encoder=x"], "no dataset given"),
    (["--dataset=tiny", "--batch_size=many"], "--batch_size=many: expected a int"),
])
def test_usage_errors(argv, message, capsys):
    assert run_cli(main, argv) == 2
    assert message in capsys.readouterr().err


def test_module_entry_reports_missing_fields_on_one_line(tiny_data):
    env = {**os.environ, "PYTHONPATH": REPO, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "recbole_bifair.embed", "--dataset=tiny", f"--data_path={tiny_data}", "--fields=plot"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: item file") and "'plot'" in last and "movie_title, release_year, class" in last
    assert done.stdout == ""


def test_console_help_lists_both_modes(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["recbole_bifair_embed", "--help"])
    with pytest.raises(SystemExit) as done:
        console_main()
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "--dataset=ml-100k" in out and "--import_matrix" in out and "--import_llmesr" in out
