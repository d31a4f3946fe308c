"""Reading Tiny ImageNet from an extracted folder or a zip, and its class lists.

Both readers offer the same few calls (``exists``, ``read``, ``images_in``,
``show``, ``fingerprint``), so the loader never asks which one it has. Every
problem with the files becomes a :class:`DatasetError` naming the file and the
fix, on one line: the training CLI prints it as ``error: <message>``.
"""

import hashlib
import os
import tarfile
import warnings
import zipfile
import zlib
from difflib import get_close_matches
from pathlib import Path

from alexnet_nb import download

ROOT_NAME = "tiny-imagenet-200"
IMAGE_SHAPE = (3, 64, 64)
LAYOUT = f"{ROOT_NAME}/ with wnids.txt, words.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG, val/val_annotations.txt"
# Folders of the data folder that never hold the real dataset: the decoded cache,
# quick mode's generated copy (a complete layout that must not pass for the real one).
NOT_DATASETS = ("cache", "synthetic")


class DatasetError(ValueError):
    """The source is not a usable Tiny ImageNet; the message names the file and the fix."""

    def __init__(self, message):
        super().__init__(download.one_line(message))


# ----------------------------------------------------------- finding it ---

def is_dataset_folder(folder: Path) -> bool:
    return (folder / "wnids.txt").is_file() and (folder / "train").is_dir() and (folder / "val").is_dir()


def _subfolders(folder: Path) -> list:
    try:
        children = [p for p in folder.iterdir()
                    if p.is_dir() and not p.name.startswith(".") and p.name not in NOT_DATASETS]
    except OSError:
        return []
    return sorted(children, key=lambda p: (p.name != ROOT_NAME, p.name))


def _folders(root: Path, depth: int):
    """``root``, then the folders below it level by level down to ``depth``, the official name first."""
    level = [root]
    for d in range(depth + 1):
        yield from level
        if d < depth:
            level = [child for folder in level for child in _subfolders(folder)]


def find_dataset(root, depth: int) -> Path | None:
    """An extracted copy (wnids.txt, train/, val/) in ``root`` or up to ``depth`` folders down,
    else ``tiny-imagenet-200.zip`` in ``root`` or up to ``depth - 1`` folders down, else None.

    Depth matters because unzipping into a folder of the same name gives
    ``tiny-imagenet-200/tiny-imagenet-200/``.
    """
    root = Path(root)
    for folder in _folders(root, depth):
        if is_dataset_folder(folder):
            return folder
    for folder in _folders(root, depth - 1):
        if (folder / download.FILENAME).is_file():
            return folder / download.FILENAME
    return None


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


def _bad_zip(path: Path, reason: str) -> DatasetError:
    path = path.absolute()
    size = path.stat().st_size
    what = ("it is empty (0 bytes)" if size == 0
            else f"{reason}; it has {size:,} bytes, the official zip {download.SIZE:,}")
    return DatasetError(
        f"{path} is not a readable zip archive ({what}): it is truncated or corrupt, probably an interrupted "
        f"copy or download. Delete it (data.dataset_source() then downloads a verified copy) or replace it "
        f"with a complete download, or use the extracted {ROOT_NAME} folder instead.")


def _is_tar(path: Path) -> bool:
    """Whether ``path`` is a tar archive, compressed or not (reads its first header only)."""
    try:
        return tarfile.is_tarfile(path)
    except (OSError, EOFError):
        return False


def locate(source) -> Path:
    """The dataset a user-given path means: the folder holding wnids.txt (``source`` or
    one level down) or the zip; DatasetError when there is none or the zip is unreadable."""
    path = Path(source).expanduser()
    if not path.exists():
        raise _not_found(path)
    if path.is_file():
        if not zipfile.is_zipfile(path):  # reads only the directory at the end: cheap, and truncation loses it
            if _is_tar(path):  # a whole archive, only of another kind: nothing to delete or download again
                raise DatasetError(
                    f"{path.absolute()} is a tar archive, but the source must be a .zip or an extracted folder: "
                    f"extract it (tar xf {path} -C {path.parent}) and pass the {ROOT_NAME} folder it holds.")
            raise _bad_zip(path, "no zip directory at its end")
        return path
    if (path / "wnids.txt").is_file():
        return path
    found = find_dataset(path, depth=1)
    if found is None:
        what = ("it has train/ and val/ but no wnids.txt (the class list); re-extract the archive"
                if (path / "train").is_dir() else f"expected {LAYOUT}")
        raise DatasetError(f"{path.absolute()} is not a Tiny ImageNet folder: {what}.")
    return found


# -------------------------------------------------------------- readers ---

def _natural(name: str):
    # n01443537_9.JPEG before n01443537_10.JPEG; same key for folder and zip.
    return (len(name), name)


def _is_jpeg(name: str) -> bool:
    return name.lower().endswith((".jpeg", ".jpg"))


class FolderReader:
    """An extracted ``tiny-imagenet-200`` folder."""

    def __init__(self, root: Path):
        self.path = root
        self._stats = {}

    def exists(self, rel: str) -> bool:
        return (self.path / rel).is_file()

    def read(self, rel: str) -> bytes:
        with open(self.path / rel, "rb") as f:
            return f.read()

    def images_in(self, rel_dir: str) -> list | None:
        """JPEG file names in a folder, or None if there is no such folder."""
        try:
            entries = [e for e in os.scandir(os.path.join(self.path, rel_dir)) if _is_jpeg(e.name)]
        except (FileNotFoundError, NotADirectoryError):
            return None
        for e in entries:  # DirEntry.stat is the cheap way to stat 100k files (for the fingerprint)
            st = e.stat()
            self._stats[f"{rel_dir}/{e.name}"] = (st.st_size, st.st_mtime_ns)
        return sorted((e.name for e in entries), key=_natural)

    def show(self, rel: str) -> str:
        return str(self.path / rel)

    def fingerprint(self, rels: list) -> dict:
        # Name, size and mtime of every file that goes into the split, and of the
        # text files: editing, adding or removing any of them invalidates the cache.
        h = hashlib.sha1()
        for rel in ["wnids.txt", "words.txt", "val/val_annotations.txt"] + rels:
            stat = self._stats.get(rel)
            if stat is None:
                try:
                    st = os.stat(os.path.join(self.path, rel))
                    stat = (st.st_size, st.st_mtime_ns)
                except FileNotFoundError:
                    if rel in rels:
                        raise
                    stat = None
            h.update(f"{rel}\0{stat}\n".encode())
        return {"kind": "folder", "files": h.hexdigest()}

    def close(self):
        pass


class ZipReader:
    """The official zip (members under ``tiny-imagenet-200/``) or a zip of the folder."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as e:
            raise _bad_zip(path, str(e)) from None
        names = self.zf.namelist()
        tops = sorted((n for n in names if n == "wnids.txt" or n.endswith("/wnids.txt")), key=len)
        if not tops:
            self.zf.close()
            raise DatasetError(f"{path.absolute()} is a zip but not Tiny ImageNet: no wnids.txt inside (expected "
                               f"{LAYOUT}). Delete or replace it with the official {download.FILENAME}.")
        self.prefix = tops[0][: -len("wnids.txt")]
        self.members = set(names)

    def exists(self, rel: str) -> bool:
        return self.prefix + rel in self.members

    def read(self, rel: str) -> bytes:
        try:
            return self.zf.read(self.prefix + rel)
        except KeyError:
            raise FileNotFoundError(self.show(rel)) from None
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:  # bad CRC, truncated or garbled member
            raise DatasetError(
                f"cannot read member {self.prefix + rel} of {self.path.absolute()}: the zip is corrupt ({e}). "
                f"Delete the zip and download it again (download.fetch verifies the checksum), "
                f"or use an intact extracted {ROOT_NAME} folder.") from None

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


def open_source(source):
    """A reader for the dataset ``source`` means (see :func:`locate`)."""
    path = locate(source)
    return FolderReader(path) if path.is_dir() else ZipReader(path)


# ---------------------------------------------------------- class lists ---

def read_text(src, rel: str, fix: str) -> str:
    if not src.exists(rel):
        raise DatasetError(f"missing {src.show(rel)}: {fix}")
    # utf-8-sig: an editor that saved the file with a byte-order mark must not glue it to the first class id.
    return src.read(rel).decode("utf-8-sig", errors="replace")


def classes(src) -> list:
    wnids = read_text(src, "wnids.txt", "it lists the 200 class ids; re-extract the archive.").split()
    if not wnids:
        raise DatasetError(f"{src.show('wnids.txt')} is empty: re-extract the archive.")
    if len(set(wnids)) != len(wnids):
        raise DatasetError(f"{src.show('wnids.txt')} lists a class twice: re-extract the archive.")
    return wnids


def names(src, wnids: list) -> list:
    """Human-readable names from words.txt; the wnid itself where one is missing."""
    if not src.exists("words.txt"):
        warnings.warn(f"missing {src.show('words.txt')}: class names fall back to wnids")
        return list(wnids)
    words = {}
    for line in read_text(src, "words.txt", "").splitlines():
        wnid, _, name = line.partition("\t")
        words[wnid.strip()] = name.strip()
    return [words.get(w) or w for w in wnids]


def train_items(src, wnids: list):
    rels, labels = [], []
    for label, wnid in enumerate(wnids):
        files = src.images_in(f"train/{wnid}/images")
        if not files:
            raise DatasetError(
                f"no training images for class {wnid} (listed in wnids.txt): expected "
                f"{src.show(f'train/{wnid}/images/')}*.JPEG. Is this folder complete? Re-extract the archive.")
        rels += [f"train/{wnid}/images/{n}" for n in files]
        labels += [label] * len(files)
    return rels, labels


def val_items(src, wnids: list):
    ann = "val/val_annotations.txt"
    text = read_text(src, ann, "it holds the validation labels; re-extract the archive.")
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
