"""datasets/prepare_steam.py on a hand-written sample in the source's own formats.

The sample: SeqRecBenchmark's two pandas pickles (in a proc.zip, as the repository ships them) and
UCSD's steam_games lines (Python dict literals). Its 5-core result is worked out by hand: user 106
has 4 reviews and goes first; that leaves game 105 with 4 and it goes; that leaves user 107 with 4
and it goes; users 100-104 with games 100-104 remain (5 each).
"""

import gzip
import importlib.util
import io
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from recbole.data import create_dataset

from recbole_bifair.config import BiFairConfig
from recbole_bifair.embedding.item_text import build_item_texts
from recbole_bifair.errors import DataError

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "datasets" / "prepare_steam.py"
DAY = 86400
T0 = 1_400_000_000


def load_script():
    # loaded by path: a top-level package named `datasets` would shadow Hugging Face's
    spec = importlib.util.spec_from_file_location("prepare_steam", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


prep = load_script()

# user -> [(game, day)] in the source's order (each list already in time order, as SeqRecBenchmark writes it)
HISTORIES = {
    104: [(100, 0), (101, 1), (102, 2), (101, 3), (103, 4), (104, 5), (106, 6)],  # 101 again on day 3: a repeat
    100: [(101, 0), (100, 0), (102, 1), (103, 2), (104, 3), (105, 4), (106, 5)],  # same day: source order kept
    101: [(105, 0), (100, 1), (101, 2), (102, 3), (103, 4), (104, 5), (106, 6)],
    102: [(101, 1), (100, 0), (102, 2), (103, 3), (104, 4), (105, 5), (106, 6)],  # out of time order: sorted
    103: [(104, 0), (103, 1), (102, 2), (101, 3), (100, 4), (106, 5)],
    106: [(100, 0), (105, 1), (101, 2), (102, 3)],
    107: [(105, 0), (100, 1), (101, 2), (102, 3), (103, 4)],
}
TITLES = {
    100: "Rock of Ages 2: Bigger &amp; Boulder\u2122",
    101: '"Quoted" Game\tTwo\nLines',
    102: "Heroes\u00ae of Might &amp; Magic\u00ae III",
    103: "Plain",
    104: "Unmatched Title",
    105: "Dropped Later",
    106: "\u2122 ",  # nothing left after cleaning: an item without text
}
GAMES = [
    "{u'title': u'Rock of Ages 2: Bigger &amp; Boulder\\u2122', u'id': u'434460', u'release_date': u'2017-08-30', "
    "u'developer': u'ACE Team,Atlus', u'genres': [u'Action', u'Indie'], u'tags': [u'Tower Defense', u'Action', u'Action'], "
    "u'early_access': False}",
    repr({"title": '"Quoted" Game\tTwo\nLines', "id": "7", "release_date": "Mar 1999", "genres": ["Design &amp; Illustration"]}),
    repr({"title": "Heroes\u00ae of Might &amp; Magic\u00ae III", "id": "297000", "developer": "DotEmu", "tags": ["Strategy"]}),
    repr({"title": "Heroes\u00ae of Might &amp; Magic\u00ae III", "developer": "DotEmu", "tags": ["Strategy"]}),  # same text, no id
    repr({"title": "Plain", "id": "1", "developer": "A"}),
    repr({"title": "Plain", "id": "2", "developer": "B"}),  # same title, other text: ambiguous
    "",
    repr({"title": "Not in the sample", "id": "3"}),
]

EXPECTED_INTER = [
    "user_id:token\titem_id:token\ttimestamp:float",
    *(f"100\t{i}\t{T0 + d * DAY}" for i, d in [(101, 0), (100, 0), (102, 1), (103, 2), (104, 3)]),
    *(f"101\t{i}\t{T0 + d * DAY}" for i, d in [(100, 1), (101, 2), (102, 3), (103, 4), (104, 5)]),
    *(f"102\t{i}\t{T0 + d * DAY}" for i, d in [(100, 0), (101, 1), (102, 2), (103, 3), (104, 4)]),
    *(f"103\t{i}\t{T0 + d * DAY}" for i, d in [(104, 0), (103, 1), (102, 2), (101, 3), (100, 4)]),
    *(f"104\t{i}\t{T0 + d * DAY}" for i, d in [(100, 0), (101, 1), (102, 2), (103, 4), (104, 5)]),
]
EXPECTED_ITEM = [
    "item_id:token\ttitle:token_seq\trelease_year:token\tdeveloper:token_seq\tgenres:token_seq\ttags:token_seq\tapp_id:token",
    "100\tRock of Ages 2: Bigger & Boulder\t2017\tACE Team, Atlus\tAction, Indie\tTower Defense, Action\t434460",
    "101\tQuoted Game Two Lines\t1999\t\tDesign & Illustration\t\t7",
    "102\tHeroes of Might & Magic III\t\tDotEmu\t\tStrategy\t297000",
    "103\tPlain\t\t\t\t\t",
    "104\tUnmatched Title\t\t\t\t\t",
]


def user2item_frame():
    return pd.DataFrame({
        "UserID": list(HISTORIES),
        "ItemID": [[i for i, _ in h] for h in HISTORIES.values()],
        "Timestamp": [[T0 + d * DAY for _, d in h] for h in HISTORIES.values()],
    })


def item2title_frame():
    return pd.DataFrame({"ItemID": list(TITLES), "Title": list(TITLES.values())})


def pickle_bytes(frame):
    buffer = io.BytesIO()
    frame.to_pickle(buffer, compression=None)
    return buffer.getvalue()


@pytest.fixture
def raw(tmp_path):
    """(proc.zip, steam_games.json.gz) under tmp_path/raw, written as the sources ship them."""
    folder = tmp_path / "raw"
    folder.mkdir()
    with zipfile.ZipFile(folder / "proc.zip", "w") as archive:
        archive.writestr("summary.json", "{}")
        archive.writestr("user2item.pkl", pickle_bytes(user2item_frame()))
        archive.writestr("item2title.pkl", pickle_bytes(item2title_frame()))
    with gzip.open(folder / "steam_games.json.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(GAMES) + "\n")
    return folder / "proc.zip", folder / "steam_games.json.gz"


def run(source, meta, out, name="steam-100k"):
    args = [f"--source={source}", f"--out={out}", f"--name={name}"] + ([f"--meta={meta}"] if meta else [])
    return prep.main(args)


def lines(path):
    return Path(path).read_text(encoding="utf-8").splitlines()


def test_the_sample_gives_the_hand_computed_rows_and_texts(raw, tmp_path):
    out = tmp_path / "out" / "steam-100k"
    stats = run(*raw, out)
    assert lines(out / "steam-100k.inter") == EXPECTED_INTER
    assert lines(out / "steam-100k.item") == EXPECTED_ITEM
    assert stats["source"] == {"users": 7, "items": 7, "interactions": 43}
    assert (stats["repeats"], stats["items_without_text"], stats["untitled_in_title_file"]) == (1, 1, 1)
    assert stats["final"] == {"users": 5, "items": 5, "interactions": 25}
    assert stats["meta"] == {"matched": 3, "ambiguous": 1, "unmatched": 3}
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert "| this dataset | 5 | 5 | 25 |" in readme and "| source (SeqRecBenchmark Steam-100K) | 7 | 7 | 43 |" in readme
    assert f"python datasets/prepare_steam.py --source={raw[0]} --meta={raw[1]}" in readme


def test_k_core_repeats_until_nothing_is_left_to_drop():
    rows = [(u, i, 0) for u, items in {"a": "12345", "b": "12345", "c": "12345", "d": "12345", "e": "1234",
                                       "f": "5"}.items() for i in items]
    # item 5 has 5 rows (a-d, f); f has 1 row and goes, then item 5 has 4 and goes, then a-d have 4 and go
    assert prep.k_core(rows) == []
    assert prep.k_core(rows, k=4) == [r for r in rows if r[0] != "f"]


def test_output_bytes_depend_only_on_the_input(raw, tmp_path):
    source, meta = raw
    run(source, meta, tmp_path / "a")
    unzipped = tmp_path / "unzipped"
    zipfile.ZipFile(source).extractall(unzipped)
    run(unzipped, meta, tmp_path / "b")  # the same pickles from a folder
    for name in ("steam-100k.inter", "steam-100k.item"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    run(source, meta, tmp_path / "c")
    for name in ("steam-100k.inter", "steam-100k.item", "README.md"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "c" / name).read_bytes()


def test_a_git_directory_is_read_at_its_head(raw, tmp_path):
    work = tmp_path / "mirror"
    (work / "data" / "steam_100000").mkdir(parents=True)
    (work / "data" / "steam_100000" / "proc.zip").write_bytes(raw[0].read_bytes())
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    for args in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "data"]):
        subprocess.run(git + args, check=True, capture_output=True)
    stats = run(work / ".git", None, tmp_path / "out")
    assert lines(tmp_path / "out" / "steam-100k.inter") == EXPECTED_INTER
    commit = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert f"`data/steam_100000/proc.zip` at commit {commit}" in (tmp_path / "out" / "README.md").read_text()
    # without --meta the text is the title alone
    assert lines(tmp_path / "out" / "steam-100k.item")[1] == "100\tRock of Ages 2: Bigger & Boulder\t\t\t\t\t"
    assert stats["meta"] == {}


def test_recbole_reads_the_output_and_the_dataset_properties_build_the_item_text(raw, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run(*raw, tmp_path / "data" / "steam-100k")
    config = BiFairConfig(model="SASRec", dataset="steam-100k",
                          config_dict={"data_path": str(tmp_path / "data"), "state": "WARNING"})
    dataset = create_dataset(config)
    assert (dataset.user_num, dataset.item_num, dataset.inter_num) == (6, 6, 25)  # + RecBole's padding id
    assert dataset.id2token("item_id", dataset.inter_feat["item_id"][:5].tolist()).tolist() == [
        "101", "100", "102", "103", "104"]
    texts = build_item_texts(config, config["llm_emb_fields"], config["llm_emb_template"])
    assert dict(zip(texts.tokens, texts.texts)) == {
        "100": "Rock of Ages 2: Bigger & Boulder (2017); developer: ACE Team, Atlus; genres: Action, Indie; "
               "tags: Tower Defense, Action",
        "101": "Quoted Game Two Lines (1999); genres: Design & Illustration",
        "102": "Heroes of Might & Magic III; developer: DotEmu; tags: Strategy",
        "103": "Plain",
        "104": "Unmatched Title",
    }


def test_a_pickle_that_would_run_other_code_is_refused(tmp_path):
    target = tmp_path / "written"

    class Payload:
        def __reduce__(self):
            return open, (str(target), "w")

    refused = rf"^user2item.pkl is not a pickled pandas DataFrame \({open.__module__}.open is not part of"
    with pytest.raises(DataError, match=refused):
        prep.load_frame(pickle.dumps(Payload()), "user2item.pkl")
    assert not target.exists()
    # numpy 2 names its modules numpy._core: the files of the real source do
    numpy_2_name = prep._DataFrameUnpickler(io.BytesIO()).find_class("numpy._core.numeric", "_frombuffer")
    assert numpy_2_name.__name__ == "_frombuffer"


def test_clean_text_leaves_one_plain_line():
    assert prep.clean_text('  "A"\u00a0&lt;B&gt;\r\n\x00C\u2028D\u2122 ') == "A <B> C D"
    assert prep.clean_text(float("nan")) == "" and prep.clean_text(None) == ""
    assert prep.clean_list(["x &amp; y", " ", "x & y", "z"]) == "x & y, z"


def test_bad_inputs_stop_with_one_line_naming_the_file(raw, tmp_path):
    bad_meta = tmp_path / "games.json"
    bad_meta.write_text("{'title': 'ok'}\n{'title': \n")
    with pytest.raises(DataError, match=rf"^--meta {bad_meta} line 2 is not a Python dict literal"):
        run(raw[0], bad_meta, tmp_path / "out")
    folder = tmp_path / "half"
    folder.mkdir()
    (folder / "user2item.pkl").write_bytes(b"")
    with pytest.raises(DataError, match=rf"^--source folder {folder} has no item2title.pkl: "):
        run(folder, None, tmp_path / "out")
    assert not (tmp_path / "out").exists()

    missing = tmp_path / "nowhere.zip"
    done = subprocess.run([sys.executable, str(SCRIPT), f"--source={missing}", f"--out={tmp_path / 'out'}"],
                          cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (f"error: --source {missing} does not exist: give SeqRecBenchmark's steam_100000 "
                           f"proc.zip, its unzipped folder, or the repository's git directory\n")
