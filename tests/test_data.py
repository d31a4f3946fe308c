"""load_split, the cache, the holdout, dataset_source and every bad input, on generated data."""

import os
import shutil
import time
import zipfile
from pathlib import Path

import pytest
import torch
from torchvision.io import ImageReadMode, decode_jpeg

from alexnet_nb import bench, data, download, synthetic

SMALL = dict(num_classes=3, train_per_class=3, val_per_class=2, grayscale=1)


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


# -------------------------------------------------------------------- cache ---

def test_second_load_comes_from_the_cache_and_is_identical(small, tmp_path):
    first = data.load_split(small, "train", cache_dir=tmp_path / "c", progress=False)
    assert data.last_load["cache"] == "miss"
    again = data.load_split(small, "train", cache_dir=tmp_path / "c", progress=False)
    assert data.last_load["cache"] == "hit"
    assert torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels)
    assert first.classes == again.classes and first.names == again.names


def test_default_cache_lives_next_to_the_source(small):
    data.load_split(small, "val", progress=False)
    assert len(list((small.parent / "cache").glob("*val*.cache"))) == 1


def test_changed_source_makes_the_cache_stale(small, tmp_path):
    data.load_split(small, "train", cache_dir=tmp_path, progress=False)
    wnid = (small / "wnids.txt").read_text().split()[0]
    target = small / f"train/{wnid}/images/{wnid}_0.JPEG"
    shutil.copyfile(small / f"train/{wnid}/images/{wnid}_1.JPEG", target)  # different pixels, same name
    os.utime(target, ns=(time.time_ns() + 10**9,) * 2)
    reloaded = data.load_split(small, "train", cache_dir=tmp_path, progress=False)
    assert data.last_load["cache"] == "miss"
    assert torch.equal(reloaded.images[0], reloaded.images[1])
    (small / f"train/{wnid}/images/{wnid}_2.JPEG").unlink()  # a removed file, too
    assert len(data.load_split(small, "train", cache_dir=tmp_path, progress=False)) == 8


def test_changed_zip_makes_the_cache_stale(tmp_path):
    z = synthetic.make_tiny_imagenet(tmp_path / "z", **SMALL, as_zip=True)
    a = data.load_split(z, "val", cache_dir=tmp_path / "c", progress=False)
    synthetic.make_tiny_imagenet(tmp_path / "z", **SMALL, as_zip=True, seed=1)  # same path, new contents
    b = data.load_split(z, "val", cache_dir=tmp_path / "c", progress=False)
    assert data.last_load["cache"] == "miss" and not torch.equal(a.images, b.images)


def test_truncated_or_garbage_cache_is_ignored_and_rebuilt(small, tmp_path):
    good = data.load_split(small, "train", cache_dir=tmp_path, progress=False)
    (cache_file,) = tmp_path.glob("*.cache")
    blob = cache_file.read_bytes()
    for damaged in (blob[: len(blob) - 100], b"garbage"):
        cache_file.write_bytes(damaged)
        with pytest.warns(UserWarning, match="ignoring unreadable cache"):
            again = data.load_split(small, "train", cache_dir=tmp_path, progress=False)
        assert data.last_load["cache"] == "miss" and torch.equal(again.images, good.images)
        assert cache_file.read_bytes() == blob  # rewritten whole


def test_failed_cache_write_leaves_no_file_behind(small, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(data.os, "fsync", boom)
    with pytest.warns(UserWarning, match="could not write the decoded cache"):
        split = data.load_split(small, "val", cache_dir=tmp_path / "c", progress=False)
    assert len(split) == 6 and list((tmp_path / "c").iterdir()) == []


# -------------------------------------------------------------- bad inputs ---

def test_missing_path_suggests_the_close_match(small):
    with pytest.raises(data.DatasetError, match="no such file or folder.*Did you mean.*tiny-imagenet-200"):
        data.load_split(small.parent / "tiny-imagnet-200", "train", cache=False)


def test_folder_that_is_not_tiny_imagenet(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(data.DatasetError, match="not a Tiny ImageNet folder"):
        data.load_split(tmp_path / "photos", "train", cache=False)


def test_missing_wnids_txt(small):
    (small / "wnids.txt").unlink()
    with pytest.raises(data.DatasetError, match="no wnids.txt"):
        data.load_split(small, "train", cache=False)


def test_missing_val_annotations(small):
    (small / "val/val_annotations.txt").unlink()
    with pytest.raises(data.DatasetError, match="missing .*val_annotations.txt"):
        data.load_split(small, "val", cache=False)


def test_annotation_naming_an_unknown_class(small):
    ann = small / "val/val_annotations.txt"
    lines = ann.read_text().splitlines(keepends=True)
    lines[3] = "val_3.JPEG\tn99999999\t0\t0\t63\t63\n"
    ann.write_text("".join(lines))
    with pytest.raises(data.DatasetError, match="line 4 names class 'n99999999', which is not in wnids.txt"):
        data.load_split(small, "val", cache=False)


def test_annotated_image_that_is_missing(small):
    (small / "val/images/val_2.JPEG").unlink()
    with pytest.raises(data.DatasetError, match="missing .*val_2.JPEG"):
        data.load_split(small, "val", cache=False)


def test_class_folder_missing(small):
    wnid = (small / "wnids.txt").read_text().split()[1]
    shutil.rmtree(small / "train" / wnid)
    with pytest.raises(data.DatasetError, match=f"no training images for class {wnid}"):
        data.load_split(small, "train", cache=False)


@pytest.mark.parametrize("as_zip", [False, True])
def test_corrupt_jpeg_error_names_the_file(tmp_path, as_zip):
    src = synthetic.make_tiny_imagenet(tmp_path, **SMALL, corrupt=True, as_zip=as_zip)
    bad = synthetic.corrupt_file(SMALL["num_classes"])
    with pytest.raises(data.DatasetError, match="cannot decode .*" + bad.replace(".", r"\.") + ".*corrupt or truncated"):
        data.load_split(src, "train", cache_dir=tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())  # nothing cached
    assert len(data.load_split(src, "val", cache=False)) == 6  # the val split is intact


def test_image_of_the_wrong_size_is_named(small):
    val_0 = small / "val/images/val_0.JPEG"
    from torchvision.io import encode_jpeg
    val_0.write_bytes(encode_jpeg(torch.zeros(3, 32, 48, dtype=torch.uint8)).numpy().tobytes())
    with pytest.raises(data.DatasetError, match="val_0.JPEG is 48x32, expected 64x64"):
        data.load_split(small, "val", cache=False)


def test_truncated_zip(tmp_path):
    z = synthetic.make_tiny_imagenet(tmp_path, **SMALL, as_zip=True)
    z.write_bytes(z.read_bytes()[: z.stat().st_size // 2])
    with pytest.raises(data.DatasetError, match="not a readable zip archive.*truncated or corrupt"):
        data.load_split(z, "train", cache=False)


def test_zip_that_is_not_tiny_imagenet(tmp_path):
    z = tmp_path / "other.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(data.DatasetError, match="is a zip but not Tiny ImageNet"):
        data.load_split(z, "train", cache=False)


def test_unknown_split_name(small):
    with pytest.raises(ValueError, match="'train' or 'val'"):
        data.load_split(small, "test", cache=False)


# ---------------------------------------------------------- dataset_source ---

def test_quick_mode_generates_once_and_reuses(tmp_path, monkeypatch):
    monkeypatch.setenv("ALEXNET_NB_QUICK", "1")
    path = data.dataset_source(tmp_path)
    stamp = (path / "wnids.txt").stat().st_mtime_ns
    assert data.dataset_source(tmp_path) == path and (path / "wnids.txt").stat().st_mtime_ns == stamp
    train = data.load_split(path, "train", progress=False)
    assert len(train.classes) == data.QUICK["num_classes"]


def test_full_mode_prefers_folder_then_zip_then_download(tmp_path, monkeypatch):
    monkeypatch.delenv("ALEXNET_NB_QUICK", raising=False)
    calls = []
    monkeypatch.setattr(download, "fetch", lambda *a, **k: calls.append((a, k)) or Path("fetched"))
    monkeypatch.setenv("ALEXNET_NB_DRIVE_ID", "drive-id-123")
    assert data.dataset_source(tmp_path) == Path("fetched")
    assert calls[0][1]["drive_id"] == "drive-id-123"
    (tmp_path / download.FILENAME).write_bytes(b"zip")
    assert data.dataset_source(tmp_path) == tmp_path / download.FILENAME
    synthetic.make_tiny_imagenet(tmp_path, **SMALL)
    assert data.dataset_source(tmp_path) == tmp_path / "tiny-imagenet-200"
    assert len(calls) == 1


def test_bench_data_times_decode_and_reload(small, capsys):
    results = bench.main(["data", "--source", str(small)])
    assert results["train"]["images"] == 9 and results["val"]["images"] == 6
    assert "reload from cache" in capsys.readouterr().out


def test_stale_temp_file_of_a_killed_writer_is_removed(small, tmp_path):
    data.load_split(small, "val", cache_dir=tmp_path, progress=False)
    (cache_file,) = tmp_path.glob("*.cache")
    old = tmp_path / f".{cache_file.name}.abc123.tmp"
    fresh = tmp_path / f".{cache_file.name}.def456.tmp"  # maybe another process writing right now
    for f in (old, fresh):
        f.write_bytes(b"half")
    os.utime(old, (time.time() - 7200,) * 2)
    cache_file.unlink()
    data.load_split(small, "val", cache_dir=tmp_path, progress=False)
    assert not old.exists() and fresh.exists()
