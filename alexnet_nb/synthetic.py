"""A small generated dataset in the exact Tiny ImageNet layout.

Tests and quick mode need something that *looks* like the real archive to the
loader (same folders, same text files, JPEGs, some of them grayscale, optionally
a broken one) but is tiny, offline and deterministic. The images are made to be
learnable: each class has its own colour and stripe pattern, plus noise and a
random shift, so a short training run on them shows the loss falling.

Layout written (the official one)::

    tiny-imagenet-200/
        wnids.txt  words.txt
        train/<wnid>/<wnid>_boxes.txt
        train/<wnid>/images/<wnid>_<i>.JPEG
        val/val_annotations.txt
        val/images/val_<i>.JPEG
        test/images/test_<i>.JPEG
"""

import math
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import torch
from torchvision.io import encode_jpeg

from alexnet_nb.data import ROOT_NAME  # the official archive's folder name, defined once by the loader
SIZE = 64


def synthetic_wnids(num_classes: int) -> list[str]:
    """WordNet-style ids, deliberately NOT in sorted order (like the real wnids.txt),
    so that a loader sorting them instead of following the file gets caught."""
    ids = [f"n9{(c * 7919) % 10_000_000:07d}" for c in range(num_classes)]
    return ids[::-1] if num_classes > 1 else ids


def class_image(label: int, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """One 64x64 RGB uint8 image of class ``label``: class colour + class stripes + noise."""
    hue = 2 * math.pi * label / num_classes
    colour = torch.tensor([math.cos(hue), math.cos(hue - 2.094), math.cos(hue + 2.094)])
    angle = math.pi * label / num_classes  # each class its own stripe direction
    freq = 2 * math.pi / (6 + 3 * (label % 4))
    shift = torch.rand(2, generator=generator) * 16
    ys, xs = torch.meshgrid(torch.arange(SIZE) + shift[0], torch.arange(SIZE) + shift[1], indexing="ij")
    stripes = torch.sin(freq * (xs * math.cos(angle) + ys * math.sin(angle)))
    img = 0.5 + 0.3 * colour[:, None, None] + 0.15 * stripes
    img = img + 0.08 * torch.randn(3, SIZE, SIZE, generator=generator)
    return (img.clamp(0, 1) * 255).round().to(torch.uint8)


def _jpeg(img: torch.Tensor, gray: bool) -> bytes:
    if gray:  # a 1-channel JPEG, like the 1,821 grayscale files in the real train split
        img = img.float().mean(0, keepdim=True).round().to(torch.uint8)
    return encode_jpeg(img, quality=90).numpy().tobytes()


def _gray_set(count: int, total: int) -> set[int]:
    """Spread ``count`` grayscale images evenly over ``total`` images."""
    count = min(count, total)
    return {int(i * total / count) for i in range(count)} if count else set()


def _write(folder: Path, rel: str, data: bytes | str) -> None:
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def _build(folder: Path, num_classes, train_per_class, val_per_class, test_images, grayscale, corrupt, seed):
    g = torch.Generator().manual_seed(seed)
    wnids = synthetic_wnids(num_classes)
    _write(folder, "wnids.txt", "".join(w + "\n" for w in wnids))
    # words.txt covers more synsets than the 200 classes, like the real one (82,115 lines).
    words = [f"{w}\tsynthetic class {i}, pattern {i}\n" for i, w in enumerate(wnids)]
    words.insert(0, "n00001740\tentity\n")
    _write(folder, "words.txt", "".join(sorted(words)))

    gray_train = _gray_set(grayscale, num_classes * train_per_class)
    for label, wnid in enumerate(wnids):
        boxes = []
        for i in range(train_per_class):
            name = f"{wnid}_{i}.JPEG"
            data = _jpeg(class_image(label, num_classes, g), label * train_per_class + i in gray_train)
            if corrupt and label == 0 and i == 1:
                data = data[: len(data) // 2]  # truncated mid-scan, like an interrupted copy
            _write(folder, f"train/{wnid}/images/{name}", data)
            boxes.append(f"{name}\t0\t0\t63\t63\n")
        _write(folder, f"train/{wnid}/{wnid}_boxes.txt", "".join(boxes))

    gray_val = _gray_set(grayscale, num_classes * val_per_class)
    # Validation images are interleaved across classes, as in the real val split.
    lines = []
    for i in range(num_classes * val_per_class):
        label = i % num_classes
        _write(folder, f"val/images/val_{i}.JPEG", _jpeg(class_image(label, num_classes, g), i in gray_val))
        lines.append(f"val_{i}.JPEG\t{wnids[label]}\t0\t0\t63\t63\n")
    _write(folder, "val/val_annotations.txt", "".join(lines))
    for i in range(test_images):
        _write(folder, f"test/images/test_{i}.JPEG", _jpeg(class_image(i % num_classes, num_classes, g), False))


def corrupt_file(num_classes: int = 4) -> str:
    """The path, relative to ``tiny-imagenet-200/``, that ``corrupt=True`` truncates."""
    wnid = synthetic_wnids(num_classes)[0]
    return f"train/{wnid}/images/{wnid}_1.JPEG"


def make_tiny_imagenet(
    root,
    num_classes: int = 4,
    train_per_class: int = 12,
    val_per_class: int = 4,
    grayscale: int = 2,
    corrupt: bool = False,
    as_zip: bool = False,
    test_images: int = 2,
    seed: int = 0,
) -> Path:
    """Write a synthetic Tiny ImageNet under ``root`` and return its path.

    Returns ``root/tiny-imagenet-200`` (a folder) or, with ``as_zip=True``,
    ``root/tiny-imagenet-200.zip`` whose members start with ``tiny-imagenet-200/``
    like the official archive. ``grayscale`` images (in train, and as many in val)
    are stored as 1-channel JPEGs. ``corrupt=True`` truncates one training JPEG:
    the second image of the first class in ``wnids.txt`` (:func:`corrupt_file`
    names it; needs ``train_per_class >= 2``).

    The folder is built in a temporary sibling and renamed into place, so an
    interrupted generation never leaves a half-written dataset behind.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".synthetic-") as tmp:
        folder = Path(tmp) / ROOT_NAME
        _build(folder, num_classes, train_per_class, val_per_class, test_images, grayscale, corrupt, seed)
        if as_zip:
            target = root / f"{ROOT_NAME}.zip"
            part = Path(tmp) / "part.zip"
            with zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED) as zf:
                for path in sorted(folder.rglob("*")):
                    zf.write(path, path.relative_to(tmp).as_posix())
            os.replace(part, target)
            return target
        target = root / ROOT_NAME
        if target.exists():
            shutil.rmtree(target)
        os.replace(folder, target)
        return target
