"""The results notebook's figures. Each helper returns its matplotlib Figure.

The numbers come from ``analysis`` and the history table; the helpers only
choose what goes on which axis, so their tests read the drawn data back.
"""

import matplotlib.pyplot as plt

from alexnet_nb import analysis

SPLITS = (("train", "train"), ("holdout", "holdout"), ("val", "validation"))
RIGHT, WRONG = "tab:green", "tab:red"


def _time_axis(history):
    # Minutes read best for short runs, hours for the long GPU ones.
    minutes = history["elapsed_s"] / 60
    if minutes.max() > 120:
        return minutes / 60, "wall-clock time (hours)"
    return minutes, "wall-clock time (minutes)"


def plot_topk(history, x="epoch", references=(analysis.BLOG, analysis.TARGET)):
    """Top-1 and top-5 accuracy per split, against epochs (``x="epoch"``) or wall-clock time (``x="time"``).

    Splits without numbers (the history has no train top-5) are left out; each
    reference is a dashed horizontal line.
    """
    if x == "epoch":
        xs, xlabel = history["epoch"], "epoch"
    elif x == "time":
        xs, xlabel = _time_axis(history)
    else:
        raise ValueError(f"x must be 'epoch' or 'time', not {x!r}")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    for ax, k in zip(axes, ("top1", "top5")):
        for i, (prefix, label) in enumerate(SPLITS):  # one colour per split in both panels
            column = f"{prefix}_{k}"
            if column in history and history[column].notna().any():
                ax.plot(xs, history[column], marker=".", label=label, color=f"C{i}")
        for i, ref in enumerate(references):
            value = getattr(ref, k)
            ax.axhline(value, linestyle="--", linewidth=1, color=f"C{7 + i}", label=f"{ref.name} ({value:g}%)")
        # 102, not 100: a curve at 100% would hide under the frame.
        ax.set(xlabel=xlabel, ylabel=f"{k} accuracy (%)", title=f"top-{k[-1]} accuracy", ylim=(0, 102))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def plot_loss(history):
    """Cross-entropy per epoch for every split in the history."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (prefix, label) in enumerate(SPLITS):
        column = f"{prefix}_loss"
        if column in history and history[column].notna().any():
            ax.plot(history["epoch"], history[column], marker=".", label=label, color=f"C{i}")
    ax.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def short(name, width=24):
    """First synonym of a words.txt entry ('tabby, tabby cat' -> 'tabby'), cut to fit under an image."""
    return name.split(",")[0][:width]


def plot_class_accuracy(table, n=10):
    """Bars for the n best and the n worst classes of ``analysis.per_class_accuracy``'s table."""
    table = table.sort_values("accuracy", ascending=False, kind="stable")
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.3 * n + 1.5), sharex=True)
    for ax, part, title in ((axes[0], table.head(n), f"{n} best classes"),
                            (axes[1], table.tail(n), f"{n} worst classes")):
        # barh draws bottom-up; reverse so the list reads top-down in table order.
        ax.barh([short(n, 30) for n in part["name"][::-1]], part["accuracy"][::-1],
                color=RIGHT if ax is axes[0] else WRONG)
        ax.set(xlabel="top-1 accuracy (%)", title=title, xlim=(0, 100))
    fig.tight_layout()
    return fig


def plot_predictions(images_u8, labels, probs, names, indices, cols=4, k=5):
    """Images with their true class and the model's top-k guesses; title green when top-1 is right, else red."""
    rows = (len(indices) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 4.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, indices):
        ax.imshow(images_u8[i].permute(1, 2, 0).cpu().numpy())
        p, guesses = probs[i].topk(min(k, probs.shape[1]))
        truth = int(labels[i])
        ax.set_title(f"true: {short(names[truth])}", fontsize=9, color=RIGHT if int(guesses[0]) == truth else WRONG)
        lines = [f"{'>' if int(g) == truth else ' '} {100 * float(q):4.1f}% {short(names[int(g)])}"
                 for q, g in zip(p, guesses)]
        ax.text(0, -0.02, "\n".join(lines), transform=ax.transAxes, va="top", fontsize=7, family="monospace")
    fig.tight_layout()
    return fig


def plot_kernels(weight, rows=8, cols=12):
    """The first convolution's kernels in a rows x cols grid, each stretched to full contrast (paper, figure 3)."""
    grid = analysis.kernel_grid(weight, rows, cols)
    fig, ax = plt.subplots(figsize=(cols * 0.75, rows * 0.75))
    ax.imshow(grid, interpolation="nearest")
    ax.set_title(f"{weight.shape[0]} first-layer kernels, {weight.shape[2]}x{weight.shape[3]}x{weight.shape[1]}")
    ax.axis("off")
    return fig



def save_run_plots(run_dir):
    """Write ``curves.png`` (top-1/top-5 per epoch) and ``loss.png`` beside a run's ``history.csv``.

    The blog's and our target's lines are drawn only for a 200-class run (per its
    ``summary.json``): on a class subset they would invite a false comparison.
    """
    import json
    import pandas as pd
    from pathlib import Path

    run_dir = Path(run_dir)
    history = pd.read_csv(run_dir / "history.csv")
    summary = run_dir / "summary.json"
    classes = json.loads(summary.read_text()).get("classes", 200) if summary.exists() else 200
    references = (analysis.BLOG, analysis.TARGET) if classes == 200 else ()
    written = []
    for name, fig in (("curves.png", plot_topk(history, references=references)), ("loss.png", plot_loss(history))):
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
