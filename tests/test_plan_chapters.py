"""Chapters as plan entries (issue 24, item 1): executed by the plan as on the GPU, in quick mode on this CPU."""

import json
import os
import subprocess
import sys

import nbformat
import pytest

from alexnet_nb import chapters, experiments, plan as plan_lib, speed, synthetic

PLAN = """
[choose]
candidates = ["first"]

[[experiment]]
name = "first"
recipe = "paper"
epochs = 1
why = "the one candidate"

[[experiment]]
name = "chapters"
recipe = "@chosen"
epochs = 30
chapters = ["03_train", "04_results"]
why = "the chapters a reader opens, run on the chosen recipe"
"""


def run(tmp_path, *args):
    # MPLBACKEND as some machines set it: the chapters' figures must land in the notebooks all the same.
    env = dict(os.environ, ALEXNET_NB_DATA=str(tmp_path / "data"), ALEXNET_NB_RUNS=str(tmp_path / "runs"),
               OMP_NUM_THREADS="2", MPLBACKEND="Agg")
    env.pop("ALEXNET_NB_QUICK", None)
    return subprocess.run([sys.executable, "-m", "alexnet_nb.experiments", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)


def outputs(nb):
    return "\n".join(o.get("text", "") + json.dumps(o.get("data", {}).get("text/plain", ""))
                     for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def test_the_plan_executes_chapters_3_and_4_on_the_chosen_recipe_and_unpack_puts_them_in_notebooks(tmp_path):
    (tmp_path / "plan.toml").write_text(PLAN)
    (tmp_path / "runs" / "gpu").mkdir(parents=True)
    (tmp_path / "runs" / "gpu" / "bench-cpu.json").write_text(json.dumps(speed.example_record(images_per_s=100.0)))
    synthetic.make_tiny_imagenet(tmp_path / "gen", num_classes=4, train_per_class=12, val_per_class=4)
    command = ["run", "--plan", "plan.toml", "--budget", "900", "--quick", "--source", "gen"]

    done = run(tmp_path, *command)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    table = done.stdout.split("plan:")[-1]
    assert "chose first (recipe paper)" in done.stdout and " executed " in table, table
    folder = tmp_path / "results" / "chapters"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["kind"] == "chapters" and summary["finished"] and summary["recipe"] == "paper"
    three = nbformat.read(folder / "03_train.ipynb", as_version=4)
    four = nbformat.read(folder / "04_results.ipynb", as_version=4)
    assert any('RECIPE = \'paper\'  # @param' in c.source for c in three.cells)
    assert any('RUN = \'03_paper\'  # @param' in c.source for c in four.cells)
    assert all(c.execution_count for c in three.cells + four.cells if c.cell_type == "code")
    assert "03_paper: read from run folder" in outputs(four)  # chapter 4 read the run chapter 3 trained
    figures = [o for c in three.cells + four.cells if c.cell_type == "code" for o in c.outputs
               if "image/png" in o.get("data", {})]
    assert len(figures) >= 5  # the figures landed in the notebooks (the inline backend, whatever MPLBACKEND says)
    assert plan_lib.finished(json.loads((tmp_path / "results" / "03_paper" / "summary.json").read_text()))

    again = run(tmp_path, *command)  # the chapters ran this recipe: not again
    assert again.returncode == 0 and "--> chapters" not in again.stdout, again.stdout[-2000:]

    # Brought home: unpack puts the executed chapters into notebooks/, the run into results/.
    experiments.pack(tmp_path / "out", tmp_path / "no.log", state=tmp_path)
    home = tmp_path / "home"
    (home / "notebooks").mkdir(parents=True)
    (home / "notebooks" / "03_train.ipynb").write_text("the old chapter")
    env = dict(os.environ)
    unpacked = subprocess.run([sys.executable, "-m", "alexnet_nb.experiments", "unpack",
                               str(tmp_path / "out" / "results.tar.gz")], cwd=home, env=env, capture_output=True,
                              text=True)
    assert unpacked.returncode == 0, unpacked.stderr
    assert "executed chapters 03_train.ipynb, 04_results.ipynb into notebooks/" in unpacked.stdout
    assert nbformat.read(home / "notebooks" / "03_train.ipynb", as_version=4).cells[0].cell_type == "markdown"
    assert (home / "results" / "03_paper" / "history.csv").exists()
    assert not list((home / "results" / "chapters").glob("*.ipynb"))


def test_a_form_field_is_set_as_colab_sets_it_and_a_missing_one_is_an_error():
    nb = nbformat.read(chapters.path_of("03_train"), as_version=4)
    chapters.set_parameters(nb, {"RECIPE": "ours"}, "03_train")
    line = next(l for c in nb.cells for l in c.source.splitlines() if l.startswith("RECIPE = "))
    assert line.startswith("RECIPE = 'ours'  # @param [")
    with pytest.raises(chapters.ChapterError, match="no form fields 'NOPE"):
        chapters.set_parameters(nb, {"NOPE": "x"}, "03_train")


@pytest.mark.parametrize("entry, message", [
    ('chapters = ["99_none"]', "no chapter '99_none'"),
    ('chapters = []', "must be a non-empty"),
    ('chapters = ["03_train"]\noverrides = { lr = 0.1 }', "no overrides"),
])
def test_a_chapters_entry_that_cannot_run_as_a_reader_would_is_refused(tmp_path, entry, message):
    (tmp_path / "plan.toml").write_text(f'[[experiment]]\nname = "c"\nrecipe = "paper"\nepochs = 30\n{entry}\n')
    with pytest.raises(plan_lib.PlanError, match=message):
        plan_lib.load(tmp_path / "plan.toml")


def test_missing_jupyter_is_unpacked_from_the_wheels_that_travelled_without_pip(tmp_path, monkeypatch):
    import zipfile

    wheels = tmp_path / "carry3" / chapters.WHEELS_DIR
    wheels.mkdir(parents=True)
    with zipfile.ZipFile(wheels / "fakenb-1.0-py3-none-any.whl", "w") as z:
        z.writestr("fakenb_client/__init__.py", "X = 1\n")
        z.writestr("fakenb-1.0.data/purelib/fakenb_kernel/__init__.py", "Y = 2\n")
        z.writestr("fakenb-1.0.data/scripts/fakenb", "#!/bin/sh\n")
    monkeypatch.setattr(chapters, "NEEDED", ("fakenb_client", "fakenb_kernel"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    assert "wheels" in chapters.jupyter_status([tmp_path / "carry3"])
    with pytest.raises(chapters.ChapterError, match="no wheels in"):
        chapters.ensure_jupyter([tmp_path / "nothing"], site=tmp_path / "site")
    assert "unpacked 1 wheels" in chapters.ensure_jupyter([tmp_path / "carry3"], site=tmp_path / "site")
    assert (tmp_path / "site" / "fakenb_kernel" / "__init__.py").exists()
    assert not (tmp_path / "site" / "fakenb").exists()  # scripts are not needed to run a kernel
    assert os.environ["PYTHONPATH"].split(os.pathsep) == [str(tmp_path / "site"), "/elsewhere"]  # the kernel's too

    with zipfile.ZipFile(wheels / "evil-1.0-py3-none-any.whl", "w") as z:
        z.writestr("../outside.py", "")
    monkeypatch.setattr(chapters, "NEEDED", ("fakenb_absent",))
    with pytest.raises(chapters.ChapterError, match="points outside"):
        chapters.ensure_jupyter([tmp_path / "carry3"], site=tmp_path / "site2")
    assert not (tmp_path / "outside.py").exists()


def test_only_chapters_that_ran_to_their_end_replace_the_committed_ones(tmp_path):
    from alexnet_nb import plan_chapters

    results, notebooks = tmp_path / "results", tmp_path / "notebooks"
    for name, finished, states in [("good", True, {"03_train": "executed"}),
                                   ("half", False, {"03_train": "executed", "04_results": "failed"})]:
        (results / name).mkdir(parents=True)
        (results / name / "summary.json").write_text(json.dumps(
            {"kind": "chapters", "finished": finished, "chapters": {k: {"status": v} for k, v in states.items()}}))
        for chapter in states:
            (results / name / f"{chapter}.ipynb").write_text(name)
    assert plan_chapters.notebooks_from(results, notebooks) == ["03_train.ipynb"]
    assert (notebooks / "03_train.ipynb").read_text() == "good" and not (notebooks / "04_results.ipynb").exists()
