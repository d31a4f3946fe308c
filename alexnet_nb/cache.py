"""The decoded-split cache: one file per split and source, never torn, never stale.

It lives in ``env.cache_dir()`` (the data folder's ``cache/``), not beside the
source: a dataset on a mounted Google Drive would otherwise get 1.3 GB of
cache written onto Drive. Each file records the fingerprint of what it was
built from (file names, sizes and times, or the zip's size and time); a
mismatch means stale and the split is decoded again.

File layout: MAGIC, 8-byte length, torch.save'd metadata (fingerprint, labels,
classes, names, count), then the count*3*64*64 raw image bytes. Raw bytes read
straight into a preallocated tensor load ~3x faster than torch.load of the same
tensor (1.2 GB for train), and the exact expected file size catches truncation.
"""

import hashlib
import io
import os
import warnings
from pathlib import Path

import torch

from alexnet_nb import files
from alexnet_nb.readers import IMAGE_SHAPE

VERSION = 1
_MAGIC = b"alexnet_nb decoded Tiny ImageNet v1\n"


def cache_file(cache_dir, source: Path, split: str) -> Path:
    """One file per split and source path: two copies of the dataset never share one."""
    key = hashlib.sha1(str(source.resolve()).encode()).hexdigest()[:10]
    return Path(cache_dir) / f"{source.name}-{split}-{key}.cache"


def _read_into(f, tensor: torch.Tensor) -> None:
    view = memoryview(tensor.numpy()).cast("B")
    while view:
        n = f.readinto(view)
        if not n:
            raise EOFError("cache file ends early")
        view = view[n:]


def load(path: Path, fingerprint: dict):
    """``(images, meta)`` from the cache file, or None when it is missing, stale or damaged."""
    # A writer killed mid-write left up to 1.2 GB behind; reclaim it now, not only at the next write.
    files.remove_stale_temps(path)
    if not path.is_file():
        return None
    try:
        with open(path, "rb", buffering=0) as f:
            if f.read(len(_MAGIC)) != _MAGIC:
                raise ValueError("not a cache file")
            meta = torch.load(io.BytesIO(f.read(int.from_bytes(f.read(8), "little"))), weights_only=True)
            if meta.get("fingerprint") != fingerprint:
                return None  # built from something else (older copy, edited files): stale
            n = meta["count"]
            if os.fstat(f.fileno()).st_size != f.tell() + n * IMAGE_SHAPE[0] * IMAGE_SHAPE[1] * IMAGE_SHAPE[2]:
                raise EOFError("cache file has the wrong size")
            images = torch.empty((n, *IMAGE_SHAPE), dtype=torch.uint8)
            _read_into(f, images)
    except Exception as e:  # half-written or damaged: never trusted, rebuilt
        warnings.warn(f"ignoring unreadable cache {path} ({type(e).__name__}: {e}); decoding again")
        return None
    return images, meta


def save(path: Path, fingerprint: dict, split) -> None:
    """Write ``split`` (a data.Split) through files.atomic_write: readers see all of it or none."""
    meta = io.BytesIO()
    torch.save({"fingerprint": fingerprint, "count": len(split), "labels": split.labels,
                "classes": split.classes, "names": split.names}, meta)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(_MAGIC + len(meta.getvalue()).to_bytes(8, "little") + meta.getvalue())
            f.write(memoryview(split.images.contiguous().numpy()).cast("B"))
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename makes it visible

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        files.atomic_write(path, write)
    except OSError as e:  # a read-only or full disk costs speed next time, not correctness
        warnings.warn(f"could not write the decoded cache to {path.parent} ({e}); it will be decoded again "
                      "next time. Free some space there or point ALEXNET_NB_CACHE at a writable folder.")
