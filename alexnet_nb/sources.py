"""Where the dataset comes from: the data folder, a download, a path, or Google Drive.

Every notebook starts from the same form cell, ``kind`` and ``location``, and
:func:`dataset_source` turns them into a folder or zip for ``data.load_split``.
What is already in the data folder is used before anything is downloaded, and
downloads land there, so the second notebook of a Colab runtime downloads nothing.

>>> from alexnet_nb import data
>>> source = data.dataset_source()                                   # find or download
>>> source = data.dataset_source("my-drive", "datasets/tiny-imagenet-200.zip")
"""

import os
import re
from pathlib import Path

from alexnet_nb import download, env, readers
from alexnet_nb.readers import ROOT_NAME, DatasetError

KINDS = {  # kind: what its location is
    "official": "nothing (the official URL, or ALEXNET_NB_URL / ALEXNET_NB_DRIVE_ID)",
    "url": "the URL of the zip",
    "drive-id": "a Google Drive file id or share link of the zip",
    "local": "the path of the zip or the extracted folder",
    "my-drive": "the zip or folder's path inside your Google Drive (MyDrive)",
}
DRIVE_MOUNT = Path("/content/drive")
# Quick mode's synthetic dataset: tiny, so notebooks run in seconds on a CPU.
QUICK = dict(num_classes=4, train_per_class=12, val_per_class=4, grayscale=2)
SEARCH_DEPTH = 2  # data/tiny-imagenet-200/tiny-imagenet-200: unzipped into a folder of the same name


def _allowed() -> str:
    return "; ".join(f"'{k}' ({v})" for k, v in KINDS.items())


def _quick(data_dir: Path) -> Path:
    from alexnet_nb import synthetic

    folder = data_dir / "synthetic" / ROOT_NAME
    if not (folder / "wnids.txt").is_file():  # generation renames into place: present means complete
        synthetic.make_tiny_imagenet(data_dir / "synthetic", **QUICK)
    return folder


def _in_data_dir(data_dir: Path) -> Path | None:
    found = readers.find_dataset(data_dir, SEARCH_DEPTH)
    if found is not None and found.is_file():
        readers.locate(found)  # an empty or truncated zip left there: say so, with the fix, before using it
    return found


def _where_looked(data_dir: Path) -> str:
    d = data_dir.absolute()
    return (f"found no Tiny ImageNet in the data folder {d} (looked for a folder holding wnids.txt, train/ and "
            f"val/ in it and up to {SEARCH_DEPTH} levels down, e.g. {d / ROOT_NAME} or {d / ROOT_NAME / ROOT_NAME}, "
            f"and for {download.FILENAME} in it and one level down; set ALEXNET_NB_DATA if your copy is elsewhere)")


def _download(data_dir: Path, url: str | None = None, drive_id: str | None = None) -> Path:
    found = _in_data_dir(data_dir)
    if found is not None:
        return found
    try:  # MD5 and size read now, not bound at import: tests serve a small zip in their place
        return download.fetch(data_dir, url=url or download.URL, drive_id=drive_id, md5=download.MD5,
                              size=download.SIZE)
    except download.DownloadError as e:
        raise type(e)(f"{_where_looked(data_dir)}, and the download failed: {e}") from None


def _drive_file_id(location: str) -> str:
    """The id from a share link (``.../file/d/<id>/view``, ``...?id=<id>``), or ``location`` itself."""
    match = re.search(r"/d/([\w-]+)|[?&]id=([\w-]+)", location)
    return next(g for g in match.groups() if g) if match else location


def _my_drive(location: str) -> Path:
    try:
        from google.colab import drive
    except ImportError:
        raise DatasetError("kind 'my-drive' mounts your Google Drive, which works only in Google Colab "
                           "(google.colab cannot be imported here): on this machine use kind='local' "
                           "with the path of the zip or folder.") from None
    drive.mount(str(DRIVE_MOUNT))  # asks for permission the first time in a runtime
    return readers.locate(DRIVE_MOUNT / "MyDrive" / location.lstrip("/"))


def dataset_source(kind: str = "official", location: str = "", data_dir=None) -> Path:
    """The Tiny ImageNet folder or zip to pass to ``data.load_split``, fetched if needed.

    ``kind`` says where it comes from and ``location`` where exactly:

    * ``"official"``: an extracted copy or ``tiny-imagenet-200.zip`` already in the
      data folder (also ``tiny-imagenet-200/tiny-imagenet-200/``), else the official
      zip is downloaded there. ``ALEXNET_NB_URL`` and ``ALEXNET_NB_DRIVE_ID`` point
      the download at a mirror or a Google Drive copy when the official URL is down.
    * ``"url"``, ``"drive-id"``: like official, but the download comes from
      ``location`` (a URL; a Drive file id or share link, fetched with gdown).
    * ``"local"``: the zip or extracted folder at ``location``, used where it is.
    * ``"my-drive"``: ``location`` inside your Google Drive; Drive is mounted at
      ``/content/drive`` for this kind only (Colab).

    Downloads are checked against the official size and MD5. ``data_dir`` defaults
    to ``env.data_dir()`` (``/content/data`` in Colab). In quick mode
    (``env.quick_mode()``) the answer is a small synthetic dataset generated once
    under ``data_dir/synthetic``, whatever the kind.
    """
    if kind not in KINDS:
        raise DatasetError(f"unknown data source kind {kind!r}: choose one of {_allowed()}.")
    if kind in ("url", "drive-id", "local", "my-drive") and not str(location).strip():
        raise DatasetError(f"data source kind {kind!r} needs a location: {KINDS[kind]}. The kinds: {_allowed()}.")
    data_dir = Path(data_dir) if data_dir is not None else env.data_dir()
    if env.quick_mode():
        return _quick(data_dir)
    location = str(location).strip()
    if kind == "official":
        return _download(data_dir, url=os.environ.get("ALEXNET_NB_URL"),
                         drive_id=os.environ.get("ALEXNET_NB_DRIVE_ID") or None)
    if kind == "url":
        return _download(data_dir, url=location)
    if kind == "drive-id":
        return _download(data_dir, drive_id=_drive_file_id(location))
    if kind == "local":
        return readers.locate(location)
    return _my_drive(location)
