"""Train AlexNet on Tiny ImageNet: ``fit(config)`` and ``python -m alexnet_nb.train``.

    python -m alexnet_nb.train                        # the paper's recipe, 30 epochs
    python -m alexnet_nb.train --recipe blog --name blog
    python -m alexnet_nb.train --classes 10 --epochs 3 --name ten
    python -m alexnet_nb.train --name ten --resume    # carry on after a disconnect
    torchrun --nproc_per_node=4 -m alexnet_nb.train   # data-parallel on 4 GPUs

Design (airbench style): the decoded split lives on the device as uint8 and a
batch is augmented there by a few tensor ops (``alexnet_nb.augment``), so
there are no DataLoader workers and no per-image Python during an epoch. The
settings are ``config.Config`` (and its named recipes), one epoch is
``alexnet_nb.epoch`` (its seeded randomness, stopping inside it, the eager
fallback when compiling fails), one step ``step.TrainStep`` (shared with the
benchmark), checkpoints are ``alexnet_nb.checkpoint``, the run folder's guards
``alexnet_nb.run_folder``, clean stops ``alexnet_nb.stopping``.

Stopping: SIGTERM or SIGINT (Ctrl-C, a notebook's interrupt) ends the run after
the step in progress, with a checkpoint recording that step and the summary
written (a second Ctrl-C stops at once); the history gets the epoch's row once
the resumed run completes it. ``time_limit`` stops the run before an epoch that
would not end in time. A stopped run resumes like an interrupted one, at the
step where it stopped, and ends with the weights of an uninterrupted run.

Multi-GPU (DDP): ``batch_size`` is the *global* batch; each of the N processes
takes its ``batch_size / N`` share of every global batch and DDP averages the
gradients, so a step sees the same images and takes the same mean gradient as
on one device. ``lr`` is therefore not rescaled. AlexNet has no batch
statistics (LRN and dropout act per image), so N GPUs follow the one-GPU
recipe exactly, only faster. Rank 0 writes the history and checkpoints.
"""

import json
import os
import shlex
import sys
import time

import pandas as pd
import torch
import torch.distributed as dist

from alexnet_nb import backup, checkpoint, cli, data, evaluate, files, run_folder, stopping, summary
from alexnet_nb import config as config_lib
from alexnet_nb import epoch as epoch_lib
from alexnet_nb import step as step_lib
from alexnet_nb.checkpoint import load_checkpoint  # noqa: F401  (the notebooks' name for it)
from alexnet_nb.config import Config, ConfigError  # noqa: F401
from alexnet_nb.epoch import NonFiniteLossError
from alexnet_nb.schedules import Schedule
from alexnet_nb.step import resolve_precision  # noqa: F401

HISTORY_COLUMNS = ["epoch", "lr", "train_loss", "train_top1", "holdout_loss", "holdout_top1",
                   "holdout_top5", "val_loss", "val_top1", "val_top5", "seconds", "images_per_s",
                   "elapsed_s", "scored"]
FLIP_COLUMNS = ["holdout_flip_top1", "holdout_flip_top5", "val_flip_top1", "val_flip_top5"]


def history_columns(cfg):
    return HISTORY_COLUMNS + (FLIP_COLUMNS if cfg.eval_flip else [])


# ---------------------------------------------------------------------------
# Set-up helpers


def _process_seconds():
    """Seconds since this process started (Linux: /proc), or None elsewhere."""
    try:
        start_ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
        uptime = float(open("/proc/uptime").read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _init_distributed(cfg):
    """(rank, world size, local rank, whether we started the process group) from torchrun's variables."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0, False
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), local, False
    use_nccl = torch.cuda.is_available() and (cfg.device or "cuda").startswith("cuda")
    if use_nccl:
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if use_nccl else "gloo")
    return dist.get_rank(), world, local, True


def pick_device(cfg, local_rank):
    if cfg.device:
        device = torch.device(cfg.device)
        if device.type == "cuda" and device.index is None and dist.is_initialized():
            device = torch.device("cuda", local_rank)
        return device
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _set_determinism(cfg, device):
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for reproducibility
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = device.type == "cuda"  # fixed shapes: let cuDNN pick the fastest


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


def prepare_data(cfg, device, progress=True):
    """(train, holdout, val) on ``device``: the class subset, the holdout carved from train, the size limits."""
    source = cfg.source or data.dataset_source()
    train = data.load_split(source, "train", progress=progress)
    val = data.load_split(source, "val", progress=progress)
    if cfg.classes:
        if cfg.classes > len(train.classes):
            raise ConfigError("classes", cfg.classes, f"the dataset at {source} has {len(train.classes)} classes")
        train, val = train.take_classes(cfg.classes), val.take_classes(cfg.classes)
    # Seed 0, not cfg.seed: the holdout stays the same images whatever the run's seed.
    try:
        train, holdout = data.holdout_split(train, per_class=cfg.holdout_per_class, seed=0)
    except ValueError as e:  # too many per class for this dataset: say it as the flag's error
        raise ConfigError("holdout_per_class", cfg.holdout_per_class, f"{e}, in {source}") from None
    train = _limit(train, cfg.max_train_images, cfg.seed)
    holdout = _limit(holdout, cfg.max_eval_images, 1)
    val = _limit(val, cfg.max_eval_images, 2)
    return tuple(s.to(device) for s in (train, holdout, val)), source


# ---------------------------------------------------------------------------
# The loop


def _oom_message(cfg, world):
    half = max(world, cfg.batch_size // 2)
    return (f"Out of GPU memory at batch size {cfg.batch_size}. Try --batch-size {half} "
            f"(and --lr {cfg.lr * half / cfg.batch_size:g} to keep the learning rate per image), "
            "or free the GPU (restart the runtime).")


def _evaluate(ctx):
    """Centre-crop scores (and the flip extra) of the scored weights on the holdout and val."""
    c = ctx["config"]
    row = {}
    for name, split in (("holdout", ctx["holdout"]), ("val", ctx["val"])):
        def score():
            return evaluate.evaluate(ctx["eval_net"], split, c.eval_batch_size, ctx["device"], c.crop_size,
                                     c.image_size, ctx["amp_dtype"], c.channels_last, distributed=ctx["world"] > 1,
                                     flip=c.eval_flip)
        try:
            s = score()
        except Exception as e:  # noqa: BLE001 -- its own graph compiles on first use: eager if that fails
            if not (ctx["compiled"] and step_lib.compile_error(e)):
                raise
            epoch_lib.fall_back_to_eager(ctx, e, "evaluation")
            s = score()
        row.update({f"{name}_{k}": v for k, v in s.items()})
    return row


def _epoch_line(row, epochs):
    flip = f"  (flip: {row['val_flip_top1']:5.1f}% / {row['val_flip_top5']:5.1f}%)" if "val_flip_top1" in row else ""
    return (f"epoch {row['epoch']:>3}/{epochs}  lr {row['lr']:.2g}  "
            f"train loss {row['train_loss']:.3f} top1 {row['train_top1']:5.1f}%  "
            f"holdout top1 {row['holdout_top1']:5.1f}% top5 {row['holdout_top5']:5.1f}%  "
            f"val top1 {row['val_top1']:5.1f}% top5 {row['val_top5']:5.1f}%{flip}  "
            f"{row['seconds']:.0f} s  {row['images_per_s']:.0f} img/s")


def fit(config: Config, callback=None, command=None) -> pd.DataFrame:
    """Train (or resume) a run; returns the history, one row per epoch (``history_columns(config)``).

    ``callback(history)`` is called on rank 0 after every epoch (e.g. to redraw
    the curves in a notebook). ``command`` (how the run was started) goes into
    the run folder's ``summary.json``, rewritten every epoch with ``history.csv``.
    Raises ``NonFiniteLossError`` if the loss diverges, keeping the last good
    checkpoint; ``ConfigError``, ``run_folder.RunFolderError`` and
    ``checkpoint.CheckpointError`` before any training when the request cannot work.
    """
    config_lib.check_device(config)
    rank, world, local_rank, own_group = _init_distributed(config)
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark)
    lock = run_folder.Lock(config.run_dir())
    try:
        if rank == 0:
            try:
                config.run_dir().mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise files.write_error(e, config.run_dir() / run_folder.LOCK, run_folder.WRITABLE) from None
            lock.acquire()
        with stopping.Signals() as stop:
            return _fit(config, callback, rank, world, local_rank, command, stop)
    except getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError) as e:
        raise RuntimeError(_oom_message(config, world)) from e
    finally:
        lock.release()
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])  # leave the process as we found it
        torch.backends.cudnn.benchmark = saved[2]
        if own_group:
            dist.destroy_process_group()


def _restore(state, parts, schedule, config, device):
    """Load a checkpoint into the run's parts; (history rows, whole epochs done, the ``epoch.Progress`` of the
    epoch it stopped inside, or None: always for checkpoints older than mid-epoch stops)."""
    parts.net.load_state_dict(state["model"])
    step_lib.load_optimizer_state(parts.optimizer, state["optimizer"], step_lib.on_gpu(config.fused_sgd, device))
    if parts.scaler.is_enabled() and state["scaler"]:  # empty when the run so far was bf16 or fp32 (another GPU)
        parts.scaler.load_state_dict(state["scaler"])
    schedule.load_state_dict(state["scheduler"])
    if parts.ema is not None:
        parts.ema.load_state_dict(state["ema"])
    checkpoint.set_rng_state(state["rng"])  # inside an epoch: dropout's stream as it was at the step reached
    started = epoch_lib.Progress(**state["partial"]) if state.get("step") else None
    return checkpoint.history_frame(state).to_dict("records"), state["epoch"], started


def _fit(config, callback, rank, world, local_rank, command, stop):
    fit_start = time.perf_counter()
    if config.batch_size % world:
        raise ConfigError("batch_size", config.batch_size, f"the global batch must divide by {world} processes")
    say = print if rank == 0 else (lambda *a, **k: None)
    run_dir = config.run_dir()
    ckpt_path = run_dir / checkpoint.NAME
    if rank == 0:
        run_folder.prepare(run_dir, config.resume, config.overwrite)
        files.remove_stale_temps(ckpt_path)
    if rank == 0 and config.resume:  # a new machine: its own folder lost, the copy elsewhere is the run
        backup.restore(run_dir, config.backup_dir, say)
    if config.resume and world > 1:
        dist.barrier()  # the others read the checkpoint only once it is back
    state = checkpoint.read(ckpt_path) if config.resume and ckpt_path.exists() else None
    if state is not None:
        config = checkpoint.resumed_config(config, config_lib.from_dict(state["config"]), say)
    device = pick_device(config, local_rank)
    _set_determinism(config, device)

    # Rank 0 first: it may generate or decode-and-cache the dataset; the others then read the cache.
    if rank != 0:
        dist.barrier()
    before_data = time.perf_counter()
    (train, holdout, val), source = prepare_data(config, device, progress=config.progress and rank == 0)
    data_s = time.perf_counter() - before_data
    if rank == 0 and world > 1:
        dist.barrier()
    if state is not None:
        checkpoint.check_classes(state, train.classes, source, ckpt_path)

    torch.manual_seed(config.seed)  # identical initial weights on every process
    wrap = None
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        def wrap(net):
            return DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    before_net = time.perf_counter()
    parts = step_lib.build(config, len(train.classes), device, wrap)
    net_s = time.perf_counter() - before_net
    precision, ema = parts.precision, parts.ema
    batch, steps = _batch_and_steps(len(train), config.batch_size, world)
    schedule = Schedule(parts.optimizer, config, steps)

    history, start_epoch, started, elapsed0 = [], 0, None, 0.0
    if state is not None:
        history, start_epoch, started = _restore(state, parts, schedule, config, device)
        elapsed0 = (history[-1]["elapsed_s"] if history else 0.0) + (started.seconds if started else 0.0)
        say(f"Resuming {run_dir.name} " + (f"at step {started.step} of epoch {start_epoch + 1} ({steps} steps)"
                                           if started else f"after epoch {start_epoch}") + f" of {config.epochs}.")
    elif config.resume:
        say(f"No checkpoint in {run_dir.name}; starting a new run.")
    if rank == 0:
        files.atomic_write(run_dir / "config.json",
                           lambda tmp: tmp.write_text(json.dumps(summary.values(config), indent=2)))
    say(f"{config.recipe} recipe: {len(train)} train, {len(holdout)} holdout, {len(val)} val images, "
        f"{len(train.classes)} classes; {device.type}, {precision}, batch {config.batch_size}"
        + (f" over {world} processes" if world > 1 else "") + f", {steps} steps per epoch"
        + (", compiled" if parts.compiled else "") + (f", EMA {config.ema_decay}" if ema is not None else ""))
    # Where a run's start goes (the plan measured 16-20 s a run outside its epochs on an H200): whether several
    # plan entries in one process would save much is read from these lines.
    in_fit, started_s = time.perf_counter() - fit_start, _process_seconds()
    say("start: " + (f"{started_s - in_fit:.1f} s of Python and imports before fit, " if started_s else "")
        + f"data {data_s:.1f} s, network {net_s:.1f} s, {in_fit:.1f} s in fit so far")

    ctx = dict(config=config, batch=batch, steps=steps, train=train, holdout=holdout, val=val, device=device,
               rank=rank, world=world, schedule=schedule, amp_dtype=parts.amp_dtype, precision=precision,
               step=parts.step, eval_net=parts.eval_net, scored_net=ema.module if ema is not None else parts.net,
               compiled=parts.compiled, steps_run=0, say=say,
               last_good=f"{run_dir.name}/{checkpoint.NAME}, epoch {start_epoch}" if start_epoch else "none yet")
    run_start = time.perf_counter()
    stopped, durations, backed_up = None, [], 0
    frame = pd.DataFrame(history, columns=history_columns(config))

    def write_summary(stopped, where=None):
        summary.write(run_dir, frame, config, len(train.classes), device, precision, world, command,
                      compiled=ctx["compiled"], stopped=stopped, stopped_in_epoch=where,
                      images=dict(train=len(train), holdout=len(holdout), val=len(val)))

    for epoch in range(start_epoch, config.epochs):
        epoch_start = time.perf_counter()
        result, started = epoch_lib.train_epoch(ctx, epoch, stop, started), None
        if result.stopped is not None:  # a stop request inside the epoch: a checkpoint at the step it reached
            reached = result.stopped
            if rank == 0:
                checkpoint.save(ckpt_path, checkpoint.training_state(parts, schedule, epoch, frame, config, train,
                                                                     reached))
                write_summary(result.why, dict(epoch=epoch + 1, step=reached.step, steps=steps))
                backed_up += backup.copy(run_dir, config.backup_dir, with_checkpoint=True)
            if world > 1:
                dist.barrier()
            say(f"Stopped at step {reached.step} of {steps} in epoch {epoch + 1} of {config.epochs} ({result.why}); "
                f"the checkpoint is written: continue with --resume (name {run_dir.name}).")
            break
        scores = _evaluate(ctx)
        schedule.after_epoch(epoch + 1, scores["holdout_top1"])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        now = time.perf_counter()
        row = dict(epoch=epoch + 1, lr=result.lr, train_loss=result.loss, train_top1=result.top1, **scores,
                   seconds=now - epoch_start, images_per_s=result.seen / result.seconds,
                   elapsed_s=elapsed0 + now - run_start, scored="ema" if ema is not None else "weights")
        history.append(row)
        frame = pd.DataFrame(history, columns=history_columns(config))
        durations.append(now - epoch_start)
        # The next epoch's time: the faster of the last two (the first one also compiled the step). After the
        # last epoch there is nothing left to stop: the run is finished, whatever asked it to stop.
        last = epoch + 1 == config.epochs
        if not last:
            stopped = stopping.reason(stop, config, now - fit_start, min(durations[-2:]), world, device)
        if rank == 0:
            saved = (epoch + 1) % config.checkpoint_every == 0 or last or stopped is not None
            if saved:
                checkpoint.save(ckpt_path, checkpoint.training_state(parts, schedule, epoch + 1, frame, config,
                                                                     train))
                ctx["last_good"] = f"{run_dir.name}/{checkpoint.NAME}, epoch {epoch + 1}"
            write_summary(stopped)
            backed_up += backup.copy(run_dir, config.backup_dir, saved and backup.due(
                epoch + 1, config.backup_every, last, stopped is not None))
            say(_epoch_line(row, config.epochs))
            if callback is not None:
                callback(frame)
        if world > 1:
            dist.barrier()  # nobody starts the next epoch before the checkpoint is on disk
        if stopped is not None:
            say(f"Stopped after epoch {epoch + 1} of {config.epochs} ({stopped}); the checkpoint is written: "
                f"continue with --resume (name {run_dir.name}).")
            break
    if backed_up:
        say(f"copied {backed_up / 1e6:,.0f} MB into {config.backup_dir} in all (checkpoint every "
            f"{config.backup_every} epochs, at every stop and at the end)")
    return pd.DataFrame(history, columns=history_columns(config))


# ---------------------------------------------------------------------------
# CLI


def main(argv=None):
    config = cli.parse_config(argv, description=__doc__.split("\n\n")[0])
    launcher = "torchrun ... -m alexnet_nb.train" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else \
        "python -m alexnet_nb.train"
    args = sys.argv[1:] if argv is None else list(argv)
    from alexnet_nb import download

    try:
        fit(config, command=f"{launcher} {shlex.join(args)}".strip())
    except (ConfigError, data.DatasetError, download.DownloadError, checkpoint.CheckpointError,
            run_folder.RunFolderError, files.WriteError) as e:
        cli.fail(str(e))
    except NonFiniteLossError as e:
        cli.fail(str(e), status=1)


if __name__ == "__main__":
    main()
