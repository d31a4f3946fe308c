"""The decoded cache: where it goes, when it is used, and that it is never torn or littered."""

import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from alexnet_nb import cache, data, env, synthetic

SMALL = dict(num_classes=3, train_per_class=3, val_per_class=2, grayscale=1)


pytestmark = pytest.mark.usefixtures("data_folder")  # tests/conftest.py: a data folder of their own


@pytest.fixture
def small(tmp_path):
    return synthetic.make_tiny_imagenet(tmp_path / "src", **SMALL)


def test_second_load_comes_from_the_cache_and_is_identical(small, tmp_path):
    first = data.load_split(small, "train", cache_dir=tmp_path / "c", progress=False)
    assert data.last_load["cache"] == "miss"
    again = data.load_split(small, "train", cache_dir=tmp_path / "c", progress=False)
    assert data.last_load["cache"] == "hit"
    assert torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels)
    assert first.classes == again.classes and first.names == again.names


def test_default_cache_goes_to_the_data_folder_not_beside_the_source(tmp_path, data_folder):
    # The source on a "Drive", reached through a link as /content/drive often is.
    drive = tmp_path / "drive"
    source = synthetic.make_tiny_imagenet(drive / "MyDrive", **SMALL, as_zip=True)
    (tmp_path / "link").symlink_to(drive / "MyDrive")
    before = sorted(drive.rglob("*"))
    data.load_split(tmp_path / "link" / source.name, "val", progress=False)
    assert data.default_cache_dir() == env.cache_dir() == data_folder / "cache"
    assert len(list((data_folder / "cache").glob("tiny-imagenet-200.zip-val-*.cache"))) == 1
    assert sorted(drive.rglob("*")) == before  # nothing written onto Drive


def test_alexnet_nb_cache_moves_the_cache(small, tmp_path, monkeypatch, data_folder):
    monkeypatch.setenv("ALEXNET_NB_CACHE", str(tmp_path / "elsewhere"))
    data.load_split(small, "val", progress=False)
    assert len(list((tmp_path / "elsewhere").glob("*val*.cache"))) == 1 and not data_folder.exists()


def test_each_copy_of_the_dataset_has_its_own_cache_file(small, tmp_path):
    other = shutil.copytree(small, tmp_path / "other" / "tiny-imagenet-200")
    data.load_split(small, "val", progress=False)
    data.load_split(other, "val", progress=False)
    assert data.last_load["cache"] == "miss" and len(list(env.cache_dir().glob("*val*.cache"))) == 2
    data.load_split(small.parent, "val", progress=False)  # the parent folder means the same copy
    assert data.last_load["cache"] == "hit"


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

    monkeypatch.setattr(cache.os, "fsync", boom)
    with pytest.warns(UserWarning, match="could not write the decoded cache.*ALEXNET_NB_CACHE"):
        split = data.load_split(small, "val", cache_dir=tmp_path / "c", progress=False)
    assert len(split) == 6 and list((tmp_path / "c").iterdir()) == []


def test_killed_writer_leaves_a_pid_named_temp_file_that_the_next_start_removes(small, tmp_path):
    # A real process, killed (SIGKILL: no cleanup runs) just before its cache file is renamed into place.
    child = textwrap.dedent(f"""
        import os, signal
        from alexnet_nb import cache, data
        cache.os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)
        data.load_split({str(small)!r}, "val", cache_dir={str(tmp_path / "c")!r}, progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", child])
    assert proc.wait(timeout=120) == -9
    (left,) = (tmp_path / "c").iterdir()
    assert left.name.endswith(f".{proc.pid}.tmp") and left.stat().st_size > 6 * 3 * 64 * 64
    alive = left.with_name(left.name.replace(str(proc.pid), str(os.getppid())))  # a writer still at work
    alive.write_bytes(b"half")
    data.load_split(small, "val", cache_dir=tmp_path / "c", progress=False)
    assert data.last_load["cache"] == "miss" and not left.exists() and alive.exists()
    left.write_bytes(b"half")  # killed again; the next start finds the cache whole and still sweeps
    data.load_split(small, "val", cache_dir=tmp_path / "c", progress=False)
    assert data.last_load["cache"] == "hit" and not left.exists()
