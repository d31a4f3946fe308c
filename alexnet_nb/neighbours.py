"""The paper's figure 4 (right): the training images whose fc7 features are nearest a validation image's.

Section 6.1: "If two images produce feature activation vectors with a small
Euclidean separation, we can say that the higher levels of the neural network
consider them to be similar." The features are the 4096 outputs of fc7 after
its ReLU (``relu7``), for the centre view, in eval mode (no dropout, so it does
not matter whether dropout sits before or after fc7).

Memory, sized for a Colab T4 (15 GB of GPU memory, 12.7 GB of RAM): the
features of all 100,000 training images are kept on the CPU in float16,
100,000 x 4096 x 2 bytes = 819 MB; the device holds one batch of images at a
time while extracting, and one chunk of features (``chunk`` x 4096 x 4 bytes:
268 MB for 16,384) plus a ``query_chunk`` x ``chunk`` block of distances while
searching.
"""

import torch

from alexnet_nb import augment, evaluate


@torch.no_grad()
def fc7_features(net, images_u8, batch_size=256, device=None, crop_size=augment.CROP_SIZE,
                 dtype=torch.float16) -> torch.Tensor:
    """``[N, 4096]`` fc7 features (after relu7) of the centre view of each uint8 image, on the CPU in ``dtype``.

    Batched: only ``batch_size`` images are on the device at a time. On a GPU
    the forward pass runs under fp16 autocast (the features are stored in
    fp16 anyway); on a CPU in fp32.
    """
    device = torch.device(device) if device is not None else next(net.parameters()).device
    was_training = net.training
    net.eval()
    out = []
    amp = torch.float16 if device.type == "cuda" else None
    try:
        for start in range(0, len(images_u8), batch_size):
            x = augment.center_view(images_u8[start:start + batch_size].to(device), crop_size=crop_size)
            with evaluate.autocast(device, amp):
                out.append(net.fc7_features(x).to("cpu", dtype))
    finally:
        net.train(was_training)
    return torch.cat(out)


@torch.no_grad()
def nearest(queries, features, k=6, chunk=16384, query_chunk=1024, device=None):
    """``(distances, indices)``, each ``[Q, k]``: the ``k`` rows of ``features`` nearest each query (Euclidean).

    ``features`` stays where it is (the CPU, in fp16); it is moved to
    ``device`` ``chunk`` rows at a time and converted to fp32 there, so that
    100,000 x 4096 features never need to fit on the device at once. A running
    top-k is kept across the chunks. Nearest first; ties keep the lower index.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    k = min(k, len(features))
    all_d, all_i = [], []
    for q0 in range(0, len(queries), query_chunk):
        q = queries[q0:q0 + query_chunk].to(device, torch.float32)
        best_d = torch.full((len(q), 0), float("inf"), device=device)
        best_i = torch.zeros((len(q), 0), dtype=torch.long, device=device)
        for f0 in range(0, len(features), chunk):
            f = features[f0:f0 + chunk].to(device, torch.float32)
            d = torch.cdist(q, f)
            d = torch.cat([best_d, d], dim=1)
            i = torch.cat([best_i, torch.arange(f0, f0 + len(f), device=device).expand(len(q), -1)], dim=1)
            # A stable sort, so that equal distances keep the lower index first.
            order = d.sort(dim=1, stable=True).indices[:, :k]
            best_d, best_i = d.gather(1, order), i.gather(1, order)
        all_d.append(best_d.cpu())
        all_i.append(best_i.cpu())
    return torch.cat(all_d), torch.cat(all_i)


def neighbour_agreement(neighbour_labels, query_labels) -> float:
    """Percent of the neighbours ``[Q, k]`` that have their query's label: how well fc7 groups a class."""
    return 100.0 * (neighbour_labels == query_labels.view(-1, 1)).float().mean().item()
