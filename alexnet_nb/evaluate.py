"""Top-k accuracy and a centre-view evaluation of a network on a split."""

import contextlib

import torch
import torch.distributed as dist
import torch.nn.functional as F

from alexnet_nb import augment


def correct_topk(output, target, topk=(1, 5)):
    """Number of samples whose label is among the ``k`` highest scores, for each ``k`` (tensors, no sync)."""
    maxk = min(max(topk), output.shape[1])
    pred = output.topk(maxk, dim=1).indices  # [B, maxk]
    hit = pred.eq(target.view(-1, 1))
    return [hit[:, :min(k, maxk)].any(dim=1).sum() for k in topk]


def accuracy(output, target, topk=(1, 5)):
    """Top-k accuracies in percent (pytorch/examples imagenet style), as Python floats."""
    with torch.no_grad():
        n = target.shape[0]
        return [c.item() * 100.0 / n for c in correct_topk(output, target, topk)]


def autocast(device, dtype):
    """``torch.autocast`` for ``dtype`` (None: full precision) on ``device``."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def _shard(n, distributed, device=None):
    """Indices this process evaluates (on ``device``): all of them, or every world_size-th under DDP."""
    if distributed and dist.is_initialized():
        return torch.arange(dist.get_rank(), n, dist.get_world_size(), device=device)
    return torch.arange(n, device=device)


@torch.no_grad()
def evaluate(net, split, batch_size=256, device=None, crop_size=augment.CROP_SIZE,
             image_size=augment.IMAGE_SIZE, amp_dtype=None, channels_last=False, distributed=False):
    """Mean cross-entropy, top-1 and top-5 (percent) of ``net`` on the centre view of ``split``.

    ``split`` is anything with ``images`` (uint8 ``[N, 3, H, W]``) and ``labels``;
    images are moved to ``device`` batch by batch if they live elsewhere. With
    ``distributed=True`` under DDP each process scores a shard and the sums are
    all-reduced, so every process returns the whole split's figures.
    """
    device = torch.device(device) if device is not None else next(net.parameters()).device
    was_training = net.training
    net.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss, top-1 hits, top-5 hits (no sync per batch)
    # Built where the images live, so that slicing it per batch copies nothing between devices.
    index = _shard(len(split.labels), distributed, split.images.device)
    for start in range(0, len(index), batch_size):
        idx = index[start:start + batch_size]
        images = split.images[idx].to(device, non_blocking=True)
        target = split.labels[idx].to(device, non_blocking=True)
        x = augment.center_view(images, crop_size, image_size)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp_dtype):
            output = net(x)
        output = output.float()
        top1, top5 = correct_topk(output, target, (1, 5))
        sums[0] += F.cross_entropy(output, target, reduction="sum").double()
        sums[1] += top1
        sums[2] += top5
    if distributed and dist.is_initialized():
        dist.all_reduce(sums)
    net.train(was_training)
    loss, top1, top5 = sums.tolist()
    n = max(len(split.labels), 1)
    return {"loss": loss / n, "top1": 100.0 * top1 / n, "top5": 100.0 * top5 / n}
