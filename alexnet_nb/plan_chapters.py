"""A plan entry that executes chapters (``chapters = [...]`` in ``experiments/plan.toml``) instead of a run.

Chapter 3 trains the entry's recipe (the chosen one) as a reader would, for
30 epochs on all 200 classes; chapter 4 analyses that run's checkpoint on the
same machine. What comes back under the results folder:

* ``<entry name>/``: the executed notebooks and ``summary.json`` (``kind``:
  chapters, the recipe they ran, each chapter's status and seconds);
  ``experiments unpack`` moves the notebooks into ``notebooks/``;
* ``03_<recipe>/``: chapter 3's run (history, summary, config), a run folder
  like the plan's others, which chapter 4 reads from ``results/`` wherever its
  checkpoint is not at hand.

The entry is done while the committed chapters ran the recipe the plan
chooses now; when the choice changes, they run again. It is never started to
be cut off: a chapter stopped halfway is no chapter.
"""

import json
import sys
import time
from pathlib import Path

from alexnet_nb import chapters, env, plan as plan_lib
from alexnet_nb.child_process import run_logged

KIND = "chapters"
# Beyond chapter 3's 30 epochs: the kernels' start, chapter 3's plots, and chapter 4's ten views of 10,000
# images, fc7 features of the training images and its figures. A guess, not a measurement (no chapter has run
# on a GPU yet): the summary records the seconds each chapter took, for the next estimate.
EXTRA_SECONDS = 150.0


def done(entry, summary, chosen) -> bool:
    """Whether the chapters were executed, all of them, with the recipe the entry stands for now."""
    if entry.recipe == plan_lib.CHOSEN and chosen is None:
        return False
    return (plan_lib.finished(summary) and summary.get("kind") == KIND
            and summary.get("recipe") == entry.recipe_name(chosen))


def run(entry, chosen, out_dir, runs_dir, hard_limit, quick=False, wheels=(), log=print):
    """Execute the entry's chapters in a child process (its stop and time limit as any run's); returns (summary,
    exit status, seconds, the log's last line)."""
    recipe = entry.recipe_name(chosen)
    folder = Path(out_dir) / entry.name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / chapters.SUMMARY).unlink(missing_ok=True)  # an earlier attempt's must not stand for this one
    chapter_runs = Path(runs_dir) / entry.name
    chapter_runs.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "alexnet_nb.chapters", "run", *entry.chapters, "--out", str(folder)]
    for chapter, values in chapters.plan_values(entry.chapters, recipe).items():
        cmd += [a for field, value in values.items() for a in ("--set", f"{chapter}:{field}={value}")]
    if wheels:
        cmd += ["--wheels", *map(str, wheels)]
    log(f"--> {entry.name}: {' '.join(cmd[3:])}")
    started = time.monotonic()
    status = run_logged(cmd, folder / "chapters.log", timeout=hard_limit,
                        env=chapters.kernel_env(env.data_dir(), chapter_runs, quick))
    took = time.monotonic() - started
    try:
        executed = json.loads((folder / chapters.SUMMARY).read_text())
    except (OSError, ValueError):
        executed = {"chapters": {}, "values": {}}
    states = executed["chapters"]
    finished = status == 0 and len(states) == len(entry.chapters) and all(
        s["status"] == "executed" for s in states.values())
    summary = {"kind": KIND, "finished": finished, "recipe": recipe, "chapters": states,
               "values": executed["values"], "seconds": round(took), "exit": status,
               "plan_entry": {"name": entry.name, "recipe": entry.recipe, "why": entry.why}}
    (folder / chapters.SUMMARY).write_text(json.dumps(summary, indent=2))
    run_dir = chapter_runs / chapters.run_name(recipe)
    if (run_dir / "summary.json").exists():
        from alexnet_nb.runner import copy_results

        copy_results(entry, run_dir, Path(out_dir) / run_dir.name)
    tail = (folder / "chapters.log").read_text(errors="replace").strip().splitlines()[-1:]
    return summary, status, took, (tail[0] if tail else "")


def notebooks_from(results_dir, notebooks=chapters.NOTEBOOKS) -> list:
    """Move the executed chapters that ``experiments unpack`` brought into ``results/<entry>/`` over their
    sources in ``notebooks/`` (each replaced whole), only when every chapter of the entry ran to its end;
    returns their names."""
    moved = []
    for path in sorted(Path(results_dir).glob("*/*.ipynb")):
        summary = plan_lib.read_summary(path.parent) or {}
        executed = summary.get("chapters", {}).get(path.stem, {}).get("status") == "executed"
        if summary.get("kind") != KIND or not (plan_lib.finished(summary) and executed):
            continue  # a chapter that failed or stopped halfway never replaces the committed one
        target = Path(notebooks) / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        path.replace(target)
        moved.append(target.name)
    return moved
