"""Steam-100K with game text as RecBole atomic files: <name>.inter, <name>.item and a README.md.

Sources (public GitHub snapshots; the data stays outside the repository, as ../shared/datasets):

- ``--source``: SeqRecBenchmark's Steam-100K (github.com/Tiny-Snow/SeqRecBenchmark-Datasets,
  ``data/steam_100000/proc.zip``): reviews of UCSD's Steam crawl (version 2), 100,000 users
  sampled, 5-core, as pandas pickles ``user2item.pkl`` (each user's game ids and review dates in
  time order) and ``item2title.pkl`` (one title per game). Give the zip, a folder holding the two
  pickles, or the repository's git directory (the zip is read from its HEAD).
- ``--meta`` (optional): UCSD's ``steam_games.json.gz`` (32,135 games, one Python dict literal a
  line; mirrored in github.com/agueroaugusto/steam): release date, developer, genres and tags,
  joined to the games by title. Give the file or that repository's git directory.

    python datasets/prepare_steam.py --source=/work/.mirror/Tiny-Snow+SeqRecBenchmark-Datasets/repo \\
        --meta=/work/.mirror/agueroaugusto+steam/repo         # -> ../shared-extra/steam-100k

The output is the same bytes for the same inputs.
"""

import argparse
import ast
import gzip
import hashlib
import html
import importlib
import io
import os
import pickle
import re
import subprocess
import sys
import unicodedata
import zipfile
from collections import Counter

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if __name__ == "__main__" and REPO not in sys.path:  # run by path from a checkout that is not installed
    sys.path.insert(0, REPO)

from recbole_bifair.errors import DataError  # noqa: E402
from recbole_bifair.fileio import write_text_atomic  # noqa: E402

NAME = "steam-100k"
K_CORE = 5
SOURCE_IN_GIT = "data/steam_100000/proc.zip"
META_IN_GIT = "steam_games.json.gz"
PICKLES = ("user2item.pkl", "item2title.pkl")
ITEM_FIELDS = ("title", "release_year", "developer", "genres", "tags")
ITEM_HEADER = ("item_id:token\ttitle:token_seq\trelease_year:token\tdeveloper:token_seq\tgenres:token_seq"
               "\ttags:token_seq\tapp_id:token")

# A pickle names the functions that rebuild it, and unpickling calls them: a file from the web
# may only name what a DataFrame of ints, strings and lists is rebuilt from (numpy 2 writes
# numpy._core where numpy 1 has numpy.core).
_ALLOWED_GLOBALS = {
    ("builtins", "slice"),
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("pandas._libs.internals", "_unpickle_block"),
    ("pandas.core.frame", "DataFrame"),
    ("pandas.core.indexes.base", "Index"),
    ("pandas.core.indexes.base", "_new_Index"),
    ("pandas.core.indexes.range", "RangeIndex"),
    ("pandas.core.internals.managers", "BlockManager"),
}


class _DataFrameUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        generic = re.sub(r"^numpy\._core\b", "numpy.core", module)
        if (generic, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a pandas DataFrame")
        for candidate in dict.fromkeys([module, generic, generic.replace("numpy.core", "numpy._core", 1)]):
            try:
                return getattr(importlib.import_module(candidate), name)
            except (ImportError, AttributeError):
                continue
        raise pickle.UnpicklingError(f"{module}.{name} is missing from this numpy/pandas")


def load_frame(data, where):
    """A pandas DataFrame from pickle bytes, refusing anything else the pickle would run."""
    try:
        frame = _DataFrameUnpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise DataError(f"{where} is not a pickled pandas DataFrame ({err}): give SeqRecBenchmark's "
                        f"{' and '.join(PICKLES)}") from err
    if type(frame).__name__ != "DataFrame":
        raise DataError(f"{where} holds a {type(frame).__name__}, not a DataFrame: give SeqRecBenchmark's pickles")
    return frame


def is_git_dir(path):
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "HEAD")) and os.path.isdir(
        os.path.join(path, "objects"))


def git_file(git_dir, path):
    """(bytes of ``path`` at HEAD, the commit) from a (bare) git directory."""
    def git(*args):
        done = subprocess.run(["git", "--git-dir", git_dir, *args], capture_output=True)
        if done.returncode:
            raise DataError(f"{git_dir} has no {path} at HEAD ({done.stderr.decode(errors='replace').strip()}): "
                            f"give the file itself")
        return done.stdout
    return git("show", f"HEAD:{path}"), git("rev-parse", "HEAD").decode().strip()


def read_source(path):
    """{pickle name: bytes} of SeqRecBenchmark's two pickles and a line saying where they came from."""
    if is_git_dir(path):
        data, commit = git_file(path, SOURCE_IN_GIT)
        return _pickles_from_zip(data, f"{path}:{SOURCE_IN_GIT}"), f"`{SOURCE_IN_GIT}` at commit {commit}"
    if os.path.isdir(path):
        missing = [name for name in PICKLES if not os.path.isfile(os.path.join(path, name))]
        if missing:
            raise DataError(f"--source folder {path} has no {', '.join(missing)}: give the folder of "
                            f"SeqRecBenchmark's unzipped proc.zip, the zip, or the repository's git directory")
        pickles = {}
        for name in PICKLES:
            with open(os.path.join(path, name), "rb") as f:
                pickles[name] = f.read()
        return pickles, f"`{os.path.basename(os.path.abspath(path))}/` ({_digests(pickles)})"
    if not os.path.isfile(path):
        raise DataError(f"--source {path} does not exist: give SeqRecBenchmark's steam_100000 proc.zip, "
                        f"its unzipped folder, or the repository's git directory")
    with open(path, "rb") as f:
        data = f.read()
    return _pickles_from_zip(data, path), f"`{os.path.basename(path)}` (sha256 {hashlib.sha256(data).hexdigest()})"


def _pickles_from_zip(data, where):
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as err:
        raise DataError(f"--source {where} is not a zip file ({err}): give SeqRecBenchmark's proc.zip") from err
    pickles = {}
    for name in PICKLES:
        members = [m for m in archive.namelist() if os.path.basename(m) == name]
        if len(members) != 1:
            raise DataError(f"--source {where} holds {len(members)} files named {name}, not one: "
                            f"give SeqRecBenchmark's proc.zip")
        pickles[name] = archive.read(members[0])
    return pickles


def _digests(pickles):
    return ", ".join(f"{name} sha256 {hashlib.sha256(data).hexdigest()}" for name, data in pickles.items())


def read_meta(path):
    """The game records of ``steam_games.json(.gz)`` and a line saying where they came from."""
    if is_git_dir(path):
        data, commit = git_file(path, META_IN_GIT)
        where, origin = f"{path}:{META_IN_GIT}", f"`{META_IN_GIT}` at commit {commit}"
    elif os.path.isfile(path):
        with open(path, "rb") as f:
            data = f.read()
        where, origin = path, f"`{os.path.basename(path)}` (sha256 {hashlib.sha256(data).hexdigest()})"
    else:
        raise DataError(f"--meta {path} does not exist: give UCSD's steam_games.json.gz or a git directory holding it")
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return parse_games(data.decode("utf-8"), where), origin


def parse_games(text, where):
    """One dict per non-blank line; UCSD wrote Python literals (u'...', True), not JSON."""
    games = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            game = ast.literal_eval(line)
        except (ValueError, SyntaxError) as err:
            raise DataError(f"--meta {where} line {number} is not a Python dict literal ({err}): "
                            f"give UCSD's steam_games.json.gz") from err
        if not isinstance(game, dict):
            raise DataError(f"--meta {where} line {number} is a {type(game).__name__}, not a dict: "
                            f"give UCSD's steam_games.json.gz")
        games.append(game)
    return games


_MARKS = str.maketrans("", "", "\u2122\u00ae\u00a9\"")  # ™ ® © carry no meaning; a leading " stops RecBole's reader


def clean_text(value):
    """One line of plain text: HTML entities decoded, marks and double quotes removed, spaces collapsed."""
    if not isinstance(value, str):
        return ""
    text = html.unescape(value).translate(_MARKS)
    text = "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text)
    return " ".join(text.split())


def clean_list(values):
    """Cleaned, non-empty, first occurrence kept, joined by ', '."""
    if not isinstance(values, (list, tuple)):
        return ""
    return ", ".join(dict.fromkeys(v for v in map(clean_text, values) if v))


def game_fields(game):
    """The text fields of one game record (empty strings where it has none)."""
    date = game.get("release_date")
    year = re.search(r"\b(\d{4})\b", date) if isinstance(date, str) else None
    return {
        "release_year": year.group(1) if year else "",
        "developer": re.sub(r"\s*,\s*", ", ", clean_text(game.get("developer"))).strip(", "),
        "genres": clean_list(game.get("genres")),
        "tags": clean_list(game.get("tags")),
    }


def match_games(titles, games):
    """Join game records to items by their exact title (the source took its titles from these records).

    Returns ({item: fields + app_id}, counts): a title that several records share with different
    text gets no metadata rather than a guess.
    """
    by_title = {}
    for game in games:
        if isinstance(game.get("title"), str):
            by_title.setdefault(game["title"], []).append(game)
    matched, counts = {}, Counter()
    for item, title in titles.items():
        candidates = by_title.get(title, [])
        texts = {tuple(game_fields(g).items()) for g in candidates}
        if len(texts) != 1:
            counts["ambiguous" if candidates else "unmatched"] += 1
            continue
        ids = {str(g["id"]) for g in candidates if g.get("id") not in (None, "")}
        matched[item] = {**dict(texts.pop()), "app_id": ids.pop() if len(ids) == 1 else ""}
        counts["matched"] += 1
    return matched, counts


def require_columns(frame, columns, where):
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{where} has no column {', '.join(missing)} (it has {', '.join(map(str, frame.columns))}): "
                        f"give SeqRecBenchmark's pickles")


def source_rows(user2item):
    """(user, item, timestamp) rows, users in id order, each user's rows in the source's order."""
    rows = []
    for user, items, times in sorted(zip(user2item["UserID"], user2item["ItemID"], user2item["Timestamp"]),
                                     key=lambda r: int(r[0])):
        if len(items) != len(times):
            raise DataError(f"user2item.pkl: user {user} has {len(items)} items but {len(times)} timestamps")
        rows.extend((str(user), str(item), int(t)) for item, t in zip(items, times))
    return rows


def time_order(rows):
    """Each user's rows by time; a stable sort keeps the source's order on equal timestamps."""
    by_user = {}
    for row in rows:
        by_user.setdefault(row[0], []).append(row)
    return [row for user_rows in by_user.values() for row in sorted(user_rows, key=lambda r: r[2])]


def drop_repeats(rows):
    """Keep a user's first interaction with an item: RecBole's full ranking masks the history,
    so a later repeat can never be ranked when it is the item to predict."""
    seen = set()
    kept = []
    for row in rows:
        if (row[0], row[1]) not in seen:
            seen.add((row[0], row[1]))
            kept.append(row)
    return kept


def k_core(rows, k=K_CORE):
    """Drop users and items with fewer than ``k`` rows, again until none is left to drop."""
    while True:
        users = Counter(r[0] for r in rows)
        items = Counter(r[1] for r in rows)
        kept = [r for r in rows if users[r[0]] >= k and items[r[1]] >= k]
        if len(kept) == len(rows):
            return kept
        rows = kept


def item_texts(item2title, meta):
    """{item: {field: text}} for items with a non-empty title after cleaning, and the count without one."""
    texts, untitled = {}, 0
    for item, raw in zip(item2title["ItemID"], item2title["Title"]):
        title = clean_text(raw)
        if not title:
            untitled += 1
            continue
        texts[str(item)] = {"title": title, **meta.get(str(item), dict.fromkeys((*ITEM_FIELDS[1:], "app_id"), ""))}
    return texts, untitled


def build(pickles, games):
    """The dataset's rows, item texts and the counts of every step (a pure function of the inputs)."""
    user2item = load_frame(pickles["user2item.pkl"], "user2item.pkl")
    item2title = load_frame(pickles["item2title.pkl"], "item2title.pkl")
    require_columns(user2item, ("UserID", "ItemID", "Timestamp"), "user2item.pkl")
    require_columns(item2title, ("ItemID", "Title"), "item2title.pkl")
    titles = {str(i): t for i, t in zip(item2title["ItemID"], item2title["Title"])}
    meta, meta_counts = match_games(titles, games) if games is not None else ({}, Counter())
    texts, untitled = item_texts(item2title, meta)
    rows = time_order(source_rows(user2item))
    stats = {"source": _counts(rows)}
    rows = drop_repeats(rows)
    stats["repeats"] = stats["source"]["interactions"] - len(rows)
    no_text = {r[1] for r in rows} - texts.keys()
    rows = [r for r in rows if r[1] in texts]
    stats["items_without_text"] = len(no_text)
    stats["untitled_in_title_file"] = untitled
    rows = k_core(rows)
    stats["final"] = _counts(rows)
    stats["meta"] = dict(meta_counts)
    kept_items = {r[1] for r in rows}
    texts = {item: texts[item] for item in sorted(kept_items, key=int)}
    stats["with_metadata"] = sum(1 for t in texts.values() if t["genres"] or t["tags"] or t["developer"])
    return rows, texts, stats


def _counts(rows):
    return {"users": len({r[0] for r in rows}), "items": len({r[1] for r in rows}), "interactions": len(rows)}


def inter_lines(rows):
    yield "user_id:token\titem_id:token\ttimestamp:float\n"
    for user, item, t in rows:
        yield f"{user}\t{item}\t{t}\n"


def item_lines(texts):
    yield ITEM_HEADER + "\n"
    for item, fields in texts.items():
        yield "\t".join([item, *(fields[f] for f in ITEM_FIELDS), fields["app_id"]]) + "\n"


def readme(name, stats, source_origin, meta_origin, command):
    s, f = stats["source"], stats["final"]
    meta = stats["meta"]
    meta_line = (f"Game text joined by exact title to UCSD's game records ({meta_origin}): "
                 f"{meta.get('matched', 0):,} titles matched one record (or several with the same text), "
                 f"{meta.get('ambiguous', 0):,} matched records with different text and got none, "
                 f"{meta.get('unmatched', 0):,} matched no record; "
                 f"{stats['with_metadata']:,} of the {f['items']:,} items kept have developer, genres or tags."
                 if meta_origin else "No game records given (--meta): the item text is the title only.")
    return f"""# {name}

Steam game reviews as RecBole atomic files, made by `datasets/prepare_steam.py` of recbole-bifair:

    {command}

| | users | items | interactions |
|---|---|---|---|
| source (SeqRecBenchmark Steam-100K) | {s['users']:,} | {s['items']:,} | {s['interactions']:,} |
| this dataset | {f['users']:,} | {f['items']:,} | {f['interactions']:,} |

Steps: later reviews of a game the user had already reviewed dropped ({stats['repeats']:,}: RecBole's
full ranking masks a user's history, so such an item could never be ranked); games without a
title dropped ({stats['items_without_text']:,}; {stats['untitled_in_title_file']:,} titles of the title
file are empty after cleaning); users and games with fewer than {K_CORE} interactions dropped,
again until none is left ({K_CORE}-core).

Files: `{name}.inter` (`user_id:token`, `item_id:token`, `timestamp:float`: unix seconds of the
review date, day resolution; each user's rows in time order, same-day rows in the source's order,
which RecBole's stable sort keeps); `{name}.item` (`item_id:token`, `title:token_seq`,
`release_year:token`, `developer:token_seq`, `genres:token_seq`, `tags:token_seq` (Steam's
user tags in the store's order), `app_id:token`: the Steam app id, empty where unknown). User
and item ids are SeqRecBenchmark's (the source keeps no user names). Text: HTML entities
decoded, the marks \u2122 \u00ae \u00a9 and double quotes removed, whitespace collapsed; lists joined by ", ".

Source: {source_origin}, from github.com/Tiny-Snow/SeqRecBenchmark-Datasets (Steam-100K: 100,000
users sampled from the Steam reviews of Kang and McAuley, then 5-core).

{meta_line}

Licence: the Steam data of Julian McAuley's lab at UCSD, for research use; no redistribution
(SeqRecBenchmark's MIT licence covers its code, not the crawled data). Cite W.-C. Kang and
J. McAuley, ICDM 2018; M. Wan and J. McAuley, RecSys 2018; A. Pathak, K. Gupta and J. McAuley,
SIGIR 2017.
"""


def write_dataset(out, name, rows, texts, text_readme):
    os.makedirs(out, exist_ok=True)
    write_text_atomic(os.path.join(out, f"{name}.inter"), "".join(inter_lines(rows)))
    write_text_atomic(os.path.join(out, f"{name}.item"), "".join(item_lines(texts)))
    write_text_atomic(os.path.join(out, "README.md"), text_readme)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True,
                        help="SeqRecBenchmark's steam_100000 proc.zip, its unzipped folder, or the repository's git directory")
    parser.add_argument("--meta", default=None,
                        help="UCSD's steam_games.json(.gz) or a git directory holding it (without it: titles only)")
    parser.add_argument("--name", default=NAME, help=f"dataset name, the files' stem (default {NAME})")
    parser.add_argument("--out", default=None, help="output folder (default ../shared-extra/NAME beside the repository)")
    args = parser.parse_args(argv)
    out = args.out or os.path.join(os.path.dirname(REPO), "shared-extra", args.name)
    pickles, source_origin = read_source(args.source)
    games, meta_origin = read_meta(args.meta) if args.meta else (None, None)
    rows, texts, stats = build(pickles, games)
    command = " ".join(["python datasets/prepare_steam.py", f"--source={args.source}",
                        *([f"--meta={args.meta}"] if args.meta else []),
                        *([f"--name={args.name}"] if args.name != NAME else [])])
    write_dataset(out, args.name, rows, texts, readme(args.name, stats, source_origin, meta_origin, command))
    f = stats["final"]
    print(f"{out}: {f['users']:,} users, {f['items']:,} items, {f['interactions']:,} interactions "
          f"({stats['repeats']:,} repeats and {stats['items_without_text']:,} items without text dropped)")
    return stats


if __name__ == "__main__":
    from recbole_bifair.cli import run_cli

    sys.exit(run_cli(main, usage=__doc__))
