"""The reference blog's training pipeline: the yardstick of ``python -m alexnet_nb.bench train``.

The blog (aandyw/StuffFromScratch) trains AlexNet on Tiny ImageNet the way most
tutorials do: a torchvision ``ImageFolder`` decodes every JPEG with PIL in
every epoch, ``Resize(227)``, ``RandomHorizontalFlip``, ``ToTensor`` and
``Normalize`` run per image in a ``DataLoader`` with 2 workers, and the
network trains in fp32, NCHW, eager mode, with PyTorch's default SGD and
cuDNN's default algorithm choice. It is rebuilt here with its own step (not
``step.TrainStep``, whose input is our uint8 split on the device) so that our
speed is stated against it on the same machine, in the same run.
"""

from pathlib import Path

import torch
import torch.nn.functional as F

from alexnet_nb import augment, model, step
from alexnet_nb import config as config_lib

WORKERS = 2  # the blog's DataLoader(num_workers=2)


def blog_config(batch_size):
    """The blog's recipe run the blog's way: fp32, NCHW, eager, PyTorch's default SGD, nn.LocalResponseNorm."""
    return config_lib.recipe("blog", batch_size=batch_size, precision="fp32", channels_last=False, compile=False,
                             fused_sgd=False, lrn_impl="torch")


def loader(folder, batch_size, workers=WORKERS):
    """The blog's input pipeline over ``folder/train``: PIL decode, Resize(227), flip, ToTensor, Normalize."""
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.Resize(augment.IMAGE_SIZE), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(), transforms.Normalize(augment.MEAN, augment.STD)])
    ds = datasets.ImageFolder(str(Path(folder) / "train"), transform=tf)
    # Workers are spawned, not forked: the benchmark has started CUDA and compile threads by then, and a
    # forked child of such a process can hang; the timeout turns a hang into an error, not a lost run.
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                                       drop_last=True, persistent_workers=workers > 0,
                                       multiprocessing_context="spawn" if workers else None,
                                       timeout=120 if workers else 0)


def endless(batches):
    """Batches without end: a benchmark may want more than one epoch of a small folder."""
    while True:
        yield from batches


class BlogStep:
    """``step()``: the blog's loop body: the next batch to the device, forward, loss, backward, SGD."""

    def __init__(self, batches, num_classes, batch_size, device):
        cfg = blog_config(batch_size)
        self.batches, self.device = batches, torch.device(device)
        self.net = model.from_config(cfg, num_classes).to(self.device)
        self.optimizer = step.make_optimizer(self.net, cfg, self.device)

    def __call__(self):
        x, y = next(self.batches)
        loss = F.cross_entropy(self.net(x.to(self.device)), y.to(self.device))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()
