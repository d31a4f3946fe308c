"""AlexNet exactly as Krizhevsky, Sutskever and Hinton (2012) describe it.

Section 3 and figure 2 of the paper, layer by layer, so a reader can hold this
file next to the PDF. Where popular re-implementations differ (torchvision's
``alexnet``: 64-192-384-256-256 kernels, no LRN, adaptive average pooling,
dropout *before* FC6 and FC7 instead of after them) we follow the paper by
default; keyword switches of ``AlexNet`` build those variants and the
paper's own ablations, and ``from_config`` builds one from a settings object.
The LRN layer lives in ``alexnet_nb.lrn``.

Also here: the layer summary (``layer_summary``, ``side_by_side``) and the
small tools of the model notebook's initialization experiment
(``activation_stats``, ``overfit``, ``compare_inits``). The full training
loop lives in ``alexnet_nb.train``.
"""

import inspect
from collections import OrderedDict

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from alexnet_nb.lrn import IMPLS as LRN_IMPLS
from alexnet_nb.lrn import LRN

IMAGE_SIZE = 227  # 224 in the paper's text, but only 227 gives its 55x55 conv1 maps
FEATURES = 256 * 6 * 6  # conv5 after pooling: what FC6 sees


# What each ablation switch of ``AlexNet`` may be; the first entry is the paper's.
ACTIVATIONS = {"relu": lambda: nn.ReLU(inplace=True), "tanh": nn.Tanh}  # section 3.1, figure 1
POOLS = (3, 2)  # kernel size, stride 2: 3 overlaps (section 3.4); both give 55 -> 27 -> 13 -> 6
DROPOUT_POSITIONS = ("after", "before")
INITS = ("default", "paper", "pytorch")


def _choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {tuple(allowed)}, got {value!r}")


class AlexNet(nn.Module):
    """The 2012 network for 227x227 RGB input.

    ``groups=2`` reproduces the two-GPU connectivity: conv2, conv4 and conv5
    see only the kernel maps on their own GPU (conv3 and the FC layers see
    all). ``init`` is ``"default"`` (Kaiming, trains from scratch),
    ``"paper"`` (section 5: N(0, 0.01), some biases 1) or ``"pytorch"``
    (PyTorch's own layer initialization, as the blog had); see ``init_weights``.

    The keyword-only switches give the paper's ablations and the blog's
    variants; the defaults are the paper:

    - ``lrn=False`` drops norm1 and norm2 (section 3.3: LRN cut top-1 error
      by 1.4 points). ``lrn_alpha`` is the paper's alpha; the blog's
      ``nn.LocalResponseNorm(5, alpha=1e-3)`` is ``lrn_alpha=2e-4``.
      ``lrn_impl`` picks the LRN code (see ``alexnet_nb.lrn``).
    - ``pool=2``: 2x2 stride-2 pooling instead of the overlapping 3x3
      (section 3.4: overlap cut top-1 error by 0.4 points).
    - ``activation="tanh"``: the saturating unit of section 3.1 / figure 1.
      The activation modules are named after it: relu1..relu7 or
      tanh1..tanh7; ``fc7_features`` returns fc7's either way.
    - ``dropout_position="before"``: dropout on the inputs of fc6 and fc7
      (torchvision, the blog) instead of on their outputs (section 4.2, Caffe).

    Module names conv1..conv5 and fc6..fc8 never change, so checkpoints and
    analysis code work with every switch.
    """

    def __init__(self, num_classes=200, groups=1, init="default", dropout=0.5, *, lrn=True, lrn_alpha=1e-4,
                 lrn_impl="slices", pool=3, activation="relu", dropout_position="after"):
        super().__init__()
        _choice("init", init, INITS)
        _choice("lrn_impl", lrn_impl, LRN_IMPLS)
        _choice("pool", pool, POOLS)
        _choice("activation", activation, ACTIVATIONS)
        _choice("dropout_position", dropout_position, DROPOUT_POSITIONS)
        self.activation = activation
        g, act = groups, ACTIVATIONS[activation]

        def block(i, conv, norm=False, pooled=False):
            layers = [(f"conv{i}", conv), (f"{activation}{i}", act())]
            if norm and lrn:
                layers.append((f"norm{i}", LRN(alpha=lrn_alpha, groups=g, impl=lrn_impl)))
            if pooled:
                layers.append((f"pool{i}", nn.MaxPool2d(pool, stride=2)))
            return layers

        self.features = nn.Sequential(OrderedDict(
            block(1, nn.Conv2d(3, 96, 11, stride=4), norm=True, pooled=True)             # 227 -> 55 -> 27
            + block(2, nn.Conv2d(96, 256, 5, padding=2, groups=g), norm=True, pooled=True)  # 27 -> 13
            + block(3, nn.Conv2d(256, 384, 3, padding=1))                                  # crosses GPUs
            + block(4, nn.Conv2d(384, 384, 3, padding=1, groups=g))
            + block(5, nn.Conv2d(384, 256, 3, padding=1, groups=g), pooled=True)           # 13 -> 6
        ))

        def hidden(i, n_in):
            layers = [(f"fc{i}", nn.Linear(n_in, 4096)), (f"{activation}{i}", act())]
            drop = (f"drop{i}", nn.Dropout(dropout))
            return [drop] + layers if dropout_position == "before" else layers + [drop]

        self.classifier = nn.Sequential(OrderedDict(
            hidden(6, FEATURES) + hidden(7, 4096) + [("fc8", nn.Linear(4096, num_classes))]))
        if init != "pytorch":  # the layers were just built with PyTorch's initialization
            init_weights(self, init)

    def _check(self, x):
        if x.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"AlexNet takes {IMAGE_SIZE}x{IMAGE_SIZE} images, got {tuple(x.shape[-2:])}")
        return x

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(self._check(x)), 1))

    def fc7_features(self, x):
        """The 4096 fc7 features (output of relu7, or tanh7) that section 6.1 compares images by.

        Dropout acts as in ``forward``: call it in eval mode for features.
        """
        h = torch.flatten(self.features(self._check(x)), 1)
        for name, layer in self.classifier.named_children():
            h = layer(h)
            if name == f"{self.activation}7":
                return h


def from_config(config, num_classes):
    """``AlexNet(num_classes, ...)`` with every argument of ``AlexNet`` that ``config`` has as an attribute.

    Training, checkpoint loading and the benchmark build the network through
    this, so they build the same one; an attribute ``config`` lacks (an
    older saved config) takes ``AlexNet``'s default, the paper's.
    """
    names = [n for n in inspect.signature(AlexNet).parameters if n != "num_classes"]
    return AlexNet(num_classes, **{n: getattr(config, n) for n in names if hasattr(config, n)})


def weight_layers(net):
    """The layers with weights, in order: conv1..conv5, fc6..fc8."""
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


# Section 5: "biases in the second, fourth, and fifth convolutional layers, as
# well as in the fully-connected hidden layers, with the constant 1".
PAPER_BIAS_ONE = ("conv2", "conv4", "conv5", "fc6", "fc7")


def init_weights(net, scheme="default", nonlinearity=None):
    """Initialize an ``AlexNet`` in place.

    ``"paper"``: every weight N(0, 0.01); biases 1 in conv2, conv4, conv5,
    fc6, fc7 (so the ReLUs start with positive inputs), 0 elsewhere.

    ``"default"``: Kaiming-normal (fan_in) weights with the gain of the
    network's activation (``nonlinearity``; None: ``net.activation``, else
    ReLU), which keep the spread of the signal from layer to layer; zero
    biases; fc8 N(0, 0.001) so the first predictions are uniform (loss
    ln(num_classes), a sanity check) while the layers below already carry
    the image's signal.

    ``"pytorch"``: each layer's own ``reset_parameters`` (Kaiming-uniform
    with a=sqrt(5), uniform biases), what a network gets when nobody
    initializes it, as in the blog.

    Why not the paper's: its N(0, 0.01) weights shrink the image's signal at
    every layer until the constant biases of 1 drown it (worse with
    normalized inputs than with the paper's raw pixels), so the logits
    hardly depend on the image and a short run sits at ln(num_classes)
    either way. The model notebook measures this.
    """
    _choice("init", scheme, INITS)
    nonlinearity = nonlinearity or getattr(net, "activation", "relu")
    named = [(n.split(".")[-1], m) for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    last = named[-1][1]
    for name, m in named:
        if scheme == "pytorch":
            m.reset_parameters()
        elif scheme == "paper":
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.constant_(m.bias, 1.0 if name in PAPER_BIAS_ONE else 0.0)
        else:
            if m is last:
                nn.init.normal_(m.weight, 0.0, 0.001)
            else:
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity=nonlinearity)
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


def _kernel(m):
    """Window and stride as ``"3x3/2"`` for convolutions and poolings (the ``pool`` switch shows here), else ""."""
    if not isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        return ""
    (kh, kw), (stride, _) = (v if isinstance(v, tuple) else (v, v) for v in (m.kernel_size, m.stride))
    return f"{kh}x{kw}/{stride}"


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
    """One row per layer: kernel/stride, output shape (HxWxC), parameters, multiply-adds per image.

    Works for any network and input size it accepts (torchvision's alexnet
    takes any size from 63 up). Our AlexNet's FC6 is defined only for its
    6x6x256 features, so at a size other than 227 only ``net.features`` is
    summarized: it shows how the feature maps would shrink. Ends with a
    ``total`` row.
    """
    rows = []

    def record(name):
        def hook(m, inputs, out):
            rows.append(dict(layer=name, type=type(m).__name__, kernel=_kernel(m), output=_shape(out),
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
    total = dict(layer="total", type="", kernel="", output="", params=df.params.sum(), mult_adds=df.mult_adds.sum())
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
    loop: see ``alexnet_nb.train``. Weight decay on the weights only, as the
    paper's update rule (section 5) and the training loop have it.
    """
    from alexnet_nb.step import param_groups  # step builds on this module: imported when used

    opt = torch.optim.SGD(param_groups(net, weight_decay, decay_biases=False), lr=lr, momentum=momentum)
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
