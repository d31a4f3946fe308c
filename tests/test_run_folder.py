"""Nothing overwritten, nothing relabelled: the run folder's guards and damaged checkpoints (issue 12)."""

import errno
import fractions
import json
import os
import shutil
import subprocess
import sys
import time
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


def _lock_file(folder, **holder):
    (folder / run_folder.LOCK).write_text(json.dumps({"pid": 4242, "host": "colab-vm-7", "since": "today", **holder}))


def test_a_lock_no_longer_refreshed_is_taken_over_and_a_fresh_one_is_refused(tmp_path, capsys):
    # A Colab VM recycled under a run on Drive leaves its lock behind: --resume must not need a person to delete it.
    stale = time.time() - run_folder.STALE_AFTER_S - 120
    _lock_file(tmp_path, beat=stale)
    lock = run_folder.Lock(tmp_path).acquire()
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "process 4242 on colab-vm-7" in out and "took over" in out
    assert f"{int((run_folder.STALE_AFTER_S + 120) // 60)} min" in out  # its age
    assert json.loads((tmp_path / run_folder.LOCK).read_text())["host"] == files.host()
    lock.release()
    assert not (tmp_path / run_folder.LOCK).exists()

    _lock_file(tmp_path, beat=time.time() - 10)  # refreshed 10 s ago: that run is alive
    with pytest.raises(run_folder.RunFolderError, match=r"in use by process 4242 on colab-vm-7"):
        run_folder.Lock(tmp_path).acquire()
    # A lock written before heartbeats (no "beat"): its file's age decides.
    _lock_file(tmp_path)
    os.utime(tmp_path / run_folder.LOCK, (stale, stale))
    run_folder.Lock(tmp_path).acquire().release()
    assert "took over" in capsys.readouterr().out


def test_a_live_run_refreshes_its_lock_and_a_live_process_here_is_refused_however_old(tmp_path, monkeypatch):
    monkeypatch.setattr(run_folder, "HEARTBEAT_S", 0.05)
    lock = run_folder.Lock(tmp_path).acquire()
    first = json.loads((tmp_path / run_folder.LOCK).read_text())["beat"]
    deadline = time.time() + 10
    while json.loads((tmp_path / run_folder.LOCK).read_text())["beat"] == first and time.time() < deadline:
        time.sleep(0.05)
    assert json.loads((tmp_path / run_folder.LOCK).read_text())["beat"] > first
    lock.release()
    assert not (tmp_path / run_folder.LOCK).exists()
    # Same machine, process alive: refused whatever the heartbeat says (its pid is the proof).
    _lock_file(tmp_path, pid=os.getppid(), host=files.host(), beat=time.time() - 10 * run_folder.STALE_AFTER_S)
    with pytest.raises(run_folder.RunFolderError, match=f"process {os.getppid()}"):
        run_folder.Lock(tmp_path).acquire()


def _cli_error(argv, capsys):
    with pytest.raises(SystemExit) as e:
        train.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_a_full_disk_while_checkpointing_says_so_in_one_line_and_keeps_the_old_checkpoint(source, tmp_path,
                                                                                           monkeypatch, capsys):
    flags = ["--quick", "--source", source, "--classes", "none", "--holdout-per-class", "1", "--max-train-images",
             "2", "--batch-size", "2", "--epochs", "1", "--no-progress", "--out-dir", str(tmp_path / "run")]
    train.main(flags)
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    capsys.readouterr()

    def full(obj, f, *a, **k):  # what a full disk does: part of the file is written, then the write fails
        f.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full)
    err = _cli_error(flags[:-3] + ["--epochs", "2", "--resume", "--out-dir", str(tmp_path / "run")], capsys)
    assert "no space left" in err.lower() and str(tmp_path / "run") in err and "--resume" in err
    assert "checkpoint.pt" in err and "intact" in err
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before
    assert not list((tmp_path / "run").glob(".*.tmp"))


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_a_read_only_run_folder_says_so_in_one_line(source, tmp_path, monkeypatch, capsys, code):
    # The tests run as root, where chmod cannot make a folder read-only: the refusal is what the OS would say.
    folder = tmp_path / "run"
    folder.mkdir()
    real_open = os.open

    def refuse(path, flags, *a, **k):
        if str(path).startswith(str(folder)) and flags & os.O_CREAT:
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(os, "open", refuse)
    err = _cli_error(["--quick", "--source", source, "--out-dir", str(folder)], capsys)
    assert str(folder) in err and "--out-dir" in err and ("read-only" in err or "permission" in err.lower())


def test_a_file_the_safe_loader_refuses_is_not_called_damaged(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": {}, "config": fractions.Fraction(1, 3), "epoch": 1, "history": {}}, path)  # a foreign object
    with pytest.raises(checkpoint.CheckpointError) as e:
        checkpoint.read(path)
    message = str(e.value)
    assert str(path) in message and "not a checkpoint of this project" in message and "refused" in message
    assert "damaged" not in message and "weights_only" not in message and "\n" not in message
