"""The download path, against a local HTTP server started here (never the internet)."""

import hashlib
import http.server
import os
import socket
import threading

import pytest

from alexnet_nb import download

PAYLOAD = os.urandom(300_000)
MD5 = hashlib.md5(PAYLOAD).hexdigest()
FAST = dict(retries=2, backoff=0.0, timeout=5, progress=False)


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD with Range support; ``/cut`` drops the first transfer halfway,
    ``/norange`` ignores Range headers; anything else is 404."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        if self.path not in ("/file.zip", "/cut", "/norange"):
            self.send_error(404)
            return
        start = 0
        ranged = self.headers.get("Range")
        if ranged and self.path != "/norange":
            start = int(ranged.split("=")[1].split("-")[0])
            if start >= len(PAYLOAD):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path == "/cut" and server.cuts > 0:
            server.cuts -= 1
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)  # the connection dies mid-transfer
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.requests, srv.cuts = [], 0
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


def test_download_verifies_and_returns_the_file(server, tmp_path):
    path = download.download_url(f"{server.url}/file.zip", tmp_path / "t.zip", md5=MD5, size=len(PAYLOAD), **FAST)
    assert path.read_bytes() == PAYLOAD
    assert not (tmp_path / "t.zip.part").exists()


def test_interrupted_transfer_resumes_with_range(server, tmp_path):
    server.cuts = 1
    path = download.download_url(f"{server.url}/cut", tmp_path / "t.zip", md5=MD5, size=len(PAYLOAD), **FAST)
    assert path.read_bytes() == PAYLOAD
    (first, r1), (second, r2) = server.requests
    assert r1 is None and r2 == f"bytes={len(PAYLOAD) // 2}-"  # the second request continued, not restarted


def test_partial_file_from_an_earlier_run_is_resumed(server, tmp_path):
    (tmp_path / "t.zip.part").write_bytes(PAYLOAD[:1000])
    download.download_url(f"{server.url}/file.zip", tmp_path / "t.zip", md5=MD5, size=len(PAYLOAD), **FAST)
    assert server.requests == [("/file.zip", "bytes=1000-")]
    assert (tmp_path / "t.zip").read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    (tmp_path / "t.zip.part").write_bytes(PAYLOAD[:1000])
    path = download.download_url(f"{server.url}/norange", tmp_path / "t.zip", md5=MD5, size=len(PAYLOAD), **FAST)
    assert path.read_bytes() == PAYLOAD  # not the first 1000 bytes twice


def test_complete_part_file_is_not_downloaded_again(server, tmp_path):
    (tmp_path / "t.zip.part").write_bytes(PAYLOAD)
    download.download_url(f"{server.url}/file.zip", tmp_path / "t.zip", md5=MD5, size=len(PAYLOAD), **FAST)
    assert server.requests == []


def test_404_says_so_and_names_alternatives_without_retrying(server, tmp_path):
    with pytest.raises(download.DownloadError, match="HTTP 404") as err:
        download.download_url(f"{server.url}/missing.zip", tmp_path / "t.zip", md5=MD5, size=len(PAYLOAD), **FAST)
    assert "drive_id" in str(err.value) and "ALEXNET_NB_URL" in str(err.value) and "folder" in str(err.value)
    assert len(server.requests) == 1


def test_checksum_mismatch_keeps_the_bad_file_aside(server, tmp_path):
    with pytest.raises(download.ChecksumError, match="MD5") as err:
        download.download_url(f"{server.url}/file.zip", tmp_path / "t.zip", md5="0" * 32, size=len(PAYLOAD), **FAST)
    assert not (tmp_path / "t.zip").exists() and not (tmp_path / "t.zip.part").exists()
    kept = tmp_path / "t.zip.part.bad-md5"
    assert kept.read_bytes() == PAYLOAD and str(kept) in str(err.value)


def test_existing_bad_zip_is_moved_aside_not_reused(tmp_path):
    (tmp_path / "t.zip").write_bytes(b"not the archive")
    with pytest.raises(download.ChecksumError, match="bytes, expected"):
        download.fetch(tmp_path, filename="t.zip", md5=MD5, size=len(PAYLOAD))
    assert (tmp_path / "t.zip.bad-md5").read_bytes() == b"not the archive"
    assert not (tmp_path / "t.zip").exists()


def test_fetch_reuses_a_good_existing_zip_without_network(tmp_path):
    (tmp_path / "t.zip").write_bytes(PAYLOAD)
    path = download.fetch(tmp_path, url="http://127.0.0.1:9/never", filename="t.zip", md5=MD5, size=len(PAYLOAD))
    assert path == tmp_path / "t.zip"


def test_no_network_retries_then_names_the_alternatives(tmp_path):
    with socket.socket() as s:  # a port that was free a moment ago: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(download.DownloadError, match="after 3 attempts") as err:
        download.fetch(tmp_path, url=f"http://127.0.0.1:{port}/t.zip", filename="t.zip", md5=MD5, size=1, **FAST)
    message = str(err.value)
    assert "another URL" in message and "Google Drive" in message and "already have" in message


def test_drive_id_goes_through_gdown_and_is_verified(tmp_path, monkeypatch):
    import gdown

    calls = []

    def fake_download(id, output, quiet, resume):
        calls.append((id, resume))
        with open(output, "wb") as f:
            f.write(PAYLOAD)
        return output

    monkeypatch.setattr(gdown, "download", fake_download)
    path = download.fetch(tmp_path, drive_id="abc", filename="t.zip", md5=MD5, size=len(PAYLOAD), progress=False)
    assert path.read_bytes() == PAYLOAD and calls == [("abc", True)]


def test_drive_failure_names_the_alternatives(tmp_path, monkeypatch):
    import gdown

    def failing(**kwargs):
        raise RuntimeError("Too many users have viewed or downloaded this file recently")

    monkeypatch.setattr(gdown, "download", failing)
    with pytest.raises(download.DownloadError, match="Google Drive file abc.*Too many users.*another URL"):
        download.fetch(tmp_path, drive_id="abc", filename="t.zip", md5=MD5, size=len(PAYLOAD), progress=False)
