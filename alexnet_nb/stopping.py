"""Stopping a run cleanly: on a signal, or before an epoch that would pass the time limit.

SIGTERM (what a job scheduler or a closing Colab sends) and SIGINT (Ctrl-C, a
notebook's interrupt button) ask the run to stop after the step in progress
(an epoch on a CPU or a T4 lasts many minutes, a step a second), with a
checkpoint that records the step reached, and the summary written; a second
Ctrl-C stops at once. A time limit stops the run before an epoch that, at the
last epoch's pace, would end after it. Either way the run resumes like an
interrupted one, at the step where it stopped.
"""

import signal
import threading

import torch
import torch.distributed as dist


class CatchStops:
    """``with`` it, SIGINT and SIGTERM go to ``self._handle`` (in the main thread: only it can catch signals);
    the old handlers come back at the end."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)
    saved = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.saved = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, handler in self.saved.items():
            signal.signal(s, handler)
        self.saved = {}


class Signals(CatchStops):
    """SIGINT/SIGTERM ask the run to stop after the step in progress; a second Ctrl-C stops at once."""

    def __init__(self):
        self.reason, self.saved = None, {}

    def _handle(self, signum, frame):
        if self.reason is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.reason = signal.Signals(signum).name
        print(f"\n{self.reason}: stopping after this step, with a checkpoint "
              "(press Ctrl-C again to stop at once, losing the steps since the last checkpoint).", flush=True)


def agreed(why, world, device):
    """``why`` (a reason to stop, or None), agreed by all processes: one asked to stop stops them all."""
    if world > 1:  # all processes stop together, or the others wait forever in the next all-reduce
        flag = torch.tensor([why is not None], dtype=torch.float32, device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() and why is None:
            why = "another process was asked to stop"
    return why


def reason(stop, cfg, elapsed, epoch_seconds, world, device):
    """Why the run stops after this epoch (a signal, or the next epoch would pass the time limit), or None."""
    why = stop.reason
    if why is None and cfg.time_limit is not None and elapsed + epoch_seconds > cfg.time_limit:
        why = f"time limit {cfg.time_limit:g} s: another epoch would end after it"
    return agreed(why, world, device)
