"""The dataset in parts: extract what has arrived, tell whether the whole of it is there.

The borrowed GPU machine receives at most 64 MiB per command, so Tiny ImageNet
travels as six ``.tar.gz`` parts (train-0..4, 40 classes each, and val with the
class lists) over three commands. Each command extracts the parts it finds,
skipping those already extracted (a marker per part in ``<data>/.parts/``), and
:func:`verify` says whether the tree is complete before anything trains on it.
"""

from pathlib import Path

from alexnet_nb import archives
from alexnet_nb.data import ROOT_NAME

MARKERS = ".parts"
FULL = dict(classes=200, train_per_class=500, val=10_000)  # the real dataset's counts


def find_archives(folders) -> list:
    return sorted(p for f in folders for p in Path(f).glob("*.tar.gz"))


def extract(folders, data_dir) -> list:
    """Extract every ``*.tar.gz`` in ``folders`` into ``data_dir`` unless already done; ``[(name, what happened)]``.

    A part that is truncated or holds anything but files and folders is refused whole (``archives.extract``) and
    gets no marker: the call goes on with the other parts, and the dataset stays incomplete until it is sent again.
    """
    data_dir = Path(data_dir)
    markers = data_dir / MARKERS
    markers.mkdir(parents=True, exist_ok=True)
    done = []
    for archive in find_archives(folders):
        marker = markers / archive.name
        size = str(archive.stat().st_size)
        if marker.exists() and marker.read_text() == size:
            done.append((archive.name, "already extracted"))
            continue
        try:
            archives.extract(archive, data_dir)
        except archives.ArchiveError as e:
            done.append((archive.name, f"not extracted: {e}"))
            continue
        marker.write_text(size)  # written last: a cut-off extraction is redone next time
        done.append((archive.name, "extracted"))
    return done


def verify(data_dir, expected=FULL):
    """``(complete, counts, problem)`` of ``data_dir/tiny-imagenet-200``.

    Complete means: wnids.txt lists the classes, every class has its training
    images (all the same count), and every line of val_annotations.txt names an
    image that is there; with ``expected`` also the real dataset's counts.
    """
    root = Path(data_dir) / ROOT_NAME
    wnids_file = root / "wnids.txt"
    if not wnids_file.is_file():
        return False, {}, f"no {wnids_file} yet (it comes with the val part)"
    wnids = wnids_file.read_text(encoding="utf-8-sig").split()
    per_class = {w: len(list((root / "train" / w / "images").glob("*.JPEG"))) for w in wnids}
    missing = [w for w, n in per_class.items() if n == 0]
    counts = {"classes": len(wnids), "train": sum(per_class.values()), "classes_missing": len(missing)}
    if missing:
        return False, counts, f"{len(missing)} of {len(wnids)} classes have no training images yet"
    if len(set(per_class.values())) != 1:
        return False, counts, f"classes have different numbers of training images: {sorted(set(per_class.values()))}"
    ann = root / "val" / "val_annotations.txt"
    lines = [ln.split("\t")[0] for ln in ann.read_text().splitlines() if ln.strip()] if ann.is_file() else []
    counts["val"] = sum((root / "val" / "images" / name).is_file() for name in lines)
    if not lines or counts["val"] != len(lines):
        return False, counts, f"val: {counts['val']} of {len(lines)} annotated images present"
    if expected:
        want = (expected["classes"], expected["classes"] * expected["train_per_class"], expected["val"])
        if (counts["classes"], counts["train"], counts["val"]) != want:
            return False, counts, f"counts {counts} differ from the real dataset's {want}"
    return True, counts, ""
