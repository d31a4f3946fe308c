"""Google Drive in Colab: where a run outlives the VM, and where chapter 4 finds it again.

Drive is mounted only in Colab (``google.colab`` asks for permission once per
runtime). Chapter 3 keeps a copy of its run in ``MyDrive/alexnet-nb/runs/<name>``
(``alexnet_nb.backup``: the checkpoint every few epochs, not every epoch);
chapter 4 looks for a run there by name. Elsewhere both are no-ops: a run
lives in the runs folder.
"""

from pathlib import Path

from alexnet_nb import env
from alexnet_nb.sources import DRIVE_MOUNT

RUNS = DRIVE_MOUNT / "MyDrive" / "alexnet-nb" / "runs"


def mount() -> Path:
    """Mount Google Drive (Colab only) and return ``RUNS``."""
    if not env.in_colab():
        raise RuntimeError("Google Drive can be mounted only in Colab; on this machine runs live in the runs "
                           "folder (ALEXNET_NB_RUNS, default runs/), so leave USE_DRIVE off.")
    if not (DRIVE_MOUNT / "MyDrive").is_dir():
        from google.colab import drive

        drive.mount(str(DRIVE_MOUNT))
    return RUNS


def mount_if(wanted: bool) -> bool:
    """Mount Drive when ``wanted`` and in Colab (the chapters' ``USE_DRIVE``, on by default); True if mounted."""
    if wanted and env.in_colab():
        mount()
        return True
    return False


def backup_dir(name: str, wanted: bool) -> str | None:
    """Where chapter 3 keeps the copy of its run ``name``: on Drive in Colab when ``wanted``, else nowhere."""
    return str(RUNS / name) if mount_if(wanted) else None
