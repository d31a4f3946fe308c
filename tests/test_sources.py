"""dataset_source: every kind, what it finds before downloading, and its errors (all offline)."""

import functools
import hashlib
import http.server
import sys
import threading
import types
from pathlib import Path

import pytest

from alexnet_nb import data, download, env, sources, synthetic

SMALL = dict(num_classes=3, train_per_class=3, val_per_class=2, grayscale=1)
ROOT = data.ROOT_NAME


@pytest.fixture(autouse=True)
def full_mode(tmp_path, monkeypatch):
    for var in ("ALEXNET_NB_QUICK", "ALEXNET_NB_URL", "ALEXNET_NB_DRIVE_ID", "ALEXNET_NB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ALEXNET_NB_DATA", str(tmp_path / "default-data"))


@pytest.fixture
def no_download(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a download started although the data was there")

    monkeypatch.setattr(download, "fetch", fail)


@pytest.fixture
def official_zip(tmp_path, monkeypatch):
    """A small zip, and the "official" size and MD5 pointed at it."""
    z = synthetic.make_tiny_imagenet(tmp_path / "served", **SMALL, as_zip=True)  # outside the data folder
    monkeypatch.setattr(download, "MD5", hashlib.md5(z.read_bytes()).hexdigest())
    monkeypatch.setattr(download, "SIZE", z.stat().st_size)
    return z


@pytest.fixture
def server(official_zip):
    """Serves the folder of ``official_zip`` on 127.0.0.1 and counts the requests."""
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=official_zip.parent))
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    srv.url, srv.requests = f"http://127.0.0.1:{srv.server_address[1]}", requests
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def colab(monkeypatch, tmp_path):
    """A stand-in google.colab whose drive.mount records its calls; /content/drive is a temp folder."""
    mounts = []
    drive = types.SimpleNamespace(mount=mounts.append)
    colab = types.ModuleType("google.colab")
    colab.drive = drive
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setitem(sys.modules, "google.colab.drive", drive)
    monkeypatch.setattr(sources, "DRIVE_MOUNT", tmp_path / "content-drive")
    return mounts


def _one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- official ---

def test_official_prefers_folder_then_zip_then_download(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(download, "fetch", lambda *a, **k: calls.append((a, k)) or Path("fetched"))
    monkeypatch.setenv("ALEXNET_NB_DRIVE_ID", "drive-id-123")
    assert data.dataset_source(data_dir=tmp_path) == Path("fetched")
    assert calls[0][0] == (tmp_path,) and calls[0][1]["drive_id"] == "drive-id-123"
    zip_path = synthetic.make_tiny_imagenet(tmp_path, **SMALL, as_zip=True)
    assert data.dataset_source(data_dir=tmp_path) == zip_path
    assert data.dataset_source(data_dir=tmp_path) == zip_path
    synthetic.make_tiny_imagenet(tmp_path, **SMALL)
    assert data.dataset_source() != tmp_path / ROOT  # the default data folder is ALEXNET_NB_DATA's
    assert data.dataset_source(data_dir=tmp_path) == tmp_path / ROOT
    assert len(calls) == 2


def test_dataset_unzipped_into_a_same_named_folder_is_found(tmp_path, no_download):
    nested = synthetic.make_tiny_imagenet(tmp_path / ROOT, **SMALL)  # data/tiny-imagenet-200/tiny-imagenet-200
    assert nested == tmp_path / ROOT / ROOT and data.dataset_source(data_dir=tmp_path) == nested
    assert len(data.load_split(nested, "val", progress=False)) == 6


def test_any_folder_name_and_a_zip_one_level_down_are_found(tmp_path, no_download):
    z = synthetic.make_tiny_imagenet(tmp_path / "downloads", **SMALL, as_zip=True)
    assert data.dataset_source(data_dir=tmp_path) == z
    copy = tmp_path / "my copy" / "extracted"
    copy.parent.mkdir()
    synthetic.make_tiny_imagenet(tmp_path, **SMALL).rename(copy)
    assert data.dataset_source(data_dir=tmp_path) == copy  # an extracted copy before a zip


def test_nothing_found_and_download_failed_says_where_it_looked(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise download.DownloadError("could not download http://x after 6 attempts.\nThe server may be down.")

    monkeypatch.setattr(download, "fetch", offline)
    synthetic.make_tiny_imagenet(tmp_path / "synthetic", **SMALL)  # quick mode's copy is not the real one
    with pytest.raises(download.DownloadError) as err:
        data.dataset_source(data_dir=tmp_path)
    message = _one_line(err)
    assert message.startswith(f"found no Tiny ImageNet in the data folder {tmp_path} (")
    assert f"{tmp_path / ROOT / ROOT}" in message and download.FILENAME in message and "ALEXNET_NB_DATA" in message
    assert message.endswith("and the download failed: could not download http://x after 6 attempts. "
                            "The server may be down.")


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_empty_or_truncated_zip_in_the_data_folder_says_delete_it(tmp_path, no_download, damage):
    z = synthetic.make_tiny_imagenet(tmp_path, **SMALL, as_zip=True)
    z.write_bytes(b"" if damage == "empty" else z.read_bytes()[:1000])
    with pytest.raises(data.DatasetError) as err:
        data.dataset_source(data_dir=tmp_path)
    message = _one_line(err)
    assert message.startswith(f"{z} is not a readable zip archive") and "Delete it" in message


# ------------------------------------------------------------ url, drive-id ---

def test_url_downloads_into_the_data_folder_verified_and_only_once(tmp_path, server, official_zip):
    url = f"{server.url}/{official_zip.name}"
    got = data.dataset_source("url", url, data_dir=tmp_path / "data")
    assert got == tmp_path / "data" / download.FILENAME and got.read_bytes() == official_zip.read_bytes()
    assert data.dataset_source("url", url, data_dir=tmp_path / "data") == got  # the next notebook: found, not fetched
    assert data.dataset_source(data_dir=tmp_path / "data") == got
    assert server.requests == [f"/{official_zip.name}"]
    assert len(data.load_split(got, "val", progress=False)) == 6


def test_url_serving_another_file_fails_the_official_checksum(tmp_path, server, official_zip, monkeypatch):
    monkeypatch.setattr(download, "MD5", "0" * 32)
    with pytest.raises(download.ChecksumError) as err:
        data.dataset_source("url", f"{server.url}/{official_zip.name}", data_dir=tmp_path / "data")
    assert "its MD5 is" in _one_line(err) and not (tmp_path / "data" / download.FILENAME).exists()


def test_drive_id_downloads_with_gdown_verified_and_only_once(tmp_path, official_zip, monkeypatch):
    import gdown

    calls = []

    def fake_download(id, output, quiet, resume):
        calls.append(id)
        Path(output).write_bytes(official_zip.read_bytes())
        return output

    monkeypatch.setattr(gdown, "download", fake_download)
    link, target = "https://drive.google.com/file/d/1AbC-d_9/view?usp=sharing", tmp_path / "data" / download.FILENAME
    assert data.dataset_source("drive-id", link, data_dir=tmp_path / "data") == target
    assert data.dataset_source("drive-id", "1AbC-d_9", data_dir=tmp_path / "data") == target  # found, not fetched
    assert calls == ["1AbC-d_9"]
    monkeypatch.setattr(download, "MD5", "0" * 32)
    with pytest.raises(download.ChecksumError):
        data.dataset_source("drive-id", link, data_dir=tmp_path / "other")


def test_drive_failure_is_one_line(tmp_path, monkeypatch):
    import gdown

    def failing(**kwargs):
        raise RuntimeError("Failed to retrieve file url:\n\n\tToo many users have viewed this file.\n")

    monkeypatch.setattr(gdown, "download", failing)
    with pytest.raises(download.DownloadError) as err:
        data.dataset_source("drive-id", "abc", data_dir=tmp_path / "data")
    assert "Google Drive file abc: Failed to retrieve file url: Too many users" in _one_line(err)


# ----------------------------------------------------------- local, my-drive ---

def test_local_takes_a_zip_a_folder_or_its_parent(tmp_path, no_download):
    folder = synthetic.make_tiny_imagenet(tmp_path / "a", **SMALL)
    z = synthetic.make_tiny_imagenet(tmp_path / "b", **SMALL, as_zip=True)
    assert data.dataset_source("local", str(z), data_dir=tmp_path / "data") == z
    assert data.dataset_source("local", str(folder), data_dir=tmp_path / "data") == folder
    assert data.dataset_source("local", str(folder.parent), data_dir=tmp_path / "data") == folder
    with pytest.raises(data.DatasetError) as err:
        data.dataset_source("local", str(tmp_path / "a" / "tiny-imagenet200"))
    assert f"Did you mean {folder}?" in _one_line(err)


def test_my_drive_mounts_drive_and_reads_the_location_inside_it(tmp_path, colab, no_download):
    z = synthetic.make_tiny_imagenet(tmp_path / "content-drive" / "MyDrive" / "datasets", **SMALL, as_zip=True)
    assert data.dataset_source("my-drive", "datasets/tiny-imagenet-200.zip", data_dir=tmp_path) == z
    assert colab == [str(tmp_path / "content-drive")]
    with pytest.raises(data.DatasetError) as err:
        data.dataset_source("my-drive", "datasets/tiny-imagenet-200", data_dir=tmp_path)
    assert "no such file or folder" in _one_line(err) and "Did you mean" in str(err.value)


def test_drive_is_mounted_for_my_drive_only(tmp_path, colab, no_download):
    folder = synthetic.make_tiny_imagenet(tmp_path / "data", **SMALL)
    assert data.dataset_source(data_dir=tmp_path / "data") == folder
    assert data.dataset_source("local", str(folder), data_dir=tmp_path / "data") == folder
    assert colab == []


def test_my_drive_outside_colab_says_to_use_local(monkeypatch):
    monkeypatch.setitem(sys.modules, "google.colab", None)  # import fails, as on any other machine
    with pytest.raises(data.DatasetError) as err:
        data.dataset_source("my-drive", "datasets/tiny-imagenet-200.zip")
    assert "works only in Google Colab" in _one_line(err) and "kind='local'" in str(err.value)


def test_colab_data_folder_is_local_disk_and_holds_the_cache(colab, monkeypatch):
    monkeypatch.delenv("ALEXNET_NB_DATA")
    assert env.in_colab() and env.data_dir() == Path("/content/data")
    assert data.default_cache_dir() == Path("/content/data/cache")
    monkeypatch.setenv("ALEXNET_NB_CACHE", "/tmp/somewhere")
    assert data.default_cache_dir() == Path("/tmp/somewhere")


# --------------------------------------------------------- quick mode, errors ---

@pytest.mark.parametrize("kind, location", [("official", ""), ("url", "http://127.0.0.1:9/x.zip"),
                                            ("drive-id", "abc"), ("local", "/nowhere"), ("my-drive", "x.zip")])
def test_quick_mode_gives_the_synthetic_dataset_whatever_the_kind(tmp_path, monkeypatch, colab, no_download,
                                                                  kind, location):
    monkeypatch.setenv("ALEXNET_NB_QUICK", "1")
    path = data.dataset_source(kind, location, data_dir=tmp_path)
    assert path == tmp_path / "synthetic" / ROOT and colab == []
    stamp = (path / "wnids.txt").stat().st_mtime_ns
    assert data.dataset_source(kind, location, data_dir=tmp_path) == path  # generated once, reused
    assert (path / "wnids.txt").stat().st_mtime_ns == stamp
    assert len(data.load_split(path, "train", progress=False).classes) == data.QUICK["num_classes"]


@pytest.mark.parametrize("kind, location, expected", [
    ("zip", "", "unknown data source kind 'zip': choose one of 'official'"),
    ("url", "", "data source kind 'url' needs a location: the URL of the zip."),
    ("local", "  ", "data source kind 'local' needs a location"),
    ("my-drive", "", "data source kind 'my-drive' needs a location"),
])
def test_unknown_kind_or_missing_location_names_the_kinds(kind, location, expected):
    with pytest.raises(data.DatasetError) as err:
        data.dataset_source(kind, location)
    message = _one_line(err)
    assert message.startswith(expected) and all(f"'{k}'" in message for k in data.KINDS)
