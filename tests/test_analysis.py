"""Numbers the results notebook reports, checked on cases small enough to work out by hand."""

import json
import math
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from alexnet_nb import analysis, data, evaluate

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- references and histories

def test_references_are_the_published_numbers():
    assert (analysis.BLOG.top1, analysis.BLOG.top5) == (31.75, 58.76)
    assert (analysis.TARGET.top1, analysis.TARGET.top5) == (50.0, 75.0)
    # The paper gives error rates, 37.5% top-1 and 17.0% top-5.
    assert (100 - analysis.PAPER.top1, 100 - analysis.PAPER.top5) == (37.5, 17.0)
    assert "1,000 classes" in analysis.PAPER.task


def write_run(results, run="some-run"):
    folder = results / run
    folder.mkdir(parents=True)
    frame = pd.DataFrame(dict(epoch=[1, 2], val_top1=[10.0, 20.5], val_top5=[30.0, 44.25]))
    frame.to_csv(folder / "history.csv", index=False)
    (folder / "summary.json").write_text(json.dumps({"description": "a CPU run"}))
    return frame


def test_history_and_summary_are_read_from_a_local_results_folder(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("a local file must not be fetched")

    monkeypatch.setattr(analysis.urllib.request, "urlopen", no_network)
    frame = write_run(tmp_path)
    pd.testing.assert_frame_equal(analysis.load_history("some-run", tmp_path), frame)
    assert analysis.load_summary("some-run", tmp_path) == {"description": "a CPU run"}


def test_a_missing_local_run_is_fetched_from_the_repository(tmp_path, monkeypatch):
    asked = []

    class Response:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            return b"epoch,val_top1\n1,12.5\n"

    monkeypatch.setattr(analysis.urllib.request, "urlopen", lambda url, timeout: asked.append(url) or Response())
    history = analysis.load_history("cpu-10class", tmp_path)
    assert history["val_top1"].tolist() == [12.5]
    with open(ROOT / "pyproject.toml", "rb") as f:
        repo = tomllib.load(f)["project"]["urls"]["Repository"]
    slug = repo.removeprefix("https://github.com/")
    assert asked == [f"https://raw.githubusercontent.com/{slug}/main/results/cpu-10class/history.csv"]


def test_the_reported_epoch_is_the_last_not_the_best():
    # The best validation (and holdout) epoch is the second; the third is reported.
    frame = pd.DataFrame(dict(epoch=[1, 2, 3], holdout_top1=[5.0, 30.0, 20.0], val_top1=[10.0, 31.0, 20.5],
                              val_top5=[30.0, 60.0, 44.25]))
    assert analysis.reported(frame) == {"epoch": 3, "top1": 20.5, "top5": 44.25}
    table = analysis.final_table(frame, "mine")
    assert table.index.tolist() == ["mine", "blog", "our target", "paper"]
    assert table.loc["mine", ["top1", "top5", "epochs"]].tolist() == [20.5, 44.25, 3]
    assert table.loc["paper", "top1"] == 62.5 and pd.isna(table.loc["paper", "epochs"])


def test_the_reported_line_puts_the_final_epoch_next_to_guessing_and_noise():
    frame = pd.DataFrame(dict(epoch=[1, 2], val_top1=[30.0, 20.0], val_top5=[70.0, 60.0]))
    assert analysis.describe_reported(frame, 10, images=400) == (
        "reported, final epoch 2: validation top-1 20.0% (guessing: 10.0%), top-5 60.0% (guessing: 50.0%), "
        "10 classes; one standard error of the top-1 on 400 images: 2.0 points")
    assert analysis.describe_reported(frame, 200).endswith("(guessing: 2.5%), 200 classes")


def test_the_blog_and_target_are_references_only_for_all_200_classes():
    assert analysis.references_for(200) == (analysis.BLOG, analysis.TARGET)
    assert analysis.references_for(10) == () and analysis.references_for(None) == ()


def test_chance_and_standard_error_by_hand():
    assert analysis.chance(10) == (10.0, 50.0)
    assert analysis.chance(200) == (0.5, 2.5)
    assert analysis.chance(4) == (25.0, 100.0)  # top-5 of four classes always hits
    # 20% on 400 images: sqrt(0.2 * 0.8 / 400) = 0.02, two points.
    assert analysis.standard_error(20.0, 400) == pytest.approx(2.0)


# ---------------------------------------------------------------- test-time views

class BrightCorner(nn.Module):
    """Logits (log 3, log 9) when the view shows any bright pixel, (log 3, 0) when it is all dark.

    So a bright view says class 1 with probability 9/12 = 0.75, a dark view
    with probability 1/4 = 0.25.
    """

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # gives predict() a device to read

    def forward(self, x):
        bright = (x.amax(dim=(1, 2, 3)) > 0).float()
        return torch.stack([torch.full_like(bright, math.log(3)), math.log(9) * bright], dim=1) + self.anchor


def test_ten_views_average_the_softmax_as_worked_out_by_hand():
    # Black 64x64 image with a white 8x8 block in the top-left corner. The
    # 56x56 crops start at 0 or 8 (corners) and 4 (centre): the top-left crop
    # and the centre crop see the block, the other three corners do not, and
    # mirroring changes nothing. So 4 of the 10 views say class 1 with 0.75 and
    # 6 say it with 0.25: (4 * 0.75 + 6 * 0.25) / 10 = 0.45. The centre view
    # alone says 0.75, so the ten views overturn its top-1.
    image = torch.zeros(1, 3, 64, 64, dtype=torch.uint8)
    image[:, :, :8, :8] = 255
    net = BrightCorner()
    center = analysis.predict(net, image, "center")
    ten = analysis.predict(net, image, "ten")
    torch.testing.assert_close(center, torch.tensor([[0.25, 0.75]]))
    torch.testing.assert_close(ten, torch.tensor([[0.55, 0.45]]))
    labels = torch.tensor([1])
    assert evaluate.accuracy(center, labels, (1,)) == [100.0]
    assert evaluate.accuracy(ten, labels, (1,)) == [0.0]


def tiny_net(num_classes=10):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 9, stride=8), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(16, num_classes))


def tiny_split(n=24, num_classes=10):
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, 3, 64, 64), dtype=torch.uint8, generator=g)
    labels = torch.arange(n) % num_classes
    classes = [f"n{i:08d}" for i in range(num_classes)]
    return data.Split(images, labels, classes, [f"class {i}" for i in range(num_classes)])


def test_centre_view_agrees_with_evaluate_and_batching_does_not_matter():
    net, split = tiny_net(), tiny_split()
    net.train()
    probs = analysis.predict(net, split.images, "center", batch_size=24)
    assert net.training  # predict switches to eval mode only while it runs
    torch.testing.assert_close(analysis.predict(net, split.images, "center", batch_size=7), probs)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(len(split)))
    reference = evaluate.evaluate(net, split, batch_size=16, device="cpu")
    top1, top5 = evaluate.accuracy(probs, split.labels)
    assert top1 == pytest.approx(reference["top1"]) and top5 == pytest.approx(reference["top5"])
    table, both = analysis.view_table(net, split, batch_size=16)
    assert table.loc["centre view"].tolist() == pytest.approx([top1, top5])
    ten = analysis.predict(net, split.images, "ten", batch_size=5)
    torch.testing.assert_close(both["ten"], ten)
    assert table.loc["ten views (paper)"].tolist() == pytest.approx(evaluate.accuracy(ten, split.labels))
    with pytest.raises(ValueError):
        analysis.predict(net, split.images, "twelve")


def test_accuracy_by_hand():
    probs = torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3], [0.2, 0.3, 0.5], [0.0, 0.1, 0.9]])
    labels = torch.tensor([1, 2, 0, 0])
    # top-1 hits: row 0 only. top-2 hits: rows 0, 1 (0.3 second) and 2 (0.3 < 0.5, 0.2 third: no).
    assert evaluate.accuracy(probs, labels, (1, 2)) == [25.0, 50.0]
    # With three classes top-5 is capped at 3 and counts everything.
    assert evaluate.accuracy(probs, labels, (5,)) == [100.0]


# ---------------------------------------------------------------- per-class numbers

NAMES = ["ant", "bee", "cat"]
LABELS = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
PREDICTIONS = torch.tensor([0, 0, 1, 1, 1, 1, 0, 1, 1, 2])


def test_prediction_spread_by_hand():
    # "bee" (label 1) takes 6 of the 10 predictions; classes 0, 1 and 2 all occur; a fair share is 1/3.
    spread = analysis.prediction_spread(PREDICTIONS, 3)
    assert spread == {"most_predicted": 1, "share": 60.0, "fair_share": pytest.approx(100 / 3),
                      "classes_predicted": 3}
    assert analysis.prediction_spread(torch.tensor([2, 2]), 4)["classes_predicted"] == 1


def test_pick_examples_takes_right_and_wrong_ones():
    probs = torch.nn.functional.one_hot(PREDICTIONS, 3).float()
    chosen = analysis.pick_examples(probs, LABELS, right=3, wrong=2)
    assert len(chosen) == 5 == len(set(chosen))
    assert all(PREDICTIONS[i] == LABELS[i] for i in chosen[:3])
    assert all(PREDICTIONS[i] != LABELS[i] for i in chosen[3:])
    # Asking for more than there are returns what there is.
    assert len(analysis.pick_examples(probs, LABELS, right=99, wrong=0)) == 5


# ---------------------------------------------------------------- which run

def test_find_checkpoint_looks_in_the_runs_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("ALEXNET_NB_RUNS", str(tmp_path))
    assert analysis.find_checkpoint("no-such-run-anywhere") is None
    (tmp_path / "mine").mkdir()
    assert analysis.find_checkpoint("mine") is None  # a folder without a checkpoint does not count
    (tmp_path / "mine" / "checkpoint.pt").write_bytes(b"")
    assert analysis.find_checkpoint("mine") == tmp_path / "mine" / "checkpoint.pt"



def fake_checkpoint(path, epochs=3, classes=7):
    """A file ``checkpoint.read`` accepts: weights are not needed to read a run's history."""
    history = {"epoch": list(range(1, epochs + 1)), "val_top1": [10.0 * e for e in range(1, epochs + 1)],
               "val_top5": [20.0 * e for e in range(1, epochs + 1)]}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(dict(model={}, config={"classes": classes, "name": path.parent.name}, epoch=epochs,
                    history=history, num_classes=classes), path)
    return path


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise analysis.urllib.error.URLError("no network in this test")

    monkeypatch.setattr(analysis.urllib.request, "urlopen", refuse)


def test_open_run_by_name_finds_the_runs_folder_first(tmp_path, monkeypatch, no_network):
    runs, results = tmp_path / "runs", tmp_path / "results"
    monkeypatch.setenv("ALEXNET_NB_RUNS", str(runs))
    write_run(results, "mine")  # a committed run of the same name loses to the trained one
    write_run(runs, "mine")
    (runs / "mine" / "summary.json").write_text(json.dumps({"classes": 10}))
    ckpt = fake_checkpoint(runs / "mine" / "checkpoint.pt")
    run = analysis.open_run("mine", results)
    assert (run.name, run.where, run.checkpoint, run.classes) == ("mine", "run folder", ckpt, 10)
    assert run.history["val_top1"].tolist() == [10.0, 20.5]  # history.csv, not the checkpoint's copy


def test_open_run_by_name_falls_back_to_the_committed_results(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("ALEXNET_NB_RUNS", str(tmp_path / "runs"))
    write_run(tmp_path / "results", "committed")
    run = analysis.open_run("committed", tmp_path / "results")
    assert (run.where, run.checkpoint, run.classes) == ("results/ of this clone", None, 200)
    with pytest.raises(FileNotFoundError, match="no run named 'nowhere'"):
        analysis.open_run("nowhere", tmp_path / "results")


def test_open_run_by_folder_or_checkpoint_path(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("ALEXNET_NB_RUNS", str(tmp_path / "runs"))
    folder = tmp_path / "elsewhere" / "my-run"
    ckpt = fake_checkpoint(folder / "checkpoint.pt", epochs=3, classes=7)
    # A folder with only a checkpoint: history and summary come from inside it.
    run = analysis.open_run(str(folder))
    assert (run.name, run.where, run.checkpoint, run.classes) == ("my-run", "run folder", ckpt, 7)
    assert run.history["val_top1"].tolist() == [10.0, 20.0, 30.0]
    # The checkpoint itself, also under another file name.
    assert analysis.open_run(str(ckpt)).history["epoch"].tolist() == [1, 2, 3]
    other = fake_checkpoint(tmp_path / "copies" / "epoch2.pt", epochs=2)
    run = analysis.open_run(str(other))
    assert (run.where, run.checkpoint, len(run.history)) == ("checkpoint file", other, 2)
    # A checkpoint.pt beside a history.csv reads the folder's files.
    write_run(tmp_path / "full", "run")
    fake_checkpoint(tmp_path / "full" / "run" / "checkpoint.pt", epochs=5)
    assert len(analysis.open_run(str(tmp_path / "full" / "run" / "checkpoint.pt")).history) == 2
    with pytest.raises(FileNotFoundError, match="neither a run folder"):
        analysis.open_run(str(tmp_path / "no" / "such-folder"))
    with pytest.raises(Exception, match="no checkpoint at"):
        analysis.open_run(str(tmp_path / "missing.pt"))


def test_first_per_class_keeps_every_class():
    split = tiny_split(n=24, num_classes=4)  # labels 0,1,2,3,0,1,... six of each
    small = analysis.first_per_class(split, 2)
    assert small.labels.tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    torch.testing.assert_close(small.images, split.images[:8])


# What plots.plot_topk, plot_loss and analysis.final_table read from a history; newer runs add columns.
READ_BY_THE_RESULTS_CHAPTER = ("epoch", "lr", "train_loss", "train_top1", "holdout_loss", "holdout_top1",
                               "holdout_top5", "val_loss", "val_top1", "val_top5", "seconds", "images_per_s",
                               "elapsed_s")


def test_committed_runs_exist_and_have_what_the_results_notebook_reads():
    # One test, not one per run: parametrizing over an empty results/ would
    # collect nothing and pass silently, and the results notebook needs a run.
    runs = sorted(p.parent.name for p in (ROOT / "results").glob("*/history.csv"))
    assert runs, "no committed run: results/<run>/history.csv is missing"
    for run in runs:
        history = analysis.load_history(run, ROOT / "results")
        assert set(READ_BY_THE_RESULTS_CHAPTER) <= set(history.columns), run
        assert len(history) >= 1 and history["epoch"].tolist() == list(range(1, len(history) + 1)), run
        assert history[list(READ_BY_THE_RESULTS_CHAPTER)].notna().all().all(), run
        for col in ("train_top1", "holdout_top1", "holdout_top5", "val_top1", "val_top5"):
            assert history[col].between(0, 100).all(), (run, col)
        assert (history["holdout_top5"] >= history["holdout_top1"]).all(), run
        assert (history["val_top5"] >= history["val_top1"]).all(), run
        for col in ("train_loss", "holdout_loss", "val_loss"):
            assert np.isfinite(history[col]).all() and (history[col] >= 0).all(), (run, col)
        assert (history["lr"] >= 0).all() and (history["seconds"] > 0).all(), run
        assert history["elapsed_s"].is_monotonic_increasing, run
        assert isinstance(analysis.load_summary(run, ROOT / "results"), dict), run
