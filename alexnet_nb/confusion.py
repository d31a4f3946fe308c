"""Where a network's mistakes are: per-class accuracy, the confusion matrix, the classes it mixes up.

``cluster_order`` orders the classes so that classes confused with each other
sit next to each other, which turns a 200x200 confusion matrix from noise into
visible blocks (dogs with dogs, vehicles with vehicles). It is average-linkage
hierarchical clustering written with torch alone (no scipy).
"""

import numpy as np
import pandas as pd
import torch


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
    return pairs_from_counts(confusion_matrix(predictions, labels, len(names)), names, k)


def pairs_from_counts(counts: torch.Tensor, names, k=10) -> pd.DataFrame:
    """``confused_pairs`` from a confusion matrix ``counts[true, predicted]``."""
    counts = counts.clone()
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


def confusion_rates(counts: torch.Tensor) -> torch.Tensor:
    """Each row of a confusion matrix divided by its total: the share of a true class given to each prediction."""
    counts = counts.double()
    return counts / counts.sum(dim=1, keepdim=True).clamp(min=1)


def cluster_order(counts: torch.Tensor) -> list[int]:
    """Class indices ordered so that classes the network confuses with each other are neighbours.

    The similarity of two classes is how often each is taken for the other
    (the symmetrized off-diagonal confusion rates). Average-linkage
    agglomerative clustering merges the two most similar clusters until one
    is left; the order of its leaves puts every merged pair, and so every
    group of mutually confused classes, in one contiguous run; clusters never
    confused with each other are joined in index order. O(n^3) for n classes:
    200 take well under a second.
    """
    rates = confusion_rates(counts).numpy()
    n = len(rates)
    # NumPy, not torch: 200 small steps, where torch's per-call overhead would dominate.
    similarity = rates + rates.T
    np.fill_diagonal(similarity, -np.inf)
    members = [[i] for i in range(n)]
    sizes = np.ones(n)
    for _ in range(n - 1):
        i, j = divmod(int(similarity.argmax()), n)  # the first maximum: ties merge in index order
        i, j = min(i, j), max(i, j)
        # Average linkage: the similarity of the merged cluster to any other is the size-weighted mean.
        merged = (sizes[i] * similarity[i] + sizes[j] * similarity[j]) / (sizes[i] + sizes[j])
        similarity[i], similarity[:, i] = merged, merged
        similarity[j], similarity[:, j] = -np.inf, -np.inf  # j is gone
        similarity[i, i] = -np.inf
        members[i] += members[j]
        sizes[i] += sizes[j]
    return members[0] if n else []
