"""AlexNet exactly as Krizhevsky, Sutskever and Hinton (2012) describe it.

Section 3 and figure 2 of the paper, layer by layer, so a reader can hold this
file next to the PDF. Where popular re-implementations differ (torchvision's
``alexnet``: 64-192-384-256-256 kernels, no LRN, adaptive average pooling,
dropout *before* FC6 and FC7 instead of after them) we follow the paper.

Also here: the layer summary (``layer_summary``, ``side_by_side``) and the
small tools of the model notebook's initialization experiment
(``activation_stats``, ``overfit``, ``compare_inits``). The full training
loop lives in ``alexnet_nb.train``.
"""

from collections import OrderedDict

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

IMAGE_SIZE = 227  # 224 in the paper's text, but only 227 gives its 55x55 conv1 maps
FEATURES = 256 * 6 * 6  # conv5 after pooling: what FC6 sees


class LRN(nn.Module):
    """Local response normalization across channels (section 3.3).

    b_i = a_i / (k + alpha * sum_{j in window of n around i} a_j^2)^beta
    with the paper's k=2, n=5, alpha=1e-4, beta=0.75.

    ``torch.nn.LocalResponseNorm`` (like Caffe) divides alpha by n, so the
    paper's alpha=1e-4 must be passed to it as alpha * n = 5e-4. ``groups=2``
    normalizes each GPU's half of the channels on its own, as on the paper's
    two GPUs.
    """

    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=2.0, groups=1):
        super().__init__()
        self.size, self.alpha, self.beta, self.k, self.groups = size, alpha, beta, k, groups
        self.norm = nn.LocalResponseNorm(size, alpha=alpha * size, beta=beta, k=k)

    def forward(self, x):
        # At least fp32, even under autocast: sums of squares of activations in
        # the hundreds overflow fp16 (max 65504), tiny ones underflow it.
        y = x.to(torch.promote_types(x.dtype, torch.float32))
        if self.groups == 1:
            y = self.norm(y)
        else:
            y = torch.cat([self.norm(c) for c in y.chunk(self.groups, dim=1)], dim=1)
        return y.to(x.dtype)

    def extra_repr(self):
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}, groups={self.groups}"


class AlexNet(nn.Module):
    """The 2012 network for 227x227 RGB input.

    ``groups=2`` reproduces the two-GPU connectivity: conv2, conv4 and conv5
    see only the kernel maps on their own GPU (conv3 and the FC layers see
    all). ``init`` is ``"default"`` (Kaiming, trains from scratch) or
    ``"paper"`` (section 5: N(0, 0.01), some biases 1); see ``init_weights``.
    """

    def __init__(self, num_classes=200, groups=1, init="default", dropout=0.5):
        super().__init__()
        g = groups
        self.features = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(3, 96, 11, stride=4)),             # 227 -> 55
            ("relu1", nn.ReLU(inplace=True)),
            ("norm1", LRN(groups=g)),
            ("pool1", nn.MaxPool2d(3, stride=2)),                  # overlapping: 55 -> 27
            ("conv2", nn.Conv2d(96, 256, 5, padding=2, groups=g)),
            ("relu2", nn.ReLU(inplace=True)),
            ("norm2", LRN(groups=g)),
            ("pool2", nn.MaxPool2d(3, stride=2)),                  # 27 -> 13
            ("conv3", nn.Conv2d(256, 384, 3, padding=1)),          # crosses GPUs
            ("relu3", nn.ReLU(inplace=True)),
            ("conv4", nn.Conv2d(384, 384, 3, padding=1, groups=g)),
            ("relu4", nn.ReLU(inplace=True)),
            ("conv5", nn.Conv2d(384, 256, 3, padding=1, groups=g)),
            ("relu5", nn.ReLU(inplace=True)),
            ("pool5", nn.MaxPool2d(3, stride=2)),                  # 13 -> 6
        ]))
        # Dropout acts on the *outputs* of the two hidden FC layers (section
        # 4.2), i.e. fc6-relu-drop-fc7-relu-drop-fc8, as in Caffe's
        # bvlc_alexnet; torchvision drops the inputs of fc6 and fc7 instead.
        self.classifier = nn.Sequential(OrderedDict([
            ("fc6", nn.Linear(FEATURES, 4096)),
            ("relu6", nn.ReLU(inplace=True)),
            ("drop6", nn.Dropout(dropout)),
            ("fc7", nn.Linear(4096, 4096)),
            ("relu7", nn.ReLU(inplace=True)),
            ("drop7", nn.Dropout(dropout)),
            ("fc8", nn.Linear(4096, num_classes)),
        ]))
        init_weights(self, init)

    def forward(self, x):
        if x.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"AlexNet takes {IMAGE_SIZE}x{IMAGE_SIZE} images, got {tuple(x.shape[-2:])}")
        return self.classifier(torch.flatten(self.features(x), 1))


def weight_layers(net):
    """The layers with weights, in order: conv1..conv5, fc6..fc8."""
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


# Section 5: "biases in the second, fourth, and fifth convolutional layers, as
# well as in the fully-connected hidden layers, with the constant 1".
PAPER_BIAS_ONE = ("conv2", "conv4", "conv5", "fc6", "fc7")


def init_weights(net, scheme="default"):
    """Initialize an ``AlexNet`` in place.

    ``"paper"``: every weight N(0, 0.01); biases 1 in conv2, conv4, conv5,
    fc6, fc7 (so the ReLUs start with positive inputs), 0 elsewhere.

    ``"default"``: Kaiming-normal (fan_in, ReLU gain) weights, which keep the
    spread of the signal from layer to layer; zero biases; fc8 N(0, 0.001)
    so the first predictions are uniform (loss ln(num_classes), a sanity
    check) while the layers below already carry the image's signal.

    Why not the paper's: its N(0, 0.01) weights shrink the image's signal at
    every layer until the constant biases of 1 drown it (worse with
    normalized inputs than with the paper's raw pixels), so the logits
    hardly depend on the image and a short run sits at ln(num_classes)
    either way. The model notebook measures this.
    """
    if scheme not in ("default", "paper"):
        raise ValueError(f"init must be 'default' or 'paper', got {scheme!r}")
    named = [(n.split(".")[-1], m) for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    last = named[-1][1]
    for name, m in named:
        if scheme == "paper":
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.constant_(m.bias, 1.0 if name in PAPER_BIAS_ONE else 0.0)
        else:
            if m is last:
                nn.init.normal_(m.weight, 0.0, 0.001)
            else:
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return net


def count_parameters(net) -> int:
    return sum(p.numel() for p in net.parameters())


def _shape(t):
    """Per-image shape the way the paper writes it: HxWxC, or just C for FC."""
    s = tuple(t.shape[1:])
    return "x".join(map(str, s[1:] + s[:1] if len(s) == 3 else s))


def _mult_adds(m, out):
    """Multiply-adds per image; only convolutions and FC layers count."""
    if isinstance(m, nn.Conv2d):
        return out[0].numel() * m.weight[0].numel()  # each output: in/groups * kh * kw
    if isinstance(m, nn.Linear):
        return m.weight.numel()
    return 0


def _layers(net):
    """(short name, module) of the leaf modules, counting an LRN as one leaf."""
    found, lrn = [], None
    for name, m in net.named_modules():
        if not name or (lrn and name.startswith(lrn)):  # the module inside an LRN
            continue
        if isinstance(m, LRN) or not list(m.children()):
            short = name.rsplit(".", 1)[-1]  # "features.conv1" -> "conv1"; keep "features.0" whole
            found.append((name if short.isdigit() else short, m))
            if isinstance(m, LRN):
                lrn = name + "."
    return found


def layer_summary(net, input_size=(3, IMAGE_SIZE, IMAGE_SIZE)) -> pd.DataFrame:
    """One row per layer: output shape (HxWxC), parameters, multiply-adds per image.

    Works for any network and input size it accepts (torchvision's alexnet
    takes any size from 63 up). Our AlexNet's FC6 is defined only for its
    6x6x256 features, so at a size other than 227 only ``net.features`` is
    summarized: it shows how the feature maps would shrink. Ends with a
    ``total`` row.
    """
    rows = []

    def record(name):
        def hook(m, inputs, out):
            rows.append(dict(layer=name, type=type(m).__name__, output=_shape(out),
                             params=sum(p.numel() for p in m.parameters()),
                             mult_adds=_mult_adds(m, out)))
        return hook

    hooks = [m.register_forward_hook(record(n)) for n, m in _layers(net)]
    p = next(net.parameters())
    x = torch.zeros(1, *input_size, device=p.device, dtype=p.dtype)
    was_training = net.training
    try:
        net.eval()
        with torch.no_grad():
            if isinstance(net, AlexNet) and tuple(input_size[1:]) != (IMAGE_SIZE, IMAGE_SIZE):
                net.features(x)
            else:
                net(x)
    finally:
        for h in hooks:
            h.remove()
        net.train(was_training)
    df = pd.DataFrame(rows)
    total = dict(layer="total", type="", output="", params=df.params.sum(), mult_adds=df.mult_adds.sum())
    return pd.concat([df, pd.DataFrame([total])], ignore_index=True)


def activation_stats(net, x) -> pd.DataFrame:
    """How each weight layer's output looks at the start, on a batch ``x``.

    ``std`` is the overall spread; ``image_std`` the spread across images of
    each unit, averaged over units: near zero means the layer's output barely
    depends on the image, the sign of an initialization that stalls training.
    Eval mode (no dropout), no gradients.
    """
    rows = []

    def hook(name):
        def fn(m, inputs, out):
            out = out.detach().float().flatten(1)
            rows.append(dict(layer=name, mean=out.mean().item(), std=out.std().item(),
                             image_std=out.std(dim=0).mean().item()))
        return fn

    hooks = [m.register_forward_hook(hook(n)) for n, m in _layers(net)
             if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = net.training
    try:
        net.eval()
        with torch.no_grad():
            net(x)
    finally:
        for h in hooks:
            h.remove()
        net.train(was_training)
    return pd.DataFrame(rows)


def overfit(net, images, labels, steps, lr=0.01, momentum=0.9, weight_decay=5e-4):
    """Full-batch SGD on one fixed batch (the paper's optimizer settings).

    A quick test of whether an initialization can learn at all: a network that
    trains drives the loss on a small batch far below ln(num_classes); one
    that stalls stays there. Returns the loss before each step. Not a training
    loop: see ``alexnet_nb.train``.
    """
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    net.train()
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(net(images), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def compare_inits(images, labels, num_classes, steps, schemes=("paper", "default"), seed=0, **sgd):
    """The initialization experiment: the same batch, the same SGD, one column of losses per scheme.

    Each network starts from ``torch.manual_seed(seed)``, so only the
    initialization differs; ``sgd`` goes to ``overfit`` (lr, momentum,
    weight_decay). Returns a DataFrame indexed by step.
    """
    losses = {}
    for scheme in schemes:
        torch.manual_seed(seed)
        net = AlexNet(num_classes, init=scheme).to(images.device)
        losses[scheme] = overfit(net, images, labels, steps, **sgd)
    return pd.DataFrame(losses).rename_axis("step")


def side_by_side(summaries: dict) -> pd.DataFrame:
    """Weight layers of several summaries next to each other: output shape and parameters.

    ``summaries`` maps a label to a ``layer_summary``; the layers are matched
    by position (conv1..conv5, fc6..fc8) since their module names differ.
    """
    cols = {}
    for label, s in summaries.items():
        w = s[s.type.isin(["Conv2d", "Linear"])].reset_index(drop=True)
        cols[(label, "output")] = w.output
        cols[(label, "params")] = w.params
    out = pd.DataFrame(cols)
    out.index = [f"conv{i + 1}" if i < 5 else f"fc{i + 1}" for i in range(len(out))]
    return out
