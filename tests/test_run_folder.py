"""Nothing overwritten, nothing relabelled: the run folder's guards and damaged checkpoints (issue 12)."""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from alexnet_nb import checkpoint, config, files, run_folder, synthetic, train


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return str(synthetic.make_tiny_imagenet(root, num_classes=2, train_per_class=4, val_per_class=2))


def tiny(source, out_dir, **kw):
    return config.Config.quick(**{**dict(source=source, out_dir=str(out_dir), classes=None, holdout_per_class=1,
                                         max_train_images=2, batch_size=2, epochs=1, progress=False), **kw})


def test_a_run_is_never_replaced_without_being_asked(source, tmp_path):
    cfg = tiny(source, tmp_path / "run")
    train.fit(cfg)
    first = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]
    with pytest.raises(run_folder.RunFolderError, match=r"already holds a run \(1 of 1 epochs.*--resume.*--overwrite"):
        train.fit(replace(cfg, seed=1))
    assert torch.equal(torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]["features.conv1.weight"],
                       first["features.conv1.weight"])  # untouched
    train.fit(replace(cfg, seed=1, overwrite=True))
    assert json.loads((tmp_path / "run" / "config.json").read_text())["seed"] == 1


def test_the_cli_refuses_in_one_line(source, tmp_path):
    train.fit(tiny(source, tmp_path / "cli"))
    flags = ["--quick", "--source", source, "--classes", "none", "--holdout-per-class", "1", "--max-train-images",
             "2", "--batch-size", "2", "--epochs", "1", "--no-progress", "--out-dir", str(tmp_path / "cli")]
    again = subprocess.run([sys.executable, "-m", "alexnet_nb.train", *flags], capture_output=True, text=True,
                           timeout=180)
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "--overwrite" in again.stderr


def test_two_processes_never_write_one_folder(source, tmp_path):
    folder = tmp_path / "busy"
    folder.mkdir()
    # A live writer on another machine (a shared Drive folder): refused, naming it and how to clear the lock.
    (folder / run_folder.LOCK).write_text(json.dumps({"pid": 4242, "host": "colab-vm-7", "since": "today"}))
    with pytest.raises(run_folder.RunFolderError, match=r"in use by process 4242 on colab-vm-7.*delete .*\.lock"):
        train.fit(tiny(source, folder))
    # A live writer on this machine: refused too.
    (folder / run_folder.LOCK).write_text(json.dumps({"pid": os.getppid(), "host": files.host(), "since": "now"}))
    with pytest.raises(run_folder.RunFolderError, match=f"process {os.getppid()}"):
        train.fit(tiny(source, folder))
    # A writer that died on this machine left a stale lock: taken over.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (folder / run_folder.LOCK).write_text(json.dumps({"pid": int(dead.stdout), "host": files.host(), "since": "x"}))
    train.fit(tiny(source, folder))
    assert not (folder / run_folder.LOCK).exists()


def test_resuming_on_another_class_order_is_refused(source, tmp_path):
    cfg = tiny(source, tmp_path / "run")
    train.fit(cfg)
    other = tmp_path / "copy" / "tiny-imagenet-200"
    shutil.copytree(source, other)
    wnids = (other / "wnids.txt").read_text().split()
    (other / "wnids.txt").write_text("\n".join(reversed(wnids)) + "\n")  # a re-packed copy, another order
    with pytest.raises(checkpoint.CheckpointError, match=f"label 0 is {wnids[0]} in the checkpoint but {wnids[-1]}"):
        train.fit(replace(cfg, source=str(other), resume=True, epochs=2))


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_a_damaged_checkpoint_is_named_with_what_to_do(source, tmp_path, damage):
    cfg = tiny(source, tmp_path / "run")
    train.fit(cfg)
    path = tmp_path / "run" / "checkpoint.pt"
    raw = path.read_bytes()
    path.write_bytes(b"" if damage == "empty" else raw[: len(raw) // 2])
    with pytest.raises(checkpoint.CheckpointError) as e:
        train.fit(replace(cfg, resume=True, epochs=2))
    message = str(e.value)
    assert str(path) in message and "damaged" in message and "--overwrite" in message
    assert "no other checkpoint" in message and "\n" not in message
    with pytest.raises(checkpoint.CheckpointError, match="damaged"):
        checkpoint.load_checkpoint(tmp_path / "run", device="cpu")


def test_stale_temporary_files_of_killed_writes_are_removed(source, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = folder / f".checkpoint.pt.{int(dead.stdout)}.tmp"
    stale.write_bytes(b"half a checkpoint")
    live = folder / f".checkpoint.pt.{os.getppid()}.tmp"  # a writer still at work keeps its file
    live.write_bytes(b"in progress")
    train.fit(tiny(source, folder))
    assert not stale.exists() and live.exists()
