"""The benchmarks run end to end on generated data and write what they print."""

import json

import pytest

from alexnet_nb import bench, synthetic


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return synthetic.make_tiny_imagenet(tmp_path_factory.mktemp("data"), num_classes=2, train_per_class=8,
                                        val_per_class=2)


def test_bench_train_measures_both_pipelines_and_writes_json(folder, tmp_path, capsys):
    out = tmp_path / "bench.json"
    results = bench.main(["train", "--source", str(folder), "--device", "cpu", "--batch-size", "4", "--steps", "1",
                          "--warmup", "0", "--pipeline-steps", "2", "--workers", "0", "--json", str(out)])
    printed = capsys.readouterr().out
    assert "input pipeline only" in printed and "whole training step" in printed and "ratio" in printed
    for key in ("ours_pipeline", "ours_step", "blog_pipeline", "blog_step"):
        assert results[key] > 0
    assert results["flops_per_image"] == 6 * 1_131_979_296  # 3 passes x 2 FLOPs x the model's multiply-adds
    assert results["fraction_of_peak"] is None  # no known peak for a CPU: nothing is made up
    saved = json.loads(out.read_text())
    assert saved["ours_step"] == results["ours_step"] and saved["command"].startswith("python -m alexnet_nb.bench train")


def test_bench_data_times_decoding_and_the_cache(folder, tmp_path):
    results = bench.main(["data", "--source", str(folder), "--splits", "val", "--cache-dir", str(tmp_path)])
    assert json.dumps(results, default=str)  # plain data, ready for --json


def test_t4_projection_is_plain_arithmetic():
    # 30 epochs x 90,000 images x 6.79 GFLOP at 100% of 65 TFLOP/s: 4.7 minutes; at 25%: 18.8.
    assert bench.t4_projection_minutes(6.79e9, 1.0) == pytest.approx(30 * 90_000 * 6.79e9 / 65e12 / 60)
    assert bench.t4_projection_minutes(6.79e9, 0.25) == pytest.approx(4 * bench.t4_projection_minutes(6.79e9, 1.0))
