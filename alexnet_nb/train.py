"""Train AlexNet on Tiny ImageNet: one config dataclass, ``fit(config)``, and a CLI.

    python -m alexnet_nb.train                        # the paper's recipe, 30 epochs
    python -m alexnet_nb.train --classes 10 --epochs 3 --name ten
    python -m alexnet_nb.train --name ten --resume    # carry on after a disconnect
    torchrun --nproc_per_node=4 -m alexnet_nb.train   # data-parallel on 4 GPUs

Design (airbench style): the decoded split lives on the device as uint8 and a
batch is augmented there by a few tensor ops (``alexnet_nb.augment``), so
there are no DataLoader workers and no per-image Python during an epoch.
A run folder ``runs_dir()/<name>/`` holds ``config.json``, ``history.csv``
(rewritten every epoch) and ``checkpoint.pt`` (written atomically every epoch).

Randomness: each epoch's shuffle, crops, flips and dropout are drawn from
generators seeded by ``(seed, epoch, rank)``, so epoch ``e`` depends only on
the weights and optimizer state at its start; that is what makes a resumed run
end with exactly the weights of an uninterrupted one (in deterministic mode).

Multi-GPU (DDP): ``batch_size`` is the *global* batch; each of the N processes
takes its ``batch_size / N`` share of every global batch and DDP averages the
gradients, so a step sees the same images and takes the same mean gradient as
on one device. ``lr`` is therefore not rescaled. AlexNet has no batch
statistics (LRN and dropout act per image), so N GPUs follow the one-GPU
recipe exactly, only faster. Rank 0 writes the history and checkpoints.
"""

import argparse
import dataclasses
import inspect
import json
import math
import os
import random
import re
import shlex
import sys
import time
import types
import typing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm.auto import tqdm

from alexnet_nb import augment, data, env, evaluate, model

HISTORY_COLUMNS = ["epoch", "lr", "train_loss", "train_top1", "holdout_loss", "holdout_top1",
                   "holdout_top5", "val_loss", "val_top1", "val_top5", "seconds", "images_per_s",
                   "elapsed_s"]


@dataclass
class Config:
    # --- data ---
    source: str | None = None  # official zip or extracted tiny-imagenet-200 folder; None: data.dataset_source()
    classes: int | None = None  # train on the first N classes of wnids.txt only (quick experiments); None: all 200
    holdout_per_class: int = 50  # train images per class set aside to choose the recipe (10,000 of 100,000)
    max_train_images: int | None = None  # random subset of the training images (quick runs); None: all
    max_eval_images: int | None = None  # random subset of holdout and of val (quick runs); None: all
    # --- optimization (the paper's section 5, as the blog used it) ---
    epochs: int = 30
    batch_size: int = 128  # global batch: under DDP split evenly over the processes
    lr: float = 0.01  # peak learning rate for the global batch (not rescaled with the number of GPUs)
    momentum: float = 0.9
    weight_decay: float = 5e-4  # L2 on every weight and bias, as in the paper
    schedule: str = "paper"  # "paper": /10 when holdout error stalls | "cosine": warm-up + cosine | "onecycle"
    plateau_patience: int = 2  # "paper": epochs without holdout improvement before dividing lr by 10
    warmup_epochs: float = 0.0  # linear warm-up from 0 to lr over this many epochs, any schedule (the paper: none)
    label_smoothing: float = 0.0  # 0.1 is the modern choice; the paper used none
    # --- augmentation and model ---
    crop_size: int = augment.CROP_SIZE  # random crop of the 64x64 image (56: the paper's 224/256 ratio)
    image_size: int = augment.IMAGE_SIZE  # crops are resized to this (227 is what AlexNet's layers need)
    pca_lighting: float = 0.0  # std of the paper's PCA colour noise (paper: 0.1); 0: off
    init: str = "default"  # "default" (Kaiming) or "paper" (N(0, 0.01), biases 1); see model.init_weights
    groups: int = 1  # 2: the paper's two-GPU connectivity
    dropout: float = 0.5
    # --- speed ---
    precision: str = "auto"  # "auto": bf16 on compute capability >= 8, fp16 + GradScaler below, fp32 on CPU
    channels_last: bool = True  # NHWC memory layout: what tensor cores want
    compile: bool = False  # torch.compile the network (minutes of compiling first, faster epochs after)
    eval_batch_size: int = 256
    device: str | None = None  # None: the GPU when there is one (cuda:LOCAL_RANK under DDP), else the CPU
    # --- bookkeeping ---
    seed: int = 0
    deterministic: bool = False  # bit-reproducible kernels (slower on GPU); the resume test uses it
    name: str = "alexnet"  # run folder name under runs_dir()
    out_dir: str | None = None  # explicit run folder (e.g. on Google Drive); None: runs_dir()/name
    resume: bool = False  # continue from out_dir/checkpoint.pt when it exists
    progress: bool = True  # tqdm bar and a one-line summary per epoch
    log_every: int = 20  # steps between progress updates (each costs one device sync)

    @classmethod
    def quick(cls, **overrides):
        """Tiny and CPU-friendly: a few steps on a handful of images (tests, notebooks in quick mode)."""
        base = dict(classes=4, holdout_per_class=2, max_train_images=16, max_eval_images=8,
                    epochs=2, batch_size=8, eval_batch_size=8, precision="fp32", name="quick", log_every=1)
        base.update(overrides)
        return cls(**base)

    def __post_init__(self):
        # Stored as text: config.json and weights-only checkpoints hold plain values, not Path objects.
        for name in ("source", "out_dir"):
            if isinstance(getattr(self, name), os.PathLike):
                setattr(self, name, os.fspath(getattr(self, name)))

    def run_dir(self) -> Path:
        return Path(self.out_dir) if self.out_dir else env.runs_dir() / self.name


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


# ---------------------------------------------------------------------------
# Set-up helpers


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


def _init_distributed(config):
    """(rank, world size, local rank, whether we started the process group) from torchrun's variables."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0, False
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), local, False
    use_nccl = torch.cuda.is_available() and (config.device or "cuda").startswith("cuda")
    if use_nccl:
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if use_nccl else "gloo")
    return dist.get_rank(), world, local, True


def _pick_device(config, local_rank):
    if config.device:
        device = torch.device(config.device)
        if device.type == "cuda" and device.index is None and dist.is_initialized():
            device = torch.device("cuda", local_rank)
        return device
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _set_determinism(config, device):
    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for reproducibility
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = device.type == "cuda"  # fixed shapes: let cuDNN pick the fastest


SHUFFLE, AUGMENT, DROPOUT = range(3)  # the random streams of an epoch


def _epoch_seed(seed, epoch, stream, rank=0):
    """A distinct, reproducible seed for each (run seed, epoch, random stream, process)."""
    return (seed * 1_000_003 + epoch * 10_007 + stream * 1_009 + rank * 101 + 17) % (2**63 - 1)


def _batch_and_steps(n, batch_size, world):
    """(global batch, steps per epoch): the batch shrinks to fit a training set smaller than it."""
    batch = min(batch_size, n - n % world)
    if batch < world:
        raise ValueError(f"{n} training images cannot feed {world} processes; use more images or fewer processes")
    return batch, n // batch


def _limit(split, n, seed):
    """A random (seeded) subset of at most ``n`` images; the split itself when ``n`` is None."""
    if n is None or n >= len(split):
        return split
    idx = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:n]
    return split.subset(idx.sort().values)


def prepare_data(config, device, progress=True):
    """(train, holdout, val) on ``device``: the class subset, the holdout carved from train, the size limits."""
    source = config.source or data.dataset_source()
    train = data.load_split(source, "train", progress=progress)
    val = data.load_split(source, "val", progress=progress)
    if config.classes:
        train, val = train.take_classes(config.classes), val.take_classes(config.classes)
    # Seed 0, not config.seed: the holdout stays the same images whatever the run's seed.
    train, holdout = data.holdout_split(train, per_class=config.holdout_per_class, seed=0)
    train = _limit(train, config.max_train_images, config.seed)
    holdout = _limit(holdout, config.max_eval_images, 1)
    val = _limit(val, config.max_eval_images, 2)
    return tuple(s.to(device) for s in (train, holdout, val))


def make_scheduler(optimizer, config, steps_per_epoch):
    """(scheduler, stepped per batch?) for ``config.schedule``."""
    if config.schedule == "paper":
        # Section 5: "divide the learning rate by 10 when the validation error rate stopped
        # improving"; we watch the holdout, keeping val untouched. At most three drops, as in the paper.
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=0.1, patience=config.plateau_patience, min_lr=config.lr * 1e-3), False
    total = max(1, config.epochs * steps_per_epoch)
    warm = min(int(config.warmup_epochs * steps_per_epoch), total - 1)
    if config.schedule == "cosine":
        def factor(step):
            if step < warm:
                return (step + 1) / warm
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))
        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor), True
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=total, pct_start=max(warm, 1) / total), True
    raise ValueError(f"schedule must be paper, cosine or onecycle, got {config.schedule!r}")


# ---------------------------------------------------------------------------
# Checkpoints


def _atomic_write(path, write):
    """``write(tmp)`` a temporary file beside ``path``, then rename it: a disconnect mid-write
    leaves the previous file whole, never a torn one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _rng_state():
    np_state = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state):
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _read(path):
    """A checkpoint, on the CPU: RNG states must stay CPU tensors, and
    ``optimizer.load_state_dict`` moves the momentum onto the parameters' device."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    return torch.load(path, map_location="cpu", weights_only=True)


def config_from_dict(d):
    names = {f.name for f in dataclasses.fields(Config)}
    return Config(**{k: v for k, v in d.items() if k in names})


# What may change when a run is resumed: how it runs, not what it computes.
RESUME_MAY_CHANGE = ("epochs", "device", "precision", "compile", "eval_batch_size", "progress", "log_every",
                     "resume", "name", "out_dir", "source")


def _resumed_config(config, saved, verbose=True):
    """The saved run's recipe with this call's ``RESUME_MAY_CHANGE`` settings; says what it ignored."""
    differ = [f.name for f in dataclasses.fields(Config) if f.name not in RESUME_MAY_CHANGE
              and getattr(config, f.name) != getattr(saved, f.name)]
    if differ and verbose:
        print("Resuming with the run's saved settings: " + ", ".join(
            f"{k}={getattr(saved, k)!r} (not {getattr(config, k)!r})" for k in differ))
    keep = {k: getattr(config, k) for k in RESUME_MAY_CHANGE}
    if keep["source"] is None:  # not given again: the data the run started on
        keep["source"] = saved.source
    return dataclasses.replace(saved, **keep)


def load_checkpoint(path, device=None):
    """(network in eval mode, Config, history DataFrame) from a run folder or a ``checkpoint.pt``."""
    device = torch.device(device) if device is not None else env.default_device()
    state = _read(path)
    config = config_from_dict(state["config"])
    net = model.AlexNet(num_classes=state["num_classes"], groups=config.groups, init=config.init,
                        dropout=config.dropout)
    net.load_state_dict(state["model"])
    net.to(device).eval()
    return net, config, pd.DataFrame(state["history"], columns=HISTORY_COLUMNS)


# ---------------------------------------------------------------------------
# The loop


def _oom_message(config, world):
    half = max(world, config.batch_size // 2)
    return (f"Out of GPU memory at batch size {config.batch_size}. Try --batch-size {half} "
            f"(and --lr {config.lr * half / config.batch_size:g} to keep the learning rate per image), "
            "or free the GPU (restart the runtime).")


def _train_epoch(ctx, epoch):
    """One pass over the training images; returns (mean loss, top-1 %, images seen, seconds, last lr)."""
    c, train, net, device = ctx["config"], ctx["train"], ctx["net"], ctx["device"]
    rank, world = ctx["rank"], ctx["world"]
    batch, steps = ctx["batch"], ctx["steps"]
    n = len(train.labels)
    torch.manual_seed(_epoch_seed(c.seed, epoch, DROPOUT, rank))  # dropout masks: each process its own
    # The shuffle and the augmentation are the same on every process: each takes its share of one global batch.
    perm = torch.randperm(n, generator=torch.Generator(device).manual_seed(_epoch_seed(c.seed, epoch, SHUFFLE)),
                          device=device)
    aug_gen = torch.Generator(device).manual_seed(_epoch_seed(c.seed, epoch, AUGMENT))
    h, w = train.images.shape[-2:]
    sums = torch.zeros(2, device=device, dtype=torch.float64)  # loss * images, correct (stay on the device)
    seen = 0
    bar = tqdm(total=steps * batch, unit="img", desc=f"epoch {epoch + 1}/{c.epochs}", leave=False,
               disable=not (c.progress and rank == 0), file=sys.stdout, dynamic_ncols=True)
    start = time.perf_counter()
    net.train()
    lr = ctx["optimizer"].param_groups[0]["lr"]
    for step in range(steps):
        # Random choices for the whole global batch, then this process's share of it: the run does
        # not depend on the number of processes (but for dropout masks).
        params = augment.random_params(batch, aug_gen, c.crop_size, c.pca_lighting, h, w, device)
        share = slice(rank, batch, world)
        idx = perm[step * batch:(step + 1) * batch][share]
        x = augment.apply_params(train.images[idx], [p[share] if p is not None else None for p in params],
                                 c.crop_size, c.image_size)
        y = train.labels[idx]
        if c.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with evaluate.autocast(device, ctx["amp_dtype"]):
            out = net(x)
        loss = F.cross_entropy(out.float(), y, label_smoothing=c.label_smoothing)
        if not ctx["per_step"] and epoch * steps + step < ctx["warmup_steps"]:  # the paper schedule's warm-up
            for group in ctx["optimizer"].param_groups:
                group["lr"] = c.lr * (epoch * steps + step + 1) / ctx["warmup_steps"]
        ctx["optimizer"].zero_grad(set_to_none=True)
        ctx["scaler"].scale(loss).backward()
        ctx["scaler"].step(ctx["optimizer"])
        ctx["scaler"].update()
        lr = ctx["optimizer"].param_groups[0]["lr"]
        if ctx["per_step"]:
            ctx["scheduler"].step()
        with torch.no_grad():
            sums[0] += loss.detach().double() * len(idx)
            sums[1] += evaluate.correct_topk(out, y, (1,))[0]
        seen += batch  # global images
        if (step + 1) % c.log_every == 0 or step + 1 == steps:
            loss_so_far = sums[0].clone()
            if world > 1:  # every process must see the divergence, or the others hang in the next all-reduce
                dist.all_reduce(loss_so_far)
            mean_loss = loss_so_far.item() / seen  # the only host-device sync: once per log_every steps
            if not math.isfinite(mean_loss):
                raise NonFiniteLossError(
                    f"The training loss became {mean_loss} in epoch {epoch + 1}, by step {step + 1} "
                    f"(lr {lr:g}, precision {ctx['precision']}). The run is stopped; the last good "
                    f"checkpoint ({ctx['last_good']}) is kept. Try a lower --lr or --precision fp32 "
                    "(and --init default, if it was changed).")
            bar.update(min(c.log_every, (step % c.log_every) + 1) * batch)
            bar.set_postfix(loss=f"{mean_loss:.3f}", img_s=f"{bar.n / (time.perf_counter() - start):.0f}")
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    if world > 1:
        dist.all_reduce(sums)
    loss_sum, correct = sums.tolist()
    return loss_sum / seen, 100.0 * correct / seen, seen, seconds, lr


def _summary(row, epochs):
    return (f"epoch {row['epoch']:>3}/{epochs}  lr {row['lr']:.2g}  "
            f"train loss {row['train_loss']:.3f} top1 {row['train_top1']:5.1f}%  "
            f"holdout top1 {row['holdout_top1']:5.1f}% top5 {row['holdout_top5']:5.1f}%  "
            f"val top1 {row['val_top1']:5.1f}% top5 {row['val_top5']:5.1f}%  "
            f"{row['seconds']:.0f} s  {row['images_per_s']:.0f} img/s")


def run_summary(history, config, num_classes, device, precision, world=1, command=None) -> dict:
    """What a reader of ``results/`` needs beside the curves: final and best scores, speed, machine, versions."""
    last = history.iloc[-1]
    best = history.loc[history["holdout_top1"].idxmax()]  # chosen on the holdout, never on val
    scores = ["holdout_top1", "holdout_top5", "val_top1", "val_top5"]
    return {
        "run": config.run_dir().name,
        "command": command or "alexnet_nb.train.fit(Config(...)) from Python; see config",
        "classes": num_classes,
        "epochs_done": int(last["epoch"]), "epochs_planned": config.epochs,
        "final": {k: round(float(last[k]), 2) for k in scores},
        "best_by_holdout": {"epoch": int(best["epoch"]), **{k: round(float(best[k]), 2) for k in scores}},
        "wall_time_s": round(float(last["elapsed_s"]), 1),
        "train_images_per_s_median": round(float(history["images_per_s"].median()), 1),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)",
        "processes": world, "precision": precision, "seed": config.seed,
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                     "torchvision": _version("torchvision"), "alexnet_nb": _version("alexnet_nb")},
        "config": dataclasses.asdict(config),
    }


def _version(package):
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def fit(config: Config, callback=None, command=None) -> pd.DataFrame:
    """Train (or resume) a run; returns the history, one row per epoch (``HISTORY_COLUMNS``).

    ``callback(history)`` is called on rank 0 after every epoch (e.g. to redraw
    the curves in a notebook). ``command`` (how the run was started) goes into
    the run folder's ``summary.json``, rewritten every epoch with ``history.csv``. Raises ``NonFiniteLossError`` if the loss
    diverges, keeping the last good checkpoint.
    """
    rank, world, local_rank, own_group = _init_distributed(config)
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark)
    try:
        return _fit(config, callback, rank, world, local_rank, command)
    except getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError) as e:
        raise RuntimeError(_oom_message(config, world)) from e
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])  # leave the process as we found it
        torch.backends.cudnn.benchmark = saved[2]
        if own_group:
            dist.destroy_process_group()


def _fit(config, callback, rank, world, local_rank, command):
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} (the global batch) must divide by {world} processes")
    ckpt_path = config.run_dir() / "checkpoint.pt"
    state = _read(ckpt_path) if config.resume and ckpt_path.exists() else None
    if state is not None:
        config = _resumed_config(config, config_from_dict(state["config"]), config.progress and rank == 0)
    device = _pick_device(config, local_rank)
    _set_determinism(config, device)
    precision, amp_dtype, use_scaler = resolve_precision(config.precision, device)
    say = print if (config.progress and rank == 0) else (lambda *a, **k: None)
    run_dir = config.run_dir()
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)

    # Rank 0 first: it may generate or decode-and-cache the dataset; the others then read the cache.
    if rank != 0:
        dist.barrier()
    train, holdout, val = prepare_data(config, device, progress=config.progress and rank == 0)
    if rank == 0 and world > 1:
        dist.barrier()

    torch.manual_seed(config.seed)  # identical initial weights on every process
    net = model.AlexNet(num_classes=len(train.classes), groups=config.groups, init=config.init,
                        dropout=config.dropout).to(device)
    if config.channels_last:
        net = net.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(net.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    batch, steps = _batch_and_steps(len(train), config.batch_size, world)
    scheduler, per_step = make_scheduler(optimizer, config, steps)

    history, start_epoch, elapsed0 = [], 0, 0.0
    if state is not None:
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if use_scaler and state["scaler"]:  # empty when the run so far was bf16 or fp32 (another GPU)
            scaler.load_state_dict(state["scaler"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        history = pd.DataFrame(state["history"], columns=HISTORY_COLUMNS).to_dict("records")
        start_epoch = state["epoch"]
        elapsed0 = history[-1]["elapsed_s"] if history else 0.0
        say(f"Resuming {run_dir.name} after epoch {start_epoch} of {config.epochs}.")
    elif config.resume:
        say(f"No checkpoint in {run_dir.name}; starting a new run.")
    if rank == 0:
        _atomic_write(run_dir / "config.json",
                      lambda tmp: tmp.write_text(json.dumps(dataclasses.asdict(config), indent=2)))
    say(f"{len(train)} train, {len(holdout)} holdout, {len(val)} val images, {len(train.classes)} classes; "
        f"{device.type}, {precision}, batch {config.batch_size}"
        + (f" over {world} processes" if world > 1 else "") + f", {steps} steps per epoch")

    train_net = net
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel
        train_net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        train_net = torch.compile(train_net)
    ctx = dict(config=config, batch=batch, steps=steps, train=train, net=train_net, device=device, rank=rank, world=world,
               optimizer=optimizer, scaler=scaler, scheduler=scheduler, per_step=per_step,
               amp_dtype=amp_dtype, precision=precision, warmup_steps=int(config.warmup_epochs * steps),
               last_good=f"{run_dir.name}/checkpoint.pt, epoch {start_epoch}" if start_epoch else "none yet")
    run_start = time.perf_counter()
    for epoch in range(start_epoch, config.epochs):
        epoch_start = time.perf_counter()
        train_loss, train_top1, seen, train_seconds, lr = _train_epoch(ctx, epoch)
        scores = {name: evaluate.evaluate(net, split, config.eval_batch_size, device, config.crop_size,
                                          config.image_size, amp_dtype, config.channels_last,
                                          distributed=world > 1)
                  for name, split in (("holdout", holdout), ("val", val))}
        if not per_step and (epoch + 1) * steps >= ctx["warmup_steps"]:
            scheduler.step(100.0 - scores["holdout"]["top1"])  # holdout top-1 error decides
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        now = time.perf_counter()
        row = dict(epoch=epoch + 1, lr=lr, train_loss=train_loss, train_top1=train_top1,
                   **{f"{s}_{k}": v[k] for s, v in scores.items() for k in ("loss", "top1", "top5")},
                   seconds=now - epoch_start, images_per_s=seen / train_seconds,
                   elapsed_s=elapsed0 + now - run_start)
        history.append(row)
        frame = pd.DataFrame(history, columns=HISTORY_COLUMNS)
        if rank == 0:
            checkpoint = dict(model=net.state_dict(), optimizer=optimizer.state_dict(),
                              scaler=scaler.state_dict(), scheduler=scheduler.state_dict(),
                              rng=_rng_state(), epoch=epoch + 1, history=frame.to_dict("list"),
                              config=dataclasses.asdict(config), num_classes=len(train.classes),
                              classes=list(train.classes), names=list(train.names))
            _atomic_write(ckpt_path, lambda tmp: torch.save(checkpoint, tmp))
            _atomic_write(run_dir / "history.csv", lambda tmp: frame.to_csv(tmp, index=False))
            summary = run_summary(frame, config, len(train.classes), device, precision, world, command)
            _atomic_write(run_dir / "summary.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=2)))
            ctx["last_good"] = f"{run_dir.name}/checkpoint.pt, epoch {epoch + 1}"
            say(_summary(row, config.epochs))
            if callback is not None:
                callback(frame)
        if world > 1:
            dist.barrier()  # nobody starts the next epoch before the checkpoint is on disk
    return pd.DataFrame(history, columns=HISTORY_COLUMNS)


# ---------------------------------------------------------------------------
# CLI: one flag per Config field


def _field_type(f):
    """The concrete type of a field (``int | None`` -> int)."""
    t = f.type
    if isinstance(t, types.UnionType) or typing.get_origin(t) is typing.Union:
        t = next(a for a in typing.get_args(t) if a is not type(None))
    return t


CHOICES = {"schedule": ["paper", "cosine", "onecycle"], "precision": ["auto", "fp32", "fp16", "bf16"],
           "init": ["default", "paper"]}


def _field_help():
    """Each field's trailing comment in the Config source: the CLI's help text."""
    found = {}
    for line in inspect.getsource(Config).splitlines():
        m = re.match(r"\s+(\w+): [^=]+=[^#]*#\s*(.*)", line)
        if m:
            found[m.group(1)] = m.group(2)
    return found


def _parser():
    p = argparse.ArgumentParser(prog="python -m alexnet_nb.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="start from Config.quick() (tiny, CPU-friendly)")
    helps = _field_help()
    for f in dataclasses.fields(Config):
        flag = f"--{f.name.replace('_', '-')}"
        t = _field_type(f)
        text = f"{helps.get(f.name, '')} (default: {f.default})".replace("%", "%%")
        if t is bool:
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                           default=argparse.SUPPRESS, help=text)
        else:
            def parse(s, t=t, optional=t is not f.type):
                return None if optional and s.lower() == "none" else t(s)
            p.add_argument(flag, dest=f.name, type=parse, default=argparse.SUPPRESS, choices=CHOICES.get(f.name),
                           metavar=None if f.name in CHOICES else t.__name__.upper(), help=text)
    return p


def config_from_args(argv=None) -> Config:
    args = vars(_parser().parse_args(argv))
    quick = args.pop("quick")
    return Config.quick(**args) if quick else Config(**args)


def main(argv=None):
    config = config_from_args(argv)
    launcher = "torchrun ... -m alexnet_nb.train" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else \
        "python -m alexnet_nb.train"
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        fit(config, command=f"{launcher} {shlex.join(args)}".strip())
    except NonFiniteLossError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
