"""load_split on a folder and a zip, the Split helpers and the holdout, on generated data.

Bad inputs are in test_readers.py, the cache in test_cache.py, dataset_source in test_sources.py.
"""

import zipfile
from pathlib import Path

import pytest
import torch
from torchvision.io import ImageReadMode, decode_jpeg

from alexnet_nb import bench, data, synthetic

SMALL = dict(num_classes=3, train_per_class=3, val_per_class=2, grayscale=1)


pytestmark = pytest.mark.usefixtures("data_folder")  # tests/conftest.py: a data folder of their own


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return synthetic.make_tiny_imagenet(tmp_path_factory.mktemp("folder"), grayscale=2)


@pytest.fixture(scope="module")
def zipped(tmp_path_factory):
    return synthetic.make_tiny_imagenet(tmp_path_factory.mktemp("zip"), grayscale=2, as_zip=True)


@pytest.fixture
def small(tmp_path):
    """A fresh tiny copy that a test may damage."""
    return synthetic.make_tiny_imagenet(tmp_path / "src", **SMALL)


def _decode(path) -> torch.Tensor:
    return decode_jpeg(torch.frombuffer(bytearray(Path(path).read_bytes()), dtype=torch.uint8), mode=ImageReadMode.RGB)


# ------------------------------------------------------------ the happy path ---

def test_train_split_shapes_and_label_order_follow_wnids_txt(folder, tmp_path):
    train = data.load_split(folder, "train", cache_dir=tmp_path, progress=False)
    wnids = (folder / "wnids.txt").read_text().split()
    assert wnids != sorted(wnids)  # the generator makes the file order differ from sorted order
    assert train.classes == wnids
    assert train.images.shape == (48, 3, 64, 64) and train.images.dtype == torch.uint8
    assert train.labels.dtype == torch.int64 and train.counts().tolist() == [12] * 4
    # label i holds the images of the i-th wnid, pixel for pixel
    first = train.images[train.labels == 2][0]
    assert torch.equal(first, _decode(folder / f"train/{wnids[2]}/images/{wnids[2]}_0.JPEG"))
    assert train.names[0] == "synthetic class 0, pattern 0"


def test_val_labels_agree_with_val_annotations(folder, tmp_path):
    val = data.load_split(folder, "val", cache_dir=tmp_path, progress=False)
    lines = [ln.split("\t") for ln in (folder / "val/val_annotations.txt").read_text().splitlines()]
    assert len(val) == len(lines) == 16
    assert [val.classes[i] for i in val.labels] == [wnid for _, wnid, *_ in lines]
    assert torch.equal(val.images[5], _decode(folder / "val/images" / lines[5][0]))


def test_grayscale_jpegs_become_three_identical_channels(folder, tmp_path):
    train = data.load_split(folder, "train", cache_dir=tmp_path, progress=False)
    gray = (train.images[:, 0] == train.images[:, 1]).flatten(1).all(1) & (train.images[:, 1] == train.images[:, 2]).flatten(1).all(1)
    assert gray.sum().item() == 2  # exactly the two written as 1-channel JPEGs


def test_zip_folder_and_parent_folder_give_the_same_split(folder, zipped, tmp_path):
    a = data.load_split(folder, "train", cache_dir=tmp_path / "a", progress=False)
    b = data.load_split(zipped, "train", cache_dir=tmp_path / "b", progress=False)
    c = data.load_split(folder.parent, "train", cache_dir=tmp_path / "c", progress=False)
    for other in (b, c):
        assert torch.equal(a.images, other.images) and torch.equal(a.labels, other.labels)
        assert a.classes == other.classes and a.names == other.names
    with zipfile.ZipFile(zipped) as zf:
        assert "tiny-imagenet-200/val/val_annotations.txt" in zf.namelist()  # the official member layout


def test_split_helpers(folder, tmp_path):
    train = data.load_split(folder, "train", cache=False, progress=False)
    part = train.subset(torch.tensor([0, 13, 47]))
    assert len(part) == 3 and part.labels.tolist() == train.labels[[0, 13, 47]].tolist()
    two = train.take_classes(2)
    assert two.classes == train.classes[:2] and sorted(set(two.labels.tolist())) == [0, 1] and len(two) == 24
    assert "48 images" in repr(train)


def test_channel_stats_match_a_direct_computation(folder):
    images = data.load_split(folder, "train", cache=False, progress=False).images
    mean, std = data.channel_stats(images, chunk=5)
    x = images.double().permute(1, 0, 2, 3).flatten(1) / 255
    assert torch.allclose(mean, x.mean(1)) and torch.allclose(std, x.std(1, correction=0))


def test_synthetic_classes_are_learnable(folder):
    # A nearest-class-mean classifier must beat chance by far, or quick-mode training learns nothing.
    train = data.load_split(folder, "train", cache=False, progress=False)
    val = data.load_split(folder, "val", cache=False, progress=False)
    means = torch.stack([train.images[train.labels == c].float().mean(0) for c in range(4)])
    pred = torch.cdist(val.images.float().flatten(1), means.flatten(1)).argmin(1)
    assert (pred == val.labels).float().mean() >= 0.75


# ------------------------------------------------------------------ holdout ---

def test_holdout_is_stratified_disjoint_and_deterministic(folder):
    train = data.load_split(folder, "train", cache=False, progress=False)
    rest, held = data.holdout_split(train, per_class=3, seed=0)
    assert held.counts().tolist() == [3] * 4 and rest.counts().tolist() == [9] * 4
    key = lambda s: {tuple(x.flatten()[:64].tolist()) for x in s.images}  # noqa: E731
    assert key(rest).isdisjoint(key(held)) and len(key(rest) | key(held)) == 48
    again = data.holdout_split(train, per_class=3, seed=0)[1]
    other = data.holdout_split(train, per_class=3, seed=1)[1]
    assert torch.equal(again.images, held.images) and not torch.equal(other.images, held.images)
    with pytest.raises(ValueError, match="leave training images"):
        data.holdout_split(train, per_class=12)


# -------------------------------------------------------------- benchmark ---

def test_bench_data_times_decode_and_reload(small, capsys):
    results = bench.main(["data", "--source", str(small)])
    assert results["train"]["images"] == 9 and results["val"]["images"] == 6
    assert "reload from cache" in capsys.readouterr().out
