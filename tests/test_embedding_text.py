"""Item texts: read through RecBole's item loader, rendered per field type, missing values skipped."""

import os

import pytest
from recbole.data import create_dataset

from tests.datagen import make_dataset, tiny_config

from recbole_bifair.config import BiFairConfig
from recbole_bifair.embedding.item_text import build_item_texts
from recbole_bifair.errors import ConfigError, DataError


def _config(root, name="tiny", **overrides):
    return BiFairConfig(model="SASRec", dataset=name, config_dict=tiny_config(root, dataset=name, **overrides))


def _write_item_file(root, name, header, rows):
    folder = os.path.join(root, name)
    make_dataset(root, name=name, n_items=max(len(rows), 1), n_inter=200, with_item=False)
    with open(os.path.join(folder, f"{name}.item"), "w") as f:
        f.write("\t".join(header) + "\n")
        for row in rows:
            f.write("\t".join(row) + "\n")


def test_default_texts_of_the_generated_dataset(tmp_path):
    make_dataset(tmp_path)
    items = build_item_texts(_config(tmp_path))
    assert items.tokens == [f"i{i}" for i in range(30)]
    assert items.fields == ("movie_title", "release_year", "class")
    assert items.texts[0] == "movie title: Star Ghost 0; release year: 1970; class: Action Comedy"
    assert items.texts[2] == "movie title: River Last 2; release year: 1972; class: Drama Sci-Fi"


def test_tokens_are_those_recbole_uses(tmp_path):
    make_dataset(tmp_path)
    config = _config(tmp_path, load_col={"inter": ["user_id", "item_id"], "item": ["item_id", "movie_title"]})
    dataset = create_dataset(config)
    items = build_item_texts(config)
    assert set(items.tokens) == set(dataset.field2id_token["item_id"][1:])


def test_missing_values_are_skipped_not_printed_as_nan(tmp_path):
    header = ["item_id:token", "title:token_seq", "year:float", "genre:token", "tags:token_seq", "score:float_seq"]
    _write_item_file(tmp_path, "holes", header, [
        ["0", "Alpha Beta", "1999", "Drama", "x y", "1.5 2"],
        ["1", "", "", "", "", ""],
        ["2", "Gamma", "", "Comedy", "", "0.25"],
        ["3", "Delta", "2001.5", "", "z", ""],
    ])
    items = build_item_texts(_config(tmp_path, "holes"))
    assert items.texts == [
        "title: Alpha Beta; year: 1999; genre: Drama; tags: x y; score: 1.5 2",
        "",
        "title: Gamma; genre: Comedy; score: 0.25",
        "title: Delta; year: 2001.5; tags: z",
    ]
    assert not any("nan" in t.lower() for t in items.texts)


def test_template_with_optional_segments(tmp_path):
    header = ["item_id:token", "title:token_seq", "year:float", "genre:token_seq"]
    _write_item_file(tmp_path, "tpl", header, [
        ["0", "Alpha", "1999", "Drama War"], ["1", "Beta", "", "Comedy"], ["2", "Gamma", "2000", ""],
    ])
    config = _config(tmp_path, "tpl")
    items = build_item_texts(config, template="{title}[ ({year})][, genres: {genre}].")
    assert items.texts == ["Alpha (1999), genres: Drama War.", "Beta, genres: Comedy.", "Gamma (2000)."]
    assert items.fields == ("title", "year", "genre")
    only_title = build_item_texts(config, fields=["title"])
    assert only_title.texts == ["title: Alpha", "title: Beta", "title: Gamma"]


def test_duplicate_item_rows_keep_the_first_as_recbole_does(tmp_path):
    _write_item_file(tmp_path, "dups", ["item_id:token", "title:token_seq"], [["0", "First"], ["1", "B"], ["0", "Second"]])
    items = build_item_texts(_config(tmp_path, "dups"))
    assert items.tokens == ["0", "1"] and items.texts == ["title: First", "title: B"]


def test_requested_fields_missing_from_the_item_file(tmp_path):
    make_dataset(tmp_path)
    with pytest.raises(DataError) as err:
        build_item_texts(_config(tmp_path), fields=["movie_title", "plot"])
    assert "'plot'" in str(err.value) and "movie_title, release_year, class" in str(err.value)
    assert "tiny.item" in str(err.value)
    with pytest.raises(DataError, match="'genre'"):
        build_item_texts(_config(tmp_path), template="{movie_title} {genre}")


def test_dataset_without_item_file(tmp_path):
    make_dataset(tmp_path, with_item=False)
    with pytest.raises(DataError, match=r"has no item file .*tiny\.item"):
        build_item_texts(_config(tmp_path))


@pytest.mark.parametrize("template", ["{movie_title} [({release_year}", "no fields", "{movie_title!r}", "{movie_title"])
def test_malformed_templates(tmp_path, template):
    make_dataset(tmp_path)
    with pytest.raises(ConfigError, match="llm_emb_template"):
        build_item_texts(_config(tmp_path), template=template)


def test_item_file_without_rows(tmp_path):
    _write_item_file(tmp_path, "empty", ["item_id:token", "title:token_seq"], [])
    with pytest.raises(DataError, match="lists no items"):
        build_item_texts(_config(tmp_path, "empty"))
