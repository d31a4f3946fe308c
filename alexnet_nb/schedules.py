"""Learning-rate schedules, as one object the training loop calls after every step and every epoch.

``paper``: section 5, "divide the learning rate by 10 when the validation error
rate stopped improving" (we watch the holdout, keeping validation untouched);
at most three drops, as in the paper.
``step``: multiply by ``step_gamma`` every ``step_size`` epochs (the blog's StepLR(7, 0.1)).
``linear``: warm-up, then a straight line down to zero at the end of the last
step. Under a fixed budget of steps, linear-to-zero beats step and cosine decay
(Li, Yumer and Ramanan, "Budgeted Training", ICLR 2020).
``cosine``: warm-up, then half a cosine down to zero.
``onecycle``: PyTorch's OneCycleLR (it also cycles momentum between 0.85 and 0.95).

Every schedule but ``onecycle`` takes an optional linear warm-up from 0 to
``lr`` over ``warmup_epochs``. :func:`factor` is the formula of the per-step
schedules, so a test can draw each schedule's learning rate at every step and
compare it with the formula.
"""

import math

import torch

PER_STEP = ("step", "linear", "cosine")


def factor(schedule, step, total, warm, steps_per_epoch, step_size=7, step_gamma=0.1):
    """The multiple of the peak lr used at (0-based) ``step`` of ``total`` by a per-step schedule."""
    if step < warm:
        return (step + 1) / warm
    if schedule == "step":
        return step_gamma ** ((step // steps_per_epoch) // step_size)
    progress = (step - warm) / max(1, total - warm)
    if schedule == "linear":
        return 1.0 - progress
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    raise ValueError(f"no per-step formula for schedule {schedule!r}")


class Schedule:
    """The learning rate of ``optimizer`` under ``config.schedule``.

    Call :meth:`after_step` after every optimizer step (with the number of steps
    done so far) and :meth:`after_epoch` after every epoch's evaluation.
    """

    def __init__(self, optimizer, config, steps_per_epoch):
        self.optimizer, self.config = optimizer, config
        self.name = config.schedule
        self.total = max(1, config.epochs * steps_per_epoch)
        self.warm = min(int(config.warmup_epochs * steps_per_epoch), self.total - 1)
        self.steps_per_epoch = steps_per_epoch
        if self.name in PER_STEP:
            self.torch = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: factor(
                self.name, s, self.total, self.warm, steps_per_epoch, config.step_size, config.step_gamma))
        elif self.name == "onecycle":
            self.torch = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=config.lr, total_steps=self.total, pct_start=max(self.warm, 1) / self.total)
        elif self.name == "paper":
            self.torch = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=0.1, patience=config.plateau_patience, min_lr=config.lr * 1e-3)
            if self.warm:
                self._set_lr(config.lr / self.warm)  # the first step's warm-up value
        else:
            raise ValueError(f"unknown schedule {self.name!r}")

    def _set_lr(self, lr):
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def after_step(self, steps_done):
        if self.name != "paper":
            if steps_done < self.total:  # OneCycleLR refuses to step past its end
                self.torch.step()
        elif steps_done < self.warm:  # the plateau schedule's warm-up, step by step
            self._set_lr(self.config.lr * (steps_done + 1) / self.warm)

    def after_epoch(self, epochs_done, holdout_top1):
        """The plateau schedule watches the holdout's top-1 error, once warm-up is over."""
        if self.name == "paper" and epochs_done * self.steps_per_epoch >= self.warm:
            self.torch.step(100.0 - holdout_top1)

    def state_dict(self):
        return self.torch.state_dict()

    def load_state_dict(self, state):
        self.torch.load_state_dict(state)
