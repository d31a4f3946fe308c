"""README's generated tables: ``python -m alexnet_nb.experiments report [--check]``.

Every figure in README's result and speed tables comes from a file in
``results/`` (a run's ``summary.json``, a benchmark record ``bench-*.json``);
the recipe tables come from ``config.RECIPES``. The tables sit between
``<!-- generated:NAME -->`` and ``<!-- /generated -->`` markers; ``report``
rewrites them, ``report --check`` (and a test) fails when README and
``results/`` disagree, so no figure is ever copied by hand.
"""

import json
import re
import sys
from pathlib import Path

from alexnet_nb import analysis, config, plan as plan_lib

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
    from alexnet_nb import cli

    helps = cli.field_help()
    rows = ["| setting | `paper` (the paper's section 5) | `blog` (aandyw/StuffFromScratch) | what the setting is "
            "| what the difference bought |", "| --- | --- | --- | --- | --- |"]
    rows += [f"| `{f}` | {_value(a)} | {_value(b)} | {helps.get(f, '')} | not measured |"
             for f, a, b in config.differences("paper", "blog")]
    return "\n".join(rows)


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
    summaries = {p.parent.name: plan_lib.read_summary(p.parent) for p in results_dir.glob("*/summary.json")}
    for name in _order([n for n, s in summaries.items() if s], plan):
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


def speed_table(results_dir) -> str:
    from alexnet_nb import speed

    records = []
    for path in sorted(Path(results_dir).glob("bench-*.json")):
        try:
            records.append((path.name, json.loads(path.read_text())))
        except ValueError:
            continue
    if not records:
        return "No benchmark record in `results/` yet."
    return "\n\n".join(speed.markdown(record, name) if "entries" in record else _data_markdown(record, name)
                       for name, record in records)


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
              "accuracy": lambda: accuracy_table(results_dir, plan_path), "speed": lambda: speed_table(results_dir)}

    def fill(m):
        name = m.group(2)
        if name not in tables:
            raise ValueError(f"README has an unknown generated block {name!r}; known: {', '.join(tables)}")
        return m.group(1) + tables[name]() + "\n" + m.group(4)

    return BLOCK.sub(fill, readme)


def main(args):
    path = Path(args.readme)
    old = path.read_text()
    new = render(old)
    if args.check:
        if new != old:
            print(f"{path} does not match results/: run python -m alexnet_nb.experiments report", file=sys.stderr)
            sys.exit(1)
        print(f"{path} matches results/")
        return
    path.write_text(new)
    print(f"wrote the generated tables of {path}")
