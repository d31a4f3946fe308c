"""The plan commands' children, and stopping the commands cleanly: one at a time per folder, a stop passed on.

``experiments gpu`` and ``experiments run`` train each plan entry in a child
process. A stop sent to the command (SIGTERM from a scheduler or the GPU
tool's time limit, Ctrl-C) must reach that child, or the child trains on
orphaned, holding its run folder, and its result is never collected (seen
before this module: the next call trained the same entry again from zero).
So the command passes the stop on as SIGTERM (the child's clean stop: it
writes its checkpoint), waits for the child, starts nothing more, packs what
it has and prints its table. A second stop is passed on as SIGINT, the
child's "stop at once".

The children run in a session of their own, so a Ctrl-C at the terminal
reaches the command alone and the child gets the stop once, not twice (twice
would be the child's "stop at once", losing the epoch in progress).
"""

import os
import signal
import subprocess
from pathlib import Path

from alexnet_nb import run_folder
from alexnet_nb.stopping import CatchStops


class Stop(CatchStops):
    """``with STOP:`` -- SIGTERM/SIGINT to this process ask for a clean stop and are passed on to the child."""

    def __init__(self):
        self.reason, self.child, self.count = None, None, 0

    def _handle(self, signum, frame):
        self.count += 1
        self.reason = self.reason or signal.Signals(signum).name
        child = self.child
        running = child is not None and child.poll() is None
        if running:  # first, before anything that could fail in a signal handler
            child.send_signal(signal.SIGTERM if self.count == 1 else signal.SIGINT)
        try:
            print(f"\n{signal.Signals(signum).name}: "
                  + ("passing the stop on to the run in progress and waiting for its checkpoint; nothing else "
                     "starts" if running and self.count == 1 else
                     "stopping the run in progress at once" if running else "nothing else starts"), flush=True)
        except RuntimeError:  # print() re-entered while the main thread was writing: the stop is passed on anyway
            pass

    def __enter__(self):
        self.reason, self.count = None, 0
        return super().__enter__()

    def exit_status(self):
        """The shell's status for a command stopped by a signal (128 + its number), or 0."""
        return 128 + signal.Signals[self.reason].value if self.reason else 0


STOP = Stop()


def run_logged(cmd, log_file, timeout, append=False, env=None):
    """Run ``cmd`` with its output in ``log_file`` (unbuffered: a killed run keeps its last lines; ``append``:
    after what is there, as a resumed run's log follows its first part); its exit status, or why it was
    killed. While it runs, a stop sent to this process reaches it (:class:`Stop`)."""
    env = dict(env or os.environ, PYTHONUNBUFFERED="1")
    if STOP.reason:
        return f"not started: the command was stopped ({STOP.reason})"
    with open(log_file, "a" if append else "w") as out:
        child = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        STOP.child = child
        if STOP.reason:  # the stop came while the child was being started: it never saw it
            child.send_signal(signal.SIGTERM)
        try:
            return child.wait(timeout=max(timeout, 1))
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)  # its whole session: a chapter's kernel, compile workers
            child.wait()
            return f"killed after {timeout:.0f} s"
        finally:
            STOP.child = None


class CommandLock:
    """``with CommandLock(folder):`` -- one plan command at a time per runs folder; a second
    is refused in one line naming the holder (two would train the same entries and write one archive)."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.lock = run_folder.Lock(self.folder)

    def __enter__(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self.lock.acquire()
        except run_folder.RunFolderError:
            holder = self.lock._holder() or {}
            raise CommandBusy(
                f"{self.folder} is in use by another plan command (process {holder.get('pid', '?')} on "
                f"{holder.get('host', '?')} since {holder.get('since', '?')}); wait for it to end. If no such "
                f"command is running (it crashed on another machine), delete {self.lock.path}.") from None
        return self

    def __exit__(self, *exc):
        self.lock.release()


class CommandBusy(RuntimeError):
    """Another plan command holds the folder."""
