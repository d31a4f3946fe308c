"""The figures draw the numbers they are given: read the line, bar and image data back."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from alexnet_nb import analysis, plots  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def history(elapsed=(60.0, 120.0, 180.0)):
    return pd.DataFrame(dict(
        epoch=[1, 2, 3], lr=[0.01] * 3, train_loss=[5.0, 4.0, 3.5], train_top1=[2.0, 10.0, 20.0],
        holdout_loss=[5.1, 4.2, 3.9], holdout_top1=[3.0, 11.0, 18.0], holdout_top5=[9.0, 25.0, 40.0],
        val_loss=[5.2, 4.3, 4.0], val_top1=[2.5, 10.5, 17.0], val_top5=[8.0, 24.0, 39.0],
        seconds=[60.0] * 3, images_per_s=[1000.0] * 3, elapsed_s=list(elapsed),
    ))


def data_lines(ax):
    # axhline draws in axes coordinates along x: xdata is [0, 1] there.
    return [ln for ln in ax.lines if list(ln.get_xdata()) != [0, 1]]


def hlines(ax):
    return [ln for ln in ax.lines if list(ln.get_xdata()) == [0, 1]]


def test_topk_per_epoch_draws_each_split_and_the_reference_lines():
    h = history()
    fig = plots.plot_topk(h)
    top1, top5 = fig.axes[:2]
    assert [ln.get_label() for ln in data_lines(top1)] == ["train", "holdout", "validation"]
    for ln, column in zip(data_lines(top1), ["train_top1", "holdout_top1", "val_top1"]):
        np.testing.assert_allclose(ln.get_xydata(), np.c_[h["epoch"], h[column]])
    # No train top-5 in the history, so only holdout and validation.
    assert [ln.get_label() for ln in data_lines(top5)] == ["holdout", "validation"]
    np.testing.assert_allclose(data_lines(top5)[1].get_xydata(), np.c_[h["epoch"], h["val_top5"]])
    assert [ln.get_ydata()[0] for ln in hlines(top1)] == [31.75, 50.0]
    assert [ln.get_ydata()[0] for ln in hlines(top5)] == [58.76, 75.0]
    assert "blog" in hlines(top1)[0].get_label() and "target" in hlines(top5)[1].get_label()
    assert top1.get_xlabel() == "epoch" and "top1" in top1.get_ylabel()


def test_topk_against_time_uses_minutes_then_hours():
    fig = plots.plot_topk(history(), x="time")
    ax = fig.axes[0]
    np.testing.assert_allclose(data_lines(ax)[2].get_xdata(), [1.0, 2.0, 3.0])
    assert "minutes" in ax.get_xlabel()
    fig = plots.plot_topk(history(elapsed=(3600.0, 7200.0, 10800.0)), x="time")
    ax = fig.axes[0]
    np.testing.assert_allclose(data_lines(ax)[0].get_xdata(), [1.0, 2.0, 3.0])
    assert "hours" in ax.get_xlabel()
    with pytest.raises(ValueError):
        plots.plot_topk(history(), x="batches")


def test_splits_without_numbers_are_left_out():
    h = history()
    h["holdout_top1"] = np.nan
    fig = plots.plot_topk(h, references=())
    assert [ln.get_label() for ln in data_lines(fig.axes[0])] == ["train", "validation"]
    assert hlines(fig.axes[0]) == []


def test_loss_plot():
    h = history()
    ax = plots.plot_loss(h).axes[0]
    assert [ln.get_label() for ln in ax.lines] == ["train", "holdout", "validation"]
    np.testing.assert_allclose(ax.lines[1].get_ydata(), h["holdout_loss"])


def test_class_accuracy_bars_show_best_and_worst_in_order():
    table = pd.DataFrame(dict(name=list("abcdef"), accuracy=[10.0, 90.0, 50.0, 70.0, 0.0, 30.0]))
    best, worst = plots.plot_class_accuracy(table, n=2).axes
    # barh is drawn bottom-up, so the first table row is the last bar.
    assert [p.get_width() for p in best.patches][::-1] == [90.0, 70.0]
    assert [t.get_text() for t in best.get_yticklabels()][::-1] == ["b", "d"]
    assert [p.get_width() for p in worst.patches][::-1] == [10.0, 0.0]
    assert [t.get_text() for t in worst.get_yticklabels()][::-1] == ["a", "e"]


def test_prediction_grid_shows_images_truth_and_guesses():
    images = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2])
    names = ["cat, house cat", "dog", "fox", "owl", "bee", "ant"]  # words.txt lists synonyms
    probs = torch.tensor([[0.5, 0.1, 0.1, 0.1, 0.1, 0.1],     # right
                          [0.6, 0.2, 0.05, 0.05, 0.05, 0.05],  # wrong, true class second
                          [0.3, 0.3, 0.0, 0.2, 0.1, 0.1]])     # wrong, true class outside the top 5
    fig = plots.plot_predictions(images, labels, probs, names, indices=[2, 0, 1], cols=2)
    axes = fig.axes
    np.testing.assert_array_equal(axes[0].images[0].get_array(), images[2].permute(1, 2, 0).numpy())
    assert [ax.get_title() for ax in axes[:3]] == ["true: fox", "true: cat", "true: dog"]
    colours = [mcolors.to_hex(ax.title.get_color()) for ax in axes[:3]]
    assert colours == [mcolors.to_hex(plots.WRONG), mcolors.to_hex(plots.RIGHT), mcolors.to_hex(plots.WRONG)]
    guesses = axes[2].texts[0].get_text().splitlines()
    assert len(guesses) == 5 and "cat" in guesses[0] and guesses[1].startswith(">") and "dog" in guesses[1]
    assert not any(line.startswith(">") for line in axes[0].texts[0].get_text().splitlines())
    assert "house cat" not in axes[1].texts[0].get_text()  # only the first synonym is shown
    assert len(axes[3].images) == 0  # the fourth cell of the 2x2 grid stays empty


def test_kernel_figure_draws_the_kernel_grid():
    weight = torch.randn(96, 3, 11, 11, generator=torch.Generator().manual_seed(0))
    ax = plots.plot_kernels(weight).axes[0]
    drawn = np.asarray(ax.images[0].get_array())
    np.testing.assert_array_equal(drawn, analysis.kernel_grid(weight))
    assert drawn.shape == (8 * 12 - 1, 12 * 12 - 1, 3)


def test_save_run_plots_writes_pngs_beside_the_history(tmp_path):
    history = pd.DataFrame({
        "epoch": [1, 2], "lr": [0.01, 0.01], "train_loss": [2.3, 2.1], "train_top1": [10.0, 20.0],
        "holdout_loss": [2.2, 2.0], "holdout_top1": [15.0, 25.0], "holdout_top5": [50.0, 60.0],
        "val_loss": [2.2, 2.0], "val_top1": [14.0, 24.0], "val_top5": [49.0, 61.0],
        "seconds": [10.0, 10.0], "images_per_s": [5.0, 5.0], "elapsed_s": [10.0, 20.0]})
    history.to_csv(tmp_path / "history.csv", index=False)
    written = plots.save_run_plots(tmp_path)
    assert [p.name for p in written] == ["curves.png", "loss.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)


def test_a_split_keeps_its_colour_in_both_panels():
    history = pd.DataFrame({"epoch": [1, 2], "train_top1": [10.0, 20.0], "holdout_top1": [15.0, 25.0],
                            "holdout_top5": [50.0, 60.0], "val_top1": [14.0, 24.0], "val_top5": [49.0, 61.0],
                            "elapsed_s": [10.0, 20.0]})
    fig = plots.plot_topk(history, references=())
    colour = [{line.get_label(): line.get_color() for line in ax.lines} for ax in fig.axes]
    assert colour[0]["holdout"] == colour[1]["holdout"] and colour[0]["validation"] == colour[1]["validation"]
    assert "train" not in colour[1]  # the history has no train top-5
    plt.close(fig)
