"""The paper's figure 1, small enough for a CPU: epochs to 25% training error with ReLUs and with tanh units.

Section 3.1 of the paper: a four-layer convolutional network with ReLUs reached
25% training error on CIFAR-10 six times faster than the same network with tanh
units ("The learning rates for each network were chosen independently to make
training as fast as possible. No regularization of any kind was employed.").

Ours is the same kind of experiment shrunk to a few CPU minutes: the first
``classes`` classes of Tiny ImageNet (500 training images each), averaged down
from 64x64 to 32x32 (CIFAR's size), and a four-layer network (three
convolutions with 2x2 max-pooling, one fully connected layer). Both networks
start from the same weights (same seed, same shapes) and see the same batches
in the same order; only the activation differs. No dropout, weight decay or
augmentation, as in the paper.

The learning rate is one value for both, 0.01 (SGD, momentum 0.9, batch 64):
on 10 classes, after 8 epochs, 0.01 gave ReLU/tanh training errors of
0.378/0.393, while 0.03 gave 0.463/0.461 and 0.1 gave 0.739/0.754
(``train_one`` on this project's 2-core CPU, one seed), so 0.01 was the
fastest of the three for both.

    from alexnet_nb import relu_tanh
    history = relu_tanh.compare(train_split)     # one row per (activation, epoch)
    relu_tanh.epochs_to(history)                 # e.g. {'relu': 12, 'tanh': 11}
"""

import time

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from alexnet_nb import augment

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}
THRESHOLD = 0.25  # the paper's figure 1: time to reach 25% training error
LR = 0.01


def small_net(activation: str, num_classes: int, width: int = 32) -> nn.Sequential:
    """Three 'conv, activation, 2x2 max-pool' blocks and one linear layer, for 32x32 inputs (PyTorch's init)."""
    act = ACTIVATIONS[activation]
    return nn.Sequential(
        nn.Conv2d(3, width, 5, padding=2), act(), nn.MaxPool2d(2),          # 32 -> 16
        nn.Conv2d(width, width, 5, padding=2), act(), nn.MaxPool2d(2),      # 16 -> 8
        nn.Conv2d(width, 2 * width, 3, padding=1), act(), nn.MaxPool2d(2),  # 8 -> 4
        nn.Flatten(), nn.Linear(2 * width * 16, num_classes))


def prepare(split, classes: int, size: int = 32):
    """(inputs, labels) of the first ``classes`` classes: images averaged down to ``size`` and normalized.

    Normalized with the ImageNet constants the rest of the suite uses, once,
    so that an epoch is only the network's work.
    """
    split = split.take_classes(min(classes, len(split.classes)))
    x = split.images.cpu().float().div_(255)
    if x.shape[-1] != size:
        x = F.adaptive_avg_pool2d(x, size)
    mean = torch.tensor(augment.MEAN).view(1, 3, 1, 1)
    std = torch.tensor(augment.STD).view(1, 3, 1, 1)
    return (x - mean) / std, split.labels.cpu().clone()


def train_one(activation, x, y, num_classes, epochs, lr=LR, batch_size=64, momentum=0.9, seed=0,
              stop_below=None) -> list[dict]:
    """Train one network; one row per epoch with the training error counted while the epoch ran.

    The error is counted on each batch as it is trained on (the weights move
    during the epoch), as a training curve usually is; it costs no extra pass.
    ``stop_below``: stop after the first epoch whose error is at most this.
    """
    torch.manual_seed(seed)  # the same initial weights for every activation: the shapes are the same
    net = small_net(activation, num_classes)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum)
    order = torch.Generator().manual_seed(seed)  # the same batches, in the same order, for every activation
    rows, start = [], time.perf_counter()
    for epoch in range(1, epochs + 1):
        wrong = 0
        for idx in torch.randperm(len(y), generator=order).split(batch_size):
            out = net(x[idx])
            loss = F.cross_entropy(out, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            wrong += int((out.argmax(1) != y[idx]).sum())
        rows.append(dict(activation=activation, epoch=epoch, train_error=wrong / len(y),
                         seconds=time.perf_counter() - start))
        if stop_below is not None and rows[-1]["train_error"] <= stop_below:
            break
    return rows


def compare(split, classes=5, size=32, epochs=15, lr=LR, batch_size=64, seed=0, threshold=THRESHOLD) -> pd.DataFrame:
    """Figure 1's experiment: the same small network with ReLUs and with tanh units, one after the other.

    Each trains until its training error reaches ``threshold`` or for
    ``epochs`` epochs. Returns one row per (activation, epoch):
    ``train_error`` (a fraction) and ``seconds`` since that network started.
    """
    x, y = prepare(split, classes, size)
    num_classes = int(y.max()) + 1
    rows = []
    for activation in ACTIVATIONS:
        rows += train_one(activation, x, y, num_classes, epochs, lr, batch_size, seed=seed, stop_below=threshold)
    return pd.DataFrame(rows)


def epochs_to(history: pd.DataFrame, threshold=THRESHOLD) -> dict:
    """The first epoch at which each activation's training error is at most ``threshold`` (None: never)."""
    out = {}
    for activation, rows in history.groupby("activation", sort=False):
        hit = rows[rows["train_error"] <= threshold]
        out[activation] = int(hit["epoch"].iloc[0]) if len(hit) else None
    return out


def verdict(history: pd.DataFrame, threshold=THRESHOLD) -> str:
    """One sentence with the measured epochs to ``threshold`` and their ratio, next to the paper's six."""
    reached = epochs_to(history, threshold)
    trained = history.groupby("activation", sort=False)["epoch"].max().to_dict()
    words = {a: f"reached it after {e} epochs" if e else f"did not reach it within {trained[a]} epochs"
             for a, e in reached.items()}
    text = f"Training error {100 * threshold:g}%: ReLU {words['relu']}, tanh {words['tanh']}"
    if reached["relu"] and reached["tanh"]:
        text += f"; tanh needed {reached['tanh'] / reached['relu']:.1f} times as many epochs"
    return text + " (the paper: six times as many)."
