"""What the results notebook computes: histories, test-time views, per-class numbers.

Everything here returns plain tensors, arrays or pandas tables; ``plots`` draws
them. The reference numbers live in one place (``REFERENCES``) so that the
notebook's lines, tables and prose cannot drift apart.
"""

import importlib.metadata
import io
import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from alexnet_nb import augment, env, evaluate


@dataclass(frozen=True)
class Reference:
    """A published or aimed-for result, as accuracy in percent."""

    name: str
    top1: float
    top5: float
    task: str


# The paper reports error on a different task (1,000 classes, full-resolution
# images, ILSVRC-2010 test set); 37.5% / 17.0% error is 62.5% / 83.0% accuracy.
BLOG = Reference("blog", 31.75, 58.76, "Tiny ImageNet val, 200 classes, 64x64, ~30 epochs on a T4")
TARGET = Reference("our target", 50.0, 75.0, "Tiny ImageNet val, 200 classes, 64x64")
PAPER = Reference("paper", 62.5, 83.0, "ILSVRC-2010 test, 1,000 classes, full resolution (a different task)")
REFERENCES = (BLOG, TARGET, PAPER)


# ---------------------------------------------------------------- run histories

def repo_results() -> Path:
    """``results/`` of the clone this package was installed from (absent after a pip install from GitHub)."""
    return Path(__file__).resolve().parent.parent / "results"


def results_url() -> str:
    """Raw-file URL of the committed ``results/``, built from the package's own Repository URL."""
    urls = importlib.metadata.metadata("alexnet_nb").get_all("Project-URL") or []
    repo = next(u.split(",", 1)[1].strip() for u in urls if u.startswith("Repository"))
    return repo.replace("https://github.com/", "https://raw.githubusercontent.com/") + "/main/results"


def _read_result(run: str, filename: str, results_dir=None) -> bytes:
    # A clone has the files on disk; in Colab only the package is installed, so
    # the same committed file is fetched from GitHub instead.
    local = Path(results_dir) if results_dir is not None else repo_results()
    path = local / run / filename
    if path.exists():
        return path.read_bytes()
    with urllib.request.urlopen(f"{results_url()}/{run}/{filename}", timeout=30) as response:
        return response.read()


def load_history(run: str, results_dir=None) -> pd.DataFrame:
    """The per-epoch history (``history.csv``) of a committed run in ``results/<run>/``."""
    return pd.read_csv(io.BytesIO(_read_result(run, "history.csv", results_dir)))


def load_summary(run: str, results_dir=None) -> dict:
    """The run's ``summary.json``: what was trained, on what, and where."""
    return json.loads(_read_result(run, "summary.json", results_dir))


# Runs kept on Google Drive survive a Colab disconnect; the training chapter should write them here.
DRIVE_RUNS = Path("/content/drive/MyDrive/alexnet-nb/runs")


def find_checkpoint(run: str) -> Path | None:
    """``checkpoint.pt`` of ``run`` in ``env.runs_dir()``, the clone's ``runs/`` or Google Drive; None if nowhere."""
    for folder in (env.runs_dir(), repo_results().parent / "runs", DRIVE_RUNS):
        path = folder / run / "checkpoint.pt"
        if path.is_file():
            return path
    return None


def final_table(history: pd.DataFrame, run: str = "this run",
                task: str = "Tiny ImageNet val (see the run's summary)") -> pd.DataFrame:
    """Last epoch's validation accuracy (centre view) next to the blog's, our target and the paper's."""
    last = history.iloc[-1]
    rows = [dict(result=run, top1=float(last["val_top1"]), top5=float(last["val_top5"]),
                 epochs=int(last["epoch"]), task=task)]
    rows += [dict(result=r.name, top1=r.top1, top5=r.top5, epochs=None, task=r.task) for r in REFERENCES]
    table = pd.DataFrame(rows).set_index("result")
    table["epochs"] = table["epochs"].astype("Int64")  # whole numbers, blank for the references
    return table


# ---------------------------------------------------------------- test-time views

@torch.no_grad()
def predict(net, images_u8, views="center", batch_size=256, device=None, crop_size=augment.CROP_SIZE,
            image_size=augment.IMAGE_SIZE) -> torch.Tensor:
    """Softmax probabilities [N, classes] on the CPU, from the centre view or the paper's ten views.

    With ``views="ten"`` the softmax (not the logits) of the four corner crops,
    the centre crop and their mirror images is averaged, as in the paper's section 4.1.
    """
    if views not in ("center", "ten"):
        raise ValueError(f"views must be 'center' or 'ten', not {views!r}")
    device = torch.device(device) if device is not None else next(net.parameters()).device
    was_training = net.training
    net.eval()
    out = []
    for start in range(0, len(images_u8), batch_size):
        batch = images_u8[start:start + batch_size].to(device)
        if views == "center":
            batches = [augment.center_view(batch, crop_size=crop_size, image_size=image_size)]
        else:
            batches = augment.ten_views(batch, crop_size=crop_size, image_size=image_size)
        probs = sum(torch.softmax(net(v).float(), dim=1) for v in batches) / len(batches)
        out.append(probs.cpu())
    net.train(was_training)
    return torch.cat(out)


def first_per_class(split, per_class: int):
    """The first ``per_class`` images of every class, in the split's order: a small sample with every class in it."""
    keep = torch.cat([(split.labels == c).nonzero().flatten()[:per_class] for c in range(len(split.classes))])
    return split.subset(keep.sort().values)


def view_table(net, split, batch_size=256, device=None, crop_size=augment.CROP_SIZE) -> tuple[pd.DataFrame, dict]:
    """Top-1/top-5 of the centre view and of the ten views; also returns ``{"ten": probabilities}``.

    The centre row comes from ``evaluate.evaluate``, the very function that
    wrote the history's ``val_top1``/``val_top5``, so the table matches the history.
    """
    centre = evaluate.evaluate(net, split, batch_size, device, crop_size)
    probs = {"ten": predict(net, split.images, "ten", batch_size, device, crop_size)}
    top1, top5 = evaluate.accuracy(probs["ten"], split.labels)  # the count training uses
    rows = {"centre view": dict(top1=centre["top1"], top5=centre["top5"]),
            "ten views (paper)": dict(top1=top1, top5=top5)}
    return pd.DataFrame.from_dict(rows, orient="index"), probs


# ---------------------------------------------------------------- per-class numbers

def per_class_accuracy(predictions, labels, names) -> pd.DataFrame:
    """Top-1 accuracy of each class, sorted best first (ties by class index)."""
    predictions, labels = torch.as_tensor(predictions), torch.as_tensor(labels)
    total = torch.bincount(labels, minlength=len(names))
    correct = torch.bincount(labels[predictions == labels], minlength=len(names))
    table = pd.DataFrame(dict(name=list(names), correct=correct.numpy(), total=total.numpy()))
    table["accuracy"] = 100.0 * table["correct"] / table["total"].clip(lower=1)
    table.index.name = "label"
    return table.sort_values("accuracy", ascending=False, kind="stable")


def confusion_matrix(predictions, labels, num_classes: int) -> torch.Tensor:
    """counts[true, predicted], built with one bincount rather than a Python loop."""
    predictions, labels = torch.as_tensor(predictions), torch.as_tensor(labels)
    flat = labels * num_classes + predictions
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


def confused_pairs(predictions, labels, names, k=10) -> pd.DataFrame:
    """The k most frequent mistakes as (true class, predicted class) with counts, names and share of the true class."""
    counts = confusion_matrix(predictions, labels, len(names))
    totals = counts.sum(dim=1)
    counts.fill_diagonal_(0)
    # A stable sort, so that ties come out in class order and the table is reproducible.
    values, flat = counts.flatten().sort(descending=True, stable=True)
    rows = []
    for count, index in zip(values[:k].tolist(), flat[:k].tolist()):
        if count == 0:
            break
        true, pred = divmod(index, len(names))
        rows.append(dict(true=names[true], predicted=names[pred], count=count,
                         share=100.0 * count / int(totals[true]), true_label=true, predicted_label=pred))
    return pd.DataFrame(rows, columns=["true", "predicted", "count", "share", "true_label", "predicted_label"])


# ---------------------------------------------------------------- first-layer kernels

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


def pick_examples(probs: torch.Tensor, labels: torch.Tensor, right=4, wrong=4, seed=0) -> list[int]:
    """Indices of ``right`` correctly and ``wrong`` wrongly classified images (top-1), drawn at random."""
    correct = probs.argmax(dim=1) == labels
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for mask, n in ((correct, right), (~correct, wrong)):
        pool = mask.nonzero().flatten()
        chosen += pool[torch.randperm(len(pool), generator=generator)[:n]].tolist()
    return chosen
