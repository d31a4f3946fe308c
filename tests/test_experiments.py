"""The GPU command end to end on a CPU: three calls as on the GPU machine, a tiny plan, a tiny budget (issue 11)."""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path


from alexnet_nb import plan as plan_lib, synthetic

TINY_PLAN = """
[choose]
rule = "final holdout top-1"
candidates = ["first"]

[[experiment]]
name = "first"
recipe = "paper"
epochs = 1
why = "a candidate"

[[experiment]]
name = "too-long"
recipe = "blog"
epochs = 100000
why = "can never fit the budget"

[[experiment]]
name = "chosen-tanh"
recipe = "@chosen"
overrides = { activation = "tanh", lrn = false }
epochs = 1
why = "waits for the choice"
"""


def parts(root: Path):
    """Generated data in the official layout, packed like the real parts (train-K: some classes; val: the lists)."""
    folder = synthetic.make_tiny_imagenet(root / "gen", num_classes=5, train_per_class=12, val_per_class=4)
    wnids = (folder / "wnids.txt").read_text().split()
    carries = [root / f".carry{i}" for i in (1, 2, 3)]
    for c in carries:
        c.mkdir()
    groups = [(carries[0], "train-0", wnids[:2]), (carries[1], "train-1", wnids[2:4]),
              (carries[2], "train-2", wnids[4:])]
    for carry, name, ids in groups:
        with tarfile.open(carry / f"tiny-imagenet-200-{name}.tar.gz", "w:gz") as tar:
            for w in ids:
                tar.add(folder / "train" / w, arcname=f"tiny-imagenet-200/train/{w}")
    with tarfile.open(carries[2] / "tiny-imagenet-200-val.tar.gz", "w:gz") as tar:
        for name in ("wnids.txt", "words.txt", "val"):
            tar.add(folder / name, arcname=f"tiny-imagenet-200/{name}")
    return carries


def run(args, cwd, **kw):
    env = dict(os.environ, ALEXNET_NB_DATA=str(cwd / "data"), ALEXNET_NB_RUNS=str(cwd / "runs"),
               OMP_NUM_THREADS="2")
    env.pop("ALEXNET_NB_QUICK", None)
    return subprocess.run([sys.executable, "-m", "alexnet_nb.experiments", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=kw.get("timeout", 600))


def test_three_calls_as_on_the_gpu_machine_then_a_fourth_skips_what_is_done(tmp_path):
    carries = parts(tmp_path)
    (tmp_path / "plan.toml").write_text(TINY_PLAN)
    common = ["--plan", "plan.toml", "--quick", "--command-seconds", "240", "--prepare-seconds", "5"]

    outs = []
    for i, carry in enumerate(carries, 1):
        out = tmp_path / f"out{i}"
        prepare = ["--prepare-seconds", "0"] if i == 2 else []  # the second call: no time to prepare anything
        done = run(["gpu", "--archives", str(carry), "--out", str(out), *common, *prepare], tmp_path)
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        outs.append((out, done.stdout))

    for out, stdout in outs[:2]:  # the dataset is incomplete: only extraction and preparation
        assert "dataset: incomplete" in stdout and "speed matrix" not in stdout.split("this call:")[-1]
    assert "  warmed " in outs[0][1].split("this call:")[-1]  # the first entry's step ran before time was up
    assert "  warmed " not in outs[1][1] and "not warmed  out of preparation time" in outs[1][1]
    out, stdout = outs[2]
    table = stdout.split("this call:")[-1]
    assert "dataset: complete" in stdout
    assert "first" in table and "finished" in table
    assert "too-long" in table and "skipped" in table and "needs ~" in table
    assert "chose first" in stdout and "chosen-tanh" in table  # chosen within the same call, then run
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and "results.tar.gz" in files and "gpu.log" in files
    assert any(f.startswith("bench-") for f in files)
    with tarfile.open(out / "results.tar.gz") as tar:
        names = tar.getnames()
    assert "first/history.csv" in names and "first/summary.json" in names and "first/train.log" in names
    assert not any(n.endswith(".pt") for n in names)  # checkpoints stay on the machine
    summary = json.loads(tar_member(out / "results.tar.gz", "chosen-tanh/summary.json"))
    assert summary["config"]["activation"] == "tanh" and summary["config"]["lrn"] is False
    assert summary["plan_entry"]["recipe"] == "@chosen" and summary["finished"]

    fourth = run(["gpu", "--archives", *map(str, carries), "--out", str(tmp_path / "out4"), *common], tmp_path)
    assert fourth.returncode == 0, fourth.stderr[-3000:]
    table = fourth.stdout.split("this call:")[-1]
    assert "already extracted" in fourth.stdout and "measured before" in table
    assert table.count(" done ") >= 2 and "--> first" not in fourth.stdout

    # Back home: the archive unpacks into results/, where the report and the plan status find it.
    home = tmp_path / "home"
    home.mkdir()
    done = run(["unpack", str(out / "results.tar.gz")], home)
    assert done.returncode == 0 and (home / "results" / "first" / "summary.json").exists()
    logs = list((home / "results" / "logs").glob("gpu-*.log"))  # every call's log, named by the first call's time
    assert len(logs) == 1 and logs[0].read_text().count("=== gpu call at") == 3
    assert len(logs[0].stem) == len("gpu-") + 14


def tar_member(archive, name):
    with tarfile.open(archive) as tar:
        return tar.extractfile(name).read()


def test_an_unknown_recipe_is_an_error_before_anything_runs(tmp_path):
    (tmp_path / "plan.toml").write_text(TINY_PLAN.replace('recipe = "blog"', 'recipe = "blogg"'))
    done = run(["run", "--plan", "plan.toml", "--budget", "1000", "--quick"], tmp_path, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "unknown recipe 'blogg'" in done.stderr and "too-long" in done.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "runs").exists()


def test_a_budget_too_small_for_anything_says_so_and_exits_0(tmp_path):
    (tmp_path / "plan.toml").write_text(TINY_PLAN)
    state = tmp_path / "runs" / "gpu"
    state.mkdir(parents=True)
    (state / "bench-cpu.json").write_text(json.dumps(fake_record()))
    done = run(["run", "--plan", "plan.toml", "--budget", "5", "--quick"], tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("skipped") >= 2 and "needs ~" in done.stdout and "nothing fits" in done.stdout


def fake_record():
    from alexnet_nb import speed

    return speed.example_record(images_per_s=100.0)


def test_the_plan_file_holds_the_first_plan_in_order():
    plan = plan_lib.load()
    names = [e.name for e in plan.entries]
    assert names[:6] == ["blog", "paper", "ours", "ours-a", "ours-b", "ours-c"]
    assert set(plan.candidates) == {"paper", "ours", "ours-a", "ours-b", "ours-c"}
    ablations = {tuple(sorted(e.overrides.items())) for e in plan.entries if e.recipe == plan_lib.CHOSEN}
    for switch in [("lrn", False), ("pool", 2), ("dropout", 0.0), ("activation", "tanh"), ("init", "paper"),
                   ("groups", 2)]:
        assert (switch,) in ablations
    assert [e.seed for e in plan.entries if e.recipe == plan_lib.CHOSEN and not e.overrides
            and not e.chapters] == [1, 2]
    # The chapters a reader opens come right after the choice, before the ablations.
    assert names[6] == "chapters" and plan.entries[6].chapters == ("03_train", "04_results")
    assert all(e.epochs == 30 and e.why for e in plan.entries)


def test_the_choice_is_by_final_holdout_top1_never_val():
    plan = plan_lib.load()

    def s(holdout, val, recipe):
        return {"finished": True, "recipe": recipe, "final": {"holdout_top1": holdout, "val_top1": val}}

    known = {"paper": s(40, 60, "paper"), "ours": s(45, 41, "ours"), "ours-a": s(44, 70, "ours-a"),
             "ours-b": s(30, 30, "ours-b")}
    recipe, why = plan_lib.choose(plan, known)
    assert recipe is None and "ours-c" in why  # not every candidate has finished
    known["ours-c"] = s(45, 99, "ours-c")  # a tie on the holdout goes to the earlier candidate
    recipe, why = plan_lib.choose(plan, known)
    assert recipe == "ours" and "chose ours" in why and "validation was not looked at" in why


def test_a_gpu_record_is_named_by_its_gpu_so_another_gpu_never_replaces_it(tmp_path):
    from alexnet_nb import experiments

    record = dict(fake_record(), device="NVIDIA H100 80GB HBM3", device_type="cuda")
    (tmp_path / "bench-gpu.json").write_text(json.dumps(record))
    assert experiments.record_name(tmp_path / "bench-gpu.json") == "bench-gpu-nvidia-h100-80gb-hbm3.json"
    (tmp_path / "bench-cpu.json").write_text(json.dumps(fake_record()))  # a CPU's keeps its name
    assert experiments.record_name(tmp_path / "bench-cpu.json") == "bench-cpu.json"
    (tmp_path / "bench-bad.json").write_text("{")
    assert experiments.record_name(tmp_path / "bench-bad.json") == "bench-bad.json"


def test_warming_up_compiles_the_due_matrix_candidates_then_the_next_two_runs(tmp_path, monkeypatch):
    from alexnet_nb import experiments

    monkeypatch.setattr(experiments, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(experiments, "STATE", tmp_path / "state")
    from alexnet_nb import speed, warm

    plan = plan_lib.load()
    names = [name for name, _, _ in experiments.warm_targets(plan, bench_due=True, quick=False)]
    measured_order = [f"speed: LRN {e['lrn_impl']}" + (f", {e['variant']}" if e["variant"] else "")
                      for e in speed.plan([128], gpu=True)
                      if e["compiled"] and e["id"] != "ours-step-compiled-slices-b128"]
    assert names == measured_order + ["blog", "paper"] and len(measured_order) == 2
    # the keys are those the runner estimates with: the entry's Config, at the quick sizes in quick mode
    for quick, extra in ((False, {}), (True, dict(plan_lib.QUICK_SIZES))):
        _, cfg, _ = experiments.warm_targets(plan, bench_due=False, quick=quick)[0]
        assert warm.graph_key(cfg) == warm.graph_key(plan.entries[0].config(None, **extra))
    (_, first, _), (_, second, flags) = experiments.warm_targets(plan, bench_due=True, quick=False)[:2]
    assert (first.lrn_impl, first.compile_mode, first.compile_scope, first.batch_size) == \
        ("triton", "default", "net", 128)
    assert (second.lrn_impl, second.compile_mode, second.compile_scope) == ("triton", "reduce-overhead", "step")
    assert flags[flags.index("--compile-mode") + 1] == "reduce-overhead"
    assert flags[flags.index("--lrn-impl") + 1] == "triton"
    # no matrix due (or quick mode): only the runs; finished ones are passed over
    (tmp_path / "results" / "blog").mkdir(parents=True)
    (tmp_path / "results" / "blog" / "summary.json").write_text(json.dumps({"finished": True, "recipe": "blog"}))
    assert [n for n, _, _ in experiments.warm_targets(plan, bench_due=False, quick=False)] == ["paper", "ours"]
    assert [n for n, _, _ in experiments.warm_targets(plan, bench_due=True, quick=True)] == ["paper", "ours"]
