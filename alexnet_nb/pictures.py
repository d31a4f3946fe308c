"""Figures made of images: sample grids, augmented views, top-5 guesses, first-layer kernels, nearest neighbours.

Each helper returns its matplotlib Figure; the tests read the drawn pixels and
titles back. Class names go through ``plots.label`` (first synonym, wrapped,
never cut).
"""

import matplotlib.pyplot as plt
import numpy as np
import torch

from alexnet_nb import augment
from alexnet_nb.plots import RIGHT, WRONG, label


def _hwc(image_u8):
    return image_u8.permute(1, 2, 0).cpu().numpy()


def image_grid(images_u8, titles, cols=8, size=1.4):
    """uint8 images ``[N, 3, H, W]`` in a grid, each titled (class names wrapped to fit)."""
    rows = max(1, (len(images_u8) + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size, rows * (size + 0.45)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, images_u8, titles):
        ax.imshow(_hwc(image), interpolation="nearest")
        ax.set_title(label(title, 14), fontsize=7)
    fig.tight_layout()
    return fig


def plot_views(image_u8, rows: dict, caption=""):
    """One original image, then one row of network inputs per entry of ``rows`` (``{row title: views}``).

    ``views`` are normalized float batches as ``augment.train_batch`` returns
    them; the normalization is undone for display (``augment.to_image``).
    """
    cols = 1 + max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.7 * cols, 2.0 * len(rows)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for r, (title, views) in enumerate(rows.items()):
        axes[r, 0].imshow(_hwc(image_u8), interpolation="nearest")
        axes[r, 0].set_title(f"original 64x64\n{caption}" if r == 0 else "original", fontsize=8)
        for c, view in enumerate(augment.to_image(views), start=1):
            axes[r, c].imshow(view.permute(1, 2, 0).numpy())
        axes[r, 1].set_title(title, fontsize=8, loc="left")
    fig.tight_layout()
    return fig


def plot_augmentation(image_u8, pca_lighting=0.1, n=6, seed=0, exaggerate=10, caption=""):
    """What the network is fed from one image: ``n`` random crops and flips, then the same with PCA lighting.

    Three rows drawn with the same seed, so the crops and flips are identical
    and only the lighting differs: without it, with the paper's strength
    (``pca_lighting``, section 4.1), and ``exaggerate`` times stronger, since
    the paper's shift (a few levels out of 255) is hard to see.
    """
    batch = image_u8.unsqueeze(0).expand(n, -1, -1, -1)

    def views(alpha):
        return augment.train_batch(batch, torch.Generator().manual_seed(seed), pca_lighting=alpha)

    rows = {"random 56x56 crop + flip, resized to 227x227": views(0.0),
            f"+ PCA lighting, alpha std {pca_lighting:g} (the paper)": views(pca_lighting),
            f"+ PCA lighting, alpha std {exaggerate * pca_lighting:g} ({exaggerate}x, to make it visible)":
                views(exaggerate * pca_lighting)}
    return plot_views(image_u8, rows, caption)


def plot_predictions(images_u8, labels, probs, names, indices, cols=4, k=5):
    """Images with their true class and the model's top-k guesses; title green when top-1 is right, else red."""
    rows = (len(indices) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 4.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, indices):
        ax.imshow(_hwc(images_u8[i]))
        p, guesses = probs[i].topk(min(k, probs.shape[1]))
        truth = int(labels[i])
        ax.set_title(f"true: {label(names[truth], 24)}", fontsize=9,
                     color=RIGHT if int(guesses[0]) == truth else WRONG)
        lines = [f"{'>' if int(g) == truth else ' '} {100 * float(q):4.1f}% {label(names[int(g)], 22)}"
                 .replace("\n", " ") for q, g in zip(p, guesses)]
        ax.text(0, -0.02, "\n".join(lines), transform=ax.transAxes, va="top", fontsize=7, family="monospace")
    fig.tight_layout()
    return fig


def kernel_grid(weight: torch.Tensor, rows=8, cols=12, pad=1) -> np.ndarray:
    """First-layer kernels [K,3,h,w] tiled into one RGB image [rows*(h+pad)-pad, ..., 3] in [0, 1].

    Each kernel is stretched to [0, 1] on its own, as in the paper's figure 3:
    a shared scale would leave the weak kernels a flat grey.
    """
    w = weight.detach().float().cpu()
    if w.shape[0] > rows * cols:
        raise ValueError(f"{w.shape[0]} kernels do not fit a {rows}x{cols} grid")
    low = w.amin(dim=(1, 2, 3), keepdim=True)
    high = w.amax(dim=(1, 2, 3), keepdim=True)
    w = (w - low) / (high - low).clamp(min=1e-12)
    h, wd = w.shape[2:]
    grid = np.ones((rows * (h + pad) - pad, cols * (wd + pad) - pad, 3), dtype=np.float32)
    for i, kernel in enumerate(w):
        r, c = divmod(i, cols)
        grid[r * (h + pad):r * (h + pad) + h, c * (wd + pad):c * (wd + pad) + wd] = kernel.permute(1, 2, 0).numpy()
    return grid


def plot_kernels(weight, rows=8, cols=12):
    """The first convolution's kernels in a rows x cols grid, each stretched to full contrast (paper, figure 3)."""
    grid = kernel_grid(weight, rows, cols)
    fig, ax = plt.subplots(figsize=(cols * 0.75, rows * 0.75))
    ax.imshow(grid, interpolation="nearest")
    ax.set_title(f"{weight.shape[0]} first-layer kernels, {weight.shape[2]}x{weight.shape[3]}x{weight.shape[1]}")
    ax.axis("off")
    return fig


def plot_neighbours(query_images, query_labels, neighbour_images, neighbour_labels, names):
    """The paper's figure 4 (right): each query in the first column, its nearest training images in its row.

    ``neighbour_images`` is ``[Q, k, 3, H, W]``, nearest first. A neighbour's
    caption is green when its class is the query's, red otherwise.
    """
    q, k = neighbour_labels.shape
    fig, axes = plt.subplots(q, k + 1, figsize=(1.45 * (k + 1), 1.75 * q), squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for r in range(q):
        truth = int(query_labels[r])
        axes[r, 0].imshow(_hwc(query_images[r]), interpolation="nearest")
        axes[r, 0].set_xlabel(label(names[truth], 14), fontsize=7, fontweight="bold")
        for spine in axes[r, 0].spines.values():
            spine.set(linewidth=2.5, color="black")
        for c in range(k):
            theirs = int(neighbour_labels[r, c])
            ax = axes[r, c + 1]
            ax.imshow(_hwc(neighbour_images[r, c]), interpolation="nearest")
            ax.set_xlabel(label(names[theirs], 14), fontsize=6, color=RIGHT if theirs == truth else WRONG)
    axes[0, 0].set_title("validation\nimage", fontsize=8)
    for c in range(k):
        axes[0, c + 1].set_title(f"neighbour {c + 1}", fontsize=8)
    fig.tight_layout()
    return fig
