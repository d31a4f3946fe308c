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


def test_final_table_puts_the_last_epoch_next_to_the_references():
    frame = pd.DataFrame(dict(epoch=[1, 2], val_top1=[10.0, 20.5], val_top5=[30.0, 44.25]))
    table = analysis.final_table(frame, "mine")
    assert table.index.tolist() == ["mine", "blog", "our target", "paper"]
    assert table.loc["mine", ["top1", "top5", "epochs"]].tolist() == [20.5, 44.25, 2]
    assert table.loc["paper", "top1"] == 62.5 and pd.isna(table.loc["paper", "epochs"])


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


def test_per_class_accuracy_by_hand():
    table = analysis.per_class_accuracy(PREDICTIONS, LABELS, NAMES)
    assert table["name"].tolist() == ["bee", "ant", "cat"]
    assert table.index.tolist() == [1, 0, 2]
    assert table["correct"].tolist() == [2, 2, 1] and table["total"].tolist() == [2, 4, 4]
    assert table["accuracy"].tolist() == [100.0, 50.0, 25.0]


def test_confusions_by_hand():
    counts = analysis.confusion_matrix(PREDICTIONS, LABELS, 3)
    assert counts.tolist() == [[2, 2, 0], [0, 2, 0], [1, 2, 1]]
    pairs = analysis.confused_pairs(PREDICTIONS, LABELS, NAMES, k=5)
    # Only three kinds of mistake were made; a tie keeps the lower index first.
    assert pairs[["true", "predicted", "count"]].values.tolist() == [
        ["ant", "bee", 2], ["cat", "bee", 2], ["cat", "ant", 1]]
    assert pairs["share"].tolist() == [50.0, 50.0, 25.0]
    assert analysis.confused_pairs(LABELS, LABELS, NAMES).empty


def test_pick_examples_takes_right_and_wrong_ones():
    probs = torch.nn.functional.one_hot(PREDICTIONS, 3).float()
    chosen = analysis.pick_examples(probs, LABELS, right=3, wrong=2)
    assert len(chosen) == 5 == len(set(chosen))
    assert all(PREDICTIONS[i] == LABELS[i] for i in chosen[:3])
    assert all(PREDICTIONS[i] != LABELS[i] for i in chosen[3:])
    # Asking for more than there are returns what there is.
    assert len(analysis.pick_examples(probs, LABELS, right=99, wrong=0)) == 5


# ---------------------------------------------------------------- first-layer kernels

def test_kernel_grid_places_and_stretches_each_kernel():
    weight = torch.randn(96, 3, 11, 11, generator=torch.Generator().manual_seed(0))
    weight[5] *= 100  # a loud kernel must not wash out the others
    grid = analysis.kernel_grid(weight)
    assert grid.shape == (95, 143, 3)
    for i in (0, 5, 13, 95):
        r, c = divmod(i, 12)
        tile = grid[r * 12:r * 12 + 11, c * 12:c * 12 + 11]
        assert tile.min() == 0.0 and tile.max() == pytest.approx(1.0)
        w = weight[i]
        np.testing.assert_allclose(tile, ((w - w.min()) / (w.max() - w.min())).permute(1, 2, 0).numpy(), atol=1e-6)
    assert (grid[11, :] == 1).all() and (grid[:, 11] == 1).all()  # white padding between tiles
    with pytest.raises(ValueError):
        analysis.kernel_grid(torch.randn(97, 3, 11, 11))


def test_find_checkpoint_looks_in_the_runs_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("ALEXNET_NB_RUNS", str(tmp_path))
    assert analysis.find_checkpoint("no-such-run-anywhere") is None
    (tmp_path / "mine").mkdir()
    assert analysis.find_checkpoint("mine") is None  # a folder without a checkpoint does not count
    (tmp_path / "mine" / "checkpoint.pt").write_bytes(b"")
    assert analysis.find_checkpoint("mine") == tmp_path / "mine" / "checkpoint.pt"


def test_first_per_class_keeps_every_class():
    split = tiny_split(n=24, num_classes=4)  # labels 0,1,2,3,0,1,... six of each
    small = analysis.first_per_class(split, 2)
    assert small.labels.tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    torch.testing.assert_close(small.images, split.images[:8])


def test_committed_runs_exist_and_have_what_the_results_notebook_reads():
    # One test, not one per run: parametrizing over an empty results/ would
    # collect nothing and pass silently, and the results notebook needs a run.
    from alexnet_nb import train

    runs = sorted(p.parent.name for p in (ROOT / "results").glob("*/history.csv"))
    assert runs, "no committed run: results/<run>/history.csv is missing"
    for run in runs:
        history = analysis.load_history(run, ROOT / "results")
        assert list(history.columns) == train.HISTORY_COLUMNS, run
        assert len(history) >= 1 and history["epoch"].tolist() == list(range(1, len(history) + 1)), run
        assert history.notna().all().all(), run
        for col in ("train_top1", "holdout_top1", "holdout_top5", "val_top1", "val_top5"):
            assert history[col].between(0, 100).all(), (run, col)
        assert (history["holdout_top5"] >= history["holdout_top1"]).all(), run
        assert (history["val_top5"] >= history["val_top1"]).all(), run
        for col in ("train_loss", "holdout_loss", "val_loss"):
            assert np.isfinite(history[col]).all() and (history[col] >= 0).all(), (run, col)
        assert (history["lr"] >= 0).all() and (history["seconds"] > 0).all(), run
        assert history["elapsed_s"].is_monotonic_increasing, run
        assert isinstance(analysis.load_summary(run, ROOT / "results"), dict), run
