"""Writing files so that a killed process never leaves a torn one, or litter.

Every large file the suite writes (a 460 MB checkpoint, a 1.2 GB decoded
cache) goes to a temporary file beside its target, named after the writing
process (``.checkpoint.pt.<pid>.tmp``), and is renamed over the target when
complete: readers see the old file or the new one, never half of one. A
process killed mid-write leaves its temporary file behind; the next writer
removes those whose process is gone.
"""

import os
import socket
from pathlib import Path


def temp_path(path) -> Path:
    """The temporary file this process writes before renaming it to ``path``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (signal 0 checks without sending)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, it is just not ours
        return True
    return True


def remove_stale_temps(path) -> list:
    """Delete the temporary files of ``path`` left by writers that no longer run; return what was removed.

    Only files named ``.<name>.<pid>.tmp`` whose process is gone are touched: a
    writer still at work keeps its file.
    """
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:-len(".tmp")]
        if pid.isdigit() and not pid_alive(int(pid)):
            try:
                tmp.unlink()
                removed.append(tmp)
            except OSError:
                pass
    return removed


def atomic_write(path, write) -> Path:
    """``write(tmp)`` a temporary file beside ``path``, then rename it over ``path``.

    A disconnect mid-write leaves the previous file whole, never a torn one;
    stale temporary files of killed writers are removed first.
    """
    path = Path(path)
    remove_stale_temps(path)
    tmp = temp_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def host() -> str:
    return socket.gethostname()
