"""Fetch a RecBole dataset that is not on disk: no prompt, no distributed barrier, clear offline error.

RecBole's own ``Dataset._download`` is replaced by ``download_dataset`` (see compat item 5).
The archive is downloaded and unpacked in a temporary folder beside the dataset folder, which
appears only when everything succeeded: an interrupted download leaves nothing half-made.
"""

import http.client
import os
import shutil
import tempfile
import urllib.request
import zipfile

import yaml
from tqdm import tqdm

from recbole_bifair.compat import RECBOLE_PROPERTIES
from recbole_bifair.errors import DataError
from recbole_bifair.logging_setup import CONSOLE

ATOMIC_SUFFIXES = (".inter", ".item", ".user", ".kg", ".link", ".net")


def dataset_url(config, dataset_name):
    """``download_url`` from the config (a mirror), else RecBole's url.yaml entry, else None."""
    if config["download_url"]:
        return config["download_url"]
    with open(RECBOLE_PROPERTIES / "dataset" / "url.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f).get(dataset_name)


def download_dataset(config, dataset_name, dataset_path, logger):
    """Download and unpack ``dataset_name`` into ``dataset_path``; ``DataError`` if impossible."""
    dataset_path = os.path.abspath(dataset_path)
    url = dataset_url(config, dataset_name)
    if url is None:
        raise DataError(
            f"dataset '{dataset_name}' not found: no folder {dataset_path} and '{dataset_name}' is not a "
            f"RecBole dataset name. Put its atomic files ({dataset_name}.inter, and optionally "
            f"{dataset_name}.item / {dataset_name}.user) in {dataset_path}, or set data_path."
        )
    logger.info(f"Dataset [{dataset_name}] is not in {dataset_path}: downloading {url}", extra=CONSOLE)
    parent = os.path.dirname(dataset_path)
    created = _missing_parents(parent)
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix=f".{dataset_name}.download.", dir=parent)
    try:
        archive = os.path.join(work, "archive.zip")
        _fetch(url, archive, timeout=config["download_timeout"] or 60, dataset_path=dataset_path)
        unpacked = os.path.join(work, dataset_name)
        _unpack(archive, unpacked, dataset_name, url)
        os.replace(unpacked, dataset_path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not os.path.isdir(dataset_path):  # failed: also remove the empty folders made above
            for folder in created:
                if os.path.isdir(folder) and not os.listdir(folder):
                    os.rmdir(folder)
    logger.info(f"Dataset [{dataset_name}] downloaded to {dataset_path}", extra=CONSOLE)


def _missing_parents(folder):
    """``folder`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not os.path.exists(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    return missing


def _fetch(url, target, timeout, dataset_path):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(target, "wb") as out:
            size = int(response.headers.get("Content-Length") or 0) or None
            received = 0
            with tqdm(total=size, unit="B", unit_scale=True, desc=os.path.basename(url)) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    # URLError (an OSError) covers HTTP errors, refused connections and timeouts;
    # HTTPException a malformed response; ValueError a download_url that is not a URL at all.
    except (OSError, http.client.HTTPException, ValueError) as err:
        raise DataError(_failed(url, getattr(err, "reason", None) or err, dataset_path)) from None
    # A connection closed early is not an error to urllib: compare with the announced size.
    if size is not None and received != size:
        raise DataError(_failed(url, f"the connection closed after {received} of {size} bytes", dataset_path))


def _failed(url, reason, dataset_path):
    return (
        f"could not download {url} ({reason}). Without network, download that zip elsewhere and "
        f"extract its atomic files into {dataset_path} (RecBole reads <dataset>.inter, .item, .user "
        f"from there), or point download_url at a reachable copy."
    )


def _unpack(archive, folder, dataset_name, url):
    try:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(folder)
    except zipfile.BadZipFile:
        raise DataError(f"{url} did not return a zip archive; check download_url") from None
    _flatten_single_subfolder(folder)
    atomic = [f for f in os.listdir(folder) if f.endswith(ATOMIC_SUFFIXES)]
    # RecBole's zips name their files after the archive (Amazon_Books.inter, .item for the
    # dataset amazon-books); RecBole reads <dataset>.<suffix>, so rename them as its own
    # rename_atomic_files does. Only the part before the first dot is the name: benchmark
    # splits such as Amazon_Books.train.inter keep their middle part.
    prefixes = {f.split(".", 1)[0] for f in atomic}
    if len(prefixes) == 1 and dataset_name not in prefixes:
        for name in atomic:
            os.rename(os.path.join(folder, name), os.path.join(folder, dataset_name + "." + name.split(".", 1)[1]))
    if not any(f.startswith(f"{dataset_name}.") and f.endswith(".inter") for f in os.listdir(folder)):
        raise DataError(
            f"the archive from {url} holds no {dataset_name}.inter atomic file "
            f"(it holds {sorted(os.listdir(folder))}); check download_url"
        )


def _flatten_single_subfolder(folder):
    entries = os.listdir(folder)
    if len(entries) == 1 and os.path.isdir(os.path.join(folder, entries[0])):
        inner = os.path.join(folder, entries[0])
        for name in os.listdir(inner):
            shutil.move(os.path.join(inner, name), os.path.join(folder, name))
        os.rmdir(inner)
