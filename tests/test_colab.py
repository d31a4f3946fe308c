"""The Colab path without Colab (issue 27, items 7, 8, 10): a stand-in ``google.colab`` whose Drive is a folder
here; a run whose VM is recycled mid-run resumes on the next VM from its copy on Drive, exactly."""

import shutil
import sys
import types
from pathlib import Path

import pytest
import torch

from alexnet_nb import backup, checkpoint, config, drive, env, files, synthetic, train


class Recycled(RuntimeError):
    """The VM went away (a Colab disconnect): nothing after this ran, nothing was cleaned up."""


@pytest.fixture
def colab(tmp_path, monkeypatch):
    """``google.colab`` as in Colab; ``drive.mount`` links the mount point's MyDrive to a folder that outlives VMs."""
    cloud = tmp_path / "google-drive"
    cloud.mkdir()
    mount_point = tmp_path / "content" / "drive"

    def mount(path):
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "MyDrive").symlink_to(cloud)

    google, colab_module = types.ModuleType("google"), types.ModuleType("google.colab")
    colab_module.drive = types.SimpleNamespace(mount=mount)
    google.colab = colab_module
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab_module)
    monkeypatch.setattr(drive, "DRIVE_MOUNT", mount_point)
    monkeypatch.setattr(drive, "RUNS", mount_point / "MyDrive" / "alexnet-nb" / "runs")
    return cloud, mount_point


def new_vm(tmp_path, monkeypatch, name, mount_point):
    """A fresh VM: its own host name and local disk, Drive not mounted yet."""
    monkeypatch.setattr(files, "host", lambda: name)
    disk = tmp_path / name
    monkeypatch.setenv("ALEXNET_NB_RUNS", str(disk / "runs"))
    shutil.rmtree(mount_point, ignore_errors=True)
    return disk


def chapter3_config(source):
    """What chapter 3's cell builds in quick mode, with USE_DRIVE on (its default)."""
    cfg = config.recipe("paper", quick=True, name="03_paper", epochs=4, backup_every=2, deterministic=True,
                        progress=False, holdout_per_class=1, max_train_images=2, batch_size=2, classes=None,
                        max_eval_images=None)
    cfg.source = source
    cfg.resume = True
    cfg.backup_dir = drive.backup_dir(cfg.name, True)
    return cfg


def test_a_recycled_vm_resumes_from_drive_and_ends_with_the_weights_of_an_uninterrupted_run(
        tmp_path, monkeypatch, colab, capsys):
    cloud, mount_point = colab
    source = str(synthetic.make_tiny_imagenet(tmp_path / "data", num_classes=2, train_per_class=4, val_per_class=2))
    assert env.in_colab()
    copies = []
    original_copy = backup.copy
    monkeypatch.setattr(backup, "copy", lambda run, dest, with_checkpoint: copies.append(with_checkpoint)
                        or original_copy(run, dest, with_checkpoint))

    first = new_vm(tmp_path, monkeypatch, "vm-1", mount_point)
    cfg = chapter3_config(source)
    assert Path(cfg.backup_dir) == drive.RUNS / "03_paper" and not str(cfg.backup_dir).startswith(str(first))

    def disconnect_after_epoch_3(history):
        if len(history) == 3:
            raise Recycled

    with pytest.raises(Recycled):
        train.fit(cfg, callback=disconnect_after_epoch_3)
    # Drive: the small files every epoch, the checkpoint at epoch 2 only (every 2 epochs), not 3.
    assert copies == [False, True, False]
    saved = cloud / "alexnet-nb" / "runs" / "03_paper"
    assert torch.load(saved / checkpoint.NAME, weights_only=True)["epoch"] == 2
    (first / "runs" / "03_paper" / ".lock").write_text('{"pid": 1, "host": "vm-1"}')  # as a killed VM leaves it

    second = new_vm(tmp_path, monkeypatch, "vm-2", mount_point)
    shutil.rmtree(first)  # the old VM's disk is gone with it
    copies.clear()
    capsys.readouterr()
    history = train.fit(chapter3_config(source))
    said = capsys.readouterr().out
    assert "resuming from the copy in" in said and "Resuming 03_paper after epoch 2" in said
    assert len(history) == 4 and copies == [False, True]  # epoch 3: small files; epoch 4, the last: all
    assert "copied " in said and "MB into" in said

    straight = config.recipe("paper", quick=True, name="straight", epochs=4, deterministic=True, progress=False,
                             holdout_per_class=1, max_train_images=2, batch_size=2, classes=None,
                             max_eval_images=None, source=source, out_dir=str(tmp_path / "straight"))
    train.fit(straight)
    resumed = torch.load(second / "runs" / "03_paper" / checkpoint.NAME, weights_only=True)["model"]
    uninterrupted = torch.load(tmp_path / "straight" / checkpoint.NAME, weights_only=True)["model"]
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)
    # The copy on Drive is the finished run too: chapter 4 on yet another VM finds it by name.
    assert torch.load(saved / checkpoint.NAME, weights_only=True)["epoch"] == 4


def test_off_colab_use_drive_does_nothing_and_the_run_is_not_copied():
    assert not env.in_colab()
    assert drive.backup_dir("03_paper", True) is None and not drive.mount_if(True)


def test_a_backup_is_due_every_few_epochs_at_a_stop_and_at_the_end():
    # 30 epochs, every 5: 6 copies of the checkpoint (2.8 GB of 466 MB ones), not 30 (14 GB).
    assert sum(backup.due(e, 5, e == 30, False) for e in range(1, 31)) == 6
    assert backup.due(7, 5, False, True) and not backup.due(7, 5, False, False)
