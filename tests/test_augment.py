"""Augmentation geometry and top-k accuracy."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from alexnet_nb import augment, evaluate

CL = torch.channels_last

MEAN = torch.tensor(augment.MEAN).view(1, 3, 1, 1)
STD = torch.tensor(augment.STD).view(1, 3, 1, 1)


def coordinate_images(b=2, size=64):
    """uint8 images whose channel 0 holds the row, channel 1 the column, channel 2 the sample index."""
    rows = torch.arange(size).view(size, 1).expand(size, size)
    cols = torch.arange(size).view(1, size).expand(size, size)
    imgs = torch.stack([torch.stack([rows, cols, torch.full_like(rows, i)]) for i in range(b)])
    return imgs.to(torch.uint8)


def decode(x):
    """Undo normalization: back to the integer pixel values (coordinates)."""
    return (x * STD + MEAN).mul(255).round().long()


def test_center_view_is_the_centre_crop():
    imgs = coordinate_images()
    x = augment.center_view(imgs, crop_size=56, image_size=56)  # no resampling
    assert x.shape == (2, 3, 56, 56) and x.dtype == torch.float32
    px = decode(x)
    assert torch.equal(px[:, 0, :, 0], torch.arange(4, 60).expand(2, 56))  # rows 4..59
    assert torch.equal(px[:, 1, 0, :], torch.arange(4, 60).expand(2, 56))  # cols 4..59
    assert torch.equal(px[:, 2, 0, 0], torch.tensor([0, 1]))  # each sample keeps its own image


def test_ten_views_are_corners_centre_and_mirrors():
    imgs = coordinate_images()
    views = augment.ten_views(imgs, crop_size=56, image_size=56)
    assert len(views) == 10
    starts = [(0, 0), (0, 8), (8, 0), (8, 8), (4, 4)]
    for i, (y, x) in enumerate(starts):
        for flip, v in ((False, views[i]), (True, views[i + 5])):
            px = decode(v)
            assert torch.equal(px[0, 0, :, 0], torch.arange(y, y + 56))
            cols = torch.arange(x, x + 56)
            assert torch.equal(px[0, 1, 0, :], cols.flip(0) if flip else cols)


def test_train_batch_crops_are_valid_random_and_reproducible():
    imgs = coordinate_images(b=256)
    g = torch.Generator().manual_seed(0)
    px = decode(augment.train_batch(imgs, generator=g, crop_size=56, image_size=56))
    rows, cols = px[:, 0], px[:, 1]
    y0 = rows[:, 0, 0]
    assert torch.equal(rows, y0.view(-1, 1, 1) + torch.arange(56).view(1, 56, 1).expand(-1, 56, 56))
    left, right = cols[:, 0, 0], cols[:, 0, -1]
    flipped = left > right
    x0 = torch.where(flipped, right, left)
    assert torch.equal((left - right).abs(), torch.full((256,), 55))
    assert 0 <= int(y0.min()) and int(y0.max()) <= 8 and 0 <= int(x0.min()) and int(x0.max()) <= 8
    assert len(set(y0.tolist())) == 9 and len(set(x0.tolist())) == 9  # every offset is drawn
    assert 0.35 < flipped.float().mean() < 0.65
    again = decode(augment.train_batch(imgs, generator=torch.Generator().manual_seed(0),
                                       crop_size=56, image_size=56))
    assert torch.equal(px, again)


def test_resize_and_pca_lighting():
    imgs = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    x = augment.train_batch(imgs, generator=torch.Generator().manual_seed(1))
    assert x.shape == (4, 3, 227, 227)
    # A constant image stays constant through crop and resize; lighting shifts it per image and channel.
    flat = torch.full((4, 3, 64, 64), 128, dtype=torch.uint8)
    plain = augment.train_batch(flat, generator=torch.Generator().manual_seed(2))
    lit = augment.train_batch(flat, generator=torch.Generator().manual_seed(2), pca_lighting=0.1)
    assert torch.allclose(plain, plain[:, :, :1, :1].expand_as(plain))
    shift = (lit - plain) * STD  # back in [0, 1] pixel units
    assert torch.allclose(shift, shift[:, :, :1, :1].expand_as(shift), atol=1e-5)
    assert shift.abs().max() > 1e-3 and shift.abs().max() < 0.2


def test_to_image_inverts_the_normalization_and_clamps():
    imgs = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    x = augment.center_view(imgs, crop_size=56, image_size=56)  # normalized, no resampling
    back = augment.to_image(x)
    assert back.shape == x.shape and back.dtype == torch.float32
    torch.testing.assert_close(back, imgs[:, :, 4:60, 4:60].float() / 255, atol=1e-6, rtol=0)
    torch.testing.assert_close(augment.to_image(x[1]), back[1])  # a single [3, H, W] image too
    far = torch.full((3, 2, 2), 10.0)  # far outside the normalized range: clamped for imshow
    assert augment.to_image(far).max() == 1.0 and augment.to_image(-far).min() == 0.0


def test_normalization_constants_are_made_once_per_device():
    a = augment._device_constant("MEAN", torch.device("cpu"))
    assert augment._device_constant("MEAN", "cpu") is a  # cached, not rebuilt per call
    assert a.tolist() == list(torch.tensor(augment.MEAN).tolist())
    assert augment._device_constant("PCA_EIGVEC", "cpu").shape == (3, 3)


def test_image_size_is_the_models():
    from alexnet_nb import model

    assert augment.IMAGE_SIZE == model.IMAGE_SIZE == 227


def test_accuracy_topk():
    output = torch.tensor([[0.1, 0.9, 0.0, 0.0, 0.0, 0.0],
                           [0.9, 0.1, 0.0, 0.0, 0.0, 0.0],
                           [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]])
    target = torch.tensor([1, 1, 0])
    top1, top5 = evaluate.accuracy(output, target, topk=(1, 5))
    assert abs(top1 - 100 / 3) < 1e-9  # only the first is right at top-1
    assert abs(top5 - 200 / 3) < 1e-9  # the third's label is ranked 6th
    assert evaluate.accuracy(output[:, :3], target, topk=(1, 5))[1] == 100.0  # k capped at class count


# ----------------------------------------------------------------- scale augmentation (issue 9)

def by_hand(boxes, flip):
    return torch.tensor(boxes, dtype=torch.float32), torch.tensor(flip)


@pytest.mark.parametrize("layout", [torch.contiguous_format, CL])
def test_scale_crop_of_whole_pixels_at_scale_one_gives_the_exact_pixels(layout):
    imgs = coordinate_images(b=3)
    boxes, flip = by_hand([[5, 7, 40, 40], [0, 24, 40, 40], [24, 0, 40, 40]], [False, True, False])  # top, left, h, w
    x = augment.apply_params(imgs, (boxes, flip, None), image_size=40, channels_last=layout == CL)
    assert x.shape == (3, 3, 40, 40) and x.is_contiguous(memory_format=layout)
    px = decode(x)
    for i, (top, left, _, _) in enumerate(boxes.long().tolist()):
        assert torch.equal(px[i, 0], torch.arange(top, top + 40).view(40, 1).expand(40, 40))
        cols = torch.arange(left, left + 40)
        assert torch.equal(px[i, 1], (cols.flip(0) if flip[i] else cols).expand(40, 40))
        assert torch.equal(px[i, 2], torch.full((40, 40), i))


def test_scale_crop_is_bilinear_with_pixel_centres():
    imgs = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    # The whole image: the same as resizing it with F.interpolate (what the fixed-size path does).
    boxes, flip = by_hand([[0, 0, 64, 64]] * 4, [False, True, False, True])
    x = augment.apply_params(imgs, (boxes, flip, None))
    plain = augment.center_view(imgs, crop_size=64)
    torch.testing.assert_close(x, torch.where(flip.view(-1, 1, 1, 1), plain.flip(-1), plain), atol=1e-5, rtol=0)
    # Sub-pixel boxes of any shape: against affine_grid + grid_sample (border: edge pixels repeat, as above).
    boxes = augment.random_params(4, torch.Generator().manual_seed(1), area=(0.1, 1.0), ratio=(0.5, 2))[0]
    x = augment.apply_params(imgs, (boxes, flip, None), image_size=100)
    top, left, h, w = boxes.unbind(1)
    theta = torch.zeros(4, 2, 3)
    theta[:, 0, 0] = torch.where(flip, -w, w) / 64
    theta[:, 0, 2] = (2 * left + w) / 64 - 1
    theta[:, 1, 1] = h / 64
    theta[:, 1, 2] = (2 * top + h) / 64 - 1
    grid = F.affine_grid(theta, (4, 3, 100, 100), align_corners=False)
    expected = F.grid_sample(augment.center_view(imgs, crop_size=64, image_size=64), grid,
                             padding_mode="border", align_corners=False)
    torch.testing.assert_close(x, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("height, width", [(64, 64), (48, 64)])
def test_random_boxes_stay_in_their_ranges_and_cover_them(height, width):
    n = 20_000
    params = augment.random_params(n, torch.Generator().manual_seed(0), height=height, width=width,
                                   area=(0.25, 1.0), ratio=(3 / 4, 4 / 3))
    boxes, flip, offset = params
    assert len(params) == 3 and offset is None
    top, left, h, w = boxes.unbind(1)
    area, ratio = h * w / (height * width), w / h
    eps = 1e-5
    assert area.min() >= 0.25 - eps and area.max() <= 1 + eps
    assert area.min() < 0.251 and area.max() > 0.999  # covered
    assert abs(area.mean() - 0.625) < 0.01  # uniform: the area is never clamped
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + h <= height + eps).all() and (left + w <= width + eps).all()
    room = (height - h > 1) & (width - w > 1)
    assert (top / (height - h))[room].max() > 0.99 and (left / (width - w))[room].max() > 0.99  # every position
    # Where every ratio of the range fits (small boxes), the ratio is log-uniform over all of it.
    fits = area < 0.5
    log_r = ratio[fits].log()
    assert log_r.min() > math.log(3 / 4) - eps and log_r.max() < math.log(4 / 3) + eps
    assert log_r.min() < math.log(3 / 4) + 0.01 and log_r.max() > math.log(4 / 3) - 0.01
    assert abs(log_r.mean()) < 0.01
    if height == width:
        assert ratio.min() >= 3 / 4 - eps and ratio.max() <= 4 / 3 + eps  # clamping never leaves the range
    assert 0.48 < flip.float().mean() < 0.52
    again = augment.random_params(n, torch.Generator().manual_seed(0), height=height, width=width, area=(0.25, 1.0))
    assert all(torch.equal(a, b) for a, b in zip(params[:2], again[:2]))
    other = augment.random_params(n, torch.Generator().manual_seed(1), height=height, width=width, area=(0.25, 1.0))
    assert not torch.equal(boxes, other[0])


def test_scale_augmentation_in_train_batch():
    imgs = torch.randint(0, 256, (6, 3, 64, 64), dtype=torch.uint8)
    x = augment.train_batch(imgs, torch.Generator().manual_seed(0), area=(0.25, 1.0), channels_last=True)
    assert x.shape == (6, 3, 227, 227) and x.is_contiguous(memory_format=CL)
    same = augment.train_batch(imgs, torch.Generator().manual_seed(0), area=(0.25, 1.0))
    torch.testing.assert_close(x, same, atol=1e-5, rtol=0)
    # A constant image stays constant (the weights sum to one); lighting shifts it per image and channel.
    flat = torch.full((6, 3, 64, 64), 128, dtype=torch.uint8)
    lit = augment.train_batch(flat, torch.Generator().manual_seed(2), area=(0.25, 1.0), pca_lighting=0.1)
    torch.testing.assert_close(lit, lit[:, :, :1, :1].expand_as(lit), atol=1e-5, rtol=0)
    assert lit[:, :, 0, 0].std(dim=0).min() > 1e-3


def test_the_blogs_augmentation_is_the_whole_image_resized_with_a_flip():
    imgs = torch.randint(0, 256, (16, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    params = augment.random_params(16, torch.Generator().manual_seed(0), crop_size=64)
    ys, xs, flip, _ = params
    assert (ys == 0).all() and (xs == 0).all() and 0 < flip.sum() < 16
    x = augment.apply_params(imgs, params, crop_size=64, image_size=227)
    mirrored = torch.where(flip.view(-1, 1, 1, 1), imgs.flip(-1), imgs)
    by_hand = F.interpolate((mirrored / 255 - MEAN) / STD, size=(227, 227), mode="bilinear", align_corners=False)
    torch.testing.assert_close(x, by_hand, atol=1e-5, rtol=0)


class BigResults(TorchDispatchMode):
    """Keeps every operator result with at least ``numel`` elements (kept alive: no address is reused)."""

    def __init__(self, numel):
        super().__init__()
        self.numel, self.results = numel, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor) and out.numel() >= self.numel:
            self.results.append(out)
        return out

    def storages(self):
        return {t.untyped_storage().data_ptr() for t in self.results}


AUGMENTATIONS = {  # each returns a list of batches
    "center_view": lambda imgs, cl: [augment.center_view(imgs, channels_last=cl)],
    "ten_views": lambda imgs, cl: augment.ten_views(imgs, channels_last=cl),
    "fixed crop": lambda imgs, cl: [augment.train_batch(imgs, torch.Generator().manual_seed(0), channels_last=cl)],
    "scale crop": lambda imgs, cl: [augment.train_batch(imgs, torch.Generator().manual_seed(0), area=(0.25, 1.0),
                                                        pca_lighting=0.1, channels_last=cl)],
}


@pytest.mark.parametrize("name", AUGMENTATIONS)
def test_channels_last_is_written_directly(name):
    imgs = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    results = {}
    for cl in (False, True):
        with BigResults(4 * 3 * 227 * 227) as big:
            results[cl] = AUGMENTATIONS[name](imgs, cl)
        assert all(x.is_contiguous(memory_format=CL if cl else torch.contiguous_format) for x in results[cl])
        assert len(big.storages()) == len(results[cl])  # the outputs themselves: no full-size copy on the way
    torch.testing.assert_close(results[True], results[False], atol=1e-5, rtol=0)
