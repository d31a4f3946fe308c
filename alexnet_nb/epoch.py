"""One pass over the training images: its seeded order and augmentation, the steps, and stopping inside it.

Randomness: each epoch's shuffle, crops, flips and dropout are drawn from
generators seeded by ``(seed, epoch, rank)``, so epoch ``e`` depends only on
the weights and optimizer state at its start; that is what makes a resumed run
end with exactly the weights of an uninterrupted one (in deterministic mode).

Stopping inside an epoch: a stop request (``stopping.Signals``) ends the epoch
after the step in progress. What the epoch reached is a :class:`Progress` (the
step, the loss and hit sums so far), which the checkpoint keeps; resuming it
re-seeds the shuffle and the augmentation as at the epoch's start and draws
the augmentation of the steps already done again (a few small random tensors),
while dropout's stream is the global RNG state the checkpoint restored. So the
resumed steps see the batches, crops and masks the uninterrupted run saw.

Compiling: the first steps of a compiled run are where ``torch.compile``
compiles, and where it fails on a GPU its backend does not support (Triton on
a T4). Such a failure switches the run to eager, says so in one line, and does
the failed step again from the same random state (it never reached the weight
update), so the run goes on as an eager run would have.
"""

import math
import sys
import time
from dataclasses import asdict, dataclass

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from alexnet_nb import checkpoint, stopping
from alexnet_nb import step as step_lib

SHUFFLE, AUGMENT, DROPOUT = range(3)  # the random streams of an epoch
# The steps that compile (forward, then the backward on first use; CUDA graphs record on the third call).
COMPILING_STEPS = 3


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


def epoch_seed(seed, epoch, stream, rank=0):
    """A distinct, reproducible seed for each (run seed, epoch, random stream, process)."""
    return (seed * 1_000_003 + epoch * 10_007 + stream * 1_009 + rank * 101 + 17) % (2**63 - 1)


@dataclass
class Progress:
    """How far an epoch got: the steps done, the summed loss (x images) and top-1 hits of all processes, the
    images seen and the seconds spent. What a checkpoint taken inside an epoch stores as ``partial``."""

    step: int = 0
    loss_sum: float = 0.0
    correct: float = 0.0
    seen: int = 0
    seconds: float = 0.0

    def to_dict(self):
        return asdict(self)


@dataclass
class Result:
    """An epoch's outcome: its mean loss, top-1 %, images, seconds and last lr; ``stopped`` is the progress
    reached when a stop request ended it early (then the other fields are not an epoch's)."""

    loss: float
    top1: float
    seen: int
    seconds: float
    lr: float
    stopped: Progress | None = None
    why: str | None = None  # what asked it to stop


def _share(params, share):
    """This process's share of the whole global batch's random choices."""
    values = [p[share] if torch.is_tensor(p) else p for p in params]
    return type(params)(*values) if hasattr(params, "_fields") else tuple(values)


def fall_back_to_eager(ctx, e, what):
    """Run ``what`` ("training", or "evaluation" alone) uncompiled from now on: ``e``, a compiler error, broke
    it. One line says so."""
    inner = e
    while getattr(inner, "inner_exception", None) or inner.__cause__:
        inner = getattr(inner, "inner_exception", None) or inner.__cause__
    detail = str(inner).strip().splitlines()[0] if str(inner).strip() else ""
    cause = type(e).__name__ + (f": {type(inner).__name__}" if inner is not e else "") + (f": {detail}"
                                                                                            if detail else "")
    ctx["say"](f"Compiling failed in {what} ({cause[:300]}); {what} goes on eagerly (slower), from that step.")
    ctx["eval_net"] = ctx["scored_net"]
    if what == "training":  # its failure is the machine's: evaluation would fail the same way
        ctx["step"].eager()
        ctx["compiled"] = False


def _run_step(ctx, images, labels, params):
    """The step; on the compiling steps, a compiler error switches to eager and the step is done again."""
    if not ctx["compiled"] or ctx["steps_run"] >= COMPILING_STEPS:
        return ctx["step"](images, labels, params)
    ctx["steps_run"] += 1
    rng = checkpoint.rng_state()  # dropout's stream, for doing the step again from where it was
    try:
        return ctx["step"](images, labels, params)
    except Exception as e:  # noqa: BLE001 -- re-raised unless the compiler raised it
        if not step_lib.compile_error(e):
            raise
        fall_back_to_eager(ctx, e, "training")
        checkpoint.set_rng_state(rng)
        return ctx["step"](images, labels, params)  # the failed one never reached the update: no step is doubled


def _check_finite(ctx, sums, seen, epoch, i, lr):
    loss_so_far = sums[0].clone()
    if ctx["world"] > 1:  # every process must see the divergence, or the others hang in the next all-reduce
        dist.all_reduce(loss_so_far)
    mean_loss = loss_so_far.item() / seen  # the only host-device sync: once per log_every steps
    if not math.isfinite(mean_loss):
        raise NonFiniteLossError(
            f"The training loss became {mean_loss} in epoch {epoch + 1}, by step {i + 1} "
            f"(lr {lr:g}, precision {ctx['precision']}). The run is stopped; the last good "
            f"checkpoint ({ctx['last_good']}) is kept. Try a lower --lr or --precision fp32 "
            "(and --init default, if it was changed).")
    return mean_loss


def train_epoch(ctx, epoch, stop, start=None) -> Result:
    """One pass over the training images, from its first step or from ``start`` (the :class:`Progress` of
    the same epoch stopped earlier). A stop request on ``stop`` ends it after the step in progress."""
    c, train, device = ctx["config"], ctx["train"], ctx["device"]
    rank, world, batch, steps = ctx["rank"], ctx["world"], ctx["batch"], ctx["steps"]
    schedule, start = ctx["schedule"], start or Progress()
    if start.step == 0:  # else dropout's stream is the global RNG state the checkpoint restored
        torch.manual_seed(epoch_seed(c.seed, epoch, DROPOUT, rank))  # dropout masks: each process its own
    # The shuffle and the augmentation are the same on every process: each takes its share of one global batch.
    perm = torch.randperm(len(train.labels), device=device,
                          generator=torch.Generator(device).manual_seed(epoch_seed(c.seed, epoch, SHUFFLE)))
    aug_gen = torch.Generator(device).manual_seed(epoch_seed(c.seed, epoch, AUGMENT))
    h, w = train.images.shape[-2:]
    for _ in range(start.step):  # the augmentation stream where the stopped epoch left it
        step_lib.draw_params(c, batch, aug_gen, h, w, device)
    # Loss * images and hits stay on the device; the sums of a stopped epoch are all processes', so rank 0 adds them.
    sums = torch.tensor([start.loss_sum, start.correct] if rank == 0 else [0.0, 0.0], device=device,
                        dtype=torch.float64)
    seen = start.seen
    bar = tqdm(total=steps * batch, initial=start.step * batch, unit="img", desc=f"epoch {epoch + 1}/{c.epochs}",
               leave=False, disable=not (c.progress and rank == 0), file=sys.stdout, dynamic_ncols=True)
    begin = time.perf_counter()
    ctx["step"].net.train()
    lr = schedule.lr()
    share = slice(rank, batch, world)
    for i in range(start.step, steps):
        # Random choices for the whole global batch, then this process's share of it: the run does
        # not depend on the number of processes (but for dropout masks).
        params = _share(step_lib.draw_params(c, batch, aug_gen, h, w, device), share)
        idx = perm[i * batch:(i + 1) * batch][share]
        loss, correct = _run_step(ctx, train.images[idx], train.labels[idx], params)
        lr = schedule.lr()
        schedule.after_step(epoch * steps + i + 1)
        sums[0] += loss.double() * len(idx)
        sums[1] += correct
        seen += batch  # global images
        logged = (i + 1) % c.log_every == 0 or i + 1 == steps
        if logged:
            mean_loss = _check_finite(ctx, sums, seen, epoch, i, lr)
            bar.update(min(c.log_every, (i % c.log_every) + 1) * batch)
            bar.set_postfix(loss=f"{mean_loss:.3f}", img_s=f"{bar.n / (time.perf_counter() - begin):.0f}")
        # One process checks its flag every step; several agree at the log points (an all-reduce each).
        why = stopping.agreed(stop.reason, world, device) if i + 1 < steps and (world == 1 or logged) else None
        if why is not None:
            if not logged:
                _check_finite(ctx, sums, seen, epoch, i, lr)  # never checkpoint diverged weights
            bar.close()
            if world > 1:
                dist.all_reduce(sums)
            return Result(float("nan"), float("nan"), seen, 0.0, lr, stopped=Progress(
                i + 1, *sums.tolist(), seen, start.seconds + time.perf_counter() - begin), why=why)
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = start.seconds + time.perf_counter() - begin
    if world > 1:
        dist.all_reduce(sums)
    loss_sum, correct = sums.tolist()
    return Result(loss_sum / seen, 100.0 * correct / seen, seen, seconds, lr)
