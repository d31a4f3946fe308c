"""One training step, the same for the training loop and the benchmark.

A step takes a batch of uint8 images that already sit on the device, augments
it there (``augment.apply_params``), runs the network under mixed precision,
and updates the weights (and their moving average, when kept). The loop and
``python -m alexnet_nb.bench`` both call :class:`TrainStep`, so the benchmark
measures exactly what training runs: a separate copy of the step is how the
two drift apart.

Also here: what a step needs that depends on the device -- the precision
(:func:`resolve_precision`), the optimizer (:func:`make_optimizer`: the paper's
weight decay on weights only, PyTorch's fused SGD kernel on a GPU) and the
moving average of the weights (:func:`make_ema`) -- and :func:`build`, which
puts them together the one way training, the benchmark and the compile warm-up
all use.
"""

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from alexnet_nb import augment, evaluate, model


def resolve_precision(precision, device):
    """(name, autocast dtype or None, use a GradScaler) for a precision setting on a device.

    T4s (compute capability 7.5) have no bf16 tensor cores, so "auto" uses fp16
    there, with a GradScaler against gradient underflow; Ampere and newer get
    bf16, which has fp32's range and needs no scaler.
    """
    device = torch.device(device)
    if precision == "auto":
        if device.type == "cuda":
            precision = "bf16" if torch.cuda.get_device_capability(device)[0] >= 8 else "fp16"
        else:
            precision = "fp32"
    dtypes = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
    if precision not in dtypes:
        raise ValueError(f"precision must be auto, fp32, fp16 or bf16, got {precision!r}")
    return precision, dtypes[precision], precision == "fp16"


def on_gpu(setting, device) -> bool:
    """A ``None`` (automatic) speed switch means: on for CUDA, off elsewhere."""
    return torch.device(device).type == "cuda" if setting is None else bool(setting)


def param_groups(net, weight_decay, decay_biases):
    """Weight decay on the weights only (the paper's update rule in section 5 names the weights w;
    Caffe's reference AlexNet sets decay_mult 0 on biases), or on every parameter (PyTorch's default)."""
    if decay_biases:
        return [{"params": list(net.parameters()), "weight_decay": weight_decay}]
    named = list(net.named_parameters())
    return [{"params": [p for n, p in named if p.ndim > 1], "weight_decay": weight_decay},
            {"params": [p for n, p in named if p.ndim <= 1], "weight_decay": 0.0}]


def make_optimizer(net, cfg, device):
    """SGD with momentum as the paper's section 5; the fused kernel when ``cfg.fused_sgd`` (auto: on a GPU)."""
    return torch.optim.SGD(param_groups(net, cfg.weight_decay, cfg.decay_biases), lr=cfg.lr,
                           momentum=cfg.momentum, fused=on_gpu(cfg.fused_sgd, device) or None)


def load_optimizer_state(optimizer, state, fused):
    """Load a saved optimizer state whether or not the saved run used the fused kernel.

    ``load_state_dict`` copies every saved setting, ``fused`` included, so a run
    saved on a GPU would otherwise ask for the fused kernel on a CPU (and the
    other way round lose it); the momentum buffers are the same either way.
    """
    optimizer.load_state_dict(state)
    for group in optimizer.param_groups:
        group["fused"] = bool(fused) or None
        group["foreach"] = None


class EMA:
    """An exponential moving average of a network's weights: a copy, moved towards the weights after every step.

    Written here rather than with ``torch.optim.swa_utils.AveragedModel``, whose
    update copies its step counter from the CPU to the GPU every step: a host
    sync per step that would stall the GPU queue. This one only runs one fused
    ``lerp`` over all the weights, on their device. The first update copies the
    weights, as AveragedModel's does. State: ``module.<name>`` tensors and
    ``n_averaged``, AveragedModel's format.
    """

    def __init__(self, net, decay):
        self.module = copy.deepcopy(net)
        self.module.requires_grad_(False)
        self.decay, self.n_averaged = decay, 0

    @torch.no_grad()
    def update(self, net):
        mine, theirs = list(self.module.parameters()), [p.detach() for p in net.parameters()]
        if self.n_averaged == 0:
            torch._foreach_copy_(mine, theirs)
        else:
            torch._foreach_lerp_(mine, theirs, 1.0 - self.decay)
        self.n_averaged += 1

    def state_dict(self):
        return {**{f"module.{k}": v for k, v in self.module.state_dict().items()},
                "n_averaged": torch.tensor(self.n_averaged)}

    def load_state_dict(self, state):
        self.module.load_state_dict({k[len("module."):]: v for k, v in state.items() if k.startswith("module.")})
        self.n_averaged = int(state["n_averaged"])


def make_ema(net, decay):
    """The moving average of ``net``'s weights (``decay`` per step), or None when ``decay`` is 0."""
    return EMA(net, decay) if decay else None


def correct_top1(output, target):
    return evaluate.correct_topk(output, target, (1,))[0]


class TrainStep:
    """``step(images_u8, labels, params) -> (loss, top-1 hits)``: augment, forward, backward, update.

    ``net`` is what runs the batch (possibly wrapped in DDP); ``module`` the bare
    network whose weights the moving average follows. The returned tensors stay
    on the device: reading them costs a device sync, so the loop does it only
    every ``log_every`` steps.

    Compiling (``compiled``) follows ``cfg.compile_scope`` and ``cfg.compile_mode``.
    Why the choice: on an H200 the compiled network ran 19,825 images/s at batch
    128 (6.5 ms a step) where its FLOPs need about 1 ms at the chip's peak, so
    Python launching hundreds of small kernels was a suspect. ``scope="step"``
    puts the augmentation and the loss into the compiled graph (fewer, fused
    kernels); ``mode="reduce-overhead"`` replays the forward and backward graphs
    as CUDA graphs (one launch each). Measured on the H200: the GPU is busy 97%
    of a step, both together gain 2.4%, the step scope alone loses 3%; the
    default stays until a candidate is measured clearly faster.
    """

    def __init__(self, net, optimizer, scaler, amp_dtype, cfg, module=None, ema=None, compiled=False):
        self.net = net
        self.optimizer, self.scaler, self.amp_dtype, self.ema = optimizer, scaler, amp_dtype, ema
        self.module = module if module is not None else net
        self.crop_size, self.image_size = cfg.crop_size, cfg.image_size
        self.channels_last, self.label_smoothing = cfg.channels_last, cfg.label_smoothing
        self.device = next(self.module.parameters()).device
        self.cuda_graphs = compiled and cfg.compile_mode == "reduce-overhead"
        options = dict(dynamic=False, mode=cfg.compile_mode)  # fixed shapes: never recompile
        self.forward, self._eager_net = self._forward, net
        if compiled and cfg.compile_scope == "step":
            self.forward = torch.compile(self._forward, **options)
        elif compiled:
            self.net = torch.compile(net, **options)

    def eager(self):
        """Run uncompiled from now on: the compiler failed on this machine (see :func:`compile_error`)."""
        self.net, self.forward, self.cuda_graphs = self._eager_net, self._forward, False

    def augment(self, images_u8, params):
        return augment.apply_params(images_u8, params, self.crop_size, self.image_size,
                                    channels_last=self.channels_last)

    def _forward(self, images_u8, labels, params):
        x = self.augment(images_u8, params)
        with evaluate.autocast(self.device, self.amp_dtype):
            out = self.net(x)
        return F.cross_entropy(out.float(), labels, label_smoothing=self.label_smoothing), out

    def __call__(self, images_u8, labels, params):
        # Before the forward pass: with CUDA graphs the last step's gradients live in memory the next replay
        # takes back, so none may outlive their step.
        self.optimizer.zero_grad(set_to_none=True)
        if self.cuda_graphs:  # a new training iteration: the last one's graph outputs may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        loss, out = self.forward(images_u8, labels, params)
        with torch.no_grad():  # read now: a CUDA graph's output lives only until its next replay
            hits = correct_top1(out.detach(), labels)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.module)
        return loss.detach(), hits


# Where the compiler stack raises from: Dynamo (BackendCompilerFailed, InductorError, GPUTooOldForTriton...),
# Inductor (lowering, C++/CUDA compile errors) and Triton itself. By module rather than by class, since the
# classes move between torch versions.
COMPILER_MODULES = ("torch._dynamo", "torch._inductor", "triton")


def compile_error(e: BaseException) -> bool:
    """Whether ``e``, or an exception it was raised from, comes from compiling rather than from training."""
    while e is not None:
        if type(e).__module__.startswith(COMPILER_MODULES):
            return True
        e = e.__cause__
    return False


def draw_params(cfg, n, generator, height, width, device):
    """The random crops, flips and lighting of ``n`` images under ``cfg``'s augmentation."""
    area, ratio = cfg.scale_augmentation()
    return augment.random_params(n, generator, cfg.crop_size, cfg.pca_lighting, height, width, device,
                                 area=area, ratio=ratio)


@dataclass
class Parts:
    """What :func:`build` makes: the network and everything that updates it."""

    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    ema: EMA | None
    precision: str
    amp_dtype: torch.dtype | None
    compiled: bool
    step: TrainStep
    eval_net: torch.nn.Module  # what evaluation runs: the moving average when kept, compiled when compiling


def build(cfg, num_classes, device, wrap=None) -> Parts:
    """The network of ``cfg`` on ``device`` (channels_last if asked), its optimizer, scaler, moving average and
    :class:`TrainStep`. ``wrap(net)`` is what runs the batches (DDP under torchrun); the weights are drawn from
    the current torch seed."""
    device = torch.device(device)
    if wrap and (cfg.compile_scope, cfg.compile_mode) != ("net", "default"):
        raise ValueError(f"compile_scope={cfg.compile_scope!r} and compile_mode={cfg.compile_mode!r} are untried "
                         "under torchrun (several processes); run them in one process, or leave both at their "
                         "defaults (net, default)")
    precision, amp_dtype, use_scaler = resolve_precision(cfg.precision, device)
    net = model.from_config(cfg, num_classes).to(device)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(net, cfg, device)
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    ema = make_ema(net, cfg.ema_decay)
    compiled = on_gpu(cfg.compile, device)
    step = TrainStep(wrap(net) if wrap else net, optimizer, scaler, amp_dtype, cfg, module=net, ema=ema,
                     compiled=compiled)
    scored = ema.module if ema is not None else net
    # Evaluation keeps the default mode: a CUDA graph's output would be overwritten by the flipped view's pass.
    eval_net = torch.compile(scored, dynamic=False) if compiled else scored
    return Parts(net, optimizer, scaler, ema, precision, amp_dtype, compiled, step, eval_net)
