"""The benchmarks run end to end on generated data, through the training step, and keep what they measured."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from alexnet_nb import bench, bench_record, files, model, speed, step, synthetic


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return synthetic.make_tiny_imagenet(tmp_path_factory.mktemp("data"), num_classes=2, train_per_class=8,
                                        val_per_class=2)


def train_args(folder, tmp_path, *extra):
    return ["train", "--source", str(folder), "--cache-dir", str(tmp_path / "cache"), "--device", "cpu",
            "--steps", "1", "--warmup", "0", "--repeats", "1", "--pipeline-steps", "2", "--workers", "0", *extra]


def count_steps(monkeypatch, raise_on=None):
    """Record every call of step.TrainStep (the images it was given); raise KeyboardInterrupt at call ``raise_on``."""
    calls, original = [], step.TrainStep.__call__

    def counted(self, images_u8, labels, params):
        calls.append(images_u8)
        if len(calls) == raise_on:
            raise KeyboardInterrupt
        return original(self, images_u8, labels, params)

    monkeypatch.setattr(step.TrainStep, "__call__", counted)
    return calls


@pytest.fixture
def tiny_network(monkeypatch):
    """For tests of the record, not of AlexNet: a network that takes 227x227 input in milliseconds."""
    def tiny(cfg, num_classes):
        return nn.Sequential(nn.Conv2d(3, 4, 9, stride=9), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(4, num_classes))
    monkeypatch.setattr(model, "from_config", tiny)


def test_bench_train_runs_the_training_step_and_the_blogs(folder, tmp_path, capsys, monkeypatch):
    calls = count_steps(monkeypatch)
    out = tmp_path / "bench.json"
    record = bench.main(train_args(folder, tmp_path, "--batch-size", "2", "--json", str(out)))
    printed = capsys.readouterr().out
    assert "input pipelines alone" in printed and "vs blog" in printed and "blog step" in printed
    assert [e["id"] for e in record["entries"]] == ["ours-step-eager-slices-b2", "blog-step-b2", "ours-input-b2",
                                                    "blog-input-b2"]
    assert all(e["status"] == "measured" and e["images_per_s"] > 0 for e in record["entries"])
    # One timed step of ours, and through TrainStep, which got uint8 images: the augmentation is in the step.
    assert len(calls) == 1 and calls[0].dtype == torch.uint8 and calls[0].shape == (2, 3, 64, 64)
    assert record["flops_per_image"] == 6 * 1_131_979_296  # 3 passes x 2 FLOPs x the model's multiply-adds
    assert record["peak_flops"] is None and record["projection"] is None  # no known peak for a CPU: nothing made up
    saved = json.loads(out.read_text())
    assert saved["finished"] and saved["command"].startswith("python -m alexnet_nb.bench train")
    assert speed.images_per_s(out, batch=2, compiled=False) == record["entries"][0]["images_per_s"]
    assert speed.images_per_s(out, batch=2, compiled=True) is None  # not planned


def test_matrix_writes_a_complete_record_after_every_entry(folder, tmp_path, tiny_network, monkeypatch):
    calls = count_steps(monkeypatch)
    out, snapshots, write = tmp_path / "m.json", [], files.atomic_write

    def checked_write(path, fn):
        write(path, fn)
        if Path(path) == out:  # not the decoded cache, also written atomically
            snapshots.append(json.loads(out.read_text()))  # valid JSON on disk after every write

    monkeypatch.setattr(files, "atomic_write", checked_write)

    def no_compiler(*args, **kwargs):
        raise RuntimeError("no compiler here\nsecond line")

    monkeypatch.setattr(torch, "compile", no_compiler)
    record = bench.main(train_args(folder, tmp_path, "--matrix", "--budget", "60", "--batch-sizes", "2", "4",
                                   "--compile", "--json", out))
    planned = [e["id"] for e in speed.plan([2, 4], matrix=True, compile=True, gpu=False)]
    assert [e["id"] for e in record["entries"]] == planned and len(planned) == 11
    statuses = {e["id"]: e["status"] for e in record["entries"]}
    # A failed compile loses nothing else: every compiled entry says why, every other one was measured.
    for e in record["entries"]:
        if e["compiled"]:
            assert e["status"] == "failed" and e["reason"] == "RuntimeError: no compiler here"
        else:
            assert e["status"] == "measured" and e["images_per_s"] > 0, e
    assert len(calls) == sum(s == "measured" for i, s in statuses.items() if i.startswith("ours-step"))
    assert len(snapshots) >= 2 * len(planned) and snapshots[-1] == json.loads(out.read_text())
    assert [e["status"] for e in snapshots[0]["entries"]] == ["pending"] * len(planned)
    assert record["finished"] and speed.images_per_s(record, batch=4, compiled=False) > 0
    text = bench_record.table(record)
    assert len(text) <= 4000 and "failed: RuntimeError: no compiler here" in text


def test_an_interrupted_matrix_keeps_what_it_measured(folder, tmp_path, tiny_network, monkeypatch):
    out = tmp_path / "m.json"
    seen_at_interrupt = []
    calls = count_steps(monkeypatch, raise_on=2)  # ours eager, LRN torch: the fourth entry
    original = step.TrainStep.__call__

    def look_then_call(self, *args):
        if len(calls) == 1:  # what a run killed now (a time limit, no chance to clean up) would leave
            seen_at_interrupt.append(json.loads(out.read_text()))
        return original(self, *args)

    monkeypatch.setattr(step.TrainStep, "__call__", look_then_call)
    with pytest.raises(KeyboardInterrupt):
        bench.main(train_args(folder, tmp_path, "--matrix", "--batch-sizes", "2", "--json", str(out)))
    killed = [e["status"] for e in seen_at_interrupt[0]["entries"]]
    # on a CPU the compiled entries (the default and the two candidates) are skipped
    assert killed == ["skipped", "measured", "measured", "running", "pending", "skipped", "skipped", "pending"]
    kept = json.loads(out.read_text())
    assert not kept["finished"]
    assert [e["status"] for e in kept["entries"]] == ["skipped", "measured", "measured"] + ["skipped"] * 5
    assert all(kept["entries"][i]["reason"] == "interrupted (KeyboardInterrupt)" for i in (3, 4, 7))
    assert speed.images_per_s(kept, batch=2, compiled=False) > 0
    assert "CUT OFF" in bench_record.table(kept)


def test_a_tiny_budget_skips_entries_and_says_so(folder, tmp_path, tiny_network, monkeypatch, capsys):
    calls = count_steps(monkeypatch)
    record = bench.main(train_args(folder, tmp_path, "--matrix", "--budget", "1e-6", "--batch-sizes", "2"))
    assert not calls
    budget = [e for e in record["entries"] if not e["compiled"]]
    assert budget and all(e["status"] == "skipped" and e["reason"].startswith("budget: 0 s of 1e-06 s left")
                          for e in budget)
    assert "skipped: budget" in capsys.readouterr().out


def test_the_budget_estimate_scales_the_most_similar_measurement():
    class Args:
        steps, warmup, repeats, pipeline_steps, budget = 2, 1, 3, 10, 100.0

    measured = dict(bench_record.new_entry("step", "ours", 8, True, "slices"), status="measured", wall_s=47.0,
                    compile_s=40.0)
    eager = bench_record.new_entry("step", "ours", 16, False, "torch")
    compiled = bench_record.new_entry("step", "ours", 32, True, "slices")
    # 7 s for 7 steps of 8 images: eager at batch 16 takes twice that; compiled at 32, four times plus a compile.
    assert speed.estimate(eager, [measured], Args) == pytest.approx(14.0)
    assert speed.estimate(compiled, [measured], Args) == pytest.approx(28.0 + 40.0)
    assert speed.estimate(bench_record.new_entry("step", "blog", 8), [measured], Args) is None
    assert speed.estimate(bench_record.new_entry("input", "ours", 8), [measured], Args) is None  # far cheaper
    blog = dict(bench_record.new_entry("step", "blog", 8), status="measured", wall_s=7.0)
    # The blog's input alone: 3 x 10 + 1 batches against its step's 7 steps.
    assert speed.estimate(bench_record.new_entry("input", "blog", 8), [blog], Args) == pytest.approx(31.0)
    assert speed._over_budget(compiled, [measured], Args, elapsed=50.0) == "budget: needs ~68 s, 50 s of 100 s left"
    assert speed._over_budget(eager, [measured], Args, elapsed=50.0) is None


def test_the_table_fits_and_states_the_projection_as_one():
    entries = speed.plan([128, 256, 512, 1024], matrix=True, compile=None, gpu=True)
    for i, e in enumerate(entries):
        e.update(status="measured", images_per_s=1000.0 * (i + 1), repeats_images_per_s=[999.0, 1000.0, 1001.0],
                 compile_s=60.0 if e["compiled"] else None)
    record = dict(device="NVIDIA H100 80GB HBM3", device_type="cuda", cpu_count=16, torch="2.11.0",
                  torchvision="0.26.0", python="3.12.3", repeats=3, steps=50, pipeline_steps=50, warmup=10,
                  precision="bf16", channels_last=True, fused_sgd=True, tf32_matmul=False, tf32_cudnn=True,
                  workers=2, flops_per_image=6.79e9, peak_flops=989e12, peak_precision="bf16", finished=True,
                  elapsed_s=170.0, budget_s=160.0, entries=entries)
    bench_record.derive(record)
    # what training runs: the triton LRN, measured more than 3% faster than slices here (a candidate variant
    # measured faster still is not what training runs)
    best_128 = bench_record.training_entry(record, 128)
    assert best_128["id"] == "ours-step-compiled-triton-b128"
    p = record["projection"]
    assert p["entry"] == best_128["id"] and p["fraction_of_peak"] == pytest.approx(best_128["images_per_s"] *
                                                                                    6.79e9 / 989e12)
    assert p["t4_30_epochs_min"] == pytest.approx(bench.t4_projection_minutes(6.79e9, p["fraction_of_peak"]))
    assert entries[1]["vs_blog"] == 1.0 and entries[0]["vs_blog"] == pytest.approx(0.5)
    text = bench_record.table(record)
    assert len(text) <= 4000 and "PROJECTED" in text and "assuming a T4" in text and "TF32 matmul off" in text
    for e in entries:
        e.update(status="failed", reason="x" * 500)
    assert len(bench_record.table(record)) <= 4000


def test_the_runner_reads_figures_back_with_wildcards():
    record = speed.example_record(images_per_s=100.0, compile_s=30.0, batch=64)
    record["entries"][0].update(status="skipped", reason="budget: x | y", images_per_s=None)
    assert speed.images_per_s(record, batch=64, compiled=True, lrn_impl="slices") is None  # skipped
    assert speed.images_per_s(record, batch=64, compiled=True, lrn_impl=None) == 100.0  # compiled, LRN torch
    assert speed.images_per_s(record, batch=128, compiled=None, lrn_impl=None) is None
    assert speed.images_per_s(record, pipeline="blog", batch=None) == 10.0
    assert speed.compile_seconds(record) == 30.0
    md = speed.markdown(record, "bench-gpu.json")
    assert md.startswith("**bench-gpu.json**") and "| ours step: compiled, LRN torch | 64 | 100 | 10.00x |" in md
    assert "skipped: budget: x / y |" in md


def test_bench_data_times_decoding_and_the_cache(folder, tmp_path):
    results = bench.main(["data", "--source", str(folder), "--splits", "val", "--cache-dir", str(tmp_path)])
    assert json.dumps(results, default=str)  # plain data, ready for --json


def test_t4_projection_is_plain_arithmetic():
    # 30 epochs x 90,000 images x 6.79 GFLOP at 100% of 65 TFLOP/s: 4.7 minutes; at 25%: 18.8.
    assert bench.t4_projection_minutes(6.79e9, 1.0) == pytest.approx(30 * 90_000 * 6.79e9 / 65e12 / 60)
    assert bench.t4_projection_minutes(6.79e9, 0.25) == pytest.approx(4 * bench.t4_projection_minutes(6.79e9, 1.0))


def test_a_single_run_profiles_our_step_and_the_matrix_only_compiled_steps_at_the_first_batch(
        folder, tmp_path, tiny_network):
    record = bench.main(train_args(folder, tmp_path, "--profile", "2", "--batch-size", "2"))
    found = record["profile"]
    assert found["steps"] == 2 and "Self CPU" in found["table"] and found["wall_s"] > 0
    assert found["kernel_s"] is None and found["gpu_busy"] is None  # no GPU kernels on a CPU

    class Args:
        profile, matrix, batch_sizes = 20, True, [128, 256]

    chosen = [e["id"] for e in speed.plan([128, 256], gpu=True) if speed.profiled(e, Args)]
    assert chosen == ["ours-step-compiled-slices-b128", "ours-step-compiled-triton-b128",
                      "ours-step-compiled-triton-whole-step-cudagraphs-b128"]
    Args.profile = 0
    assert not any(speed.profiled(e, Args) for e in speed.plan([128], gpu=True))


def test_a_candidate_way_of_compiling_is_measured_apart_from_what_training_runs():
    record = bench_record.example_record(images_per_s=100.0)
    cand = dict(bench_record.new_entry("step", "ours", 128, True, "slices", "cudagraphs"), status="measured",
                images_per_s=500.0, repeats_images_per_s=[500.0])
    record["entries"].insert(0, cand)
    assert cand["id"] == "ours-step-compiled-slices-cudagraphs-b128"
    # what the runner estimates runs with is the default way, never a candidate measured first
    assert speed.images_per_s(record, batch=128, compiled=True) == 100.0
    assert speed.images_per_s(record, batch=128, compiled=True, variant="cudagraphs") == 500.0
    assert "ours step: compiled, CUDA graphs, LRN slices" in bench_record.table(record)


def test_gpu_time_counts_each_busy_instant_once_and_no_annotation():
    from types import SimpleNamespace

    def event(start, end, device="gpu", annotation=False):
        return SimpleNamespace(time_range=SimpleNamespace(start=start, end=end), device_type=device,
                               is_user_annotation=annotation)

    events = [event(0, 10), event(5, 15),  # two streams overlapping: busy 0-15
              event(0, 100, annotation=True),  # "Torch-Compiled Region" around them: not more work
              event(20, 30), event(40, 45, device="cpu")]
    assert speed.gpu_seconds(events, "gpu") == pytest.approx(25e-6)


def test_a_matrix_merged_with_an_earlier_record_measures_only_what_it_lacks(folder, tmp_path, tiny_network,
                                                                             monkeypatch):
    """Issue 24, item 2: a new candidate must not cost a whole matrix; the ratios stay within one run."""
    first = tmp_path / "first.json"
    bench.main(train_args(folder, tmp_path, "--matrix", "--batch-sizes", "2", "--json", str(first)))
    old = json.loads(first.read_text())
    kept_id, redo_id = "ours-step-eager-slices-b2", "ours-step-eager-torch-b2"
    for e in old["entries"]:
        if e["id"] == kept_id:
            e.update(images_per_s=12345.0, vs_blog=99.0)
        if e["id"] in (redo_id, "blog-step-b2"):
            e.update(status="failed", reason="RuntimeError: fixed since")
    first.write_text(json.dumps(old))

    calls = count_steps(monkeypatch)
    record = bench.main(train_args(folder, tmp_path, "--matrix", "--batch-sizes", "2", "--merge", str(first)))
    by_id = {e["id"]: e for e in record["entries"]}
    assert by_id[kept_id]["images_per_s"] == 12345.0 and by_id[kept_id]["kept_from"] == old["started"]
    assert by_id[kept_id]["vs_blog"] == 99.0  # its own run's ratio, not one to the blog's step of this run
    assert by_id[redo_id]["status"] == "measured" and "kept_from" not in by_id[redo_id]
    assert by_id[redo_id]["vs_blog"] == by_id[redo_id]["images_per_s"] / by_id["blog-step-b2"]["images_per_s"]
    kept = [i for i, e in by_id.items() if e.get("kept_from")]
    measured_ours = [i for i, e in by_id.items() if i.startswith("ours-step") and e["status"] == "measured"]
    assert len(calls) == len(measured_ours) - sum(i.startswith("ours-step") for i in kept)  # kept: not run again

    other = dict(old, device="another GPU")
    assert bench_record.merge(dict(record, entries=speed.plan([2], gpu=False)), other) == []


def test_a_merge_keeps_what_the_matrix_no_longer_plans_and_measures_a_candidates_baseline_again():
    """Review of issue 24's merge: an old record's entries outside today's plan stay; a candidate is compared with
    a baseline of its own run, never with one kept from an earlier session."""
    planned = speed.plan([128], matrix=True, compile=True, gpu=True)
    record = dict(device="NVIDIA H200", torch="2.11", entries=planned)
    measured = {"status": "measured", "reason": None}
    old_entries = [dict(bench_record.new_entry("step", "ours", 128, True), images_per_s=19800.0, **measured),
                   dict(bench_record.new_entry("step", "blog", 128), images_per_s=652.0, **measured),
                   dict(bench_record.new_entry("step", "ours", 128, True, "slices", "cudagraphs"),
                        images_per_s=20059.0, **measured)]
    old = dict(device="NVIDIA H200", torch="2.11", started="2026-11-27T11:00:35", entries=old_entries)
    kept = bench_record.merge(record, old)
    by_id = {e["id"]: e for e in record["entries"]}
    assert "blog-step-b128" in kept and by_id["blog-step-b128"]["kept_from"] == old["started"]
    assert "ours-step-compiled-slices-b128" not in kept  # the triton candidates are pending: measured beside them
    assert by_id["ours-step-compiled-slices-b128"]["status"] == "pending"
    assert by_id["ours-step-compiled-slices-cudagraphs-b128"]["images_per_s"] == 20059.0  # not planned, kept

    # Adoption compares within one run: a triton step 5% over a baseline kept from another session is not taken.
    by_id["ours-step-compiled-slices-b128"].update(images_per_s=19800.0, kept_from=old["started"], **measured)
    by_id["ours-step-compiled-triton-b128"].update(images_per_s=20790.0, **measured)
    assert bench_record.training_entry(record)["lrn_impl"] == "slices"
    by_id["ours-step-compiled-slices-b128"].pop("kept_from")
    assert bench_record.training_entry(record)["lrn_impl"] == "triton"
