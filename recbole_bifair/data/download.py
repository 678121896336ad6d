"""Fetch a RecBole dataset that is not on disk: no prompt, no distributed barrier, clear offline error.

RecBole's own ``Dataset._download`` is replaced by ``download_dataset`` (see compat item 5).
The archive is downloaded and unpacked in a temporary folder beside the dataset folder, which
appears only when everything succeeded: an interrupted download leaves nothing half-made.
"""

import os
import shutil
import socket
import tempfile
import urllib.error
import urllib.request
import zipfile

import yaml
from tqdm import tqdm

from recbole_bifair.config import RECBOLE_PROPERTIES
from recbole_bifair.errors import DataError

ATOMIC_SUFFIXES = (".inter", ".item", ".user", ".kg", ".link", ".net")


def dataset_url(config, dataset_name):
    """``download_url`` from the config (a mirror), else RecBole's url.yaml entry, else None."""
    if config["download_url"]:
        return config["download_url"]
    with open(RECBOLE_PROPERTIES / "dataset" / "url.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f).get(dataset_name)


def download_dataset(config, dataset_name, dataset_path, logger):
    url = dataset_url(config, dataset_name)
    if url is None:
        raise DataError(
            f"dataset '{dataset_name}' not found: no folder {dataset_path} and '{dataset_name}' is not a "
            f"RecBole dataset name. Put its atomic files ({dataset_name}.inter, and optionally "
            f"{dataset_name}.item / {dataset_name}.user) in {dataset_path}, or set data_path."
        )
    logger.info(f"Dataset [{dataset_name}] is not in {dataset_path}: downloading {url}")
    parent = os.path.dirname(os.path.abspath(dataset_path))
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
    logger.info(f"Dataset [{dataset_name}] downloaded to {dataset_path}")


def _fetch(url, target, timeout, dataset_path):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(target, "wb") as out:
            size = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=size, unit="B", unit_scale=True, desc=os.path.basename(url)) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as err:
        reason = getattr(err, "reason", None) or err
        raise DataError(
            f"could not download {url} ({reason}). Without network, download that zip elsewhere and "
            f"extract its atomic files into {dataset_path} (RecBole reads <dataset>.inter, .item, .user "
            f"from there), or point download_url at a reachable copy."
        ) from None


def _unpack(archive, folder, dataset_name, url):
    try:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(folder)
    except zipfile.BadZipFile:
        raise DataError(f"{url} did not return a zip archive; check download_url") from None
    _flatten_single_subfolder(folder)
    atomic = [f for f in os.listdir(folder) if f.endswith(ATOMIC_SUFFIXES)]
    if not any(f.endswith(".inter") for f in atomic):
        raise DataError(f"the archive from {url} holds no .inter atomic file: {sorted(os.listdir(folder))}")
    # RecBole's zips name files after the archive (Amazon_Books.inter for amazon-books): rename
    # them after the dataset, as RecBole's own rename_atomic_files does.
    for name in atomic:
        stem, suffix = os.path.splitext(name)
        if stem != dataset_name:
            os.rename(os.path.join(folder, name), os.path.join(folder, dataset_name + suffix))


def _flatten_single_subfolder(folder):
    entries = os.listdir(folder)
    if len(entries) == 1 and os.path.isdir(os.path.join(folder, entries[0])):
        inner = os.path.join(folder, entries[0])
        for name in os.listdir(inner):
            shutil.move(os.path.join(inner, name), os.path.join(folder, name))
        os.rmdir(inner)
