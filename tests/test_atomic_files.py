"""Atomic files are read with quotes as plain characters (compat item 11), and what still cannot
be read is reported with the file and the line."""

import os

import pandas
import pytest
from recbole.data import create_dataset

import recbole.data.dataset.dataset as recbole_dataset_module
from recbole_bifair.config import BiFairConfig
from recbole_bifair.embedding.item_text import build_item_texts
from recbole_bifair.embedding.options import EmbeddingOptions
from recbole_bifair.errors import DataError
from tests.datagen import make_ml1m_like

QUOTED_TITLES = ['"No Makeup" Makeup Kit', 'Lip Gloss "Pink"', '"', 'Say "hi"', '""Double"" Quoted']


def _titles(n_items=30):
    return QUOTED_TITLES + [f"Plain Title {i}" for i in range(len(QUOTED_TITLES), n_items)]


def _config(root, **overrides):
    return BiFairConfig(model="SASRec", dataset="ml-1m", config_dict={
        "data_path": str(root), "state": "WARNING", "show_progress": False,
        "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "movie_title"],
                     "user": ["user_id", "nickname"]},
        **overrides,
    })


def _write_user_file(root, names):
    with open(os.path.join(root, "ml-1m", "ml-1m.user"), "w") as f:
        f.write("user_id:token\tnickname:token\n")
        for user, name in enumerate(names, start=1):
            f.write(f"{user}\t{name}\n")


@pytest.fixture
def quoted_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = make_ml1m_like(tmp_path / "data", titles=_titles())
    _write_user_file(root, ['"Ann"', 'Bob "the builder"'] + [f"user{u}" for u in range(3, 41)])
    return root


def test_stock_recbole_reader_stops_on_a_leading_quote(quoted_data, monkeypatch):
    monkeypatch.setattr(recbole_dataset_module, "pd", pandas)  # RecBole's reader without the patch
    with pytest.raises(pandas.errors.ParserError, match="expected after '\"'"):
        create_dataset(_config(quoted_data))


def test_titles_and_user_fields_load_verbatim(quoted_data):
    dataset = create_dataset(_config(quoted_data))
    tokens = dataset.field2id_token["movie_title"]
    item_tokens = dataset.field2id_token[dataset.iid_field]
    loaded = {}
    for row, item_id in enumerate(dataset.item_feat[dataset.iid_field].tolist()):
        if item_id:
            words = [tokens[t] for t in dataset.item_feat["movie_title"][row].tolist() if t]
            loaded[item_tokens[item_id]] = " ".join(words)
    expected = {str(i + 1): title for i, title in enumerate(_titles())}
    assert loaded == expected

    assert {'"Ann"', 'Bob "the builder"'} <= set(dataset.field2id_token["nickname"])


def test_embedding_item_texts_contain_the_quoted_titles(quoted_data):
    config = _config(quoted_data)
    options = EmbeddingOptions.from_config(config)  # properties/dataset/ml-1m.yaml's fields and template
    items = build_item_texts(config, options.fields, options.template)
    texts = dict(zip(items.tokens, items.texts))
    assert texts["1"].startswith('"No Makeup" Makeup Kit (1970); ')
    assert texts["3"].startswith('" (1972); ')
    assert texts["5"].startswith('""Double"" Quoted (1974)')


def test_text_in_a_float_column_names_file_line_and_column(quoted_data):
    path = os.path.join(quoted_data, "ml-1m", "ml-1m.inter")
    lines = open(path).read().splitlines()
    lines[7] = lines[7].rsplit("\t", 1)[0] + "\t12:30"
    open(path, "w").write("\n".join(lines) + "\n")
    with pytest.raises(DataError) as failure:
        create_dataset(_config(quoted_data))
    message = str(failure.value)
    assert f"{path} line 8" in message and "timestamp:float" in message and "'12:30'" in message


def test_wrong_encoding_names_file_and_the_key(quoted_data):
    path = os.path.join(quoted_data, "ml-1m", "ml-1m.item")
    with open(path, "ab") as f:
        # past RecBole's own header read, which decodes the first 8 KB itself
        f.write("".join(f"{i}\tUnrated Film {i}\t1999\tDrama\n" for i in range(31, 531)).encode())
        f.write("531\tCaf\xe9 Society\t1999\tDrama\n".encode("latin-1"))
    with pytest.raises(DataError) as failure:
        create_dataset(_config(quoted_data))
    assert f"atomic file {path} is not valid utf-8" in str(failure.value) and "`encoding`" in str(failure.value)
