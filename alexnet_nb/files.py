"""Writing files so that a killed process never leaves a torn one, or litter.

Every large file the suite writes (a 460 MB checkpoint, a 1.2 GB decoded
cache) goes to a temporary file beside its target, named after the writing
process (``.checkpoint.pt.<pid>.tmp``), and is renamed over the target when
complete: readers see the old file or the new one, never half of one. A
process killed mid-write leaves its temporary file behind; the next writer
removes those whose process is gone.

A write the disk refuses (full, read-only, not ours) raises :class:`WriteError`,
one line naming the folder and what to do, instead of the OS's bare errno.
"""

import errno
import os
import socket
from pathlib import Path


class WriteError(OSError):
    """A file could not be written where it must be; the message names the folder and what to do.

    An OSError still, so callers that shrug off a failed optional write (the decoded cache) keep doing so.
    """

    def __str__(self):
        return self.strerror


# What to do about each refusal; any other OSError is left as it is (it is not about the place).
_REFUSALS = {
    errno.ENOSPC: ("no space left on the disk of {folder}", "free some space there (old runs, the Drive trash)"),
    errno.EDQUOT: ("the disk quota of {folder} is used up", "free some space there (old runs, the Drive trash)"),
    errno.EROFS: ("{folder} is on a read-only file system", "choose a writable folder"),
    errno.EACCES: ("permission denied in {folder}", "choose a folder you may write"),
    errno.EPERM: ("permission denied in {folder}", "choose a folder you may write"),
}


def write_error(e: OSError, path, fix: str = "") -> OSError:
    """``e`` as a one-line :class:`WriteError` about ``path`` when the disk refused the write, else ``e``."""
    if e.errno not in _REFUSALS:
        return e
    path = Path(path)
    what, todo = _REFUSALS[e.errno]
    if fix and e.errno not in (errno.ENOSPC, errno.EDQUOT):  # the caller knows better where to write instead
        todo = ""
    todo = f" {todo[0].upper()}{todo[1:]}." if todo else ""
    return WriteError(e.errno, f"cannot write {path.name}: {what.format(folder=path.parent)}.{todo}{fix}")


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


def atomic_write(path, write, fix: str = "") -> Path:
    """``write(tmp)`` a temporary file beside ``path``, then rename it over ``path``.

    A disconnect mid-write leaves the previous file whole, never a torn one;
    stale temporary files of killed writers are removed first. A full or
    read-only disk raises :class:`WriteError`, its message ending with ``fix``.
    """
    path = Path(path)
    remove_stale_temps(path)
    tmp = temp_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise write_error(e, path, fix) from None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # a read-only folder never got it
            pass
    return path


def host() -> str:
    return socket.gethostname()
