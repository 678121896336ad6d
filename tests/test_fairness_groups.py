"""Item groups: popularity cuts against independent computations, attribute groups against the
.item file, unseen items in the tail, and bad settings rejected before training."""

import contextlib
import os

import numpy as np
import pandas as pd
import pytest
from recbole.data import create_dataset, data_preparation

import recbole_bifair.fairness  # noqa: F401  (registers the metrics)
from recbole_bifair.errors import ConfigError, DataError
from recbole_bifair.fairness.groups import (
    PADDING_GROUP, ItemGroups, build_item_groups, validate_group_config, write_item_groups_csv,
)
from recbole_bifair.quick_start import build_config
from tests.datagen import make_dataset, tiny_config

N_EXTRA = 4  # items listed in the .item file only: never interacted with


def _write_extended_dataset(root):
    """tiny's interactions, plus an .item file with a single-valued token field, a float field, a
    field with one value for all items, and N_EXTRA items that no interaction mentions."""
    make_dataset(root, name="ext")
    lines = ["item_id:token\tclass:token_seq\tgenre:token\tprice:float\tstore:token"]
    for i in range(30 + N_EXTRA):
        lines.append(f"i{i}\t{'Drama Comedy' if i % 3 else 'Action'}\t{['Rock', 'Jazz', 'Pop'][i % 3]}\t{i * 1.5}\tMain")
    with open(os.path.join(root, "ext", "ext.item"), "w") as f:
        f.write("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Training splits of the generated datasets, and a function making configs for them."""
    root = tmp_path_factory.mktemp("groups")
    make_dataset(root)
    _write_extended_dataset(root)
    loaded = {}
    with contextlib.chdir(root):
        for name, item_cols in [("tiny", ["item_id", "class", "release_year"]), ("ext", ["item_id", "class", "genre", "price", "store"])]:
            config = build_config("SASRec", config_dict=tiny_config(
                root, dataset=name, load_col={"inter": ["user_id", "item_id", "rating", "timestamp"], "item": item_cols}))
            dataset = create_dataset(config)
            train_data, _, _ = data_preparation(config, dataset)
            loaded[name] = train_data.dataset

    def make_config(dataset="tiny", **overrides):
        with contextlib.chdir(root):
            return build_config("SASRec", config_dict=tiny_config(root, dataset=dataset, **overrides))

    return loaded, make_config, root


def _midpoint_groups(counts_desc, k):
    """Independent reading of the equal-share rule: an item joins the group whose share interval
    [g/k, (g+1)/k) holds the midpoint of its mass (valid when no group comes out empty)."""
    total = sum(counts_desc)
    groups, before = [], 0
    for count in counts_desc:
        midpoint = (before + count / 2) / total
        groups.append(min(k - 1, int(midpoint * k)))
        before += count
    return groups


@pytest.mark.parametrize("k", [2, 3, 5])
def test_popularity_equal_share_matches_independent_computation(data, k):
    loaded, make_config, _ = data
    train = loaded["tiny"]
    groups = build_item_groups(make_config(n_item_groups=k), train)

    counts = pd.Series(train.inter_feat[train.iid_field].numpy()).value_counts()
    order = sorted(counts.index, key=lambda item: (-counts[item], item))
    expected = _midpoint_groups([counts[i] for i in order], k)
    assert sorted(set(expected)) == list(range(k))  # the rule alone gives non-empty groups here
    assert [int(groups.group_of[i]) for i in order] == expected

    shares = groups.train_per_group() / groups.train_per_group().sum()
    assert np.all(np.abs(shares - 1 / k) <= counts.max() / counts.sum())
    assert groups.names == [f"pop{g + 1}" for g in range(k)]
    assert int(groups.group_of[0]) == PADDING_GROUP
    assert np.array_equal(groups.train_count.numpy()[order], [counts[i] for i in order])


def test_popularity_cut_by_hand():
    tokens = np.array(["[PAD]"] + [f"i{i}" for i in range(6)], dtype=object)
    counts = [0, 2, 50, 5, 30, 3, 10]  # sorted: items 2 (50), 4 (30), 6 (10), 3 (5), 5 (3), 1 (2)
    # K = 2: midpoints .25, .65, ...: the head is item 2 alone, exactly half of the interactions.
    groups = ItemGroups.popularity(counts, 2, "interactions", tokens)
    assert groups.group_of.tolist() == [PADDING_GROUP, 1, 0, 1, 1, 1, 1]
    assert groups.train_per_group().tolist() == [50, 50]
    # K = 4: item 2's midpoint (.25) falls in group 2 and would leave group 1 empty; every group
    # keeps one item and the rest goes to the tail.
    groups = ItemGroups.popularity(counts, 4, "interactions", tokens)
    assert groups.group_of.tolist() == [PADDING_GROUP, 3, 0, 3, 1, 3, 2]
    # Equal numbers of items: 6 items in 4 groups -> 2, 2, 1, 1.
    groups = ItemGroups.popularity(counts, 4, "items", tokens)
    assert groups.group_of.tolist() == [PADDING_GROUP, 3, 0, 1, 0, 2, 1]
    assert groups.items_per_group().tolist() == [2, 2, 1, 1]


def test_unseen_items_go_to_the_tail(data):
    loaded, make_config, _ = data
    train = loaded["ext"]
    unseen = [i for i in range(1, train.item_num) if train.item_counter.get(i, 0) == 0]
    extra = [train.token2id(train.iid_field, f"i{i}") for i in range(30, 30 + N_EXTRA)]
    assert set(extra) <= set(unseen)
    for split in ("interactions", "items"):
        groups = build_item_groups(make_config("ext", n_item_groups=4, group_split=split), train)
        assert {int(groups.group_of[i]) for i in unseen} == {3}
        seen = [i for i in range(1, train.item_num) if i not in unseen]
        assert {int(groups.group_of[i]) for i in seen} == {0, 1, 2, 3}
        if split == "items":
            sizes = np.bincount(groups.group_of[seen].numpy())
            assert sizes.max() - sizes.min() <= 1  # the seen items are split evenly
        assert f"{len(unseen)} items unseen in training are in pop4" in groups.description


def test_attribute_groups_first_and_rarest_value(data):
    loaded, make_config, root = data
    train = loaded["tiny"]
    item_file = pd.read_csv(os.path.join(root, "tiny", "tiny.item"), sep="\t")
    genres = dict(zip(item_file["item_id:token"], item_file["class:token_seq"].str.split(" ")))
    holders = pd.Series([g for values in genres.values() for g in values]).value_counts()

    first = build_item_groups(make_config(item_groups="attribute", group_field="class"), train)
    rarest = build_item_groups(make_config(item_groups="attribute", group_field="class", group_multi_value="rarest"), train)
    for item in range(1, train.item_num):
        values = genres[train.id2token(train.iid_field, item)]
        assert first.names[int(first.group_of[item])] == values[0]
        assert rarest.names[int(rarest.group_of[item])] == min(values, key=lambda g: holders[g])
    train_totals = first.train_per_group()
    assert list(train_totals) == sorted(train_totals, reverse=True)  # head first
    assert first.kind == "attribute" and first.n_groups == len({v[0] for v in genres.values()})


def test_attribute_groups_single_valued_field_and_items_without_value(data):
    loaded, make_config, _ = data
    train = loaded["ext"]
    groups = build_item_groups(make_config("ext", item_groups="attribute", group_field="genre"), train)
    assert sorted(groups.names) == ["Jazz", "Pop", "Rock"]
    for item in range(1, train.item_num):
        number = int(train.id2token(train.iid_field, item)[1:])
        assert groups.names[int(groups.group_of[item])] == ["Rock", "Jazz", "Pop"][number % 3]
    values = np.array([[None], ["a"], [None], ["b"]], dtype=object)
    groups = ItemGroups.attribute(values, [0, 2, 1, 5], "first", "f", np.array(["[PAD]", "x", "y", "z"]))
    assert groups.names == ["b", "a", "[none]"]
    assert groups.group_of.tolist() == [PADDING_GROUP, 1, 2, 0]


def test_item_groups_csv(data, tmp_path):
    loaded, make_config, _ = data
    train = loaded["tiny"]
    groups = build_item_groups(make_config(), train)
    path = write_item_groups_csv(tmp_path / "groups.csv", groups)
    frame = pd.read_csv(path)
    assert list(frame.columns) == ["item", "group", "train_count"]
    assert len(frame) == train.item_num - 1
    counts = pd.Series(train.inter_feat[train.iid_field].numpy()).value_counts()
    for row in frame.itertuples():
        item = train.token2id(train.iid_field, row.item)
        assert row.train_count == counts.get(item, 0)
        assert row.group == groups.names[int(groups.group_of[item])]
    assert os.listdir(tmp_path) == ["groups.csv"]  # no temporary file left behind


@pytest.mark.parametrize("overrides, key, hint", [
    ({"n_item_groups": 31}, "n_item_groups", "at most 30"),
    ({"n_item_groups": 1}, "n_item_groups", ">= 2"),
    ({"n_item_groups": 2.5}, "n_item_groups", ">= 2"),
    ({"group_split": "users"}, "group_split", "interactions, items"),
    ({"item_groups": "genre"}, "item_groups", "popularity, attribute"),
    ({"item_groups": "attribute"}, "group_field", "group_field: class"),
    ({"item_groups": "attribute", "group_field": "genre"}, "group_field", "load_col"),
    ({"item_groups": "attribute", "group_field": "class", "group_multi_value": "all"}, "group_multi_value", "first, rarest"),
    ({"valid_metric": "GroupNDCG@10[pop9]", "metrics": ["GroupNDCG"]}, "valid_metric", "pop1, pop2, pop3, pop4, pop5"),
    ({"long_tail": "pareto"}, "long_tail", "group, share, threshold"),
    ({"long_tail": "share", "long_tail_share": 1.5}, "long_tail_share", "(0, 1]"),
    ({"long_tail_share": 0}, "long_tail_share", "(0, 1]"),
    ({"long_tail": "threshold", "long_tail_threshold": 0}, "long_tail_threshold", ">= 1"),
    ({"long_tail_threshold": 2.5}, "long_tail_threshold", ">= 1"),
])
def test_bad_group_settings_are_rejected_naming_the_key(data, overrides, key, hint):
    loaded, make_config, _ = data
    with pytest.raises(ConfigError) as err:
        validate_group_config(make_config(**overrides), loaded["tiny"])
    message = str(err.value)
    assert message.startswith(f"{key}:") and hint in message


def test_attribute_field_must_be_a_token_field_with_two_values(data):
    loaded, make_config, _ = data
    with pytest.raises(ConfigError, match=r"^group_field: 'price' is a float field"):
        validate_group_config(make_config("ext", item_groups="attribute", group_field="price"), loaded["ext"])
    with pytest.raises(ConfigError, match=r"^group_field: item field 'store' .* single value \(Main\)"):
        validate_group_config(make_config("ext", item_groups="attribute", group_field="store"), loaded["ext"])


def test_group_names_differing_only_by_case_are_rejected():
    values = np.array([[None], ["Rock"], ["rock"]], dtype=object)
    with pytest.raises(DataError, match=r"item group names \['Rock', 'rock'\] differ only by case"):
        ItemGroups.attribute(values, [0, 2, 1], "first", "f", np.array(["[PAD]", "x", "y"]))


def test_valid_group_settings_pass(data):
    loaded, make_config, _ = data
    groups = validate_group_config(make_config(valid_metric="GroupNDCG@10[POP5]", metrics=["GroupNDCG"]), loaded["tiny"])
    assert groups.n_groups == 5 and groups.kind == "popularity"
