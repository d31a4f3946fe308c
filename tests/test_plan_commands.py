"""The plan commands stopped, clashing and resumed as a user would meet them (issue 24, item 5; issue 27, item 4)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from alexnet_nb import speed, synthetic

ONE_ENTRY = """
[[experiment]]
name = "{name}"
recipe = "paper"
epochs = {epochs}
why = "a test"
"""


def setup(tmp_path, epochs=6, name="long"):
    (tmp_path / "plan.toml").write_text(ONE_ENTRY.format(name=name, epochs=epochs))
    state = tmp_path / "runs" / "gpu"
    state.mkdir(parents=True)
    (state / "bench-cpu.json").write_text(json.dumps(speed.example_record(images_per_s=100.0)))
    synthetic.make_tiny_imagenet(tmp_path / "gen", num_classes=4, train_per_class=12, val_per_class=4)


def command(tmp_path, *args):
    env = dict(os.environ, ALEXNET_NB_DATA=str(tmp_path / "data"), ALEXNET_NB_RUNS=str(tmp_path / "runs"),
               OMP_NUM_THREADS="1")
    env.pop("ALEXNET_NB_QUICK", None)
    return [sys.executable, "-m", "alexnet_nb.experiments", *args], env


def start(tmp_path, *args):
    cmd, env = command(tmp_path, *args)
    return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(tmp_path, *args, timeout=300):
    cmd, env = command(tmp_path, *args)
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)


def wait_for(path: Path, process, seconds=180):
    until = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < until, f"{path} never appeared"
        time.sleep(0.2)


RUN = ["run", "--plan", "plan.toml", "--budget", "600", "--quick", "--source", "gen"]


def test_a_stop_reaches_the_run_which_checkpoints_and_the_next_call_resumes_it(tmp_path):
    setup(tmp_path)
    parent = start(tmp_path, *RUN)
    run_dir = tmp_path / "runs" / "plan" / "long"
    wait_for(run_dir / "history.csv", parent)  # the child is training
    parent.send_signal(signal.SIGTERM)
    out, err = parent.communicate(timeout=180)
    assert parent.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "SIGTERM: passing the stop on" in out and "cut off" in out.split("plan:")[-1]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stopped"] and 0 < summary["epochs_done"] < 6  # the child stopped too, with its checkpoint
    assert (run_dir / "checkpoint.pt").exists() and not (run_dir / ".lock").exists()
    assert not (tmp_path / "runs" / "plan" / ".lock").exists()

    again = finish(tmp_path, *RUN)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming the cut-off run, {6 - summary['epochs_done']} of 6 epochs to go" in again.stdout
    assert json.loads((run_dir / "summary.json").read_text())["epochs_done"] == 6


def test_a_run_that_finished_after_its_command_died_is_collected_not_trained_again(tmp_path):
    setup(tmp_path, epochs=1, name="orphan")
    run_dir = tmp_path / "runs" / "plan" / "orphan"
    cmd, env = command(tmp_path)
    trained = subprocess.run([sys.executable, "-m", "alexnet_nb.train", "--recipe", "paper", "--epochs", "1",
                              "--seed", "0", "--name", "orphan", "--out-dir", str(run_dir), "--quick",
                              "--no-compile", "--no-progress", "--source", "gen"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert trained.returncode == 0, trained.stderr[-2000:]

    done = finish(tmp_path, *RUN)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "collected" in done.stdout and "--> orphan" not in done.stdout
    assert json.loads((tmp_path / "results" / "orphan" / "summary.json").read_text())["plan_entry"]["name"] == "orphan"

    # A finished run of another recipe or length is not this entry's: it is trained, not collected.
    (tmp_path / "plan.toml").write_text(ONE_ENTRY.format(name="orphan", epochs=2))
    (tmp_path / "results" / "orphan" / "summary.json").unlink()
    done = finish(tmp_path, *RUN)
    assert done.returncode == 0 and "collected" not in done.stdout and "--> orphan" in done.stdout


def test_a_second_plan_command_is_refused_in_one_line_naming_the_holder(tmp_path):
    setup(tmp_path)
    parent = start(tmp_path, *RUN)
    try:
        wait_for(tmp_path / "runs" / "plan" / ".lock", parent)
        second = finish(tmp_path, *RUN, timeout=120)
        assert second.returncode == 2 and second.stderr.count("\n") == 1, second.stderr
        assert f"process {parent.pid} on" in second.stderr and "another plan command" in second.stderr
    finally:
        parent.send_signal(signal.SIGTERM)
        parent.communicate(timeout=180)


def test_the_plan_never_replaces_a_users_run_of_the_same_name(tmp_path):
    setup(tmp_path, epochs=1, name="blog")
    mine = tmp_path / "runs" / "blog"
    mine.mkdir(parents=True)
    (mine / "history.csv").write_text("epoch\n1\n")
    done = finish(tmp_path, *RUN)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (mine / "history.csv").read_text() == "epoch\n1\n"
    assert (tmp_path / "runs" / "plan" / "blog" / "summary.json").exists()
