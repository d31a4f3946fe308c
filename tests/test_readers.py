"""Every bad input names the file and the fix, on one line; odd but valid text files load."""

import shutil
import zipfile

import pytest
import torch

from alexnet_nb import data, download, readers, synthetic

SMALL = dict(num_classes=3, train_per_class=3, val_per_class=2, grayscale=1)


@pytest.fixture(autouse=True)
def data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("ALEXNET_NB_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("ALEXNET_NB_CACHE", raising=False)


@pytest.fixture
def small(tmp_path):
    """A fresh tiny copy that a test may damage."""
    return synthetic.make_tiny_imagenet(tmp_path / "src", **SMALL)


def _error(source, split="train", **kwargs) -> str:
    """The DatasetError message of loading ``source``, checked to be one line (the CLI prints one)."""
    with pytest.raises(data.DatasetError) as err:
        data.load_split(source, split, cache=False, progress=False, **kwargs)
    message = str(err.value)
    assert "\n" not in message and message == message.strip()
    return message


def _garble_member(zip_path, member: str) -> None:
    """Make a member's deflate stream start with an invalid block type: zlib refuses it."""
    with zipfile.ZipFile(zip_path) as zf:
        info = zf.getinfo(member)
    assert info.compress_type == zipfile.ZIP_DEFLATED
    blob = bytearray(zip_path.read_bytes())
    blob[info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)] = 0xFF  # BFINAL=1, BTYPE=11
    zip_path.write_bytes(bytes(blob))


# -------------------------------------------------------------- bad inputs ---

def test_missing_path_suggests_the_close_match(small):
    message = _error(small.parent / "tiny-imagnet-200")
    assert f"Did you mean {small}?" in message


def test_folder_that_is_not_tiny_imagenet(tmp_path):
    (tmp_path / "photos").mkdir()
    assert "not a Tiny ImageNet folder" in _error(tmp_path / "photos")


def test_missing_wnids_txt(small):
    (small / "wnids.txt").unlink()
    assert "no wnids.txt" in _error(small)


def test_missing_val_annotations(small):
    (small / "val/val_annotations.txt").unlink()
    assert f"missing {small / 'val/val_annotations.txt'}" in _error(small, "val")


def test_annotation_naming_an_unknown_class(small):
    ann = small / "val/val_annotations.txt"
    lines = ann.read_text().splitlines(keepends=True)
    lines[3] = "val_3.JPEG\tn99999999\t0\t0\t63\t63\n"
    ann.write_text("".join(lines))
    assert "line 4 names class 'n99999999', which is not in wnids.txt" in _error(small, "val")


def test_annotated_image_that_is_missing(small):
    (small / "val/images/val_2.JPEG").unlink()
    assert f"missing {small / 'val/images/val_2.JPEG'}" in _error(small, "val")


def test_class_folder_missing(small):
    wnid = (small / "wnids.txt").read_text().split()[1]
    shutil.rmtree(small / "train" / wnid)
    assert f"no training images for class {wnid}" in _error(small)


@pytest.mark.parametrize("as_zip", [False, True])
def test_corrupt_jpeg_error_names_the_file(tmp_path, as_zip):
    src = synthetic.make_tiny_imagenet(tmp_path, **SMALL, corrupt=True, as_zip=as_zip)
    bad = synthetic.corrupt_file(SMALL["num_classes"])
    message = _error(src, cache_dir=tmp_path / "cache")
    assert message.startswith("cannot decode ") and bad in message and "corrupt or truncated" in message
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())  # nothing cached
    assert len(data.load_split(src, "val", cache=False)) == 6  # the val split is intact


def test_image_of_the_wrong_size_is_named(small):
    from torchvision.io import encode_jpeg

    small_image = encode_jpeg(torch.zeros(3, 32, 48, dtype=torch.uint8)).numpy().tobytes()
    (small / "val/images/val_0.JPEG").write_bytes(small_image)
    assert "val_0.JPEG is 48x32, expected 64x64" in _error(small, "val")


def test_zip_that_is_not_tiny_imagenet(tmp_path):
    z = tmp_path / "other.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("readme.txt", "hello")
    message = _error(z)
    assert f"{z} is a zip but not Tiny ImageNet" in message and "Delete or replace it" in message


def test_unknown_split_name(small):
    with pytest.raises(ValueError, match="'train' or 'val'"):
        data.load_split(small, "test", cache=False)


# ------------------------------------------- issue 12: files nobody could read ---

@pytest.mark.parametrize("member", ["val/images/val_1.JPEG", "val/val_annotations.txt"])
def test_corrupt_zip_member_is_named_with_the_zip_and_the_fix(tmp_path, member):
    z = synthetic.make_tiny_imagenet(tmp_path, **SMALL, as_zip=True)
    _garble_member(z, f"tiny-imagenet-200/{member}")
    message = _error(z, "val")  # was a raw zlib.error
    assert f"cannot read member tiny-imagenet-200/{member} of {z}: the zip is corrupt" in message
    assert "Error -3" in message and "Delete the zip and download it again" in message


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_empty_or_truncated_zip_says_delete_or_redownload_with_its_full_path(tmp_path, monkeypatch, damage):
    z = synthetic.make_tiny_imagenet(tmp_path / "data", **SMALL, as_zip=True)
    z.write_bytes(b"" if damage == "empty" else z.read_bytes()[: z.stat().st_size // 2])
    monkeypatch.chdir(tmp_path)
    message = _error(f"data/{download.FILENAME}")  # a relative path in, the full path out
    assert f"{tmp_path}/data/{download.FILENAME} is not a readable zip archive" in message
    assert "truncated or corrupt" in message and "Delete it" in message and "complete download" in message
    assert ("it is empty (0 bytes)" in message) == (damage == "empty")


def test_byte_order_marks_in_the_text_files_are_not_part_of_the_data(small):
    for rel in ("wnids.txt", "words.txt", "val/val_annotations.txt"):
        path = small / rel
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # what Notepad writes for "UTF-8 with BOM"
    wnids = (small / "wnids.txt").read_text(encoding="utf-8-sig").split()
    train = data.load_split(small, "train", cache=False, progress=False)  # was: no training images for class \ufeffn...
    val = data.load_split(small, "val", cache=False, progress=False)
    assert train.classes == wnids and val.classes == wnids and len(val) == 6
    names = dict(line.split("\t") for line in (small / "words.txt").read_text(encoding="utf-8-sig").splitlines())
    assert train.names == [names[w] for w in wnids]
    first = (small / "val/val_annotations.txt").read_text(encoding="utf-8-sig").split("\t")[1]
    assert val.classes[val.labels[0]] == first  # the first annotation line parsed, not glued to the BOM


def test_dataset_one_folder_down_is_found_by_any_name(tmp_path):
    copy = tmp_path / "unzipped" / "Tiny ImageNet copy"
    copy.parent.mkdir()
    synthetic.make_tiny_imagenet(tmp_path, **SMALL).rename(copy)
    assert readers.locate(tmp_path / "unzipped") == copy
    assert len(data.load_split(tmp_path / "unzipped", "val", cache=False)) == 6


def test_errors_quoting_library_messages_are_one_line():
    assert str(data.DatasetError("cannot decode x (libjpeg said:\n  Premature end\r\nof data)")) == \
        "cannot decode x (libjpeg said: Premature end of data)"
    assert str(download.DownloadError("Failed to retrieve file url:\n\n\tCannot retrieve the link\n")) == \
        "Failed to retrieve file url: Cannot retrieve the link"


@pytest.mark.parametrize("suffix", ["tar.gz", "tar"])
def test_a_tar_archive_is_named_as_the_wrong_format_not_as_corrupt(small, tmp_path, suffix):
    import tarfile

    archive = tmp_path / f"tiny-imagenet-200.{suffix}"
    with tarfile.open(archive, "w:gz" if suffix == "tar.gz" else "w") as tar:
        tar.add(small, arcname=readers.ROOT_NAME)
    message = _error(archive)
    assert str(archive) in message and "tar" in message and "a .zip or an extracted folder" in message
    assert f"tar xf {archive}" in message  # how to make it one
    assert "corrupt" not in message and "Delete" not in message and "delete" not in message
