"""Batched data augmentation on the device where the images live.

The whole decoded split sits on the device as uint8 ``[N, 3, 64, 64]``; a batch
is augmented with a handful of tensor ops (one gather for the crops and flips,
one ``F.interpolate`` for the resize), never with per-image Python. The same
code runs on a CPU.

Geometry (exact, tested): a crop of ``crop_size`` pixels starts at row ``y``
and column ``x`` of the 64x64 image and covers rows ``y .. y+crop_size-1``;
a flip reverses its columns. The crop is then resized to ``image_size``
(227, the input AlexNet's layer arithmetic needs) by bilinear interpolation
with ``align_corners=False`` and no antialiasing (it is an upsampling).
Normalization is applied before the resize: it is a per-channel affine map and
bilinear weights sum to one, so the result is the same and it touches 16x
fewer pixels.
"""

import functools

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
    # Normalize the key so that "cuda", "cuda:0" and torch.device("cuda") share one entry.
    device = torch.device(device if device is not None else "cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return _constant(name, device)


def _crop(images, ys, xs, flip, crop_size):
    """Gather per-sample crops ``[B, 3, c, c]``: one advanced-indexing call for the whole batch."""
    b, ch = images.shape[:2]
    steps = torch.arange(crop_size, device=images.device)
    rows = ys.view(b, 1) + steps  # [B, c]
    cols = xs.view(b, 1) + steps
    cols = torch.where(flip.view(b, 1), cols.flip(1), cols)
    bi = torch.arange(b, device=images.device).view(b, 1, 1, 1)
    ci = torch.arange(ch, device=images.device).view(1, ch, 1, 1)
    return images[bi, ci, rows.view(b, 1, crop_size, 1), cols.view(b, 1, 1, crop_size)]


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
    if x.shape[-1] == image_size:
        return x
    return F.interpolate(x, size=(image_size, image_size), mode="bilinear",
                         align_corners=False, antialias=False)


def pca_offsets(n, alpha_std, generator=None, device=None):
    """The paper's lighting noise: per image, ``sum_i alpha_i * lambda_i * p_i`` with ``alpha_i ~ N(0, alpha_std)``."""
    alpha = torch.randn(n, 3, generator=generator, device=device) * alpha_std
    eigval = _device_constant("PCA_EIGVAL", alpha.device)
    eigvec = _device_constant("PCA_EIGVEC", alpha.device)
    return (alpha * eigval) @ eigvec.T  # [n, 3] RGB offsets


def random_params(n, generator=None, crop_size=CROP_SIZE, pca_lighting=0.0, height=64, width=64, device=None):
    """Per-sample random choices for ``n`` images: crop rows, crop columns, flips, lighting offsets.

    Drawn apart from the pixels so that under DDP every process can draw them
    for the whole global batch (same generator, same numbers) and apply its
    own share: the augmentation then does not depend on the number of GPUs.
    """
    ys = torch.randint(0, height - crop_size + 1, (n,), generator=generator, device=device)
    xs = torch.randint(0, width - crop_size + 1, (n,), generator=generator, device=device)
    flip = torch.randint(0, 2, (n,), generator=generator, device=device).bool()
    offset = pca_offsets(n, pca_lighting, generator, device) if pca_lighting > 0 else None
    return ys, xs, flip, offset


def apply_params(images_u8, params, crop_size=CROP_SIZE, image_size=IMAGE_SIZE):
    """Crop, flip, light, normalize and resize a batch with the choices of ``random_params``."""
    ys, xs, flip, offset = params
    return _resize(_normalize(_crop(images_u8, ys, xs, flip, crop_size), offset), image_size)


def train_batch(images_u8, generator=None, crop_size=CROP_SIZE, image_size=IMAGE_SIZE, pca_lighting=0.0):
    """Random crop, random horizontal flip, optional PCA lighting, normalize, resize.

    ``generator`` must live on the images' device; each sample draws its own
    crop offset (uniform over all ``64 - crop_size + 1`` positions per axis) and
    flip (probability 1/2). ``pca_lighting`` is the paper's alpha standard
    deviation (0.1 in the paper; 0 switches it off).
    """
    b, _, h, w = images_u8.shape
    params = random_params(b, generator, crop_size, pca_lighting, h, w, images_u8.device)
    return apply_params(images_u8, params, crop_size, image_size)


def _fixed_view(images_u8, y, x, flip, crop_size, image_size):
    b = images_u8.shape[0]
    dev = images_u8.device
    ys = torch.full((b,), y, device=dev, dtype=torch.long)
    xs = torch.full((b,), x, device=dev, dtype=torch.long)
    flips = torch.full((b,), flip, device=dev, dtype=torch.bool)
    return _resize(_normalize(_crop(images_u8, ys, xs, flips, crop_size)), image_size)


def view_offsets(height=64, width=64, crop_size=CROP_SIZE):
    """``(y, x)`` of the paper's five test crops: top-left, top-right, bottom-left, bottom-right, centre."""
    dy, dx = height - crop_size, width - crop_size
    return [(0, 0), (0, dx), (dy, 0), (dy, dx), (dy // 2, dx // 2)]


def center_view(images_u8, crop_size=CROP_SIZE, image_size=IMAGE_SIZE):
    """The centre crop (offset ``(64 - crop_size) // 2`` on both axes), normalized and resized."""
    h, w = images_u8.shape[-2:]
    y, x = view_offsets(h, w, crop_size)[4]
    return _fixed_view(images_u8, y, x, False, crop_size, image_size)


def ten_views(images_u8, crop_size=CROP_SIZE, image_size=IMAGE_SIZE):
    """The paper's test-time views: the five crops of ``view_offsets``, then the same five mirrored."""
    h, w = images_u8.shape[-2:]
    offsets = view_offsets(h, w, crop_size)
    return [_fixed_view(images_u8, y, x, flip, crop_size, image_size)
            for flip in (False, True) for y, x in offsets]
