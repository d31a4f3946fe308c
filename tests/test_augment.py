"""Augmentation geometry and top-k accuracy."""

import torch

from alexnet_nb import augment, evaluate

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
