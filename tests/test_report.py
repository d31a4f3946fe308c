"""README's tables come from results/ and the recipes, never from a hand."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from alexnet_nb import config, report

ROOT = Path(__file__).resolve().parents[1]


def test_readme_matches_results_and_recipes():
    readme = (ROOT / "README.md").read_text()
    assert report.render(readme, ROOT / "results", ROOT / "experiments" / "plan.toml") == readme, \
        "README's tables are stale: run python -m alexnet_nb.experiments report"
    index = json.loads((ROOT / "results" / "index.json").read_text())
    assert index == report.index(ROOT / "results", ROOT / "experiments" / "plan.toml"), \
        "results/index.json is stale: run python -m alexnet_nb.experiments report"
    for block in ("recipes", "blog", "accuracy", "speed", "targets"):
        assert f"<!-- generated:{block} -->" in readme


def test_a_new_result_changes_the_table(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(ROOT / "results", results)
    summary = json.loads((ROOT / "results" / "cpu-10class" / "summary.json").read_text())
    summary.update(run="blog", recipe="blog", classes=200, epochs_done=12, epochs_planned=30, finished=False,
                   stopped="time limit", final={"val_top1": 30.12, "val_top5": 57.0, "holdout_top1": 29.5,
                                                "holdout_top5": 56.0})
    (results / "blog").mkdir(exist_ok=True)
    (results / "blog" / "summary.json").write_text(json.dumps(summary))
    table = report.accuracy_table(results, ROOT / "experiments" / "plan.toml")
    row = next(line for line in table.splitlines() if line.startswith("| `blog`"))
    assert "| blog | 200 | 12 of 30 (cut off: time limit) | 30.12% | 57.00% | 29.50% |" in row
    # the plan's order: blog before the older CPU run
    assert table.index("`blog`") < table.index("`cpu-10class`")


def test_every_recipe_and_every_blog_difference_is_in_the_tables():
    recipes, blog = report.recipes_table(), report.blog_table()
    for name in config.RECIPES:
        assert f"| `{name}` |" in recipes
    for field, _, _ in config.differences("paper", "blog"):
        assert f"| `{field}` |" in blog


def _put(results, name, recipe, val, holdout, classes=200, finished=True):
    (results / name).mkdir(parents=True)
    (results / name / "summary.json").write_text(json.dumps(dict(
        run=name, recipe=recipe, classes=classes, epochs_done=30 if finished else 12, epochs_planned=30,
        finished=finished, device="NVIDIA H200", precision="bf16", command=f"train --recipe {recipe}",
        final=dict(val_top1=val[0], val_top5=val[1], holdout_top1=holdout, holdout_top5=0.0))))


def _gpu_record(results, device, images_per_s, t4_minutes=None):
    from alexnet_nb import speed

    record = speed.example_record(images_per_s=images_per_s)  # the blog's step: a tenth of it
    record.update(device=device, device_type="cuda",
                  projection=t4_minutes and dict(t4_30_epochs_min=t4_minutes, entry="", fraction_of_peak=0.5))
    (results / f"bench-gpu-{device.split()[-1].lower()}.json").write_text(json.dumps(record))


def test_the_targets_table_says_what_is_met_and_what_is_not(tmp_path):
    plan = ROOT / "experiments" / "plan.toml"
    results = tmp_path / "results"
    results.mkdir()
    assert report.targets_table(results, plan).count("| not measured") == 5

    _put(results, "blog", "blog", (34.0, 58.0), 33.0)  # 2.25 points off the blog's top-1: a miss
    for name, holdout in [("paper", 45.0), ("ours", 52.0), ("ours-a", 40.0), ("ours-b", 41.0)]:
        _put(results, name, name, (50.5, 75.5) if name == "ours" else (10.0, 20.0), holdout)
    _put(results, "ours-c", "ours-c", (60.0, 80.0), 60.0, finished=False)  # cut off: not a candidate yet
    _gpu_record(results, "NVIDIA H200", 31_000.0)
    rows = report.targets_table(results, plan).splitlines()
    anchor, accuracy, speed, ratio, t4 = rows[2:7]
    assert "34.00% / 58.00% (off by at most 2.25 points) | **no**" in anchor
    assert "no recipe chosen yet" in accuracy and "ours-c" in accuracy
    assert "`ours` (52.00%), val 50.50% / 75.50%" in accuracy
    assert "| not yet |" in accuracy
    assert "31,000 on NVIDIA H200 | not yet (not on an H100)" in speed  # fast enough, but not on the named chip
    assert "10.0x on NVIDIA H200 | **no**" in ratio and "not measured" in t4

    (results / "ours-c" / "summary.json").unlink()
    (results / "ours-c").rmdir()
    _put(results, "ours-c", "ours-c", (60.0, 80.0), 50.0)
    _gpu_record(results, "NVIDIA H100", 29_000.0, t4_minutes=25.0)
    rows = report.targets_table(results, plan).splitlines()
    accuracy = rows[3]
    assert "50.50% / 75.50% (`ours`, chose ours" in accuracy and accuracy.endswith("| yes | `results/ours/` |")
    h100 = next(r for r in rows if "on NVIDIA H100 |" in r)
    assert "29,000 on NVIDIA H100 | **no**" in h100
    # a projection under the limit is not a run on a T4
    assert "| 25 min, projected from NVIDIA H100 | not yet (projected, not run on a T4) |" in "\n".join(rows)


def test_the_runs_figure_draws_finished_200_class_runs_only(tmp_path, monkeypatch):
    from alexnet_nb import plots

    plan = ROOT / "experiments" / "plan.toml"
    results = tmp_path / "results"
    results.mkdir()
    assert report.draw_runs(results, plan) is None
    _put(results, "paper", "paper", (40.0, 60.0), 41.0)
    _put(results, "cut", "paper", (40.0, 60.0), 41.0, finished=False)
    _put(results, "small", "paper", (40.0, 60.0), 41.0, classes=10)
    for name in ("paper", "cut", "small"):
        shutil.copy(ROOT / "results" / "paper" / "history.csv", results / name / "history.csv")
    drawn, real = [], plots.plot_runs
    monkeypatch.setattr(plots, "plot_runs", lambda histories: drawn.append(list(histories)) or real(histories))
    figure = report.draw_runs(results, plan)
    assert figure == results / "runs-200class.png" and figure.stat().st_size > 0 and drawn == [["paper"]]


def test_chapter_4_finds_the_committed_200_class_runs_through_the_index(tmp_path):
    from alexnet_nb import analysis

    plan = ROOT / "experiments" / "plan.toml"
    results = tmp_path / "results"
    results.mkdir()
    _put(results, "ours", "ours", (50.5, 75.5), 52.0)
    _put(results, "blog", "blog", (31.0, 58.0), 30.0)
    _put(results, "small", "paper", (40.0, 60.0), 41.0, classes=10)
    for name in ("ours", "blog", "small"):
        shutil.copy(ROOT / "results" / name.replace("small", "paper") / "history.csv", results / name / "history.csv")
    (results / "index.json").write_text(json.dumps(report.index(results, plan)))
    names = analysis.committed_runs(results)
    assert names == ["blog", "ours"]  # the plan's order; the 10-class run is no comparison with the blog
    table = analysis.runs_table({n: analysis.load_history(n, results) for n in names})
    assert list(table.index) == ["blog", "ours", "blog, as published", "our target"]
    assert table.loc["ours", "top1"] == pd.read_csv(results / "ours" / "history.csv")["val_top1"].iloc[-1]


def _report_home(tmp_path):
    """A copy of the repository's README, plan and results/, where ``report`` runs as it would at home."""
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    (tmp_path / "experiments").mkdir()
    shutil.copy(ROOT / "experiments" / "plan.toml", tmp_path / "experiments" / "plan.toml")
    shutil.copytree(ROOT / "results", tmp_path / "results")
    return tmp_path


def _damage(summary_path, how):
    summary = json.loads(summary_path.read_text())
    if how == "bad json":
        summary_path.write_text(summary_path.read_text()[:-40])
    elif how == "final.holdout_top1":
        del summary["final"]["holdout_top1"]
        summary_path.write_text(json.dumps(summary))
    else:
        del summary[how]
        summary_path.write_text(json.dumps(summary))


@pytest.mark.parametrize("how", ["bad json", "final", "final.holdout_top1", "classes", "device"])
@pytest.mark.parametrize("check", [False, True])
def test_a_damaged_summary_stops_the_report_in_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys, how,
                                                                           check):
    from alexnet_nb import experiments

    home = _report_home(tmp_path)
    damaged = home / "results" / "ours" / "summary.json"
    _damage(damaged, how)
    before = {p: p.read_bytes() for p in home.rglob("*") if p.is_file()}
    monkeypatch.chdir(home)
    with pytest.raises(SystemExit) as e:
        experiments.main(["report", *(["--check"] if check else [])])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("error: ")
    assert "results/ours/summary.json" in err and "Traceback" not in err
    if how != "bad json":
        assert f"'{how}'" in err  # the key it needs
    assert {p: p.read_bytes() for p in home.rglob("*") if p.is_file()} == before  # README and index.json too


def test_a_damaged_bench_record_stops_the_report_too(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "bench-gpu-nvidia-h200.json").write_text('{"device": "NVIDIA H')
    with pytest.raises(report.ResultsError, match="bench-gpu-nvidia-h200.json"):
        report.speed_table(results)
