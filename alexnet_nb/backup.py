"""A copy of the run that outlives the machine (Google Drive in Colab), written within a stated size.

In Colab the VM and its disk go with a disconnect. Writing the run folder
itself on Drive keeps it, but rewrites a 466 MB checkpoint every epoch into a
15 GB free Drive (14 GB over 30 epochs, and a replaced file may linger in
Drive's trash). So the run folder stays on the VM's disk, where the checkpoint
is written every epoch, and ``backup_dir`` gets a copy: the history, summary
and config after every epoch (kilobytes), the checkpoint every
``backup_every`` epochs and at every stop and at the end. Over 30 epochs at
the default 5 that is 6 checkpoint copies, 2.8 GB. A run resumed on a new VM,
whose own folder is gone, starts from the copy: it loses at most the epochs
since the last copy, and ends with the weights of a run never interrupted.
"""

import shutil
from pathlib import Path

from alexnet_nb import checkpoint, files

SMALL = ("history.csv", "summary.json", "config.json")


def restore(run_dir, backup_dir, say=print) -> bool:
    """Before a resumed run reads its checkpoint: when ``run_dir`` has none and ``backup_dir`` has one (a new
    VM, the old disk gone), copy the backup into ``run_dir``; True when it did."""
    if not backup_dir:
        return False
    run_dir, backup_dir = Path(run_dir), Path(backup_dir)
    if (run_dir / checkpoint.NAME).exists() or not (backup_dir / checkpoint.NAME).exists():
        return False
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in (checkpoint.NAME, *SMALL):
        if (backup_dir / name).exists():
            files.atomic_write(run_dir / name, lambda tmp, n=name: shutil.copyfile(backup_dir / n, tmp))
    say(f"{run_dir.name}: no checkpoint here; resuming from the copy in {backup_dir} (this machine is new, "
        "or its disk was wiped)")
    return True


def copy(run_dir, backup_dir, with_checkpoint) -> int:
    """Copy the run's small files, and its checkpoint when ``with_checkpoint``, into ``backup_dir`` (each file
    whole or not at all); returns the bytes written."""
    if not backup_dir:
        return 0
    run_dir, backup_dir = Path(run_dir), Path(backup_dir)
    try:
        backup_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise files.write_error(e, backup_dir / checkpoint.NAME, " Or train without the copy (USE_DRIVE off).")
    written = 0
    for name in (*SMALL, *((checkpoint.NAME,) if with_checkpoint else ())):
        if (run_dir / name).exists():
            files.atomic_write(backup_dir / name, lambda tmp, n=name: shutil.copyfile(run_dir / n, tmp),
                               " The run itself goes on; its folder on this machine is whole.")
            written += (run_dir / name).stat().st_size
    return written


def due(epochs_done, every, last, stopped) -> bool:
    """Whether this epoch's checkpoint goes to the backup too."""
    return last or stopped or epochs_done % every == 0
