"""The figure 1 experiment: the two networks differ only in their activation; the epochs to a threshold by hand."""

import pandas as pd
import pytest
import torch

from alexnet_nb import data, relu_tanh


def split(classes=3, per_class=8):
    g = torch.Generator().manual_seed(0)
    n = classes * per_class
    labels = torch.arange(n) % classes
    # Learnable: each class has its own mean brightness.
    images = (labels.view(-1, 1, 1, 1) * 70 + torch.randint(0, 60, (n, 3, 64, 64), generator=g)).to(torch.uint8)
    return data.Split(images, labels, [f"n{i}" for i in range(classes)], [f"class {i}" for i in range(classes)])


def test_prepare_keeps_the_first_classes_and_halves_the_side():
    x, y = relu_tanh.prepare(split(classes=4), classes=2, size=32)
    assert x.shape == (16, 3, 32, 32) and sorted(set(y.tolist())) == [0, 1]
    # Averaging 2x2 blocks: the first pixel is the mean of the image's top-left block, normalized.
    s = split(classes=4)
    block = s.images[0, 0, :2, :2].float().mean() / 255
    assert x[0, 0, 0, 0].item() == pytest.approx(((block - 0.485) / 0.229).item(), abs=1e-5)


def test_the_two_networks_start_from_the_same_weights():
    shapes = {}
    for activation in relu_tanh.ACTIVATIONS:
        torch.manual_seed(0)
        net = relu_tanh.small_net(activation, 5)
        shapes[activation] = [p.detach().clone() for p in net.parameters()]
        assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 5)
        weighted = [m for m in net if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        assert len(weighted) == 4  # "a four-layer convolutional network"
    for a, b in zip(shapes["relu"], shapes["tanh"]):
        torch.testing.assert_close(a, b)


def test_epochs_to_and_the_verdict_by_hand():
    history = pd.DataFrame(dict(activation=["relu"] * 3 + ["tanh"] * 4, epoch=[1, 2, 3, 1, 2, 3, 4],
                                train_error=[0.6, 0.3, 0.2, 0.7, 0.5, 0.4, 0.3]))
    assert relu_tanh.epochs_to(history, 0.25) == {"relu": 3, "tanh": None}
    assert relu_tanh.epochs_to(history, 0.4) == {"relu": 2, "tanh": 3}
    assert relu_tanh.verdict(history, 0.25) == ("Training error 25%: ReLU reached it after 3 epochs, tanh did not "
                                                "reach it within 4 epochs (the paper: six times as many).")
    assert "tanh needed 1.5 times as many epochs" in relu_tanh.verdict(history, 0.4)


def test_compare_trains_both_until_the_threshold():
    history = relu_tanh.compare(split(), classes=3, epochs=4, threshold=0.5)
    assert list(history.columns) == ["activation", "epoch", "train_error", "seconds"]
    for activation, rows in history.groupby("activation"):
        assert rows["epoch"].tolist() == list(range(1, len(rows) + 1))
        # It stops at the first epoch at or below the threshold, or after the last epoch.
        assert (rows["train_error"].iloc[:-1] > 0.5).all()
        assert rows["train_error"].iloc[-1] <= 0.5 or len(rows) == 4
        assert rows["seconds"].is_monotonic_increasing
    assert set(history["activation"]) == {"relu", "tanh"}
