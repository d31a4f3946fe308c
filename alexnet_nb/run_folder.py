"""The run folder: one run per folder, one writer at a time, nothing replaced unless asked.

A run folder (``runs/<name>/`` or ``--out-dir``) holds ``config.json``,
``history.csv`` and ``summary.json`` (rewritten every epoch) and
``checkpoint.pt``. Two guards keep it whole:

* a folder that holds a run is continued with ``--resume`` or replaced with
  ``--overwrite``, never silently restarted (the default name ``alexnet`` is
  shared by every plain run, so this is the common case, not a corner);
* a lock file (``.lock``, holding the writer's PID and host) keeps a second
  process out while one writes. A lock left by a process that died on this
  machine is taken over. One from another machine (a shared Drive folder)
  cannot be checked by its PID, so a live writer refreshes its lock every
  ``HEARTBEAT_S`` (a "beat" time in it); one not refreshed for ``STALE_AFTER_S``
  belonged to a session that is gone (a recycled Colab VM) and is taken over,
  with a line saying whose it was, so ``--resume`` after a disconnect just works.
"""

import json
import os
import threading
import time
from pathlib import Path

from alexnet_nb import files

RUN_FILES = ("checkpoint.pt", "history.csv", "summary.json", "config.json")
LOCK = ".lock"
HEARTBEAT_S = 30.0  # how often a live run rewrites its lock
# A lock older than this is a dead session's: ten missed heartbeats, far more than a slow Drive sync delays one.
STALE_AFTER_S = 300.0
# Where the run folder cannot be written: what to do instead.
WRITABLE = (" Pass --out-dir a writable folder (to continue a run kept here, copy its folder there and "
            "--resume).")


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
    """``with Lock(folder):`` -- this process is the folder's only writer until the block ends.

    While held, a daemon thread rewrites the lock every ``HEARTBEAT_S`` with the time (``beat``): what tells
    another machine that the run is alive. It stops beating if the lock is no longer ours (taken over).
    """

    def __init__(self, folder):
        self.path = Path(folder) / LOCK
        self.held = False
        self.me, self._stop, self._beater = None, threading.Event(), None

    def _holder(self):
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def _age(self, holder):
        """Seconds since the holder last refreshed the lock (its file's age for a lock without beats)."""
        try:
            beat = float(holder["beat"]) if "beat" in holder else self.path.stat().st_mtime
        except (OSError, TypeError, ValueError):
            return 0.0
        return time.time() - beat

    def _stale(self, holder) -> str | None:
        """Why the holder's lock can be taken over, or None when its run may be alive."""
        if not holder:
            return None
        if holder.get("host") == self.me["host"]:  # the PID tells for sure, whatever the age
            return None if files.pid_alive(int(holder.get("pid", -1))) else "its process has ended"
        age = self._age(holder)
        return f"not refreshed for {int(age // 60)} min" if age > STALE_AFTER_S else None

    def _write(self):
        self.me["beat"] = time.time()
        files.atomic_write(self.path, lambda tmp: tmp.write_text(json.dumps(self.me)))

    def _beat(self):
        while not self._stop.wait(HEARTBEAT_S):
            holder = self._holder()
            if holder is not None and (holder.get("pid"), holder.get("host")) != (self.me["pid"], self.me["host"]):
                return  # another run took the folder over: never overwrite its lock
            try:
                self._write()
            except OSError:  # Drive briefly unreachable: the next beat tries again
                pass

    def acquire(self):
        self.me = {"pid": os.getpid(), "host": files.host(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                   "beat": time.time()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                why = self._stale(holder)
                if why is not None:
                    if holder.get("host") != self.me["host"]:
                        print(f"{self.path.parent}: took over the lock of process {holder.get('pid')} on "
                              f"{holder.get('host')} (since {holder.get('since')}; {why}, more than "
                              f"{STALE_AFTER_S / 60:g} min: its session is gone).", flush=True)
                    self.path.unlink(missing_ok=True)
                    continue
                who = (f"process {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"
                       if holder else "another process (the lock file is unreadable)")
                raise RunFolderError(
                    f"{self.path.parent} is in use by {who}: two runs must not write one folder. Wait for it, "
                    f"or use another --name. A crashed session on another machine stops refreshing its lock: "
                    f"once it is {STALE_AFTER_S / 60:g} min old, --resume takes the folder over (or delete "
                    f"{self.path} now, if you are sure no run is using it).") from None
            except OSError as e:
                raise files.write_error(e, self.path, WRITABLE) from None
            with os.fdopen(fd, "w") as f:
                json.dump(self.me, f)
            self.held = True
            self._stop.clear()
            self._beater = threading.Thread(target=self._beat, name="run-folder-lock", daemon=True)
            self._beater.start()
            return self
        raise RunFolderError(f"could not take the lock {self.path}; delete it if no run is using the folder.")

    def release(self):
        if self.held:
            self._stop.set()
            self._beater.join()
            holder = self._holder()
            if holder is None or (holder.get("pid"), holder.get("host")) == (self.me["pid"], self.me["host"]):
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
