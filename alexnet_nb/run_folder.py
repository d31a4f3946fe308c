"""The run folder: one run per folder, one writer at a time, nothing replaced unless asked.

A run folder (``runs/<name>/`` or ``--out-dir``) holds ``config.json``,
``history.csv`` and ``summary.json`` (rewritten every epoch) and
``checkpoint.pt``. Two guards keep it whole:

* a folder that holds a run is continued with ``--resume`` or replaced with
  ``--overwrite``, never silently restarted (the default name ``alexnet`` is
  shared by every plain run, so this is the common case, not a corner);
* a lock file (``.lock``, holding the writer's PID and host) keeps a second
  process out while one writes; a lock left by a process that died on this
  machine is taken over, one from another machine (a shared Drive folder)
  needs a person to remove it, and the message says how.
"""

import json
import os
import time
from pathlib import Path

from alexnet_nb import files

RUN_FILES = ("checkpoint.pt", "history.csv", "summary.json", "config.json")
LOCK = ".lock"


class RunFolderError(RuntimeError):
    """The run folder cannot be used as asked; the message says why and what to do."""


def holds_run(folder) -> bool:
    folder = Path(folder)
    return (folder / "checkpoint.pt").exists() or (folder / "history.csv").exists()


def _describe(folder: Path) -> str:
    try:
        summary = json.loads((folder / "summary.json").read_text())
        return f"{summary['epochs_done']} of {summary['epochs_planned']} epochs done"
    except (OSError, ValueError, KeyError):
        return "files " + ", ".join(n for n in RUN_FILES if (folder / n).exists())


def prepare(folder, resume: bool, overwrite: bool) -> None:
    """Refuse to start a new run over an existing one unless asked; with ``overwrite``, clear the old run."""
    folder = Path(folder)
    if not holds_run(folder) or resume:
        return
    if not overwrite:
        raise RunFolderError(
            f"{folder} already holds a run ({_describe(folder)}). Continue it with --resume, give this run "
            "another --name, or replace the old one with --overwrite.")
    for name in RUN_FILES:
        (folder / name).unlink(missing_ok=True)


class Lock:
    """``with Lock(folder):`` -- this process is the folder's only writer until the block ends."""

    def __init__(self, folder):
        self.path = Path(folder) / LOCK
        self.held = False

    def _holder(self):
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def acquire(self):
        me = {"pid": os.getpid(), "host": files.host(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder and holder.get("host") == me["host"] and not files.pid_alive(int(holder.get("pid", -1))):
                    self.path.unlink(missing_ok=True)  # its writer died on this machine: the lock is stale
                    continue
                who = (f"process {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"
                       if holder else "another process (the lock file is unreadable)")
                raise RunFolderError(
                    f"{self.path.parent} is in use by {who}: two runs must not write one folder. Wait for it, "
                    f"or use another --name. If no run is using it (a crashed session on another machine), "
                    f"delete {self.path}.") from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise RunFolderError(f"could not take the lock {self.path}; delete it if no run is using the folder.")

    def release(self):
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
