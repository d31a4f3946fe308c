"""The chapters executed as a user runs them: top to bottom in an IPython kernel (nbclient), here or on the GPU.

    python -m alexnet_nb.chapters wheels --into .carry3       # here: what the GPU machine lacks to run a notebook
    python -m alexnet_nb.chapters run 03_train 04_results --out DIR --set 03_train:RECIPE=ours

The plan (``experiments/plan.toml``) has an entry that runs chapters 3 and 4
on the GPU machine after the recipe is chosen: chapter 3 trains the chosen
recipe for 30 epochs on all 200 classes, chapter 4 analyses that run's
checkpoint on the same machine, and both come back executed, with their real
outputs, for ``experiments unpack`` to put into ``notebooks/``. A form field
(a line ``NAME = value  # @param ...``) is set the way Colab's form sets it:
the executed notebook shows the value it ran with.

The GPU machine has Python 3.12 and torch but no Jupyter, and reaches no
package index, so the wheels of nbclient and ipykernel travel with the dataset
part that has room (``wheels``); ``ensure_jupyter`` installs them there, from
that folder only, without pip. Left out: debugpy (ipykernel's debugger) and jedi (IPython's
completion), 10 of their 17 MB, which a kernel run headless never imports
(checked with Python 3.12: a kernel from these wheels alone ran a notebook).
"""

import argparse
import importlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
REPO = NOTEBOOKS.parent
WHEELS_DIR = "wheels"
NEEDED = ("nbclient", "ipykernel")
LEFT_OUT = ("debugpy", "jedi")
GPU_PYTHON = "3.12"  # the GPU machine's (the device README)
GPU_PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")
SUMMARY = "summary.json"


class ChapterError(RuntimeError):
    """A chapter cannot be run as asked; the message names it and what to do."""


def path_of(name) -> Path:
    """``notebooks/<name>.ipynb`` for a chapter's name (``03_train``)."""
    path = NOTEBOOKS / f"{Path(name).stem}.ipynb"
    if not path.is_file():
        known = ", ".join(p.stem for p in sorted(NOTEBOOKS.glob("*.ipynb")))
        raise ChapterError(f"no chapter {name!r} in {NOTEBOOKS} (the chapters are {known})")
    return path


def set_parameters(nb, values: dict, name="notebook"):
    """Set form fields in ``nb`` (a parsed notebook): each ``NAME = old  # @param ...`` line of a code cell
    becomes ``NAME = <value>  # @param ...``, as Colab's form writes it. A name with no such line is an error:
    the chapter would silently run with its default."""
    for key, value in values.items():
        pattern = re.compile(rf"^{re.escape(key)} = .*?(\s+# @param.*)$", re.M)
        hits = 0
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.source, n = pattern.subn(lambda m: f"{key} = {value!r}{m.group(1)}", cell.source)
                hits += n
        if hits != 1:
            raise ChapterError(f"{name}: {'no' if hits == 0 else hits} form fields '{key} = ...  # @param' "
                               f"(expected one)")
    return nb


def execute(names, out_dir, values=None, cell_timeout=None, log=print):
    """Execute the chapters ``names`` in order into ``out_dir/<name>.ipynb``; ``values``: {name: {field: value}}.
    A chapter that fails is written as far as it ran and the later ones are not started (chapter 4 reads what
    chapter 3 trained). Returns {name: {"status", "seconds", "error"}}, also written to ``out_dir/summary.json``
    with ``values``."""
    import nbclient
    import nbformat

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    values = values or {}
    done = {}
    for name in names:
        path = path_of(name)
        nb = set_parameters(nbformat.read(path, as_version=4), values.get(path.stem, {}), path.name)
        client = nbclient.NotebookClient(nb, timeout=cell_timeout, kernel_name="python3",
                                         resources={"metadata": {"path": str(NOTEBOOKS)}})
        started = time.monotonic()
        log(f"chapter {path.stem}: executing")
        try:
            client.execute()
            status, error = "executed", ""
        except nbclient.exceptions.CellExecutionError as e:
            status, error = "failed", (str(e).strip().splitlines() or ["?"])[-1][:300]
        except (KeyboardInterrupt, nbclient.exceptions.CellTimeoutError) as e:
            status, error = "stopped", f"{type(e).__name__}: {e}"[:300]
        except Exception as e:  # a dead kernel (nbclient's own handling of a stop), its clean-up failing after
            status, error = "failed", f"{type(e).__name__}: {e}"[:300]
        nbformat.write(nb, out_dir / path.name)
        done[path.stem] = {"status": status, "seconds": round(time.monotonic() - started), "error": error}
        log(f"chapter {path.stem}: {status} in {done[path.stem]['seconds']} s" + (f": {error}" if error else ""))
        (out_dir / SUMMARY).write_text(json.dumps({"chapters": done, "values": values}, indent=1))
        if status != "executed":
            break
    return done


def plan_values(names, recipe) -> dict:
    """The form fields the plan sets, per chapter: chapter 3 trains ``recipe``; chapter 4 reads the run chapter 3
    made (``03_<recipe>``, chapter 3's name for it in quick mode and on a GPU)."""
    values = {"03_train": {"RECIPE": recipe}, "04_results": {"RUN": run_name(recipe)}}
    return {Path(n).stem: values[Path(n).stem] for n in names if Path(n).stem in values}


def run_name(recipe) -> str:
    return f"03_{recipe}"


def ensure_jupyter(folders, site=None):
    """Make nbclient and an IPython kernel importable: already there, else unpacked from the wheels found in
    ``<folder>/wheels`` into ``site`` (default ``build/jupyter``), which goes on ``sys.path`` and on the
    kernel's ``PYTHONPATH``. Not pip: the GPU machine's Python may have no pip, or refuse installs into a
    system Python (PEP 668), and it reaches no index; a wheel is a zip laid out to be unpacked onto the path
    (its ``*.data/purelib`` and ``platlib`` too; its scripts and shared data a kernel run does not need).
    Returns a one-line account."""
    if _importable(NEEDED):
        return "nbclient and ipykernel already installed"
    site = Path(site or REPO / "build" / "jupyter").absolute()
    _on_path(site)
    if _importable(NEEDED):
        return f"nbclient and ipykernel from {site}"
    wheels = _wheels(folders)
    if not wheels:
        raise ChapterError(f"nbclient/ipykernel are not installed and no wheels in {', '.join(map(str, folders))}"
                           f"/{WHEELS_DIR}: copy them there with `python -m alexnet_nb.chapters wheels --into DIR`")
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as z:
            for member in z.namelist():
                parts = Path(member).parts
                if ".." in parts or Path(member).is_absolute():
                    raise ChapterError(f"{wheel}: refused, a member {member!r} points outside its folder")
                if parts[0].endswith(".data"):
                    if len(parts) < 3 or parts[1] not in ("purelib", "platlib") or member.endswith("/"):
                        continue
                    target = site.joinpath(*parts[2:])
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(z.read(member))
                else:
                    z.extract(member, site)
    importlib.invalidate_caches()
    if not _importable(NEEDED):
        raise ChapterError(f"unpacked {len(wheels)} wheels into {site} but nbclient/ipykernel still do not import")
    return f"unpacked {len(wheels)} wheels for nbclient and ipykernel into {site}"


def _wheels(folders) -> list:
    return [w for f in folders for w in sorted((Path(f) / WHEELS_DIR).glob("*.whl"))]


def _on_path(site):
    if str(site) not in sys.path:
        sys.path.insert(0, str(site))
        importlib.invalidate_caches()
    os.environ["PYTHONPATH"] = _pythonpath(site, os.environ.get("PYTHONPATH", ""))


def _pythonpath(first, current) -> str:
    """``current`` (a PYTHONPATH) with ``first`` in front, once."""
    paths = [p for p in current.split(os.pathsep) if p and p != str(first)]
    return os.pathsep.join([str(first)] + paths)


def jupyter_status(folders) -> str:
    """One line for the GPU command's first lines: can the chapters entry execute notebooks on this machine?"""
    if _importable(NEEDED):
        return "chapters: nbclient and ipykernel installed"
    wheels = _wheels(folders)
    return (f"chapters: {len(wheels)} wheels for nbclient/ipykernel found, installed when a chapter runs" if wheels
            else f"chapters: NO nbclient/ipykernel and no wheels in {', '.join(map(str, folders))}/{WHEELS_DIR}: "
                 "a chapters entry will fail (python -m alexnet_nb.chapters wheels --into .carry3)")


def _importable(modules) -> bool:
    import importlib.util

    try:
        return all(importlib.util.find_spec(m) is not None for m in modules)
    except (ImportError, ValueError):
        return False


def download_wheels(into, python=GPU_PYTHON):
    """``pip download`` nbclient and ipykernel with their dependencies, as wheels for the GPU machine's Python,
    into ``<into>/wheels``, less ``LEFT_OUT``; returns (files, bytes)."""
    target = Path(into) / WHEELS_DIR
    target.mkdir(parents=True, exist_ok=True)
    platforms = [a for p in GPU_PLATFORMS for a in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "-d", str(target), "--only-binary=:all:",
                    "--python-version", python, "--implementation", "cp", *platforms, *NEEDED], check=True)
    for wheel in target.glob("*.whl"):
        if wheel.name.split("-")[0].lower() in LEFT_OUT:
            wheel.unlink()
    wheels = sorted(target.glob("*.whl"))
    return wheels, sum(w.stat().st_size for w in wheels)


def kernel_env(data_dir, runs_dir, quick):
    """The environment the chapters' kernel inherits: absolute data and runs folders (the kernel runs in
    ``notebooks/``), the package importable from the clone, quick mode or not, and progress bars that print
    every 30 s rather than thousands of times into the executed notebook."""
    runs = Path(runs_dir).absolute()
    # Jupyter's and IPython's own files in the runs folder (a home folder may not be writable there), and the
    # inline backend even where the machine sets another (figures must land in the executed notebook).
    env = dict(os.environ, ALEXNET_NB_DATA=str(Path(data_dir).absolute()), ALEXNET_NB_RUNS=str(runs),
               TQDM_MININTERVAL="30", JUPYTER_RUNTIME_DIR=str(runs / ".jupyter"), IPYTHONDIR=str(runs / ".ipython"),
               MPLBACKEND="module://matplotlib_inline.backend_inline",
               PYTHONPATH=_pythonpath(REPO, os.environ.get("PYTHONPATH", "")))
    if quick:
        env["ALEXNET_NB_QUICK"] = "1"
    else:
        env.pop("ALEXNET_NB_QUICK", None)
    return env


def _stop(signum, frame):
    raise KeyboardInterrupt  # nbclient then shuts its kernel down: a stopped chapter leaves no kernel behind


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m alexnet_nb.chapters", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    w = sub.add_parser("wheels", help="download the wheels the GPU machine needs to execute a notebook")
    w.add_argument("--into", required=True, help="a folder that travels with a dataset part (e.g. .carry3)")
    r = sub.add_parser("run", help="execute chapters in order")
    r.add_argument("names", nargs="+", help="chapter names, e.g. 03_train 04_results")
    r.add_argument("--out", required=True, help="where the executed notebooks and summary.json go")
    r.add_argument("--set", action="append", default=[], metavar="CHAPTER:FIELD=VALUE",
                   help="a form field's value (a string) in one chapter")
    r.add_argument("--cell-timeout", type=float, default=None, help="seconds per cell (default: none)")
    r.add_argument("--wheels", nargs="*", default=[], help="folders that may hold wheels/ (the GPU machine)")
    args = p.parse_args(argv)
    from alexnet_nb import cli

    try:
        if args.command == "wheels":
            wheels, size = download_wheels(args.into)
            print(f"{len(wheels)} wheels, {size / 2**20:.1f} MiB, in {Path(args.into) / WHEELS_DIR}")
            return
        print(ensure_jupyter(args.wheels), flush=True)
        values = {}
        for item in args.set:
            chapter, _, assignment = item.partition(":")
            field, eq, value = assignment.partition("=")
            if not (chapter and field and eq):
                raise ChapterError(f"--set {item!r}: expected CHAPTER:FIELD=VALUE")
            values.setdefault(Path(chapter).stem, {})[field] = value
        signal.signal(signal.SIGTERM, _stop)
        done = execute(args.names, args.out, values, args.cell_timeout, log=lambda m: print(m, flush=True))
        sys.exit(0 if all(d["status"] == "executed" for d in done.values()) and len(done) == len(args.names) else 1)
    except (ChapterError, subprocess.CalledProcessError) as e:
        cli.fail(str(e))


if __name__ == "__main__":
    main()
