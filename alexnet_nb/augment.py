"""Batched data augmentation on the device where the images live.

The whole decoded split sits on the device as uint8 ``[N, 3, 64, 64]``; a batch
is augmented with a handful of tensor ops (one gather for the crops and flips,
one ``F.interpolate`` for the resize; two matrix products for scale
augmentation), never with per-image Python. The same code runs on a CPU.

Geometry (exact, tested): a crop of ``crop_size`` pixels starts at row ``y``
and column ``x`` of the 64x64 image and covers rows ``y .. y+crop_size-1``;
a flip reverses its columns. The crop is then resized to ``image_size``
(227, the input AlexNet's layer arithmetic needs) by bilinear interpolation
with ``align_corners=False`` and no antialiasing (it is an upsampling).
Normalization is applied before the resize: it is a per-channel affine map and
bilinear weights sum to one, so the result is the same and it touches 16x
fewer pixels.

Scale augmentation (``random_params(..., area=...)``) crops a box of random
area and aspect ratio at a sub-pixel position and resamples it to
``image_size`` with the same bilinear convention (pixel centres, edge pixels
repeated beyond the image's border); a box of whole pixels at scale 1 gives
the exact pixels back.

``channels_last=True`` makes every function here write the NHWC layout the
network wants directly, with no extra full-size copy.
"""

import functools
import math

import torch
import torch.nn.functional as F

from alexnet_nb.model import IMAGE_SIZE  # the input size AlexNet's layers need (227), defined once in model

# ImageNet statistics, as every torchvision model and the blog used them.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
CROP_SIZE = 56  # of 64: the paper's 224-of-256 ratio (0.875) on Tiny ImageNet

# Principal components of ImageNet RGB pixels (values in [0, 1]), as used by
# fb.resnet.torch and torchvision references for the paper's "PCA colour
# augmentation" (section 4.1): eigenvalues and eigenvectors (columns).
PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
PCA_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)


@functools.lru_cache(maxsize=None)
def _constant(name, device):
    """The module constant ``name`` as a float tensor on ``device``, made once per device.

    ``torch.tensor(..., device="cuda")`` is a blocking host-to-device copy; built
    every step it would stall the GPU queue for nothing.
    """
    return torch.tensor(globals()[name], dtype=torch.float32, device=device)


def _device_constant(name, device):
    if torch.compiler.is_compiling():  # traced into a compiled step: a constant of the graph, made once there
        return torch.tensor(globals()[name], dtype=torch.float32, device=device)
    # Normalize the key so that "cuda", "cuda:0" and torch.device("cuda") share one entry.
    device = torch.device(device if device is not None else "cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return _constant(name, device)


def _crop(images, ys, xs, flip, crop_size, channels_last=False):
    """Gather per-sample crops ``[B, 3, c, c]``: one advanced-indexing call for the whole batch."""
    b, ch = images.shape[:2]
    steps = torch.arange(crop_size, device=images.device)
    rows = ys.view(b, 1) + steps  # [B, c]
    cols = xs.view(b, 1) + steps
    cols = torch.where(flip.view(b, 1), cols.flip(1), cols)
    bi = torch.arange(b, device=images.device).view(b, 1, 1, 1)
    ci = torch.arange(ch, device=images.device)
    if channels_last:  # gather [B, c, c, 3] and return its [B, 3, c, c] view: channels_last without a copy
        crops = images[bi, ci.view(1, 1, 1, ch), rows.view(b, crop_size, 1, 1), cols.view(b, 1, crop_size, 1)]
        return crops.permute(0, 3, 1, 2)
    return images[bi, ci.view(1, ch, 1, 1), rows.view(b, 1, crop_size, 1), cols.view(b, 1, 1, crop_size)]


def _normalize(crops_u8, offset=None):
    """uint8 -> float, ``(x/255 - mean) / std``; ``offset`` ([B, 3], in [0, 1] units) is added first."""
    x = crops_u8.float().div_(255)
    mean = _device_constant("MEAN", x.device).view(1, 3, 1, 1)
    if offset is not None:
        mean = mean - offset.view(-1, 3, 1, 1)
    std = _device_constant("STD", x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def to_image(x):
    """Undo the normalization for display: float ``[B, 3, H, W]`` or ``[3, H, W]`` -> the same shape in [0, 1].

    Channels stay first (like the input); ``to_image(x).permute(1, 2, 0)``
    (or ``permute(0, 2, 3, 1)`` for a batch) is what ``imshow`` takes. Clamped,
    because PCA lighting can push pixels slightly outside [0, 1]. Returned on the CPU.
    """
    x = x.detach().float()
    shape = (3, 1, 1) if x.dim() == 3 else (1, 3, 1, 1)
    mean = _device_constant("MEAN", x.device).view(shape)
    std = _device_constant("STD", x.device).view(shape)
    return (x * std + mean).clamp_(0, 1).cpu()


def _resize(x, image_size):
    # F.interpolate returns channels_last for a channels_last input (tested on the CPU).
    if x.shape[-1] == image_size:
        return x
    return F.interpolate(x, size=(image_size, image_size), mode="bilinear",
                         align_corners=False, antialias=False)


def _bilinear_weights(start, length, size, out_size, flip=None):
    """``[B, out_size, size]``: row ``t`` holds the bilinear weights of output pixel ``t`` along one axis.

    Output pixel ``t`` of a box ``[start, start + length)`` (pixel edges) sits
    at source position ``start + (t + 0.5) * length / out_size - 0.5`` (pixel
    centres: ``F.interpolate``'s ``align_corners=False``), clamped to the
    image as ``F.interpolate`` clamps; its weights are the tent function
    ``max(0, 1 - |position - j|)`` over source pixels ``j``. ``flip`` mirrors
    the output order.
    """
    t = torch.arange(out_size, device=start.device, dtype=torch.float32).add_(0.5).expand(len(start), out_size)
    if flip is not None:
        t = torch.where(flip.view(-1, 1), out_size - t, t)
    pos = (start.view(-1, 1) + t * (length / out_size).view(-1, 1) - 0.5).clamp_(0, size - 1)
    j = torch.arange(size, device=start.device, dtype=torch.float32)
    return (1 - (pos.unsqueeze(-1) - j).abs_()).clamp_(min=0)


def _resample(x, boxes, flip, image_size, channels_last=False):
    """Bilinear resampling of per-sample boxes ``[top, left, height, width]`` of ``x`` to ``image_size``.

    Bilinear interpolation of an axis-aligned box is separable, so the batch
    is two batched matrix products, ``Ry @ x @ Rx^T``. Chosen over
    ``F.affine_grid`` + ``F.grid_sample`` (the same numbers to 5e-5 in fp32):
    those need a ``[B, S, S, 2]`` sampling grid, 2/3 the size of the output,
    and ``grid_sample`` allocates an NCHW output, so channels_last would cost a
    full-size copy. Here the last product writes either layout directly; for
    channels_last only the small column pass (64 rows, not 227) is permuted.
    The products are fp32 matmuls: exact pixels at scale 1 hold unless the
    caller enables TF32 for matmuls.
    """
    b, c, h, w = x.shape
    ry = _bilinear_weights(boxes[:, 0], boxes[:, 2], h, image_size)  # [B, S, h]
    rx = _bilinear_weights(boxes[:, 1], boxes[:, 3], w, image_size, flip)  # [B, S, w]
    cols = torch.bmm(x.reshape(b, c * h, w), rx.transpose(1, 2)).view(b, c, h, image_size)
    if channels_last:  # out[b, s, t, :] = sum_h ry[b, s, h] * cols[b, :, h, t], written as [B, S, S, c]
        out = ry @ cols.permute(0, 2, 3, 1).reshape(b, h, image_size * c)
        return out.view(b, image_size, image_size, c).permute(0, 3, 1, 2)
    return ry.unsqueeze(1) @ cols


def pca_offsets(n, alpha_std, generator=None, device=None):
    """The paper's lighting noise: per image, ``sum_i alpha_i * lambda_i * p_i`` with ``alpha_i ~ N(0, alpha_std)``."""
    alpha = torch.randn(n, 3, generator=generator, device=device) * alpha_std
    eigval = _device_constant("PCA_EIGVAL", alpha.device)
    eigvec = _device_constant("PCA_EIGVEC", alpha.device)
    return (alpha * eigval) @ eigvec.T  # [n, 3] RGB offsets


def _random_boxes(n, area, ratio, height, width, generator=None, device=None):
    """``[n, 4]`` float boxes ``[top, left, height, width]`` in pixels: random area fraction, aspect ratio, position.

    The area fraction is uniform in ``area``, the aspect ratio (width /
    height) log-uniform in ``ratio``, then clamped to the ratios at which a
    box of that area fits in the image (at area 1 only the image's own ratio
    fits); the position is uniform over all places where the box fits, at
    sub-pixel precision. torchvision's ``RandomResizedCrop`` instead rounds
    sizes and positions to whole pixels and rejects boxes that do not fit
    (up to 10 tries, then a centre crop); one vectorised draw cannot retry,
    so here every draw is used: the area keeps its exact distribution, and
    for large areas the ratio leans toward the image's (on a square image it
    is clamped to ``[a, 1/a]``, which with the default ``ratio`` touches only
    boxes above 3/4 of the image's area).
    """
    u = torch.rand(n, 4, generator=generator, device=device)
    a = area[0] + (area[1] - area[0]) * u[:, 0]
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    r = torch.exp(log_lo + (log_hi - log_lo) * u[:, 1])
    # box width sqrt(a*H*W*r) <= W  <=>  r <= W / (a*H);  height sqrt(a*H*W/r) <= H  <=>  r >= a*W / H
    r = torch.minimum(torch.maximum(r, a * width / height), width / (a * height))
    bw = (a * height * width * r).sqrt().clamp_(max=width)
    bh = (a * height * width / r).sqrt().clamp_(max=height)
    return torch.stack([u[:, 2] * (height - bh), u[:, 3] * (width - bw), bh, bw], dim=1)


def random_params(n, generator=None, crop_size=CROP_SIZE, pca_lighting=0.0, height=64, width=64, device=None,
                  area=None, ratio=(3 / 4, 4 / 3)):
    """Per-sample random choices for ``n`` images: crop boxes, flips, lighting offsets.

    ``area=None``: the paper's crops, ``(ys, xs, flip, offset)``: a
    ``crop_size`` square at a random whole-pixel position (uniform over all
    ``64 - crop_size + 1`` per axis). ``crop_size=64`` with a flip is the
    blog's augmentation (the whole image, resized).

    ``area=(min, max)``: scale augmentation, ``(boxes, flip, offset)``: a box
    covering a uniform random fraction of the image's area with a random
    aspect ratio in ``ratio``; see ``_random_boxes``. ``crop_size`` is unused.

    Flips have probability 1/2; ``offset`` is None without ``pca_lighting``.
    Drawn apart from the pixels so that under DDP every process can draw them
    for the whole global batch (same generator, same numbers) and apply its
    own share (every entry is indexed by sample): the augmentation then does
    not depend on the number of GPUs.
    """
    if area is not None:
        crop = (_random_boxes(n, area, ratio, height, width, generator, device),)
    else:
        crop = (torch.randint(0, height - crop_size + 1, (n,), generator=generator, device=device),
                torch.randint(0, width - crop_size + 1, (n,), generator=generator, device=device))
    flip = torch.randint(0, 2, (n,), generator=generator, device=device).bool()
    offset = pca_offsets(n, pca_lighting, generator, device) if pca_lighting > 0 else None
    return (*crop, flip, offset)


def apply_params(images_u8, params, crop_size=CROP_SIZE, image_size=IMAGE_SIZE, channels_last=False):
    """Crop, flip, light, normalize and resize a batch with the choices of ``random_params``.

    Dispatches on what ``random_params`` returned: three entries (boxes,
    flip, offset) are scale augmentation, four (ys, xs, flip, offset) the
    fixed-size crop.
    """
    if len(params) == 3:
        boxes, flip, offset = params
        return _resample(_normalize(images_u8, offset), boxes, flip, image_size, channels_last)
    ys, xs, flip, offset = params
    return _resize(_normalize(_crop(images_u8, ys, xs, flip, crop_size, channels_last), offset), image_size)


def train_batch(images_u8, generator=None, crop_size=CROP_SIZE, image_size=IMAGE_SIZE, pca_lighting=0.0,
                area=None, ratio=(3 / 4, 4 / 3), channels_last=False):
    """Random crop, random horizontal flip, optional PCA lighting, normalize, resize, in one call.

    ``random_params`` then ``apply_params``: see them for the fixed-size crop
    and the scale augmentation (``area``, ``ratio``). ``generator`` must live on the images' device. ``pca_lighting`` is the
    paper's alpha standard deviation (0.1 in the paper; 0 switches it off).
    """
    b, _, h, w = images_u8.shape
    params = random_params(b, generator, crop_size, pca_lighting, h, w, images_u8.device, area=area, ratio=ratio)
    return apply_params(images_u8, params, crop_size, image_size, channels_last)


def _fixed_view(images_u8, y, x, flip, crop_size, image_size, channels_last=False):
    b = images_u8.shape[0]
    dev = images_u8.device
    ys = torch.full((b,), y, device=dev, dtype=torch.long)
    xs = torch.full((b,), x, device=dev, dtype=torch.long)
    flips = torch.full((b,), flip, device=dev, dtype=torch.bool)
    return apply_params(images_u8, (ys, xs, flips, None), crop_size, image_size, channels_last)


def view_offsets(height=64, width=64, crop_size=CROP_SIZE):
    """``(y, x)`` of the paper's five test crops: top-left, top-right, bottom-left, bottom-right, centre."""
    dy, dx = height - crop_size, width - crop_size
    return [(0, 0), (0, dx), (dy, 0), (dy, dx), (dy // 2, dx // 2)]


def center_view(images_u8, crop_size=CROP_SIZE, image_size=IMAGE_SIZE, channels_last=False, flip=False):
    """The centre crop (offset ``(64 - crop_size) // 2`` on both axes), normalized and resized.

    ``flip=True``: its mirror image (the last of ``ten_views``).
    """
    h, w = images_u8.shape[-2:]
    y, x = view_offsets(h, w, crop_size)[4]
    return _fixed_view(images_u8, y, x, flip, crop_size, image_size, channels_last)


def ten_views(images_u8, crop_size=CROP_SIZE, image_size=IMAGE_SIZE, channels_last=False):
    """The paper's test-time views: the five crops of ``view_offsets``, then the same five mirrored."""
    h, w = images_u8.shape[-2:]
    offsets = view_offsets(h, w, crop_size)
    return [_fixed_view(images_u8, y, x, flip, crop_size, image_size, channels_last)
            for flip in (False, True) for y, x in offsets]
