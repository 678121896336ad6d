"""Finished runs' results, committed with the repository (``paths.ARCHIVE``).

The work folder (checkpoints, logs, the encoder cache) is scratch that a new checkout does not
have, so each run's result JSON and its test rankings are copied to the archive as soon as it
finishes (``archive_run``), one folder per run: ``runs/<work folder>/<run folder>/``;
``cache.finished`` reuses them as it reuses the work folder's."""

import os

#: What a finished run leaves besides its JSON, and the name each gets in the archive (gzip: the
#: rankings of Amazon Beauty's 22k test users are about 2 MB as text).
ARCHIVED_FILES = ((".rankings.csv", ".rankings.csv.gz"), (".item_groups.csv", ".item_groups.csv.gz"))


def archive_folder(folder, archive_root):
    """Where ``archive_run`` keeps the results of the run in ``folder`` (None: no archive)."""
    if archive_root is None:
        return None
    folder = os.path.abspath(folder)
    return os.path.join(archive_root, os.path.basename(os.path.dirname(folder)), os.path.basename(folder))


def archive_run(result_file, archive):
    """Copy a finished run's result JSON and test rankings into ``archive``; return the JSON's new
    path. Each file is written atomically and the JSON last, so an interrupted copy is never
    taken for a finished run. A file already in the archive is the same run: it is returned."""
    import gzip
    import shutil

    from recbole_bifair.fileio import atomic_path

    stem = result_file[: -len(".json")]
    target = os.path.join(archive, os.path.basename(result_file))
    if os.path.abspath(os.path.dirname(result_file)) == os.path.abspath(archive) or os.path.exists(target):
        return target
    for suffix, archived in ARCHIVED_FILES:
        if os.path.exists(stem + archived):  # a run archived under another name: already gzipped
            with atomic_path(target[: -len(".json")] + archived) as tmp:
                shutil.copyfile(stem + archived, tmp)
        elif os.path.exists(stem + suffix):
            with open(stem + suffix, "rb") as src, atomic_path(target[: -len(".json")] + archived) as tmp, \
                    gzip.GzipFile(tmp, "wb", mtime=0) as dst:
                shutil.copyfileobj(src, dst)
    with atomic_path(target) as tmp:
        shutil.copyfile(result_file, tmp)
    return target


def ranking_files(result_file):
    """``(rankings, item groups)`` of a run's test rankings: a run folder holds the files as
    written, the archive gzipped (``ARCHIVED_FILES``)."""
    stem = result_file[: -len(".json")]
    return tuple(stem + name if os.path.exists(stem + name) else stem + archived for name, archived in ARCHIVED_FILES)
