"""Fetching the official Tiny ImageNet archive, carefully.

The official URL has been down for long stretches, downloads get cut off, and
a corrupt zip surfaces much later as a confusing error. So: resume a partial
download (HTTP Range) instead of starting over, retry transient failures with
backoff, verify size and MD5, keep a file that fails the check aside (never
silently delete or reuse it), and when the URL is unreachable say what else
works: another URL, a Google Drive file id (via gdown), or a local copy.

>>> from alexnet_nb import download
>>> zip_path = download.fetch("data")                      # the official URL
>>> zip_path = download.fetch("data", drive_id="1AbC...")  # or a Drive copy
"""

import hashlib
import http.client
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
FILENAME = "tiny-imagenet-200.zip"
SIZE = 248_100_043
MD5 = "90528d7ca1a48142e341f4ef8d21d0de"

ALTERNATIVES = (
    "Alternatives: (1) another URL: download.fetch(dest_dir, url=...) or set ALEXNET_NB_URL; "
    "(2) a Google Drive copy of the zip: download.fetch(dest_dir, drive_id=...) or set "
    "ALEXNET_NB_DRIVE_ID (uses gdown); (3) a copy you already have: put tiny-imagenet-200.zip "
    "or the extracted tiny-imagenet-200 folder in the data folder (ALEXNET_NB_DATA), or pass "
    "its path: data.dataset_source(kind='local', location=...)."
)


def one_line(message) -> str:
    """``message`` with its line breaks made spaces: errors quote library messages
    (gdown's span several lines) and the training CLI prints ``error: <message>`` as one line."""
    return re.sub(r"\s*[\r\n]\s*", " ", str(message)).strip()


class DownloadError(RuntimeError):
    """The archive could not be fetched; the message says why and what else works."""

    def __init__(self, message):
        super().__init__(one_line(message))


class ChecksumError(DownloadError):
    """The downloaded file is not the expected one; it was moved aside, not deleted."""


def md5sum(path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _set_aside(path: Path, tag: str) -> Path:
    """Rename a bad file to ``<name>.<tag>`` (``.2``, ``.3``... if taken) and return the new path."""
    aside = path.with_name(f"{path.name}.{tag}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.{tag}.{n}")
    os.replace(path, aside)
    return aside


def verify(path, md5: str | None = MD5, size: int | None = SIZE) -> Path:
    """Check size and MD5; a mismatch moves the file to ``*.bad-md5`` and raises ChecksumError."""
    path = Path(path)
    actual_size = path.stat().st_size
    problem = None
    if size is not None and actual_size != size:
        problem = f"it has {actual_size:,} bytes, expected {size:,}"
    elif md5 is not None and (digest := md5sum(path)) != md5:
        problem = f"its MD5 is {digest}, expected {md5}"
    if problem:
        aside = _set_aside(path, "bad-md5")
        raise ChecksumError(f"{path.name} failed verification: {problem}. The file was kept as {aside} "
                            f"(not deleted, not used); run the download again for a fresh copy. {ALTERNATIVES}")
    return path


def _progress_bar(total, initial, desc, enabled):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                desc=desc, disable=not enabled)


def _transfer(url: str, part: Path, size: int | None, timeout: float, progress: bool) -> None:
    """One attempt: continue ``part`` from where it ends (Range request), append until done."""
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have >= size:
        return  # already complete; verification decides whether it is good
    request = urllib.request.Request(url, headers={"User-Agent": "alexnet_nb"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to send: the part file is complete
            return
        raise
    with response:
        if have and response.status != 206:
            have = 0  # the server ignored the Range header: start over
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else size
        with open(part, "ab" if have else "wb") as f, _progress_bar(total, have, part.name[:-5], progress) as bar:
            while block := response.read(1 << 16):
                f.write(block)
                bar.update(len(block))
        if length is not None and part.stat().st_size < total:
            raise http.client.IncompleteRead(b"", total - part.stat().st_size)


def _permanent(error: Exception) -> bool:
    # 4xx (not found, forbidden...) will not change by retrying; 5xx, timeouts and resets may.
    return isinstance(error, urllib.error.HTTPError) and 400 <= error.code < 500 and error.code not in (408, 429)


def download_url(url: str, dest, md5: str | None = MD5, size: int | None = SIZE, retries: int = 5,
                 backoff: float = 2.0, timeout: float = 60, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` (a file path), resuming ``dest.part`` and verifying it.

    Transient failures are retried ``retries`` times, waiting ``backoff * 2**k`` s;
    the partial file is kept, so a later call resumes where this one stopped.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _transfer(url, part, size, timeout, progress)
            break
        except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
            if _permanent(e):
                raise DownloadError(f"{url} answered HTTP {e.code} ({e.reason}): the file is not there. "
                                    f"{ALTERNATIVES}") from None
            if attempt == retries:
                kept = f" The partial file {part} ({part.stat().st_size:,} bytes) is kept: calling again resumes it." \
                    if part.exists() else ""
                raise DownloadError(f"could not download {url} after {retries + 1} attempts "
                                    f"(last error: {e}). The server may be down or this machine offline.{kept} "
                                    f"{ALTERNATIVES}") from None
            time.sleep(backoff * 2 ** attempt)
    verify(part, md5, size)  # a bad .part becomes .part.bad-md5
    os.replace(part, dest)
    return dest


def download_drive(file_id: str, dest, md5: str | None = MD5, size: int | None = SIZE, progress: bool = True) -> Path:
    """Download a Google Drive copy of the zip with gdown (resuming), then verify it."""
    import gdown

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        gdown.download(id=file_id, output=str(part), quiet=not progress, resume=True)
    except Exception as e:  # gdown raises its own types for quota, permission and network errors
        raise DownloadError(f"could not download Google Drive file {file_id}: {e}. {ALTERNATIVES}") from None
    if not part.exists():
        raise DownloadError(f"gdown did not produce {part} for Drive file {file_id}. {ALTERNATIVES}")
    verify(part, md5, size)
    os.replace(part, dest)
    return dest


def fetch(dest_dir=None, url: str = URL, drive_id: str | None = None, md5: str | None = MD5,
          size: int | None = SIZE, filename: str = FILENAME, **kwargs) -> Path:
    """Return the path of a verified ``tiny-imagenet-200.zip`` in ``dest_dir``, downloading it if needed.

    ``dest_dir`` defaults to ``env.data_dir()``. With ``drive_id`` the file comes
    from Google Drive instead of ``url``. An existing file is verified first; if it
    is bad it is moved aside and ChecksumError is raised (rerun to download again).
    ``kwargs`` go to :func:`download_url` (retries, backoff, timeout, progress).
    """
    if dest_dir is None:
        from alexnet_nb import env

        dest_dir = env.data_dir()
    dest = Path(dest_dir) / filename
    if dest.exists():
        return verify(dest, md5, size)
    if drive_id:
        return download_drive(drive_id, dest, md5, size, progress=kwargs.get("progress", True))
    return download_url(url, dest, md5, size, **kwargs)
