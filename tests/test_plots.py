"""The figures draw the numbers they are given: read the line, bar and image data back."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from alexnet_nb import plots  # noqa: E402


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


def test_topk_per_epoch_draws_each_split_and_the_reference_lines_for_200_classes():
    h = history()
    fig = plots.plot_topk(h, classes=200)
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


@pytest.mark.parametrize("classes", [10, None])
def test_no_reference_lines_on_a_class_subset(classes):
    # On 10 classes chance top-5 is 50%: a line at the blog's 58.76% would make any run look close to it.
    fig = plots.plot_topk(history(), classes=classes)
    assert all(hlines(ax) == [] for ax in fig.axes)
    assert len(data_lines(fig.axes[0])) == 3


def test_epoch_axes_have_whole_number_ticks():
    h = pd.concat([history()] * 2, ignore_index=True)
    h["epoch"] = range(1, 7)
    for fig in (plots.plot_topk(h), plots.plot_loss(h)):
        fig.canvas.draw()
        ticks = [t for t in fig.axes[0].get_xticks() if 1 <= t <= 6]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_class_labels_wrap_the_first_synonym_instead_of_cutting_it():
    assert plots.label("rocking chair, rocker") == "rocking chair"
    assert plots.label("European fire salamander, Salamandra salamandra", 16) == "European fire\nsalamander"
    assert plots.label("Egyptian cat", 16) == "Egyptian cat"
    # No word is cut, even one longer than the width.
    assert plots.label("Pneumonoultramicroscopic thing", 10).split("\n")[0] == "Pneumonoultramicroscopic"


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
    fig = plots.plot_topk(h)
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


def test_save_run_plots_draws_references_only_for_a_200_class_run(tmp_path, monkeypatch):
    pd.DataFrame(dict(epoch=[1], val_top1=[1.0], val_top5=[2.0], elapsed_s=[1.0], val_loss=[5.0])).to_csv(
        tmp_path / "history.csv", index=False)
    asked = []
    real = plots.plot_topk
    monkeypatch.setattr(plots, "plot_topk", lambda h, classes=None: asked.append(classes) or real(h, classes=classes))
    (tmp_path / "summary.json").write_text('{"classes": 10}')
    plots.save_run_plots(tmp_path)
    (tmp_path / "summary.json").write_text('{"classes": 200}')
    plots.save_run_plots(tmp_path)
    assert asked == [10, 200]


def test_confusion_heatmap_draws_row_shares_in_the_given_order_and_numbers_the_top_pairs():
    counts = torch.tensor([[6, 4, 0], [0, 10, 0], [1, 2, 7]])
    names = ["ant", "bee", "cat, house cat"]
    fig = plots.plot_confusion(counts, names, order=[2, 0, 1], pairs=2)
    ax, colourbar = fig.axes[0], fig.axes[-1]
    drawn = np.ma.filled(ax.images[0].get_array().astype(float), np.nan)
    rates = 100 * counts.double() / counts.sum(1, keepdim=True)
    expected = rates[[2, 0, 1]][:, [2, 0, 1]].numpy()
    np.fill_diagonal(expected, np.nan)
    np.testing.assert_allclose(drawn, expected)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cat", "ant", "bee"]
    # Pair 1: ant -> bee (40% of ants) at row of ant (1), column of bee (2); pair 2: cat -> bee (20%).
    marks = {t.get_text(): t.get_position() for t in ax.texts}
    assert marks == {"1": (2, 1), "2": (2, 0)}
    listing = fig.axes[1].texts[0].get_text().splitlines()
    assert listing == [" 1. ant -> bee: 40%", " 2. cat -> bee: 20%"]
    assert colourbar is not ax


def test_relu_tanh_figure_draws_both_curves_and_the_threshold():
    h = pd.DataFrame(dict(activation=["relu", "relu", "tanh", "tanh", "tanh"], epoch=[1, 2, 1, 2, 3],
                          train_error=[0.5, 0.2, 0.6, 0.4, 0.3]))
    ax = plots.plot_relu_tanh(h, 0.25).axes[0]
    relu, tanh = data_lines(ax)
    np.testing.assert_allclose(relu.get_xydata(), [[1, 0.5], [2, 0.2]])
    np.testing.assert_allclose(tanh.get_ydata(), [0.6, 0.4, 0.3])
    assert relu.get_linestyle() == "-" and tanh.get_linestyle() == "--"  # as in the paper's figure
    assert [ln.get_ydata()[0] for ln in hlines(ax)] == [0.25]


def test_class_colour_bars_are_sorted_by_brightness_and_painted_their_colour():
    table = pd.DataFrame(dict(name=["lemon", "night sky, dark", "sea"], r=[0.9, 0.1, 0.2], g=[0.85, 0.1, 0.4],
                              b=[0.2, 0.2, 0.7], brightness=[0.8, 0.11, 0.36]))
    ax = plots.plot_class_colours(table, named=1).axes[0]
    assert [p.get_height() for p in ax.patches] == [0.11, 0.36, 0.8]
    np.testing.assert_allclose(ax.patches[2].get_facecolor()[:3], [0.9, 0.85, 0.2])
    assert [t.get_text() for t in ax.texts] == ["darkest: night sky", "brightest: lemon"]


def test_a_split_keeps_its_colour_in_both_panels():
    history = pd.DataFrame({"epoch": [1, 2], "train_top1": [10.0, 20.0], "holdout_top1": [15.0, 25.0],
                            "holdout_top5": [50.0, 60.0], "val_top1": [14.0, 24.0], "val_top5": [49.0, 61.0],
                            "elapsed_s": [10.0, 20.0]})
    fig = plots.plot_topk(history)
    colour = [{line.get_label(): line.get_color() for line in ax.lines} for ax in fig.axes]
    assert colour[0]["holdout"] == colour[1]["holdout"] and colour[0]["validation"] == colour[1]["validation"]
    assert "train" not in colour[1]  # the history has no train top-5
    plt.close(fig)


def test_runs_compared_per_epoch_with_the_published_blog_and_the_target():
    a, b = history(), history()
    b["val_top1"] += 5.0
    fig = plots.plot_runs({"blog": a, "ours": b})
    top1, top5 = fig.axes[:2]
    assert [ln.get_label() for ln in data_lines(top1)] == ["blog", "ours"]
    np.testing.assert_allclose(data_lines(top1)[1].get_xydata(), np.c_[b["epoch"], b["val_top1"]])
    np.testing.assert_allclose(data_lines(top5)[0].get_xydata(), np.c_[a["epoch"], a["val_top5"]])
    assert [ln.get_ydata()[0] for ln in hlines(top5)] == [58.76, 75.0]
    assert hlines(top1)[0].get_label() == "blog as published (31.75%)"  # never confused with the blog's recipe run
