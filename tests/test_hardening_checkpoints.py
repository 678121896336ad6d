"""Checkpoints hold data only and load without running code, on any device; a bad resume,
evaluation or reload file and a diverging run each end in one line that says what to change;
the LLM-ESR importer runs nothing from its pickle."""

import json
import os
import pickle
import re

import numpy as np
import pytest
import torch
import yaml

from recbole_bifair import embed
from recbole_bifair.cli import run_cli
from recbole_bifair.compat import load_checkpoint
from recbole_bifair.embedding import import_llmesr
from recbole_bifair.embedding.feature_file import read_feature_file
from recbole_bifair.errors import ConfigError, DataError
from recbole_bifair.quick_start import build_config, evaluate_checkpoint, load_data_and_model, prepare_run, run_bifair
from recbole_bifair.run import main as run_main
from tests.bifair_fixtures import bifair_config, bifair_setup
from tests.datagen import make_dataset, tiny_config


class RunsCode:
    """Pickled as a call of os.system that creates ``marker``: the file exists iff a load ran it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def error_lines(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("error:")]


def write_yaml(path, config):
    path.write_text(yaml.safe_dump(config))
    return str(path)


def as_if_saved_on(device, obj, path, monkeypatch):
    """``torch.save(obj, path)`` with every tensor recorded as living on ``device`` ("cuda:0"),
    as a run on that device writes it."""
    with monkeypatch.context() as patch:
        patch.setattr(torch.serialization, "location_tag", lambda storage: device)
        torch.save(obj, path)
    return str(path)


# ----- SASRec: resume, evaluation and reload errors -------------------------------------------
@pytest.fixture(scope="module")
def sasrec(tmp_path_factory):
    """A finished 1-epoch SASRec run: (folder, config file, result)."""
    folder = tmp_path_factory.mktemp("hardening")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        config = tiny_config(make_dataset(folder / "data"))
        return folder, write_yaml(folder / "tiny.yaml", config), run_bifair(model="SASRec", config_dict=config)


@pytest.fixture
def in_sasrec_folder(sasrec, monkeypatch):
    monkeypatch.chdir(sasrec[0])
    return sasrec


def crafted(folder, marker):
    path = folder / "crafted.pth"
    torch.save({"config": RunsCode(marker), "epoch": 0, "cur_step": 0, "best_valid_score": 0.0,
                "state_dict": {}, "optimizer": {}}, path)
    return path


def truncated(folder, checkpoint):
    data = open(checkpoint, "rb").read()
    (folder / "truncated.pth").write_bytes(data[: len(data) // 2])
    return folder / "truncated.pth"


def not_a_checkpoint(folder):
    torch.save({"item_embedding.weight": torch.zeros(3, 8)}, folder / "weights.pth")
    return folder / "weights.pth"


#: probe -> (the file to resume from, given the folder and the run's checkpoint; the run's
#: arguments; what the error says after naming the file)
RESUME_PROBES = {
    "missing": (lambda folder, checkpoint: folder / "missing.pth", [], "does not exist"),
    "truncated": (truncated, [], "is truncated or not a torch file"),
    "not a checkpoint": (lambda folder, checkpoint: not_a_checkpoint(folder), [],
                         r"is a torch file but not a checkpoint of a run \(no config, epoch, cur_step, "
                         r"best_valid_score, state_dict, optimizer\)"),
    "other model": (lambda folder, checkpoint: checkpoint, ["--model=GRU4Rec"],
                    "was written by model SASRec, not GRU4Rec: use --model=SASRec"),
    "other size": (lambda folder, checkpoint: checkpoint, ["--model=SASRec", "--hidden_size=16"],
                   r"has item_embedding.weight of shape \[\d+, 8\], this config's model \[\d+, 16\]: "
                   "the config must match the one it was trained with"),
}


@pytest.mark.parametrize("probe", RESUME_PROBES)
def test_a_bad_resume_checkpoint_is_one_line_naming_the_key(probe, in_sasrec_folder, capsys):
    folder, config_file, result = in_sasrec_folder
    make, args, message = RESUME_PROBES[probe]
    path = make(folder, result["checkpoint"])
    model = [] if any(a.startswith("--model=") for a in args) else ["--model=SASRec"]
    assert run_cli(run_main, [*model, f"--config_files={config_file}", f"--resume_checkpoint={path}", *args]) == 2
    [line] = error_lines(capsys)
    assert re.fullmatch(f"error: resume_checkpoint '{re.escape(str(path))}' {message}.*", line), line


def test_a_crafted_checkpoint_runs_nothing_anywhere(in_sasrec_folder, tmp_path, capsys):
    folder, config_file, result = in_sasrec_folder
    marker = tmp_path / "ran"
    path = crafted(tmp_path, marker)
    assert run_cli(run_main, ["--model=SASRec", f"--config_files={config_file}", f"--resume_checkpoint={path}"]) == 2
    [line] = error_lines(capsys)
    assert f"resume_checkpoint '{path}' was not loaded: it holds Python objects (posix.system)" in line
    assert "retrain" in line
    with pytest.raises(ConfigError, match=r"model_file '.*crafted.pth' was not loaded"):
        load_data_and_model(str(path))
    with pytest.raises(ConfigError, match=r"checkpoint_file '.*crafted.pth' was not loaded"):
        evaluate_checkpoint(str(path), config_file_list=[config_file], config_dict={"model": "SASRec"})
    with pytest.raises(ConfigError, match=r"checkpoint '.*crafted.pth' was not loaded"):
        prepare_run(build_config(model="SASRec", config_file_list=[config_file]))[3].load_best_model(str(path))
    assert not marker.exists()


def test_an_old_format_checkpoint_is_refused_not_unpickled(in_sasrec_folder, tmp_path):
    # what RecBole and the plugin wrote before: the Config object itself
    folder, config_file, result = in_sasrec_folder
    config = build_config(model="SASRec", config_file_list=[config_file])
    old = dict(load_checkpoint(result["checkpoint"]), config=config)
    torch.save(old, tmp_path / "old.pth")
    with pytest.raises(ConfigError, match=r"holds Python objects \(recbole_bifair.config.BiFairConfig\) .* "
                                          r"old-format checkpoint .* retrain"):
        load_checkpoint(tmp_path / "old.pth", "resume_checkpoint")


def test_evaluation_and_reload_name_their_own_argument(in_sasrec_folder, tmp_path):
    folder, config_file, result = in_sasrec_folder
    missing = str(tmp_path / "missing.pth")
    with pytest.raises(ConfigError, match=f"checkpoint_file '{missing}' does not exist"):
        evaluate_checkpoint(missing, config_file_list=[config_file], config_dict={"model": "SASRec"})
    with pytest.raises(ConfigError, match=f"model_file '{missing}' does not exist"):
        load_data_and_model(missing)
    with pytest.raises(ConfigError, match=r"model_file '.*truncated.pth' is truncated"):
        load_data_and_model(str(truncated(tmp_path, result["checkpoint"])))
    with pytest.raises(ConfigError, match="checkpoint_file .* was written by model SASRec, not GRU4Rec"):
        evaluate_checkpoint(result["checkpoint"], config_file_list=[config_file], config_dict={"model": "GRU4Rec"})


def test_a_checkpoint_written_on_a_gpu_reloads_on_the_cpu(in_sasrec_folder, tmp_path, monkeypatch):
    folder, config_file, result = in_sasrec_folder
    original = load_checkpoint(result["checkpoint"])
    path = as_if_saved_on("cuda:0", original, tmp_path / "gpu.pth", monkeypatch)
    if not torch.cuda.is_available():  # the file really names CUDA: a plain load fails here
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=True)
    config, model, _, _, _, _ = load_data_and_model(path)
    assert config["model"] == "SASRec" and config["hidden_size"] == 8
    for name, value in model.state_dict().items():
        assert torch.equal(value.cpu(), original["state_dict"][name]), name


# ----- BiFair: the random state through a GPU checkpoint, divergence ---------------------------
@pytest.fixture
def setup(tmp_path, monkeypatch):
    return bifair_setup(tmp_path, monkeypatch)


def test_resume_from_a_gpu_checkpoint_reproduces_the_uninterrupted_run(setup, monkeypatch, tmp_path):
    root, emb = setup
    common = dict(stopping_step=100, epochs=2)
    full = run_bifair(model="BiFairSASRec", config_dict=bifair_config(root, emb, **common))
    first = run_bifair(model="BiFairSASRec", config_dict=bifair_config(root, emb, **dict(common, epochs=1)))
    written = load_checkpoint(first["checkpoint"][: -len(".pth")] + "-last.pth")
    gpu = as_if_saved_on("cuda:0", written, tmp_path / "gpu-last.pth", monkeypatch)
    loaded = load_checkpoint(gpu)
    # generator states must reach set_state as CPU ByteTensors, whatever device the file names
    for state in (loaded["rng"]["torch"], loaded["rng"]["loaders"]["inner"], loaded["rng"]["loaders"]["meta"]):
        assert state.device.type == "cpu" and state.dtype == torch.uint8
    resumed = run_bifair(model="BiFairSASRec", config_dict=bifair_config(root, emb, resume_checkpoint=gpu, **common))
    assert resumed["epochs_trained"] == 1 and resumed["test_result"] == full["test_result"]
    a = load_checkpoint(full["checkpoint"][: -len(".pth")] + "-last.pth")["state_dict"]
    b = load_checkpoint(gpu)["state_dict"]  # resuming saves into the resumed file
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_a_bifair_checkpoint_of_another_weighting_is_one_line(setup):
    root, emb = setup
    first = run_bifair(model="BiFairSASRec", config_dict=bifair_config(root, emb))
    last = first["checkpoint"][: -len(".pth")] + "-last.pth"
    with pytest.raises(ConfigError, match=f"^resume_checkpoint '{re.escape(last)}': checkpoint has balance 'mgda', "
                                          f"the config has 'dro'; the config must match the one it was trained with$"):
        run_bifair(model="BiFairSASRec", config_dict=bifair_config(root, emb, inner_balance="dro", epochs=2,
                                                                   resume_checkpoint=last))


def test_a_huge_learning_rate_is_the_inner_level_and_no_checkpoint_exists(setup, tmp_path, capsys):
    root, emb = setup
    config_file = write_yaml(tmp_path / "bifair.yaml", bifair_config(root, emb))
    assert run_cli(run_main, ["--model=BiFairSASRec", f"--config_files={config_file}", "--learning_rate=1e6"]) == 2
    [line] = error_lines(capsys)
    # the step at which the loss overflows depends on the model (with the ID view it is the second)
    assert re.fullmatch(r"error: the inner level diverged: the training loss became NaN/Inf at epoch 0, step [12]: "
                        r"lower learning_rate or set clip_grad_norm \(e\.g\. clip_grad_norm: \{max_norm: 5\}\)\. "
                        r"No checkpoint was saved yet", line), line


def _trained_bifair(setup, saved):
    root, emb = setup
    _, (train, valid, _), model, trainer = prepare_run(build_config(
        model="BiFairSASRec", config_dict=bifair_config(root, emb)))
    trainer.fit(train, valid, saved=saved)
    return train, model, trainer


def test_E_gone_nan_is_the_outer_level_and_the_kept_checkpoints_are_named(setup):
    train, model, trainer = _trained_bifair(setup, saved=True)
    with torch.no_grad():
        model.item_table.E.fill_(float("nan"))
    with pytest.raises(ConfigError) as err:
        trainer._train_epoch(train, 1)
    assert str(err.value).startswith("the outer level diverged: the item table E became NaN/Inf at epoch 1, step ")
    assert "lower outer_learning_rate or set outer_clip_grad_norm" in str(err.value)
    assert str(err.value).endswith(f"Kept on disk: best checkpoint {trainer.saved_model_file}; "
                                   f"last epoch's checkpoint {trainer.last_model_file}")


def test_a_nan_hypergradient_with_a_finite_training_loss_is_the_hypergradient(setup):
    train, model, trainer = _trained_bifair(setup, saved=False)
    trainer.outer.mu = float("nan")  # the outer loss's anchor term: only the hypergradient sees it
    with pytest.raises(ConfigError, match=r"^the outer level diverged: the hypergradient became NaN/Inf while the "
                                          r"training loss is finite at epoch 1, step \d+: lower outer_learning_rate, "
                                          r"set outer_clip_grad_norm, or use another hypergrad. No checkpoint"):
        trainer._train_epoch(train, 1)


def test_a_stock_trainer_nan_loss_names_the_keys(tiny_data):
    _, (train, _, _), model, trainer = prepare_run(build_config(model="SASRec", config_dict=tiny_config(tiny_data)))
    with torch.no_grad():
        model.item_embedding.weight.fill_(float("nan"))
    with pytest.raises(ConfigError, match=r"^training diverged: the training loss became NaN at epoch 3: lower "
                                          r"learning_rate or set clip_grad_norm .* No checkpoint was saved yet$"):
        trainer._train_epoch(train, 3)


# ----- LLM-ESR's pickle ------------------------------------------------------------------------
def _id_map(tmp_path, n):
    (tmp_path / "id_map.json").write_text(json.dumps({"id2item": {str(j + 1): f"i{j}" for j in range(n)}}))
    return str(tmp_path / "id_map.json")


def test_a_crafted_llmesr_pickle_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    with open(tmp_path / "itm_emb_np.pkl", "wb") as f:
        pickle.dump(RunsCode(marker), f)
    with pytest.raises(DataError, match=r"itm_emb_np.pkl was not loaded: it names the global posix.system, and an "
                                        r"LLM-ESR embedding pickle holds a numpy array only"):
        import_llmesr(str(tmp_path / "itm_emb_np.pkl"), _id_map(tmp_path, 2), str(tmp_path / "o.llmemb"))
    assert not marker.exists() and not (tmp_path / "o.llmemb").exists()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("as_list", [False, True])
def test_numpy_arrays_of_every_pickle_protocol_still_import(tmp_path, protocol, as_list):
    matrix = np.arange(12, dtype=np.float32).reshape(4, 3) / 7
    value = [list(row) for row in matrix] if as_list else matrix  # a list of numpy float32 numbers
    with open(tmp_path / "itm_emb_np.pkl", "wb") as f:
        pickle.dump(value, f, protocol=protocol)
    out = import_llmesr(str(tmp_path / "itm_emb_np.pkl"), _id_map(tmp_path, 4), str(tmp_path / "o.llmemb"))
    assert np.array_equal(read_feature_file(out).matrix, matrix)


def test_embed_help_states_the_pickle_risk(capsys):
    assert run_cli(embed.main, ["--help"], usage=embed.USAGE) == 0
    assert ("a pickle can run code as it loads: --import_llmesr reads numpy arrays and numbers only and refuses "
            "a pickle that names anything else") in " ".join(capsys.readouterr().out.split())


def test_a_missing_resume_checkpoint_stops_before_any_data_is_read(tmp_path, capsys):
    """The config build refuses it: no dataset (here: none exists) and no item table are touched."""
    missing = tmp_path / "missing.pth"
    args = ["--model=SASRec", "--dataset=nowhere", f"--data_path={tmp_path}", f"--resume_checkpoint={missing}"]
    assert run_cli(run_main, args) == 2
    [line] = error_lines(capsys)
    assert line == (f"error: resume_checkpoint '{missing}' does not exist: give the .pth file of a run "
                    f"(they are written to checkpoint_dir)")
