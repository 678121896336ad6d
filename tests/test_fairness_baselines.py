"""The fairness baselines in the bi-level trainer: IPS, GroupDRO, VarReg, and their config files."""

import glob
import os

import pytest
import torch

from recbole_bifair.config import properties_dir
from recbole_bifair.model.llm import TargetLosses
from recbole_bifair.quick_start import build_config, prepare_run, run_bifair
from recbole_bifair.trainer.balancing import OnlineGroupDRO
from tests.bifair_fixtures import bifair_config, bifair_setup

METHODS = sorted(os.path.basename(p)[:-5] for p in glob.glob(str(properties_dir() / "methods" / "*.yaml")))


@pytest.fixture
def setup(tmp_path, monkeypatch):
    return bifair_setup(tmp_path, monkeypatch)


def test_online_groupdro_matches_the_exponentiated_update_by_hand():
    dro = OnlineGroupDRO(3, eta=0.5)
    present = torch.tensor([True, True, False])
    w1 = dro.weights(torch.tensor([1.0, 2.0, 9.0]), present)
    q = torch.tensor([1 / 3, 1 / 3, 1 / 3]) * torch.exp(0.5 * torch.tensor([1.0, 2.0, 0.0]))
    q = q / q.sum()
    torch.testing.assert_close(w1, torch.tensor([q[0], q[1], 0.0]) / (q[0] + q[1]))
    dro.weights(torch.tensor([3.0, 0.0, 1.0]), torch.tensor([True, True, True]))
    q2 = q * torch.exp(0.5 * torch.tensor([3.0, 0.0, 1.0]))
    torch.testing.assert_close(dro.last.float(), q2 / q2.sum())


def _trainer(setup, **overrides):
    root, emb = setup
    config = build_config(model="BiFairSASRec", config_dict=bifair_config(root, emb, **overrides))
    dataset, (train, valid, test), model, trainer = prepare_run(config)
    trainer._setup(train)
    return trainer


def test_ips_weights_targets_by_inverse_training_count(setup):
    trainer = _trainer(setup, fair_method="ips", ips_alpha=0.5)
    counts = trainer.item_groups.train_count.double()
    items = torch.nonzero(counts > 0).flatten()[:6]
    losses = torch.arange(1.0, 7.0)
    L_g = trainer._group_losses(TargetLosses(losses, items, ())).means
    w = counts[items] ** -0.5
    w = w / w.mean()
    groups = trainer.group_of[items]
    for g in range(trainer.item_groups.n_groups):
        mask = groups == g
        expected = (losses.double()[mask] * w[mask]).mean() if mask.any() else torch.tensor(0.0)
        assert L_g[g].item() == pytest.approx(expected.item(), rel=1e-5)
    # the outer level's losses are never re-weighted
    L_plain = trainer._group_losses(TargetLosses(losses, items, ()), inner=False).means
    assert L_plain[groups[0]].item() == pytest.approx(losses[groups == groups[0]].mean().item())


def test_variance_regulariser_adds_the_population_variance_of_present_groups(setup):
    trainer = _trainer(setup, fair_method="varreg", group_variance_weight=2.0)
    L_g = torch.tensor([1.0, 4.0, 100.0])
    present = torch.tensor([True, True, False])
    lam = torch.tensor([0.5, 0.5, 0.0])
    assert trainer._inner_objective(L_g, present, lam).item() == pytest.approx(2.5 + 2.0 * 2.25)


def test_unknown_method_and_removed_keys_name_the_fix(setup):
    from recbole_bifair.errors import ConfigError

    with pytest.raises(ConfigError, match="fair_method 'propensity' is unknown; use one of bifair, groupdro, ips"):
        _trainer(setup, fair_method="propensity")
    with pytest.raises(ConfigError, match="sample_weighting no longer exists: it was replaced by fair_method: ips"):
        _trainer(setup, sample_weighting="ips")
    with pytest.raises(ConfigError, match="ips_alpha is a key of fair_method: ips, and this run's fair_method is "
                                          "varreg: set fair_method: ips, or remove ips_alpha"):
        _trainer(setup, fair_method="varreg", ips_alpha=0.5)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_config_file_runs(setup, method):
    root, emb = setup
    config_file = str(properties_dir() / "methods" / f"{method}.yaml")
    overrides = bifair_config(root, emb)
    result = run_bifair(config_file_list=[config_file], config_dict=overrides)
    assert result["test_result"]["ndcg@10"] >= 0.0
    assert METHODS.count(method) == 1


def test_the_method_files_cover_the_benchmark():
    assert {"SASRec", "LLM-SASRec", "IPS", "GroupDRO", "VarReg", "BiFair", "BiFair-inner-only",
            "BiFair-outer-only", "BiFair-first-order", "BiFair-uniform", "BiFair-dro", "BiFair-mu0"} <= set(METHODS)
