"""Tiny ImageNet as tensors: decode once, cache, reload in seconds.

The whole split lives in memory as one ``uint8`` tensor ``[N, 3, 64, 64]``
(1.2 GB for the 100,000 training images), like airbench keeps CIFAR-10: an epoch
is then a few tensor indexing ops instead of 100,000 JPEG decodes. Decoding
happens once, batched (``torchvision.io.decode_jpeg``), and the result is cached
next to the source; the cache records what it was built from and is written
atomically, so a stale or half-written cache is never used.

>>> from alexnet_nb import data
>>> train = data.load_split("data/tiny-imagenet-200", "train")   # or the .zip
>>> train.images.shape, train.labels.shape, train.classes[:2], train.names[:2]
"""

import hashlib
import io
import os
import tempfile
import time
import warnings
import zipfile
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path

import torch
from torchvision.io import ImageReadMode, decode_jpeg

from alexnet_nb import env

ROOT_NAME = "tiny-imagenet-200"
IMAGE_SHAPE = (3, 64, 64)
CACHE_VERSION = 1
# Quick mode's synthetic dataset: tiny, so notebooks run in seconds on a CPU.
QUICK = dict(num_classes=4, train_per_class=12, val_per_class=4, grayscale=2)
# What the last load_split call did and how long it took (read by the benchmark and notebook 01).
last_load: dict = {}
_LAYOUT = f"{ROOT_NAME}/ with wnids.txt, words.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG, val/val_annotations.txt"


class DatasetError(ValueError):
    """The source is not a usable Tiny ImageNet; the message names the file and the fix."""


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


# ---------------------------------------------------------------- sources ---

def _natural(name: str):
    # n01443537_9.JPEG before n01443537_10.JPEG; same key for folder and zip.
    return (len(name), name)


def _is_jpeg(name: str) -> bool:
    return name.lower().endswith((".jpeg", ".jpg"))


class _FolderSource:
    """An extracted ``tiny-imagenet-200`` folder."""

    def __init__(self, root: Path):
        self.root = root
        self._stats = {}

    def exists(self, rel: str) -> bool:
        return (self.root / rel).is_file()

    def read(self, rel: str) -> bytes:
        with open(self.root / rel, "rb") as f:
            return f.read()

    def images_in(self, rel_dir: str) -> list | None:
        """JPEG file names in a folder, or None if there is no such folder."""
        try:
            entries = [e for e in os.scandir(os.path.join(self.root, rel_dir)) if _is_jpeg(e.name)]
        except (FileNotFoundError, NotADirectoryError):
            return None
        for e in entries:  # DirEntry.stat is the cheap way to stat 100k files (for the fingerprint)
            st = e.stat()
            self._stats[f"{rel_dir}/{e.name}"] = (st.st_size, st.st_mtime_ns)
        return sorted((e.name for e in entries), key=_natural)

    def show(self, rel: str) -> str:
        return str(self.root / rel)

    def fingerprint(self, rels: list) -> dict:
        # Name, size and mtime of every file that goes into the split, and of the
        # text files: editing, adding or removing any of them invalidates the cache.
        h = hashlib.sha1()
        for rel in ["wnids.txt", "words.txt", "val/val_annotations.txt"] + rels:
            stat = self._stats.get(rel)
            if stat is None:
                try:
                    st = os.stat(os.path.join(self.root, rel))
                    stat = (st.st_size, st.st_mtime_ns)
                except FileNotFoundError:
                    if rel in rels:
                        raise
                    stat = None
            h.update(f"{rel}\0{stat}\n".encode())
        return {"kind": "folder", "files": h.hexdigest()}

    def close(self):
        pass


class _ZipSource:
    """The official zip (members under ``tiny-imagenet-200/``) or a zip of the folder."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as e:
            raise DatasetError(
                f"{path} is not a readable zip archive ({e}). It is probably truncated or corrupt "
                f"(an interrupted download?): download it again (alexnet_nb.download.fetch verifies "
                f"the checksum) or pass the extracted {ROOT_NAME} folder instead.") from None
        names = self.zf.namelist()
        tops = sorted((n for n in names if n == "wnids.txt" or n.endswith("/wnids.txt")), key=len)
        self.prefix = tops[0][: -len("wnids.txt")] if tops else None
        self.members = {n: None for n in names}

    def exists(self, rel: str) -> bool:
        return self.prefix + rel in self.members

    def read(self, rel: str) -> bytes:
        try:
            return self.zf.read(self.prefix + rel)
        except KeyError:
            raise FileNotFoundError(self.show(rel)) from None
        except (zipfile.BadZipFile, OSError, EOFError) as e:  # CRC error, truncated member, zlib error
            raise DatasetError(f"cannot read {self.show(rel)}: {e}. The zip is corrupt: download it again.") from None

    def images_in(self, rel_dir: str) -> list | None:
        if not hasattr(self, "_dirs"):  # one pass over the member list, grouped by folder
            self._dirs = {}
            for n in self.members:
                if n.startswith(self.prefix) and _is_jpeg(n):
                    d, _, name = n[len(self.prefix):].rpartition("/")
                    self._dirs.setdefault(d, []).append(name)
        names = self._dirs.get(rel_dir.rstrip("/"))
        return None if names is None else sorted(names, key=_natural)

    def show(self, rel: str) -> str:
        return f"{self.path}:{self.prefix}{rel}"

    def fingerprint(self, rels: list) -> dict:
        st = os.stat(self.path)
        return {"kind": "zip", "size": st.st_size, "mtime_ns": st.st_mtime_ns, "prefix": self.prefix}

    def close(self):
        self.zf.close()


def _not_found(path: Path) -> DatasetError:
    msg = f"no such file or folder: {path}."
    parent = path.parent
    if parent.is_dir():
        close = get_close_matches(path.name, [p.name for p in parent.iterdir()], n=3)
        if close:
            msg += " Did you mean " + " or ".join(str(parent / c) for c in close) + "?"
    else:
        msg += f" (its parent folder {parent} does not exist either)."
    return DatasetError(msg + f" Pass the extracted {ROOT_NAME} folder or the official {ROOT_NAME}.zip"
                              " (alexnet_nb.download.fetch downloads it).")


def _open_source(source):
    path = Path(source).expanduser()
    if not path.exists():
        raise _not_found(path)
    if path.is_dir():
        if not (path / "wnids.txt").is_file() and (path / ROOT_NAME / "wnids.txt").is_file():
            path = path / ROOT_NAME  # the folder the archive was extracted into
        if not (path / "wnids.txt").is_file():
            what = ("it has train/ and val/ but no wnids.txt (the class list); re-extract the archive"
                    if (path / "train").is_dir() else f"expected {_LAYOUT}")
            raise DatasetError(f"{path} is not a Tiny ImageNet folder: {what}.")
        return _FolderSource(path)
    src = _ZipSource(path)
    if src.prefix is None:
        src.close()
        raise DatasetError(f"{path} is a zip but not Tiny ImageNet: no wnids.txt inside (expected {_LAYOUT}).")
    return src


# ------------------------------------------------------------ class lists ---

def _read_text(src, rel: str, fix: str) -> str:
    if not src.exists(rel):
        raise DatasetError(f"missing {src.show(rel)}: {fix}")
    return src.read(rel).decode("utf-8", errors="replace")


def _classes(src) -> list:
    wnids = _read_text(src, "wnids.txt", "it lists the 200 class ids; re-extract the archive.").split()
    if not wnids:
        raise DatasetError(f"{src.show('wnids.txt')} is empty: re-extract the archive.")
    if len(set(wnids)) != len(wnids):
        raise DatasetError(f"{src.show('wnids.txt')} lists a class twice: re-extract the archive.")
    return wnids


def _names(src, wnids: list) -> list:
    """Human-readable names from words.txt; the wnid itself where one is missing."""
    if not src.exists("words.txt"):
        warnings.warn(f"missing {src.show('words.txt')}: class names fall back to wnids")
        return list(wnids)
    words = {}
    for line in src.read("words.txt").decode("utf-8", errors="replace").splitlines():
        wnid, _, name = line.partition("\t")
        words[wnid.strip()] = name.strip()
    return [words.get(w) or w for w in wnids]


def _train_items(src, wnids: list):
    rels, labels = [], []
    for label, wnid in enumerate(wnids):
        names = src.images_in(f"train/{wnid}/images")
        if not names:
            raise DatasetError(
                f"no training images for class {wnid} (listed in wnids.txt): expected "
                f"{src.show(f'train/{wnid}/images/')}*.JPEG. Is this folder complete? Re-extract the archive.")
        rels += [f"train/{wnid}/images/{n}" for n in names]
        labels += [label] * len(names)
    return rels, labels


def _val_items(src, wnids: list):
    ann = "val/val_annotations.txt"
    text = _read_text(src, ann, "it holds the validation labels; re-extract the archive.")
    index = {w: i for i, w in enumerate(wnids)}
    rels, labels = [], []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise DatasetError(f"{src.show(ann)} line {lineno} is malformed: {line!r} (expected 'file<TAB>wnid ...').")
        name, wnid = fields[0].strip(), fields[1].strip()
        if wnid not in index:
            raise DatasetError(f"{src.show(ann)} line {lineno} names class {wnid!r}, which is not in wnids.txt: "
                               "the annotations and the class list come from different copies; re-extract the archive.")
        rels.append(f"val/images/{name}")
        labels.append(index[wnid])
    if not rels:
        raise DatasetError(f"{src.show(ann)} has no annotations: re-extract the archive.")
    return rels, labels


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


# ------------------------------------------------------------------ cache ---

def default_cache_dir(source) -> Path:
    """``cache/`` next to the source (for ``data/tiny-imagenet-200`` that is ``data/cache``)."""
    return Path(source).expanduser().resolve().parent / "cache"


def _cache_file(cache_dir: Path, source: Path, split: str) -> Path:
    key = hashlib.sha1(str(source.resolve()).encode()).hexdigest()[:10]
    return Path(cache_dir) / f"{source.name}-{split}-{key}.cache"


# Cache file layout: MAGIC, 8-byte length, torch.save'd metadata (fingerprint,
# labels, classes, names, N), then the N*3*64*64 raw image bytes. Raw bytes read
# straight into a preallocated tensor load ~3x faster than torch.load of the same
# tensor (1.2 GB for train), and the exact expected file size catches truncation.
_MAGIC = b"alexnet_nb decoded Tiny ImageNet v1\n"


def _read_into(f, tensor: torch.Tensor) -> None:
    view = memoryview(tensor.numpy()).cast("B")
    while view:
        n = f.readinto(view)
        if not n:
            raise EOFError("cache file ends early")
        view = view[n:]


def _load_cache(path: Path, fingerprint: dict) -> Split | None:
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
        warnings.warn(f"ignoring unreadable cache {path.name} ({type(e).__name__}: {e}); decoding again")
        return None
    return Split(images, meta["labels"], list(meta["classes"]), list(meta["names"]))


def _remove_stale_temp_files(path: Path, age_s: float = 3600) -> None:
    # A writer killed mid-write leaves a 1.2 GB temporary file; an hour-old one has no live writer.
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            if time.time() - tmp.stat().st_mtime > age_s:
                tmp.unlink()
        except OSError:
            pass


def _save_cache(path: Path, fingerprint: dict, split: Split) -> None:
    """Write to a temporary file in the same folder, then rename: readers see all or nothing."""
    meta = io.BytesIO()
    torch.save({"fingerprint": fingerprint, "count": len(split), "labels": split.labels,
                "classes": split.classes, "names": split.names}, meta)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temp_files(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_MAGIC + len(meta.getvalue()).to_bytes(8, "little") + meta.getvalue())
                f.write(memoryview(split.images.contiguous().numpy()).cast("B"))
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is ordinary data
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as e:  # a read-only or full disk costs speed next time, not correctness
        warnings.warn(f"could not write the decoded cache to {path.parent} ({e}); it will be decoded again next time")


# ------------------------------------------------------------- public API ---

def load_split(source, split: str, cache_dir=None, progress: bool = True, cache: bool = True) -> Split:
    """Load a whole split of Tiny ImageNet as tensors.

    ``source``: the official ``tiny-imagenet-200.zip`` (or any zip of the folder),
    or the extracted ``tiny-imagenet-200`` folder (or the folder containing it).
    ``split``: ``"train"`` (100,000 images, labels from the ``train/<wnid>/`` folders)
    or ``"val"`` (10,000 images, labels from ``val/val_annotations.txt``).

    Returns a :class:`Split`: ``images`` uint8 ``[N, 3, 64, 64]`` (grayscale JPEGs
    become 3 identical channels), ``labels`` int64 ``[N]``, ``classes`` (wnids) and
    ``names`` (from ``words.txt``). **Label ``i`` is the ``i``-th line of
    ``wnids.txt``**: the file's order, not sorted order. Images are ordered by
    class, then by file number (train) or as in ``val_annotations.txt`` (val).

    The decoded split is cached in ``cache_dir`` (default :func:`default_cache_dir`)
    and reloaded from there while the source is unchanged (``cache=False`` skips it).
    Bad input raises :class:`DatasetError` naming the file and the fix.
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', not {split!r}")
    t0 = time.perf_counter()
    last_load.clear()
    source = Path(source).expanduser()
    src = _open_source(source)
    try:
        wnids = _classes(src)
        rels, labels = (_train_items if split == "train" else _val_items)(src, wnids)
        fingerprint = None
        if cache:
            try:
                fingerprint = {"version": CACHE_VERSION, "split": split, "source": str(source.resolve()),
                               "wnids": wnids, **src.fingerprint(rels)}
            except FileNotFoundError:
                fingerprint = None  # a listed file is missing: decoding below names it
            path = _cache_file(cache_dir or default_cache_dir(source), source, split)
            hit = _load_cache(path, fingerprint) if fingerprint else None
            if hit is not None:
                last_load.update(cache="hit", total_s=time.perf_counter() - t0)
                return hit
        t1, c1 = time.perf_counter(), time.process_time()
        images = _decode_all(src, rels, progress, desc=f"decoding {split}")
        # Wall time, and CPU time of all threads: on a shared machine the second is the steadier one.
        last_load.update(cache="miss" if cache else "off", decode_s=time.perf_counter() - t1,
                         decode_cpu_s=time.process_time() - c1)
        result = Split(images, torch.tensor(labels, dtype=torch.int64), wnids, _names(src, wnids))
    finally:
        src.close()
    if cache and fingerprint:
        t2 = time.perf_counter()
        _save_cache(path, fingerprint, result)
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


def dataset_source(data_dir=None) -> Path:
    """Where the data comes from, fetching or generating it if needed.

    Quick mode (``env.quick_mode()``): a small synthetic dataset generated once
    under ``data_dir/synthetic``. Otherwise ``data_dir/tiny-imagenet-200`` if it
    is an extracted copy, else ``data_dir/tiny-imagenet-200.zip``, downloading it
    (checksum verified) if it is not there. ``data_dir`` defaults to ``env.data_dir()``.
    The environment variables ``ALEXNET_NB_URL`` and ``ALEXNET_NB_DRIVE_ID`` point
    the download at a mirror or a Google Drive copy when the official URL is down.
    """
    data_dir = Path(data_dir) if data_dir is not None else env.data_dir()
    if env.quick_mode():
        from alexnet_nb import synthetic

        folder = data_dir / "synthetic" / ROOT_NAME
        if not (folder / "wnids.txt").is_file():  # generation renames into place: present means complete
            synthetic.make_tiny_imagenet(data_dir / "synthetic", **QUICK)
        return folder
    if (data_dir / ROOT_NAME / "wnids.txt").is_file():
        return data_dir / ROOT_NAME
    from alexnet_nb import download

    zip_path = data_dir / download.FILENAME
    if zip_path.is_file():
        return zip_path
    return download.fetch(data_dir, url=os.environ.get("ALEXNET_NB_URL") or download.URL,
                          drive_id=os.environ.get("ALEXNET_NB_DRIVE_ID") or None)
