"""Dataset download, against zips served by a local HTTP server on 127.0.0.1 (no network here)."""

import http.server
import io
import logging
import os
import socket
import threading
import zipfile

import pytest

from recbole_bifair.data.download import dataset_url, download_dataset
from recbole_bifair.errors import DataError
from recbole_bifair.quick_start import run_bifair
from tests.datagen import make_dataset, tiny_config


def zipped(files):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def atomic_files(tmp_path_factory):
    folder = make_dataset(tmp_path_factory.mktemp("source")) / "tiny"
    return {name: (folder / f"tiny{name}").read_bytes() for name in (".inter", ".item")}


@pytest.fixture(scope="module")
def server(atomic_files):
    """Serves RecBole-style zips; yields its base URL. Unknown paths get a 404."""
    routes = {
        # RecBole's zips: one folder, files named after the archive, not after the dataset.
        "/Toy_Set.zip": zipped({f"Toy_Set/Toy_Set{s}": data for s, data in atomic_files.items()}),
        "/flat.zip": zipped({f"flat{s}": data for s, data in atomic_files.items()}),
        "/no-inter.zip": zipped({"README.md": b"nothing here"}),
        "/page.zip": b"<html><body>Please log in</body></html>",
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/truncated.zip":  # promises more bytes than it sends, then hangs up
                self.send_response(200)
                self.send_header("Content-Length", "100000")
                self.end_headers()
                self.wfile.write(routes["/flat.zip"][:100])
                return
            body = routes.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def closed_port_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/Toy_Set.zip"


def download(tmp_path, name, url):
    config = {"download_url": url, "download_timeout": 10}
    download_dataset(config, name, str(tmp_path / "data" / name), logging.getLogger("test"))


def test_download_then_train(server, atomic_files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tiny_config(tmp_path / "data", dataset="toy-set", download_url=f"{server}/Toy_Set.zip")
    result = run_bifair(model="SASRec", config_dict=config)
    folder = tmp_path / "data" / "toy-set"
    # Renamed after the dataset, as RecBole's rename_atomic_files does, and byte-identical.
    assert sorted(os.listdir(folder)) == ["toy-set.inter", "toy-set.item"]
    for suffix, data in atomic_files.items():
        assert (folder / f"toy-set{suffix}").read_bytes() == data
    assert os.listdir(tmp_path / "data") == ["toy-set"]  # no temporary folder left
    assert result["test_result"] and result["dataset"] == "toy-set"


def test_flat_zip_named_after_the_dataset(server, tmp_path):
    download(tmp_path, "flat", f"{server}/flat.zip")
    assert sorted(os.listdir(tmp_path / "data" / "flat")) == ["flat.inter", "flat.item"]


@pytest.mark.parametrize("path, reason", [
    ("/missing.zip", "Not Found"),
    ("/truncated.zip", "the connection closed after 100 of 100000 bytes"),
    ("/page.zip", "did not return a zip archive"),
    ("/no-inter.zip", "holds no toy.inter atomic file"),
])
def test_failed_download_leaves_nothing(server, tmp_path, path, reason):
    url = server + path
    with pytest.raises(DataError, match=reason) as err:
        download(tmp_path, "toy", url)
    assert url in str(err.value)
    assert not (tmp_path / "data").exists()  # neither the dataset folder nor the one above it


def test_refused_connection_names_url_and_folder(tmp_path):
    url = closed_port_url()
    with pytest.raises(DataError) as err:
        download(tmp_path, "toy", url)
    message = str(err.value)
    assert url in message and str(tmp_path / "data" / "toy") in message
    assert "Connection refused" in message
    assert not (tmp_path / "data").exists()


def test_existing_data_root_is_kept_on_failure(tmp_path):
    (tmp_path / "data" / "other").mkdir(parents=True)
    with pytest.raises(DataError):
        download(tmp_path, "toy", closed_port_url())
    assert os.listdir(tmp_path / "data") == ["other"]


def test_run_stops_with_one_error_and_no_result_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = closed_port_url()
    config = tiny_config(tmp_path / "data", dataset="toy", download_url=url)
    with pytest.raises(DataError, match="could not download"):
        run_bifair(model="SASRec", config_dict=config)
    assert not (tmp_path / "results").exists() and not (tmp_path / "saved").exists()


def test_unknown_dataset_without_url_says_where_to_put_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as err:
        run_bifair(model="SASRec", config_dict=tiny_config(tmp_path / "data", dataset="no-such-set"))
    message = str(err.value)
    assert "'no-such-set' is not a RecBole dataset name" in message
    assert "no-such-set.inter" in message and str(tmp_path / "data" / "no-such-set") in message


def test_recbole_dataset_names_use_recbole_urls():
    assert dataset_url({"download_url": None}, "ml-1m").endswith("/ml-1m.zip")
    assert dataset_url({"download_url": None}, "no-such-set") is None
    assert dataset_url({"download_url": "http://mirror/x.zip"}, "ml-1m") == "http://mirror/x.zip"
