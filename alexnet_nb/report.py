"""README's generated tables: ``python -m alexnet_nb.experiments report [--check]``.

Every figure in README's result and speed tables comes from a file in
``results/`` (a run's ``summary.json``, a benchmark record ``bench-*.json``);
the recipe tables come from ``config.RECIPES``. The tables sit between
``<!-- generated:NAME -->`` and ``<!-- /generated -->`` markers; ``report``
rewrites them, ``report --check`` (and a test) fails when README and
``results/`` disagree, so no figure is ever copied by hand. A file in
``results/`` the tables need that cannot be read, or lacks a key they read, stops
the report in one line before anything is written: a table without that run
would quietly change "the best so far".
"""

import json
import re
import sys
from pathlib import Path

from alexnet_nb import analysis, cli, config, plan as plan_lib

BLOCK = re.compile(r"(<!-- generated:(\w+) -->\n)(.*?)(<!-- /generated -->)", re.S)


def _pct(x):
    return f"{x:.2f}%" if x is not None else "not measured"


def _value(v):
    return f"{v:g}" if isinstance(v, float) else str(v)


def recipes_table() -> str:
    rows = ["| recipe | what it is | why it is there |", "| --- | --- | --- |"]
    rows += [f"| `{name}` | {r.summary} | {r.why} |" for name, r in config.RECIPES.items()]
    return "\n".join(rows)


def blog_table() -> str:
    helps = cli.field_help()
    rows = ["| setting | `paper` (the paper's section 5) | `blog` (aandyw/StuffFromScratch) | what the setting is "
            "| what the difference bought |", "| --- | --- | --- | --- | --- |"]
    rows += [f"| `{f}` | {_value(a)} | {_value(b)} | {helps.get(f, '')} | not measured |"
             for f, a, b in config.differences("paper", "blog")]
    return "\n".join(rows)


class ResultsError(ValueError):
    """A file in ``results/`` the report needs and cannot read; the message names it and what to do."""


# What the tables read from every summary.json (``recipe`` may be null: an older run).
SUMMARY_KEYS = ("classes", "epochs_done", "epochs_planned", "final", "device", "precision", "command", "recipe")
FINAL_KEYS = ("val_top1", "val_top5", "holdout_top1")
FIX = "restore it (git checkout -- it) or unpack the run again; nothing was written"


def _unreadable(path, error, what="not readable") -> ResultsError:
    return ResultsError(f"{path}: {what} ({(str(error).splitlines() or [''])[0]}); {FIX}")


def _read_json(path):
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise _unreadable(path, e, "not readable JSON") from None
    if not isinstance(value, dict):
        raise ResultsError(f"{path}: not a JSON object; {FIX}")
    return value


def _summaries(results_dir) -> dict:
    """Each run folder's ``summary.json`` in ``results_dir``, by folder name. Strict, unlike the plan runner's
    reading (a cut-off run on the GPU machine may have none yet): here every one must hold what the tables read."""
    found = {}
    for path in sorted(Path(results_dir).glob("*/summary.json")):
        s = _read_json(path)
        if s.get("kind") == "chapters" or s.get("epochs_done") == 0:  # executed chapters, not a run; or a run
            continue  # stopped inside its first epoch, with no figure yet
        missing = [k for k in SUMMARY_KEYS if k not in s]
        if not missing:
            missing = [f"final.{k}" for k in FINAL_KEYS if k not in s["final"]] if isinstance(s["final"], dict) \
                else ["final (a table of figures)"]
        if missing:
            raise ResultsError(f"{path}: lacks {', '.join(map(repr, missing))}, which the report reads; {FIX}")
        found[path.parent.name] = s
    return found


def _finished_200(summaries) -> dict:
    """The runs on all 200 classes that finished: the only ones the blog and our targets compare with."""
    return {n: s for n, s in summaries.items() if s["classes"] == config.NUM_CLASSES and plan_lib.finished(s)}


def _order(names, plan):
    planned = [e.name for e in plan.entries] if plan else []
    return sorted(names, key=lambda n: (planned.index(n) if n in planned else len(planned), n))


def accuracy_table(results_dir, plan_path=plan_lib.DEFAULT_PLAN) -> str:
    results_dir = Path(results_dir)
    try:
        plan = plan_lib.load(plan_path)
    except plan_lib.PlanError:
        plan = None
    rows = ["| run | recipe | classes | epochs | val top-1 | val top-5 | holdout top-1 | machine | command |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for ref in (analysis.BLOG, analysis.TARGET):
        at_least = ">= " if ref is analysis.TARGET else ""
        rows.append(f"| {ref.name} | | 200 | {'<= 30' if at_least else '~30'} | {at_least}{ref.top1:g}% | "
                    f"{at_least}{ref.top5:g}% | | {'as published' if not at_least else ''} | |")
    summaries = _summaries(results_dir)
    for name in _order(list(summaries), plan):
        s = summaries[name]
        classes = s["classes"] if s["classes"] == config.NUM_CLASSES else \
            f"{s['classes']} (chance {100 / s['classes']:g}% / {min(100, 500 / s['classes']):g}%)"
        epochs = f"{s['epochs_done']}" if plan_lib.finished(s) else \
            f"{s['epochs_done']} of {s['epochs_planned']} (cut off: {s.get('stopped')})"
        f = s["final"]
        rows.append(f"| `{name}` | {s.get('recipe') or 'older run (see its summary)'} | {classes} | {epochs} | "
                    f"{_pct(f['val_top1'])} | {_pct(f['val_top5'])} | {_pct(f['holdout_top1'])} | "
                    f"{s['device']}, {s['precision']} | `{s['command']}` |")
    return "\n".join(rows)


def _bench_records(results_dir) -> list:
    """``[(file name, record)]`` of every ``bench-*.json`` in ``results_dir``, by name; one unreadable stops the
    report (:class:`ResultsError`)."""
    return [(path.name, _read_json(path)) for path in sorted(Path(results_dir).glob("bench-*.json"))]


def speed_table(results_dir) -> str:
    from alexnet_nb import speed

    records = _bench_records(results_dir)
    if not records:
        return "No benchmark record in `results/` yet."
    return "\n\n".join(speed.markdown(record, name) if "entries" in record else _data_markdown(record, name)
                       for name, record in records)


# The project's targets (DEVELOPERS.md), checked against what results/ holds.
ANCHOR_POINTS = 2.0  # the blog's recipe in our engine must land this close to its published figures
SPEED_TARGET = 30_000  # training images/s, batch 128, the whole step, one H100
SPEED_RATIO_TARGET = 30.0  # times the blog's pipeline measured in the same run
T4_MINUTES_TARGET = 30.0  # 30 epochs on a T4, projected
MAX_EPOCHS = 30


def _met(ok):
    return "yes" if ok else "**no**"


def targets_table(results_dir, plan_path=plan_lib.DEFAULT_PLAN) -> str:
    """Each target, the figure that answers it (or "not measured"), whether it is met and which file says so."""
    results_dir = Path(results_dir)
    blog, target = analysis.BLOG, analysis.TARGET
    found = _summaries(results_dir)
    full = _finished_200(found)
    rows = ["| target | measured | met | from |", "| --- | --- | --- | --- |"]

    anchor = full.get("blog")
    what = f"blog's recipe within {ANCHOR_POINTS:g} points of its {blog.top1:g}% / {blog.top5:g}%"
    if anchor:
        f = anchor["final"]
        off = max(abs(f["val_top1"] - blog.top1), abs(f["val_top5"] - blog.top5))
        rows.append(f"| {what} | {_pct(f['val_top1'])} / {_pct(f['val_top5'])} (off by at most {off:.2f} points) "
                    f"| {_met(off <= ANCHOR_POINTS)} | `results/blog/` |")
    else:
        rows.append(f"| {what} | not measured | | |")

    plan = plan_lib.load(plan_path)
    chosen, reason = plan_lib.choose(plan, found)
    what = f">= {target.top1:g}% / {target.top5:g}% within {MAX_EPOCHS} epochs, recipe chosen on the holdout"
    if chosen:
        name = next(c for c in plan.candidates if found[c]["recipe"] == chosen)
        f = found[name]["final"]
        ok = f["val_top1"] >= target.top1 and f["val_top5"] >= target.top5
        rows.append(f"| {what} | {_pct(f['val_top1'])} / {_pct(f['val_top5'])} (`{name}`, {reason}) | {_met(ok)} "
                    f"| `results/{name}/` |")
    else:
        tried = [n for n in plan.candidates if n in full and full[n]["epochs_done"] <= MAX_EPOCHS]
        best = max(tried, key=lambda n: full[n]["final"]["holdout_top1"], default=None)
        if best:
            f = full[best]["final"]
            rows.append(f"| {what} | no recipe chosen yet ({reason}); the best so far by holdout top-1: `{best}` "
                        f"({_pct(f['holdout_top1'])}), val {_pct(f['val_top1'])} / {_pct(f['val_top5'])} | not yet "
                        f"| `results/{best}/` |")
        else:
            rows.append(f"| {what} | not measured | | |")
    rows += _speed_rows(results_dir)
    return "\n".join(rows)


def _on_h100(device, passed, met):
    # An H200 has an H100's compute with more memory bandwidth: a miss there is a miss; a pass is not yet one.
    return met if "H100" in device or not passed else "not yet (not on an H100)"


def _speed_rows(results_dir):
    from alexnet_nb import speed

    gpu = [(name, r) for name, r in _bench_records(results_dir) if r.get("device_type") == "cuda" and "entries" in r]
    speed_what = f">= {SPEED_TARGET:,} images/s, batch 128, the whole step, one H100"
    ratio_what = f">= {SPEED_RATIO_TARGET:g}x the blog's pipeline, same run"
    t4_what = f"30 epochs on a T4 <= {T4_MINUTES_TARGET:g} min (projected)"
    if not gpu:
        return [f"| {w} | not measured (no GPU record) | | |" for w in (speed_what, ratio_what, t4_what)]
    rows = []
    for name, r in gpu:
        where, device = f"`results/{name}`", r["device"]
        # What training runs: the default compiled step, with the LRN the plan runner adopts from this record (a
        # candidate way of compiling counts once it is the default).
        ours = speed.training_entry(r, batch=128)
        if ours is None:
            rows += [f"| {w} | not measured on {device} | | {where} |" for w in (speed_what, ratio_what)]
        else:
            fast = ours["images_per_s"] >= SPEED_TARGET
            lrn = "" if ours["lrn_impl"] == "slices" else f" (LRN {ours['lrn_impl']})"
            rows.append(f"| {speed_what} | {ours['images_per_s']:,.0f}{lrn} on {device} | "
                        f"{_on_h100(device, fast, _met(fast))} | {where} |")
            ratio = ours.get("vs_blog")
            if ratio:
                ok = ratio >= SPEED_RATIO_TARGET
                rows.append(f"| {ratio_what} | {ratio:.1f}x on {device} | {_on_h100(device, ok, _met(ok))} | {where} |")
            else:
                rows.append(f"| {ratio_what} | not measured (the blog's step was not) | | {where} |")
        p = r.get("projection")
        if p:
            ok = p["t4_30_epochs_min"] <= T4_MINUTES_TARGET
            # A projection can show a miss; a pass waits for a run on a T4.
            met = "not yet (projected, not run on a T4)" if ok else _met(False)
            rows.append(f"| {t4_what} | {p['t4_30_epochs_min']:.0f} min, projected from {device} | {met} | {where} |")
        else:
            rows.append(f"| {t4_what} | not measured | | {where} |")
    return rows


def _data_markdown(record, name):
    """A ``bench data`` record: decoding each split once, and reloading it from the cache."""
    rows = [f"**{name}**: `{record.get('command', '')}`, torch {record.get('torch', '?')}, {record.get('machine', '')}",
            "", "| split | images | read + decode (wall) | first load incl. cache write | reload from the cache |",
            "|---|---:|---:|---:|---:|"]
    for split in ("train", "val"):
        r = record.get(split)
        if r:
            rows.append(f"| {split} | {r['images']:,} | {r['decode_s']:.2f} s | {r['first_load_s']:.2f} s | "
                        f"{r['reload_s']:.2f} s |")
    return "\n".join(rows)


def render(readme: str, results_dir="results", plan_path=plan_lib.DEFAULT_PLAN) -> str:
    tables = {"recipes": lambda: recipes_table(), "blog": lambda: blog_table(),
              "accuracy": lambda: accuracy_table(results_dir, plan_path), "speed": lambda: speed_table(results_dir),
              "targets": lambda: targets_table(results_dir, plan_path)}

    def fill(m):
        name = m.group(2)
        if name not in tables:
            raise ValueError(f"README has an unknown generated block {name!r}; known: {', '.join(tables)}")
        return m.group(1) + tables[name]() + "\n" + m.group(4)

    return BLOCK.sub(fill, readme)


RUNS_FIGURE = "runs-200class.png"
HISTORY_COLUMNS = ("epoch", "val_top1", "val_top5")  # what the figure of the runs draws
INDEX = "index.json"  # what results/ holds, for readers that cannot list it (chapter 4 in Colab reads it by URL)


def index(results_dir="results", plan_path=plan_lib.DEFAULT_PLAN) -> dict:
    """The finished 200-class runs of ``results_dir`` in the plan's order: ``{"runs_200": [names]}``."""
    names = [n for n in _finished_200(_summaries(results_dir)) if (Path(results_dir) / n / "history.csv").exists()]
    return {"runs_200": _order(names, plan_lib.load(plan_path)),
            "written_by": "python -m alexnet_nb.experiments report"}


def draw_runs(results_dir="results", plan_path=plan_lib.DEFAULT_PLAN):
    """``results/runs-200class.png``: validation top-1/top-5 per epoch of every finished 200-class run, in the
    plan's order; None when there is none."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from alexnet_nb import plots

    results_dir = Path(results_dir)
    names = index(results_dir, plan_path)["runs_200"]
    if not names:
        return None
    histories = {}
    for n in names:
        path = results_dir / n / "history.csv"
        try:
            histories[n] = pd.read_csv(path)
        except (OSError, ValueError) as e:
            raise _unreadable(path, e) from None
        missing = [c for c in HISTORY_COLUMNS if c not in histories[n]]
        if missing:
            raise ResultsError(f"{path}: lacks the columns {', '.join(missing)}, which the figure reads; {FIX}")
    fig = plots.plot_runs(histories)
    fig.savefig(results_dir / RUNS_FIGURE, dpi=80)
    plt.close(fig)
    return results_dir / RUNS_FIGURE


def main(args):
    try:
        _main(args)
    except ResultsError as e:
        cli.fail(str(e))


def _main(args):
    path = Path(args.readme)
    old = path.read_text()
    new = render(old)
    index_path = Path("results") / INDEX
    index_text = json.dumps(index(), indent=1) + "\n"
    if args.check:
        stale = [str(p) for p, ok in ((path, new == old), (index_path, index_path.is_file()
                                                             and index_path.read_text() == index_text)) if not ok]
        if stale:
            print(f"{' and '.join(stale)} do not match results/: run python -m alexnet_nb.experiments report",
                  file=sys.stderr)
            sys.exit(1)
        print(f"{path} and {index_path} match results/")
        return
    figure = draw_runs()  # first: it reads every history, and a bad one must stop the report before README
    path.write_text(new)
    index_path.write_text(index_text)
    print(f"wrote the generated tables of {path}, and {index_path}" + (f", and {figure}" if figure else ""))
