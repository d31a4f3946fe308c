"""What the data chapter measures about the images: grayscale ones, and how much colour alone tells.

Every Tiny ImageNet class has exactly 500 training and 50 validation images,
so counts per class say nothing. Colour does: a lemon is yellow, a sea slug
on a reef is bright, a bullfrog in a pond is dull. ``class_colours`` gives
each class its mean colour and brightness, and ``colour_only_accuracy``
measures how far a classifier that sees nothing but an image's mean colour
gets: the part of the task a network could solve without looking at shapes,
and the cue that the paper's PCA colour augmentation (section 4.1) blurs.
"""

import pandas as pd
import torch

# ITU-R BT.601 luma weights: the brightness a person perceives, from RGB.
LUMA = (0.299, 0.587, 0.114)


def is_gray(images: torch.Tensor) -> torch.Tensor:
    """True for each uint8 image ``[N, 3, H, W]`` whose three channels are identical."""
    return ((images[:, 0] == images[:, 1]) & (images[:, 1] == images[:, 2])).flatten(1).all(1)


def mean_colours(images: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """The mean RGB colour of each image, ``[N, 3]`` in 0..1, a chunk at a time (no float copy of the split)."""
    return torch.cat([images[s:s + chunk].float().mean(dim=(2, 3)) / 255 for s in range(0, len(images), chunk)])


def class_colours(split) -> pd.DataFrame:
    """One row per class: mean ``r``, ``g``, ``b`` (0..1), ``brightness`` (luma) and ``gray`` (images with
    identical channels), indexed by label, sorted from the darkest class to the brightest."""
    colours = mean_colours(split.images)
    labels = split.labels.cpu()
    n = len(split.classes)
    counts = torch.bincount(labels, minlength=n).clamp(min=1).unsqueeze(1)
    means = torch.zeros(n, 3).index_add_(0, labels, colours) / counts
    table = pd.DataFrame(means.numpy(), columns=["r", "g", "b"])
    table.insert(0, "name", list(split.names))
    table["brightness"] = (means @ torch.tensor(LUMA)).numpy()
    table["gray"] = torch.bincount(labels[is_gray(split.images).cpu()], minlength=n).numpy()
    table.index.name = "label"
    return table.sort_values("brightness", kind="stable")


def colour_only_accuracy(train, val) -> dict:
    """Top-1 and top-5 (percent) of the nearest-class-mean-colour classifier, fitted on ``train``, scored on ``val``.

    Each image is reduced to its mean RGB colour; a validation image is given
    the classes whose mean training colour is closest (Euclidean). Also
    returns ``chance``, the top-1 of guessing (100 / classes).
    """
    centres = torch.tensor(class_colours(train).sort_index()[["r", "g", "b"]].to_numpy(), dtype=torch.float32)
    distances = torch.cdist(mean_colours(val.images), centres)
    k = min(5, len(centres))
    nearest = distances.topk(k, dim=1, largest=False).indices
    hits = nearest == val.labels.cpu().view(-1, 1)
    return {"top1": 100.0 * hits[:, 0].float().mean().item(), "top5": 100.0 * hits.any(1).float().mean().item(),
            "chance": 100.0 / len(centres)}
