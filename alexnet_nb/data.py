"""Tiny ImageNet as tensors: decode once, cache, reload in seconds.

The whole split lives in memory as one ``uint8`` tensor ``[N, 3, 64, 64]``
(1.2 GB for the 100,000 training images), like airbench keeps CIFAR-10: an epoch
is then a few tensor indexing ops instead of 100,000 JPEG decodes. Decoding
happens once, batched (``torchvision.io.decode_jpeg``), and the result is cached
in the data folder (``alexnet_nb.cache``); the cache records what it was built
from and is written atomically, so a stale or half-written cache is never used.
Reading the folder or zip is ``alexnet_nb.readers``; finding or fetching the
dataset is ``alexnet_nb.sources`` (:func:`dataset_source`, re-exported here).

>>> from alexnet_nb import data
>>> train = data.load_split(data.dataset_source(), "train")   # or a folder or .zip path
>>> train.images.shape, train.labels.shape, train.classes[:2], train.names[:2]
"""

import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.io import ImageReadMode, decode_jpeg

from alexnet_nb import cache as _cache  # load_split has a cache= flag
from alexnet_nb import env, readers
from alexnet_nb.readers import IMAGE_SHAPE, ROOT_NAME, DatasetError  # noqa: F401 (public here)
from alexnet_nb.sources import KINDS, QUICK, dataset_source  # noqa: F401 (public here)

CACHE_VERSION = _cache.VERSION
# What the last load_split call did and how long it took (read by the benchmark and notebook 01).
last_load: dict = {}


@dataclass
class Split:
    """One split, whole, in memory.

    ``images``: uint8 ``[N, 3, 64, 64]`` (RGB; grayscale JPEGs are expanded to 3 channels).
    ``labels``: int64 ``[N]``; label ``i`` is ``classes[i]``.
    ``classes``: the wnids in label order, which is the order of ``wnids.txt``
    (not sorted order). ``names``: the ``words.txt`` entry of each class, same order.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list
    names: list

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:  # the default repr would print a million pixels
        return (f"Split({len(self)} images {tuple(self.images.shape[1:])} {self.images.dtype}, "
                f"{len(self.classes)} classes, device={self.images.device})")

    def subset(self, indices) -> "Split":
        indices = torch.as_tensor(indices, device=self.labels.device)
        return Split(self.images[indices], self.labels[indices], list(self.classes), list(self.names))

    def take_classes(self, n: int) -> "Split":
        """Only the first ``n`` classes (wnids order); their labels stay ``0..n-1``."""
        keep = (self.labels < n).nonzero().squeeze(1)
        return Split(self.images[keep], self.labels[keep], list(self.classes[:n]), list(self.names[:n]))

    def to(self, device) -> "Split":
        return Split(self.images.to(device), self.labels.to(device), self.classes, self.names)

    def counts(self) -> torch.Tensor:
        """Images per class, in label order."""
        return torch.bincount(self.labels.cpu(), minlength=len(self.classes))


# --------------------------------------------------------------- decoding ---

def _decode_one(src, rel: str, data: torch.Tensor) -> torch.Tensor:
    try:
        img = decode_jpeg(data, mode=ImageReadMode.RGB)
    except RuntimeError as e:
        reason = str(e).strip().splitlines()[-1]
        raise DatasetError(f"cannot decode {src.show(rel)}: the JPEG is corrupt or truncated ({reason}). "
                           "Replace the file (re-extract or re-download the archive).") from None
    if tuple(img.shape) != IMAGE_SHAPE:
        raise DatasetError(f"{src.show(rel)} is {img.shape[2]}x{img.shape[1]}, expected 64x64: not a Tiny ImageNet image.")
    return img


def _read_bytes(src, rel: str) -> torch.Tensor:
    try:
        raw = src.read(rel)
    except FileNotFoundError:
        raise DatasetError(f"missing {src.show(rel)} (named in val_annotations.txt): re-extract the archive.") from None
    if not raw:
        raise DatasetError(f"{src.show(rel)} is empty (0 bytes): re-extract the archive.")
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8)


def _decode_chunk(src, rels: list, out: torch.Tensor) -> int:
    """Read and decode a batch of JPEGs into ``out`` (a slice of the split's tensor)."""
    datas = [_read_bytes(src, rel) for rel in rels]
    try:
        decoded = decode_jpeg(datas, mode=ImageReadMode.RGB)
        if any(tuple(im.shape) != IMAGE_SHAPE for im in decoded):
            raise RuntimeError("unexpected image size")
    except RuntimeError:  # find and name the culprit, one file at a time
        decoded = [_decode_one(src, rel, d) for rel, d in zip(rels, datas)]
    torch.stack(decoded, out=out)
    return len(rels)


def _decode_all(src, rels: list, progress: bool, desc: str, chunk: int = 1024) -> torch.Tensor:
    """Decode every file into one preallocated uint8 tensor, a batch of JPEGs at a time.

    decode_jpeg releases the GIL, so a thread per core decodes batches side by side.
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    images = torch.empty((len(rels), *IMAGE_SHAPE), dtype=torch.uint8)
    starts = range(0, len(rels), chunk)
    work = lambda s: _decode_chunk(src, rels[s:s + chunk], images[s:s + chunk])  # noqa: E731
    pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1))
    try:
        with tqdm(total=len(rels), desc=desc, unit="img", disable=not progress) as bar:
            for done in pool.map(work, starts):
                bar.update(done)
    finally:  # on a bad file, report it now instead of decoding the rest first
        pool.shutdown(wait=True, cancel_futures=True)
    return images


# ------------------------------------------------------------- public API ---

def default_cache_dir(source=None) -> Path:
    """Where decoded splits are cached: ``env.cache_dir()``, the same for every source.

    ``source`` is accepted for older callers; the cache no longer lives beside the
    source, so a dataset on a mounted Google Drive gets nothing written onto Drive.
    """
    return env.cache_dir()


def load_split(source, split: str, cache_dir=None, progress: bool = True, cache: bool = True) -> Split:
    """Load a whole split of Tiny ImageNet as tensors.

    ``source``: the official ``tiny-imagenet-200.zip`` (or any zip of the folder),
    or the extracted ``tiny-imagenet-200`` folder (or the folder containing it);
    :func:`dataset_source` finds or fetches one.
    ``split``: ``"train"`` (100,000 images, labels from the ``train/<wnid>/`` folders)
    or ``"val"`` (10,000 images, labels from ``val/val_annotations.txt``).

    Returns a :class:`Split`: ``images`` uint8 ``[N, 3, 64, 64]`` (grayscale JPEGs
    become 3 identical channels), ``labels`` int64 ``[N]``, ``classes`` (wnids) and
    ``names`` (from ``words.txt``). **Label ``i`` is the ``i``-th line of
    ``wnids.txt``**: the file's order, not sorted order. Images are ordered by
    class, then by file number (train) or as in ``val_annotations.txt`` (val).

    The decoded split is cached in ``cache_dir`` (default :func:`default_cache_dir`,
    the data folder's ``cache/``)
    and reloaded from there while the source is unchanged (``cache=False`` skips it).
    Bad input raises :class:`DatasetError` naming the file and the fix.
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', not {split!r}")
    t0 = time.perf_counter()
    last_load.clear()
    src = readers.open_source(source)
    try:
        wnids = readers.classes(src)
        rels, labels = (readers.train_items if split == "train" else readers.val_items)(src, wnids)
        fingerprint = None
        if cache:
            try:
                fingerprint = {"version": CACHE_VERSION, "split": split, "source": str(src.path.resolve()),
                               "wnids": wnids, **src.fingerprint(rels)}
            except FileNotFoundError:
                fingerprint = None  # a listed file is missing: decoding below names it
            path = _cache.cache_file(cache_dir or default_cache_dir(), src.path, split)
            hit = _cache.load(path, fingerprint) if fingerprint else None
            if hit is not None:
                images, meta = hit
                last_load.update(cache="hit", total_s=time.perf_counter() - t0)
                return Split(images, meta["labels"], list(meta["classes"]), list(meta["names"]))
        t1, c1 = time.perf_counter(), time.process_time()
        images = _decode_all(src, rels, progress, desc=f"decoding {split}")
        # Wall time, and CPU time of all threads: on a shared machine the second is the steadier one.
        last_load.update(cache="miss" if cache else "off", decode_s=time.perf_counter() - t1,
                         decode_cpu_s=time.process_time() - c1)
        result = Split(images, torch.tensor(labels, dtype=torch.int64), wnids, readers.names(src, wnids))
    finally:
        src.close()
    if cache and fingerprint:
        t2 = time.perf_counter()
        _cache.save(path, fingerprint, result)
        last_load.update(write_s=time.perf_counter() - t2)
    last_load.update(total_s=time.perf_counter() - t0)
    return result


def holdout_split(train: Split, per_class: int = 50, seed: int = 0):
    """Carve a stratified holdout of ``per_class`` images per class out of ``train``.

    Returns ``(rest, holdout)``. Deterministic for a given ``seed``; both keep the
    original image order. The suite tunes on the holdout and keeps the official
    validation split for the final report.
    """
    counts = train.counts()
    if per_class < 1 or counts.min().item() <= per_class:
        raise ValueError(f"per_class={per_class} must be at least 1 and leave training images "
                         f"in every class (smallest class has {counts.min().item()})")
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(train), generator=g)
    labels = train.labels.cpu()[perm]
    # Group the shuffled indices by class (stable), then take the first per_class of each.
    order = torch.sort(labels, stable=True).indices
    grouped, glabels = perm[order], labels[order]
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(train)) - starts[glabels]
    held = torch.zeros(len(train), dtype=torch.bool)
    held[grouped[rank < per_class]] = True
    return train.subset(torch.nonzero(~held).squeeze(1)), train.subset(torch.nonzero(held).squeeze(1))


def channel_stats(images: torch.Tensor, chunk: int = 8192):
    """Per-channel mean and std of uint8 images, on the 0..1 scale (like the ImageNet constants)."""
    total = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    for start in range(0, len(images), chunk):
        x = images[start:start + chunk].to(torch.float64) / 255
        total += x.sum((0, 2, 3)).cpu()
        squares += (x * x).sum((0, 2, 3)).cpu()
    n = len(images) * images.shape[2] * images.shape[3]
    mean = total / n
    return mean, (squares / n - mean ** 2).sqrt()
