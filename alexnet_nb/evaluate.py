"""Top-k accuracy and a centre-view (optionally also mirrored) evaluation of a network on a split."""

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
             image_size=augment.IMAGE_SIZE, amp_dtype=None, channels_last=False, distributed=False, flip=False):
    """Mean cross-entropy, top-1 and top-5 (percent) of ``net`` on the centre view of ``split``.

    ``split`` is anything with ``images`` (uint8 ``[N, 3, H, W]``) and ``labels``;
    images are moved to ``device`` batch by batch if they live elsewhere. With
    ``flip=True`` the result also holds ``flip_top1`` and ``flip_top5``: the
    softmax averaged over the centre view and its mirror image (two of the
    paper's ten test views). With ``distributed=True`` under DDP each process
    scores a shard and the sums are all-reduced, so every process returns the
    whole split's figures.

    Every batch has ``batch_size`` rows: the last one is padded with copies of
    its first image, so a ``torch.compile``'d network sees one shape and never
    recompiles; the padded rows count in no sum. A split smaller than
    ``batch_size`` is scored in one batch of its own size.
    """
    device = torch.device(device) if device is not None else next(net.parameters()).device
    was_training = net.training
    net.eval()
    # loss, top-1 hits, top-5 hits (then flip top-1, top-5): summed on the device, no sync per batch
    sums = torch.zeros(5 if flip else 3, dtype=torch.float64, device=device)
    # Built where the images live, so that slicing it per batch copies nothing between devices.
    index = _shard(len(split.labels), distributed, split.images.device)
    batch_size = max(1, min(batch_size, len(index)))  # a split smaller than a batch is not padded up to one
    for start in range(0, len(index), batch_size):
        idx = index[start:start + batch_size]
        n = len(idx)
        idx = torch.cat([idx, idx[:1].expand(batch_size - n)])  # padded: one shape for every batch
        images = split.images[idx].to(device, non_blocking=True)
        target = split.labels[idx[:n]].to(device, non_blocking=True)
        outputs = []
        for mirrored in [False, True] if flip else [False]:
            x = augment.center_view(images, crop_size, image_size, channels_last=channels_last, flip=mirrored)
            with autocast(device, amp_dtype):
                outputs.append(net(x)[:n].float())
        output = outputs[0]
        sums[0] += F.cross_entropy(output, target, reduction="sum").double()
        sums[1:3] += torch.stack(correct_topk(output, target, (1, 5)))
        if flip:
            probs = (outputs[0].softmax(dim=1) + outputs[1].softmax(dim=1)) / 2
            sums[3:5] += torch.stack(correct_topk(probs, target, (1, 5)))
    if distributed and dist.is_initialized():
        dist.all_reduce(sums)
    net.train(was_training)
    n = max(len(split.labels), 1)
    loss, *hits = sums.tolist()
    names = ["top1", "top5", "flip_top1", "flip_top5"]
    return {"loss": loss / n, **{name: 100.0 * h / n for name, h in zip(names, hits)}}
