"""README's tables come from results/ and the recipes, never from a hand."""

import json
import shutil
from pathlib import Path

from alexnet_nb import config, report

ROOT = Path(__file__).resolve().parents[1]


def test_readme_matches_results_and_recipes():
    readme = (ROOT / "README.md").read_text()
    assert report.render(readme, ROOT / "results", ROOT / "experiments" / "plan.toml") == readme, \
        "README's tables are stale: run python -m alexnet_nb.experiments report"
    for block in ("recipes", "blog", "accuracy", "speed"):
        assert f"<!-- generated:{block} -->" in readme


def test_a_new_result_changes_the_table(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(ROOT / "results", results)
    summary = json.loads((ROOT / "results" / "cpu-10class" / "summary.json").read_text())
    summary.update(run="blog", recipe="blog", classes=200, epochs_done=12, epochs_planned=30, finished=False,
                   stopped="time limit", final={"val_top1": 30.12, "val_top5": 57.0, "holdout_top1": 29.5,
                                                "holdout_top5": 56.0})
    (results / "blog").mkdir()
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
