"""evaluate.evaluate: centre view, mirrored view, fixed batch shape, channels_last."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from alexnet_nb import augment, evaluate

CROP = 56  # no resize (image_size = crop size): a small network and fast tests


class Recorder(nn.Module):
    """A tiny classifier that remembers the batch shape and layout of every input it sees."""

    def __init__(self, classes=7):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 5, stride=4), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 13 * 13, classes))
        self.seen = []

    def forward(self, x):
        self.seen.append((tuple(x.shape), x.is_contiguous(memory_format=torch.channels_last)))
        return self.net(x)


@pytest.fixture(scope="module")
def split():
    g = torch.Generator().manual_seed(0)
    return SimpleNamespace(images=torch.randint(0, 256, (10, 3, 64, 64), dtype=torch.uint8, generator=g),
                           labels=torch.randint(0, 7, (10,), generator=g))


def unpadded(net, split):
    """The same figures computed in one pass over the whole split, by hand."""
    with torch.no_grad():
        out = net(augment.center_view(split.images, CROP, CROP))
        mirrored = net(augment.center_view(split.images, CROP, CROP, flip=True))
    probs = (out.softmax(1) + mirrored.softmax(1)) / 2
    top1, top5 = evaluate.accuracy(out, split.labels)
    flip_top1, flip_top5 = evaluate.accuracy(probs, split.labels)
    return dict(loss=F.cross_entropy(out, split.labels).item(), top1=top1, top5=top5,
                flip_top1=flip_top1, flip_top5=flip_top5)


@pytest.mark.parametrize("channels_last", [False, True])
def test_padded_batches_give_the_unpadded_figures(split, channels_last):
    net = Recorder()
    expected = unpadded(net, split)
    net.seen.clear()
    got = evaluate.evaluate(net, split, batch_size=4, crop_size=CROP, image_size=CROP,
                            channels_last=channels_last, flip=True)
    assert got.keys() == expected.keys()
    for k in expected:
        assert got[k] == pytest.approx(expected[k], rel=1e-5), k
    # 10 images in batches of 4: three batches, the last padded, each seen centred and mirrored.
    assert net.seen == [((4, 3, CROP, CROP), channels_last)] * 6


def test_flip_figures_only_when_asked(split):
    net = Recorder()
    got = evaluate.evaluate(net, split, batch_size=8, crop_size=CROP, image_size=CROP)
    assert set(got) == {"loss", "top1", "top5"}
    assert len(net.seen) == 2  # 8 + 2 padded to 8: centre views only
    expected = unpadded(net, split)
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-5)


class LeftBrighter(nn.Module):
    """Class 0 scores how much brighter the left half is (never below 0); class 1 scores a constant 0.5."""

    def forward(self, x):
        half = x.shape[-1] // 2
        f = (x[:, 0, :, :half].mean((1, 2)) - x[:, 0, :, half:].mean((1, 2))).relu()
        return torch.stack([f, torch.full_like(f, 0.5)], dim=1)


def test_flip_averages_the_softmax_of_both_views():
    # Left half of the centre crop 35 grey levels brighter: 0.6 after normalization, so the centre view
    # says class 0 (0.6 > 0.5) but barely; the mirror says class 1 (0 < 0.5) firmly: the average is class 1.
    images = torch.full((6, 3, 64, 64), 100, dtype=torch.uint8)
    images[..., :32] = 135
    split = SimpleNamespace(images=images, labels=torch.ones(6, dtype=torch.long))
    got = evaluate.evaluate(LeftBrighter(), split, batch_size=4, device="cpu", crop_size=CROP, image_size=CROP,
                            flip=True)
    assert got["top1"] == 0.0 and got["flip_top1"] == 100.0
