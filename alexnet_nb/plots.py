"""The suite's charts: curves, bars and heatmaps. Each helper returns its matplotlib Figure.

The numbers come from ``analysis``, ``confusion``, ``explore``, ``relu_tanh`` and
the history table; the helpers only choose what goes on which axis, so their
tests read the drawn data back. Pictures made of images (grids, neighbours,
kernels) are in ``pictures``; the architecture drawing is in ``diagram``.
"""

import json
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib import patheffects
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from alexnet_nb import analysis, confusion

SPLITS = (("train", "train"), ("holdout", "holdout"), ("val", "validation"))
RIGHT, WRONG = "tab:green", "tab:red"


def label(name, width=16):
    """A class name that fits under an image: the first synonym of its words.txt entry, wrapped, never cut.

    ``"rocking chair, rocker"`` -> ``"rocking chair"``; ``"European fire
    salamander, Salamandra salamandra"`` -> ``"European fire\\nsalamander"``.
    """
    return "\n".join(textwrap.wrap(name.split(",")[0].strip(), width, break_long_words=False)) or name


def _integer_epochs(ax):
    # Epochs are whole: no tick at epoch 2.5.
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _time_axis(history):
    # Minutes read best for short runs, hours for the long GPU ones.
    minutes = history["elapsed_s"] / 60
    if minutes.max() > 120:
        return minutes / 60, "wall-clock time (hours)"
    return minutes, "wall-clock time (minutes)"


def plot_topk(history, x="epoch", classes=None):
    """Top-1 and top-5 accuracy per split, against epochs (``x="epoch"``) or wall-clock time (``x="time"``).

    Splits without numbers (the history has no train top-5) are left out. The
    blog's result and our target are dashed lines only when ``classes`` is 200
    (``analysis.references_for``): on a class subset they would mislead.
    """
    if x == "epoch":
        xs, xlabel = history["epoch"], "epoch"
    elif x == "time":
        xs, xlabel = _time_axis(history)
    else:
        raise ValueError(f"x must be 'epoch' or 'time', not {x!r}")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    for ax, k in zip(axes, ("top1", "top5")):
        for i, (prefix, name) in enumerate(SPLITS):  # one colour per split in both panels
            column = f"{prefix}_{k}"
            if column in history and history[column].notna().any():
                ax.plot(xs, history[column], marker=".", label=name, color=f"C{i}")
        for i, ref in enumerate(analysis.references_for(classes)):
            value = getattr(ref, k)
            ax.axhline(value, linestyle="--", linewidth=1, color=f"C{7 + i}", label=f"{ref.name} ({value:g}%)")
        # 102, not 100: a curve at 100% would hide under the frame.
        ax.set(xlabel=xlabel, ylabel=f"{k} accuracy (%)", title=f"top-{k[-1]} accuracy", ylim=(0, 102))
        if x == "epoch":
            _integer_epochs(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def plot_runs(histories, split="val"):
    """Top-1 and top-5 of ``split`` per epoch for several 200-class runs (``{name: history}``), with the blog's
    result and our target dashed: how the recipes compare at every epoch, not only at the last."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    for ax, k in zip(axes, ("top1", "top5")):
        for i, (name, history) in enumerate(histories.items()):
            ax.plot(history["epoch"], history[f"{split}_{k}"], marker=".", label=name, color=f"C{i}")
        for i, ref in enumerate(analysis.references_for(analysis.ALL_CLASSES)):
            value = getattr(ref, k)
            published = " as published" if ref is analysis.BLOG else ""  # beside the blog's recipe run by us
            ax.axhline(value, linestyle="--", linewidth=1, color=f"C{7 + i}",
                       label=f"{ref.name}{published} ({value:g}%)")
        ax.set(xlabel="epoch", ylabel=f"{split} {k} accuracy (%)", title=f"{split} top-{k[-1]}, 200 classes",
               ylim=(0, 102))
        _integer_epochs(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def plot_loss(history):
    """Cross-entropy per epoch for every split in the history."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (prefix, name) in enumerate(SPLITS):
        column = f"{prefix}_loss"
        if column in history and history[column].notna().any():
            ax.plot(history["epoch"], history[column], marker=".", label=name, color=f"C{i}")
    ax.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    _integer_epochs(ax)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_class_accuracy(table, n=10):
    """Bars for the n best and the n worst classes of ``confusion.per_class_accuracy``'s table."""
    table = table.sort_values("accuracy", ascending=False, kind="stable")
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.35 * n + 1.5), sharex=True)
    for ax, part, title in ((axes[0], table.head(n), f"{n} best classes"),
                            (axes[1], table.tail(n), f"{n} worst classes")):
        # barh draws bottom-up; reverse so the list reads top-down in table order.
        ax.barh([label(name, 30) for name in part["name"][::-1]], part["accuracy"][::-1],
                color=RIGHT if ax is axes[0] else WRONG)
        ax.set(xlabel="top-1 accuracy (%)", title=title, xlim=(0, 100))
    fig.tight_layout()
    return fig


def plot_confusion(counts, names, order=None, pairs=10):
    """The confusion matrix as a heatmap of row shares, classes in ``order``, beside the top confused pairs.

    The diagonal (correct answers) is left blank so that the mistakes carry
    the colour scale. The ``pairs`` most frequent mistakes are numbered on the
    map and listed on the right. With up to 40 classes every row is named;
    beyond that the numbered pairs are the names.
    """
    n = len(names)
    order = list(range(n)) if order is None else list(order)
    rates = 100 * confusion.confusion_rates(counts).numpy()
    shown = rates[np.ix_(order, order)].copy()
    np.fill_diagonal(shown, np.nan)
    fig, (ax, side) = plt.subplots(1, 2, figsize=(13, 7), gridspec_kw=dict(width_ratios=(7, 5)))
    image = ax.imshow(shown, cmap="viridis", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03, label="share of the true class (%)")
    ax.set(xlabel="predicted class", ylabel="true class",
           title=f"Confusions among {n} classes (similar classes together)")
    ticks = [label(names[i], 22).replace("\n", " ") for i in order] if n <= 40 else []
    ax.set_xticks(range(len(ticks)), ticks, rotation=90, fontsize=7)
    ax.set_yticks(range(len(ticks)), ticks, fontsize=7)
    top = confusion.pairs_from_counts(counts, names, k=pairs)
    position = {label_: i for i, label_ in enumerate(order)}
    lines = []
    for k, row in enumerate(top.itertuples(), start=1):
        ax.text(position[row.predicted_label], position[row.true_label], str(k), color="white", fontsize=7,
                ha="center", va="center", fontweight="bold",
                path_effects=[patheffects.withStroke(linewidth=1.5, foreground="black")])
        lines.append(f"{k:2d}. {label(row.true, 40)} -> {label(row.predicted, 40)}: {row.share:.0f}%")
    side.axis("off")
    side.set_title("most frequent mistakes (true -> predicted: share of the true class)", fontsize=9)
    side.text(0, 1, "\n".join(lines) or "no mistakes", va="top", fontsize=9, family="monospace",
              transform=side.transAxes)
    fig.tight_layout()
    return fig


def plot_relu_tanh(history, threshold):
    """The paper's figure 1 for our run: training error per epoch, ReLU solid, tanh dashed, the threshold dotted."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for activation, style in (("relu", "-"), ("tanh", "--")):
        rows = history[history["activation"] == activation]
        ax.plot(rows["epoch"], rows["train_error"], style, marker=".", color="black", label=activation)
    ax.axhline(threshold, linestyle=":", color="gray", label=f"{100 * threshold:g}% training error")
    ax.set(xlabel="epoch", ylabel="training error rate", ylim=(0, 1), title="ReLU against tanh (paper, figure 1)")
    _integer_epochs(ax)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_class_colours(table, named=6):
    """One bar per class, as tall as its mean brightness and painted its mean colour, darkest first.

    ``table`` is ``explore.class_colours``; the ``named`` darkest and brightest
    classes are listed above the bars (200 tick labels would be unreadable).
    """
    table = table.sort_values("brightness", kind="stable")
    colours = table[["r", "g", "b"]].to_numpy().clip(0, 1)
    names = [label(n, 40).replace("\n", " ") for n in table["name"]]
    fig, ax = plt.subplots(figsize=(12, 3.2))
    ax.bar(range(len(table)), table["brightness"], width=1.0, color=colours, edgecolor="none")
    ax.set_xticks([])
    ax.set(xlabel="classes, darkest to brightest", ylabel="mean brightness (0-1)", ylim=(0, 1),
           xlim=(-0.5, len(table) - 0.5), title=f"Mean colour of each of the {len(table)} classes")
    ax.text(0.01, 0.95, "darkest: " + ", ".join(names[:named]), transform=ax.transAxes, va="top", fontsize=8)
    ax.text(0.01, 0.83, "brightest: " + ", ".join(names[::-1][:named]), transform=ax.transAxes, va="top",
            fontsize=8)
    fig.tight_layout()
    return fig


def save_run_plots(run_dir):
    """Write ``curves.png`` (top-1/top-5 per epoch) and ``loss.png`` beside a run's ``history.csv``.

    The blog's and our target's lines are drawn only for a 200-class run (per its
    ``summary.json``): on a class subset they would invite a false comparison.
    """
    run_dir = Path(run_dir)
    history = pd.read_csv(run_dir / "history.csv")
    summary = run_dir / "summary.json"
    classes = json.loads(summary.read_text()).get("classes", 200) if summary.exists() else 200
    written = []
    for name, fig in (("curves.png", plot_topk(history, classes=classes)), ("loss.png", plot_loss(history))):
        fig.savefig(run_dir / name, dpi=80)
        plt.close(fig)
        written.append(run_dir / name)
    return written


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python -m alexnet_nb.plots RUN_DIR   (a folder holding history.csv)")
    for path in save_run_plots(sys.argv[1]):
        print(f"wrote {path}")
