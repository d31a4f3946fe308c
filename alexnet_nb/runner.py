"""Running the plan: each unfinished entry in its own process, while its estimated time fits the budget.

The estimate comes from the speed the benchmark measured on this machine
(``alexnet_nb.estimates``: images/s at the entry's batch, compiled or not,
and the first compile's time). A run is given what is left of the budget as its
``--time-limit``, so it stops cleanly rather than being killed; one stopped
that way is reported as cut off, never as finished. Each run's history,
summary, log and curves land in ``<results>/<name>/``; its checkpoint stays in
the runs folder, so a later call on the same (still warm) machine resumes a
cut-off run where it stopped instead of starting it again.
"""

import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

from alexnet_nb import plan as plan_lib, plan_chapters
from alexnet_nb.child_process import STOP, run_logged
from alexnet_nb.estimates import (GUESSED_GPU_SPEED, adopted_lrn, compile_failed, compile_works, from_runs,
                                  measured_speed, overhead_seconds)

STATE = Path("runs") / "gpu"
RESULTS = Path("results")
PACK_SECONDS = 30  # kept back for packing and the table
MIN_PARTIAL_S = 120  # a run cut off sooner than this shows too little to be worth starting
RUN_FILES = ("history.csv", "summary.json", "config.json", "train.log")


class Clock:
    def __init__(self, seconds):
        self.start, self.seconds = time.monotonic(), seconds

    def used(self):
        return time.monotonic() - self.start

    def left(self):
        return self.seconds - self.used()


class Log:
    """Print and keep: everything the command says also goes to ``gpu.log``, which comes back with the results."""

    def __init__(self, path=None):
        self.path = Path(path) if path else None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, *parts):
        line = " ".join(str(p) for p in parts)
        print(line, flush=True)
        if self.path:
            with open(self.path, "a") as f:
                f.write(line + "\n")


# ---------------------------------------------------------------------------
# The plan runner


def summaries(*folders) -> dict:
    """The newest ``summary.json`` of each run name in ``folders``, later folders newer (this machine's results
    after the committed ones): a finished one wins over any earlier one, a cut-off one only over a cut-off one
    (the chapters run again for a new choice must count, not the committed ones of the old)."""
    found = {}
    for folder in folders:
        for path in sorted(Path(folder).glob("*/summary.json")):
            s = plan_lib.read_summary(path.parent)
            name = path.parent.name
            if s and (name not in found or plan_lib.finished(s) or not plan_lib.finished(found[name])):
                found[name] = s
    return found


def _draw(folder):
    try:
        from alexnet_nb import plots

        plots.save_run_plots(folder)
    except Exception as e:  # the curves are a convenience; the history is the result
        return f"plots failed: {type(e).__name__}: {e}"
    return ""


def epochs_left(runs_dir, name, epochs):
    """Epochs a run in ``runs_dir/<name>`` still has to train, when it stopped cleanly (the time limit, a
    signal: ``stopped`` in its summary) and wrote its checkpoint; else None and the entry starts afresh: no
    run there, a finished one, or one that failed or was killed (its checkpoint, if any, is not its last
    epoch's), or one planned for another number of ``epochs`` than the entry's now."""
    from alexnet_nb import checkpoint

    run_dir = Path(runs_dir) / name
    summary = plan_lib.read_summary(run_dir)
    if not (run_dir / checkpoint.NAME).exists() or not summary or plan_lib.finished(summary) \
            or not summary.get("stopped"):
        return None
    done, planned = summary.get("epochs_done"), summary.get("epochs_planned")
    return planned - done if isinstance(done, int) and planned == epochs and done < planned else None


def copy_results(entry, run_dir, result, process_seconds=None):
    """Copy a run's history, summary and config from its run folder into ``result``, the summary marked with its
    plan entry, and draw its curves; returns the summary (None if the run wrote none)."""
    result.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES[:3]:
        if (run_dir / name).exists():
            shutil.copy2(run_dir / name, result / name)
    summary = plan_lib.read_summary(result)
    if summary:
        summary["plan_entry"] = {"name": entry.name, "recipe": entry.recipe, "why": entry.why,
                                 **({"process_seconds": round(process_seconds, 1)} if process_seconds else {})}
        (result / "summary.json").write_text(json.dumps(summary, indent=2))
        _draw(result)
    return summary


def finished_in_runs(entry, cfg, runs_dir):
    """The summary of a run of ``entry`` that finished in its run folder but whose results were never copied
    out (its command was stopped or killed while the run went on), when it ran this entry's recipe, epochs,
    seed and overrides; else None."""
    summary = plan_lib.read_summary(Path(runs_dir) / entry.name)
    if not plan_lib.finished(summary):
        return None
    saved = summary.get("config", {})
    wanted = {"recipe": cfg.recipe, "epochs": cfg.epochs, "seed": cfg.seed, "classes": cfg.classes,
              "max_train_images": cfg.max_train_images, "max_eval_images": cfg.max_eval_images,
              **{k: getattr(cfg, k) for k in entry.overrides}}
    return summary if all(saved.get(k) == v for k, v in wanted.items()) else None


def run_entry(entry, chosen, out_dir, runs_dir, time_limit, quick=False, source=None, log=print, eager=False,
              hard_limit=None, resume=False, extra=()):
    """Train one plan entry in its own process; copy its history and summary into ``out_dir/<name>/``.

    ``time_limit`` is the run's own ``--time-limit`` (it stops cleanly before an epoch that would pass it);
    ``hard_limit`` kills it if it has not ended by then; ``extra`` flags follow the entry's own. Only the
    last checkpoint is written (also when the time limit stops the run, so that ``resume`` carries it on):
    the results are the history and summary, and a 460 MB save every epoch would cost minutes of GPU time.
    Returns (summary, exit status, seconds, the log's last line, the text this attempt added to the log).
    """
    run_dir = Path(runs_dir) / entry.name
    result = Path(out_dir) / entry.name
    result.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "alexnet_nb.train", *entry.flags(chosen), *extra, "--name", entry.name,
           "--out-dir", str(run_dir), "--resume" if resume else "--overwrite", "--no-progress",
           "--time-limit", f"{max(time_limit, 1):.0f}", "--checkpoint-every", "1000"]
    if quick:
        cmd += ["--quick"]  # tiny sizes; the entry's own flags (its epochs) still win
    if quick or eager:  # eager when the benchmark saw compiling fail on this machine
        cmd += ["--no-compile"]
    if source:
        cmd += ["--source", str(source)]
    log(f"--> {entry.name}: {' '.join(cmd[3:])}")
    started = time.monotonic()
    log_file = result / "train.log"
    before = log_file.stat().st_size if resume and log_file.exists() else 0  # a resumed run appends to its log
    status = run_logged(cmd, log_file, timeout=hard_limit if hard_limit is not None else time_limit + 120,
                        append=resume)
    summary = copy_results(entry, run_dir, result, time.monotonic() - started)
    added = log_file.read_bytes()[before:].decode(errors="replace") if log_file.exists() else ""
    tail = added.strip().splitlines()[-1:]
    return summary, status, time.monotonic() - started, (tail[0] if tail else ""), added[-20000:]


def run_plan(plan, clock, out_dir, runs_dir, record, quick=False, source=None, log=print, done_in=(RESULTS,),
             warmed=(), after_each=None, wheels=()):
    """Run the plan's unfinished entries in order while their estimated time fits; returns the table rows.

    ``after_each()`` is called after every run (the GPU command packs what it has). When compiling breaks a
    run, that run is tried once more eagerly and the rest go eager. Once every entry that fits has run, the
    first that did not still runs, to be cut off, when at least ``MIN_PARTIAL_S`` are left: the next call on
    the same machine resumes it from its checkpoint (``epochs_left``: only those epochs are estimated), and a
    partial curve is worth more than an idle GPU. At most one entry is started that does not fit (a run
    estimated to fit may still be cut off by its time limit).
    """
    known = summaries(*done_in, out_dir)
    chosen, reason = plan_lib.choose(plan, known)
    log(reason)
    rows, started_any, cut_off = [], False, False
    compiled = not quick and gpu() and compile_works(record, warmed)
    from alexnet_nb.warm import graph_key

    warm_keys = {w.get("key") for w in warmed if w.get("status") == "ok"}  # graphs in this machine's cache
    lrn = adopted_lrn(record, compiled)
    extra = ["--lrn-impl", lrn] if lrn else []
    if lrn:
        log(f"training runs use --lrn-impl {lrn}: the speed matrix measured it faster than the slices LRN")
    queue, deferred, forced = list(plan.entries), [], None  # deferred: (entry, need) that did not fit
    while queue or deferred:
        if not queue:  # nothing else fits: the first entry that did not may go ahead, to be cut off
            entry, need = deferred.pop(0)
            left = clock.left() - PACK_SECONDS
            if cut_off or quick or left < MIN_PARTIAL_S or entry.chapters:  # a chapter stopped halfway is none
                rows.append((entry.name, "skipped", f"needs ~{need:.0f} s, {max(left, 0):.0f} s left"))
                continue
            forced = entry
            queue.append(entry)
        entry = queue.pop(0)
        summary = known.get(entry.name)
        if plan_chapters.done(entry, summary, chosen) if entry.chapters else plan_lib.finished(summary):
            rows.append((entry.name, "done", "results already there"))
            continue
        if entry.recipe == plan_lib.CHOSEN and chosen is None:
            rows.append((entry.name, "waiting", reason))
            continue
        if STOP.reason:
            rows.append((entry.name, "not run", f"the command was stopped ({STOP.reason})"))
            continue
        sizes_extra = dict(plan_lib.QUICK_SIZES) if quick else {}
        # A chapter trains as a reader would, with the recipe's own LRN; the plan's runs with the adopted one.
        cfg = entry.config(chosen, **sizes_extra, **({"lrn_impl": lrn} if lrn and not entry.chapters else {}))
        if not entry.chapters and finished_in_runs(entry, cfg, runs_dir):
            summary = copy_results(entry, Path(runs_dir) / entry.name, Path(out_dir) / entry.name)
            final = summary["final"]
            rows.append((entry.name, "collected", f"finished in {Path(runs_dir) / entry.name} before; not trained "
                         f"again; val {final['val_top1']:.2f}% / {final['val_top5']:.2f}%"))
            known[entry.name] = summary
            if chosen is None:
                chosen, reason = plan_lib.choose(plan, known)
            continue
        speed = measured_speed(record, cfg, compiled)
        if speed is None and gpu() and not quick:
            speed = GUESSED_GPU_SPEED
        if speed is None:
            rows.append((entry.name, "skipped", "no speed measured yet to estimate its time"))
            continue
        sizes = plan_lib.quick_images() if quick else (plan_lib.TRAIN_IMAGES, plan_lib.EVAL_IMAGES)
        remaining = epochs_left(runs_dir, entry.name, entry.epochs)
        to_train = dataclasses.replace(cfg, epochs=remaining) if remaining else cfg
        warm = graph_key(cfg) in warm_keys
        need = None if quick else from_runs(known, to_train, compiled, device_name(), warm)
        if need is None:
            need = plan_lib.estimate_seconds(to_train, speed, overhead_seconds(record, compiled, warm), *sizes)
        need += plan_chapters.EXTRA_SECONDS if entry.chapters and not quick else 0
        left = clock.left() - PACK_SECONDS
        partial = need > left and entry is forced
        if need > left and not partial:
            deferred.append((entry, need))
            continue
        if remaining:
            log(f"{entry.name}: resuming the cut-off run, {remaining} of {cfg.epochs} epochs to go")
        if partial:
            log(f"{entry.name} needs ~{need:.0f} s, {left:.0f} s are left: running it anyway, to be cut off")
        started_any, cut_off = True, cut_off or partial
        if entry.chapters:
            summary, status, took, tail = plan_chapters.run(entry, chosen, out_dir, runs_dir,
                                                            clock.left() - PACK_SECONDS / 2, quick, wheels, log)
            ran = ", ".join(f"{n} {s['status']} in {s['seconds']} s" for n, s in summary["chapters"].items())
            rows.append((entry.name, "executed" if summary["finished"] else "failed",
                         f"{summary['recipe']}: {ran or 'none ran'}" + ("" if summary["finished"] else
                                                                         f"; exit {status}: {tail[:120]}")))
            known[entry.name] = summary
            if after_each:
                after_each()
            continue
        summary, status, took, tail, log_text = run_entry(
            entry, chosen, out_dir, runs_dir, left - 10, quick, source, log, eager=not compiled,
            hard_limit=clock.left() - PACK_SECONDS / 2, resume=bool(remaining), extra=extra)
        if (summary is None or status != 0) and compiled and compile_failed(log_text):
            log(f"{entry.name}: compiling failed ({tail[:120]}); this run again and the rest run eagerly")
            compiled = False
            lrn, extra = None, []  # the adopted LRN was measured compiled only, and the failure may be its own
            rows.append((entry.name, "failed", f"compiled: {tail[:150]}; retried eagerly"))
            queue.insert(0, entry)
            continue
        if summary is None or status != 0:
            rows.append((entry.name, "failed", f"exit {status} after {took:.0f} s: {tail[:150]}"))
        elif plan_lib.finished(summary):
            final = summary["final"]
            rows.append((entry.name, "finished", f"{took:.0f} s (est. {need:.0f}); val {final['val_top1']:.2f}% / "
                         f"{final['val_top5']:.2f}%, holdout {final['holdout_top1']:.2f}%"))
        else:
            rows.append((entry.name, "cut off", f"{summary['epochs_done']} of {summary['epochs_planned']} epochs "
                         f"({summary.get('stopped')}); not counted as finished"))
        known[entry.name] = summary or known.get(entry.name)
        if summary:  # it compiled its graphs: the next run of the same network finds them cached
            warm_keys.add(graph_key(cfg))
        if after_each:
            after_each()
        if entry is forced:  # what was put off gets another look: its graphs may be cached now
            queue, deferred = [e for e, _ in deferred] + queue, []
        if chosen is None:
            chosen, reason = plan_lib.choose(plan, known)
            if chosen is not None:
                log(reason)
    if not started_any and any(status == "skipped" for _, status, _ in rows):
        log(f"nothing fits in what is left of the budget ({max(clock.left() - PACK_SECONDS, 0):.0f} s); "
            "nothing was started")
    return rows


def device_name():
    """The GPU's name (what benchmark records are matched on), or None without one."""
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else None


def gpu():
    import torch

    return torch.cuda.is_available()


def table(rows, title="plan") -> str:
    width = max([len(r[0]) for r in rows] + [10])
    lines = [f"{title}:", f"  {'entry':<{width}}  {'status':<9}  detail"]
    lines += [f"  {name:<{width}}  {status:<9}  {detail}" for name, status, detail in rows]
    return "\n".join(lines)
