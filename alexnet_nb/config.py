"""Every setting of a training run in one dataclass, checked when it is made, and the named recipes.

    from alexnet_nb import config
    config.Config()                      # the paper's recipe (section 5, as closely as Tiny ImageNet allows)
    config.recipe("blog")                # the reference blog's setup, to check our engine against its result
    config.recipe("ours", epochs=20)     # a recipe with one value changed

Each field's trailing comment is its ``--help`` text on the command line
(``python -m alexnet_nb.train --recipe NAME --flag VALUE``). A bad value raises
:class:`ConfigError` naming the flag, the value and what is allowed, whether
the Config comes from the command line or from a notebook.
"""

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path

from alexnet_nb import env

IMAGE_SIDE = 64  # Tiny ImageNet's images are 64x64
NUM_CLASSES = 200


class ConfigError(ValueError):
    """A setting has a value that cannot work; the message names the flag, the value and what is allowed."""

    def __init__(self, field, value, allowed):
        self.field, self.value, self.allowed = field, value, allowed
        super().__init__(f"--{field.replace('_', '-')} {value}: {allowed}")


@dataclass
class Config:
    # --- data ---
    source: str | None = None  # official zip or extracted tiny-imagenet-200 folder; None: data.dataset_source()
    classes: int | None = None  # train on the first N classes of wnids.txt only (quick experiments); None: all 200
    holdout_per_class: int = 50  # train images per class set aside to choose the recipe (10,000 of 100,000)
    max_train_images: int | None = None  # random subset of the training images (quick runs); None: all
    max_eval_images: int | None = None  # random subset of holdout and of val (quick runs); None: all
    # --- optimization (section 5 of the paper) ---
    epochs: int = 30
    batch_size: int = 128  # global batch: under DDP split evenly over the processes
    lr: float = 0.01  # peak learning rate for the global batch (not rescaled with the number of GPUs)
    momentum: float = 0.9
    weight_decay: float = 5e-4  # L2 penalty; on the weights only unless decay_biases
    decay_biases: bool = False  # also decay biases (PyTorch's SGD default, the blog); the paper decays weights only
    schedule: str = "paper"  # paper: /10 on a holdout plateau | step | linear (to zero) | cosine | onecycle
    plateau_patience: int = 2  # "paper": epochs without holdout improvement before dividing lr by 10
    step_size: int = 7  # "step": epochs between two drops of the learning rate
    step_gamma: float = 0.1  # "step": factor of each drop
    warmup_epochs: float = 0.0  # linear warm-up from 0 to lr over this many epochs, at most the run (the paper: none)
    label_smoothing: float = 0.0  # 0.1 is the modern choice; the paper used none
    ema_decay: float = 0.0  # exponential moving average of the weights per step (0: off); EMA weights are scored
    # --- augmentation ---
    crop_size: int = 56  # fixed random crop of the 64x64 image, and the centre crop scored (56: the paper's 224/256)
    crop_area_min: float | None = None  # scale augmentation: crops of this to 100% of the image area; None: fixed crops
    crop_ratio: float = 4 / 3  # scale augmentation: aspect ratios from 1/ratio to ratio
    image_size: int = 227  # crops are resized to this (227 is what AlexNet's layers need)
    pca_lighting: float = 0.1  # std of the paper's PCA colour noise (section 4.1: 0.1); 0: off
    # --- the network (section 3; each switch is one of the paper's claims to test) ---
    init: str = "default"  # default (Kaiming) | paper (N(0, 0.01), biases 1) | pytorch (PyTorch's own, the blog's)
    groups: int = 1  # 2: the paper's two-GPU connectivity
    dropout: float = 0.5  # probability of zeroing a unit of fc6/fc7 (section 4.2); 0: no dropout
    dropout_position: str = "after"  # after: on fc6/fc7 outputs (the paper) | before: on their inputs (torchvision)
    lrn: bool = True  # local response normalization after conv1 and conv2 (section 3.3)
    lrn_alpha: float = 1e-4  # the paper's alpha (the blog's nn.LocalResponseNorm(alpha=1e-3) is 2e-4 here)
    lrn_impl: str = "slices"  # slices: fusible | torch: nn.LocalResponseNorm | triton: kernels (lrn_triton)
    pool: int = 3  # max-pooling window, stride 2: 3 overlaps (the paper, section 3.4) | 2 does not
    activation: str = "relu"  # relu (the paper) | tanh (section 3.1's comparison)
    # --- evaluation ---
    eval_flip: bool = False  # also score centre crop + its mirror image (extra columns; centre crop stays the result)
    eval_batch_size: int = 512
    # --- speed ---
    precision: str = "auto"  # auto: bf16 on compute capability >= 8, fp16 + GradScaler below, fp32 on CPU
    channels_last: bool = True  # NHWC memory layout: what tensor cores want
    compile: bool | None = None  # torch.compile training and evaluation; None: on a GPU yes, on a CPU no
    compile_mode: str = "default"  # default | reduce-overhead: the training step's graphs replayed as CUDA graphs
    compile_scope: str = "net"  # net: the network compiled | step: augmentation, network and loss as one graph
    fused_sgd: bool | None = None  # SGD's fused kernel; None: on a GPU yes, on a CPU no
    device: str | None = None  # None: the GPU when there is one (cuda:LOCAL_RANK under DDP), else the CPU
    # --- bookkeeping ---
    recipe: str = "paper"  # the named recipe these values started from (recorded with the run)
    seed: int = 0
    deterministic: bool = False  # bit-reproducible kernels (slower on GPU); the resume test uses it
    name: str = "alexnet"  # run folder name under the runs folder (ALEXNET_NB_RUNS, default runs/)
    out_dir: str | None = None  # explicit run folder (e.g. on Google Drive); None: runs folder / name
    resume: bool = False  # continue the run in the run folder
    overwrite: bool = False  # replace the run in the run folder (without it a finished run is never replaced)
    checkpoint_every: int = 1  # epochs between checkpoints; one is always written at the end and on a stop
    # Small files every epoch, the checkpoint every backup_every epochs, at every stop and at the end; a resumed
    # run whose own folder lost its checkpoint starts from it (alexnet_nb.backup).
    backup_dir: str | None = None  # a copy of the run that outlives the machine (Drive in Colab); none: no copy
    backup_every: int = 5  # epochs between checkpoint copies into backup_dir (30 epochs: 6 copies of 466 MB)
    time_limit: float | None = None  # seconds: stop cleanly (checkpoint written) before an epoch that would pass it
    progress: bool = True  # a progress bar during each epoch (one line per epoch is always printed)
    log_every: int = 20  # steps between progress updates (each costs one device sync)

    @classmethod
    def quick(cls, **overrides):
        """Tiny and CPU-friendly: a few steps on a handful of images (tests, notebooks in quick mode)."""
        return cls(**{**QUICK, **overrides})

    def __post_init__(self):
        # Stored as text: config.json and weights-only checkpoints hold plain values, not Path objects.
        for name in ("source", "out_dir", "backup_dir"):
            if isinstance(getattr(self, name), os.PathLike):
                setattr(self, name, os.fspath(getattr(self, name)))
        check(self)

    def run_dir(self) -> Path:
        return Path(self.out_dir) if self.out_dir else env.runs_dir() / self.name

    def scale_augmentation(self):
        """``(area, ratio)`` ranges of the random-resized crops, or ``(None, None)`` for fixed crops."""
        if self.crop_area_min is None:
            return None, None
        return (self.crop_area_min, 1.0), (1 / self.crop_ratio, self.crop_ratio)


CHOICES = {"schedule": ("paper", "step", "linear", "cosine", "onecycle"), "precision": ("auto", "fp32", "fp16", "bf16"),
           "init": ("default", "paper", "pytorch"), "dropout_position": ("after", "before"),
           "lrn_impl": ("slices", "torch", "triton"), "activation": ("relu", "tanh"), "groups": (1, 2),
           "pool": (2, 3),
           "compile_mode": ("default", "reduce-overhead"), "compile_scope": ("net", "step")}
QUICK = dict(classes=4, holdout_per_class=2, max_train_images=16, max_eval_images=8, epochs=2, batch_size=8,
             eval_batch_size=8, precision="fp32", name="quick", log_every=1)


def _at_least(minimum, optional=False, integer=True):
    kind = "an integer" if integer else "a number"
    text = f"must be {kind} >= {minimum}" + (", or none" if optional else "")
    return (lambda v: (optional and v is None) or (v is not None and v >= minimum)), text


def _between(low, high, text, optional=False):
    return (lambda v: (optional and v is None) or (v is not None and low <= v <= high)), text


# One rule per field that can be wrong: (test, what is allowed). Checked in this order.
RULES = {
    "classes": _between(1, NUM_CLASSES, f"must be from 1 to {NUM_CLASSES} (Tiny ImageNet has {NUM_CLASSES} "
                        "classes), or none for all of them", optional=True),
    "holdout_per_class": _between(1, 499, "must be from 1 to 499 (each class has 500 training images)"),
    "max_train_images": _at_least(1, optional=True),
    "max_eval_images": _at_least(1, optional=True),
    "epochs": _at_least(1),
    "batch_size": _at_least(1),
    "lr": ((lambda v: v > 0 and math.isfinite(v)), "must be a positive number"),
    "momentum": _between(0, 0.999999, "must be from 0 to below 1"),
    "weight_decay": _at_least(0, integer=False),
    "plateau_patience": _at_least(0),
    "step_size": _at_least(1),
    "step_gamma": ((lambda v: 0 < v <= 1), "must be above 0 and at most 1"),
    "warmup_epochs": _at_least(0, integer=False),
    "label_smoothing": ((lambda v: 0 <= v < 1), "must be from 0 to below 1"),
    "ema_decay": ((lambda v: 0 <= v < 1), "must be from 0 (off) to below 1, e.g. 0.999"),
    "crop_size": _between(1, IMAGE_SIDE, f"must be from 1 to {IMAGE_SIDE}: the images are "
                          f"{IMAGE_SIDE}x{IMAGE_SIDE} ({IMAGE_SIDE}: the whole image)"),
    "crop_area_min": ((lambda v: v is None or 0 < v <= 1), "must be above 0 and at most 1 (a fraction of the "
                      "image area), or none for fixed crops"),
    "crop_ratio": _at_least(1, integer=False),
    "image_size": ((lambda v: v == 227), "must be 227: AlexNet's layer arithmetic needs it "
                   "((227 - 11) / 4 + 1 = 55, see notebook 02)"),
    "pca_lighting": _at_least(0, integer=False),
    "dropout": ((lambda v: 0 <= v < 1), "must be from 0 (no dropout) to below 1"),
    "lrn_alpha": ((lambda v: v > 0), "must be a positive number"),
    "eval_batch_size": _at_least(1),
    "seed": _at_least(0),
    "name": ((lambda v: bool(v) and "/" not in v and v not in (".", "..")),
             "must be a folder name (no '/'; use --out-dir for a path)"),
    "checkpoint_every": _at_least(1),
    "backup_every": _at_least(1),
    "time_limit": ((lambda v: v is None or v > 0), "must be a positive number of seconds, or none"),
    "log_every": _at_least(1),
    **{k: ((lambda v, c=c: v in c), "must be one of " + ", ".join(map(str, c))) for k, c in CHOICES.items()},
}


def check(cfg) -> None:
    """Raise :class:`ConfigError` for the first field whose value cannot work."""
    for name, (ok, allowed) in RULES.items():
        value = getattr(cfg, name)
        try:
            good = ok(value)
        except TypeError:  # e.g. a string where a number belongs (from a notebook)
            good = False
        if not good:
            raise ConfigError(name, value, allowed)
    if cfg.recipe not in RECIPES:
        raise ConfigError("recipe", cfg.recipe, "must be one of " + ", ".join(RECIPES))
    if cfg.device is not None:
        import torch

        try:
            torch.device(cfg.device)
        except RuntimeError:
            raise ConfigError("device", cfg.device, "must be cpu, cuda or cuda:N") from None


def check_device(cfg) -> None:
    """Raise :class:`ConfigError` when the requested device is not on this machine (before any work)."""
    import torch

    if cfg.device is None:
        return
    device = torch.device(cfg.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device", cfg.device, "no CUDA GPU is visible to PyTorch on this machine "
                              "(torch.cuda.is_available() is False); leave --device out or use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError("device", cfg.device, f"this machine has {torch.cuda.device_count()} GPU(s)")
    elif device.type != "cpu":
        raise ConfigError("device", cfg.device, "must be cpu, cuda or cuda:N")


def from_dict(d: dict) -> Config:
    """A Config from saved values (config.json, a checkpoint); unknown keys from other versions are ignored."""
    names = {f.name for f in dataclasses.fields(Config)}
    return Config(**{k: v for k, v in d.items() if k in names})


# ---------------------------------------------------------------------------
# Named recipes: the values that differ from Config's defaults (the paper's).


@dataclass(frozen=True)
class Recipe:
    summary: str  # one line for --help and README
    why: str  # what the recipe is for, or why it might win
    values: dict


RECIPES = {
    "paper": Recipe(
        "the paper's section 5: SGD 0.01, momentum 0.9, weight decay 5e-4 on weights, /10 on a holdout plateau, "
        "random 56x56 crops + flips + PCA lighting, LRN, dropout after fc6/fc7",
        "the reference point: the 2012 recipe as closely as Tiny ImageNet allows (Kaiming init: the paper's "
        "N(0, 0.01) stalls, notebook 02)", {}),
    "blog": Recipe(
        "the reference blog (aandyw/StuffFromScratch): whole image resized to 227 + flips, PyTorch init, LRN "
        "alpha twice the paper's, dropout before fc6/fc7, StepLR(7, 0.1), decay on everything",
        "the anchor check: our engine on the blog's recipe must land within 2 points of its 31.75% / 58.76%",
        dict(crop_size=64, pca_lighting=0.0, init="pytorch", lrn_alpha=2e-4, dropout_position="before",
             schedule="step", step_size=7, step_gamma=0.1, decay_biases=True)),
    "ours": Recipe(
        "candidate: linear warm-up (1 epoch) to lr 0.02 then linear decay to zero, scale augmentation "
        "(35-100% of the area), label smoothing 0.1",
        "a first candidate, not yet chosen on the holdout: a fixed budget favours linear-to-zero (budgeted "
        "training), and 62M parameters on 90,000 images need more than 162 crops per image",
        dict(schedule="linear", lr=0.02, warmup_epochs=1.0, crop_area_min=0.35, label_smoothing=0.1)),
    "ours-a": Recipe(
        "candidate: ours with the paper's fixed 56x56 crops instead of scale augmentation",
        "if 30 epochs are too few for scale augmentation to pay off, the milder crops win; tells what the "
        "schedule alone buys over the paper's",
        dict(schedule="linear", lr=0.02, warmup_epochs=1.0, label_smoothing=0.1)),
    "ours-b": Recipe(
        "candidate: ours at the paper's lr 0.01, with an EMA of the weights (decay 0.999)",
        "if lr 0.02 is too hot for a network without batch norm; the EMA smooths the last epochs' noise",
        dict(schedule="linear", lr=0.01, warmup_epochs=1.0, crop_area_min=0.35, label_smoothing=0.1,
             ema_decay=0.999)),
    "ours-c": Recipe(
        "candidate: ours with batch 256 and lr 0.04 (the linear scaling rule), 2 warm-up epochs",
        "twice the images per step: faster on a GPU, so more of the 30 epochs fit in a T4 half hour",
        dict(schedule="linear", lr=0.04, batch_size=256, warmup_epochs=2.0, crop_area_min=0.35,
             label_smoothing=0.1)),
}


def recipe(name: str, /, quick: bool = False, **overrides) -> Config:
    """The named recipe's Config; ``quick`` shrinks it to the tiny test size; ``overrides`` win over both."""
    if name not in RECIPES:
        raise ConfigError("recipe", name, "must be one of " + ", ".join(RECIPES))
    return Config(**{**RECIPES[name].values, **(QUICK if quick else {}), "recipe": name, **overrides})


def differences(a: str, b: str) -> list:
    """``(field, value in recipe a, value in recipe b)`` for every field the two recipes set differently."""
    ca, cb = recipe(a), recipe(b)
    return [(f.name, getattr(ca, f.name), getattr(cb, f.name)) for f in dataclasses.fields(Config)
            if f.name != "recipe" and getattr(ca, f.name) != getattr(cb, f.name)]
