"""The data chapter's per-class colour numbers, on images whose colours are known."""

import pytest
import torch

from alexnet_nb import data, explore


def coloured_split(colours, per_class=2):
    """Each class's images filled with one RGB colour (0..255)."""
    images, labels = [], []
    for label, rgb in enumerate(colours):
        for _ in range(per_class):
            images.append(torch.tensor(rgb, dtype=torch.uint8).view(3, 1, 1).expand(3, 4, 4))
            labels.append(label)
    n = len(colours)
    return data.Split(torch.stack(images), torch.tensor(labels), [f"n{i}" for i in range(n)],
                      [f"class {i}" for i in range(n)])


def test_is_gray_finds_identical_channels():
    images = torch.zeros(3, 3, 4, 4, dtype=torch.uint8)
    images[1, 0, 0, 0] = 1  # one pixel differs in one channel: not gray
    images[2] = 200
    assert explore.is_gray(images).tolist() == [True, False, True]


def test_class_colours_by_hand():
    table = explore.class_colours(coloured_split([(255, 255, 255), (0, 0, 0), (255, 0, 0)]))
    assert table.index.tolist() == [1, 2, 0]  # darkest first: black, red, white
    assert table.loc[2, ["r", "g", "b"]].tolist() == [1.0, 0.0, 0.0]
    assert table.loc[2, "brightness"] == pytest.approx(0.299)
    assert table.loc[0, "brightness"] == pytest.approx(1.0)
    assert table["gray"].to_dict() == {1: 2, 2: 0, 0: 2}  # black and white images have equal channels


def test_colour_only_accuracy_by_hand():
    train = coloured_split([(250, 0, 0), (0, 250, 0), (0, 0, 250)])
    # Two validation images: a reddish one (right), and a green-blue one labelled red (wrong at top-1,
    # and red is its farthest class; top-5 covers all three classes).
    val = coloured_split([(200, 10, 10), (0, 180, 170)], per_class=1)
    val.labels = torch.tensor([0, 0])
    result = explore.colour_only_accuracy(train, val)
    assert result == {"top1": 50.0, "top5": 100.0, "chance": pytest.approx(100 / 3)}
