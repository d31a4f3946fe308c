"""Each schedule's learning rate at every step, against its formula written out by hand."""

import math

import pytest
import torch

from alexnet_nb import config, schedules

STEPS_PER_EPOCH, EPOCHS = 5, 6
TOTAL = STEPS_PER_EPOCH * EPOCHS


def drawn(cfg, holdout_top1=None):
    """The lr each step of a whole run uses, as the training loop drives the schedule."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=cfg.lr, momentum=0.9)
    sched = schedules.Schedule(opt, cfg, STEPS_PER_EPOCH)
    lrs = []
    for epoch in range(cfg.epochs):
        for i in range(STEPS_PER_EPOCH):
            lrs.append(sched.lr())
            opt.step()
            sched.after_step(epoch * STEPS_PER_EPOCH + i + 1)
        sched.after_epoch(epoch + 1, holdout_top1[epoch] if holdout_top1 else 50.0)
    return lrs


def cfg(**kw):
    return config.Config(epochs=EPOCHS, lr=0.1, **kw)


def test_step_is_the_blogs_steplr_per_epoch():
    lrs = drawn(cfg(schedule="step", step_size=2, step_gamma=0.1))
    expected = [0.1 * 0.1 ** ((s // STEPS_PER_EPOCH) // 2) for s in range(TOTAL)]
    assert lrs == pytest.approx(expected)
    # The same as PyTorch's StepLR stepped once per epoch, as the blog did.
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    ref = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.1)
    per_epoch = []
    for _ in range(EPOCHS):
        per_epoch.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    assert lrs[::STEPS_PER_EPOCH] == pytest.approx(per_epoch)


def test_linear_warms_up_then_falls_to_zero_at_the_end():
    warm = 1 * STEPS_PER_EPOCH
    lrs = drawn(cfg(schedule="linear", warmup_epochs=1))
    expected = [0.1 * (s + 1) / warm if s < warm else 0.1 * (TOTAL - s) / (TOTAL - warm) for s in range(TOTAL)]
    assert lrs == pytest.approx(expected)
    assert lrs[warm] == pytest.approx(0.1) and lrs[-1] == pytest.approx(0.1 / (TOTAL - warm))


def test_cosine_with_warmup():
    warm = 2 * STEPS_PER_EPOCH
    lrs = drawn(cfg(schedule="cosine", warmup_epochs=2))
    expected = [0.1 * (s + 1) / warm if s < warm else
                0.05 * (1 + math.cos(math.pi * (s - warm) / (TOTAL - warm))) for s in range(TOTAL)]
    assert lrs == pytest.approx(expected)


def test_onecycle_follows_pytorchs_two_cosine_phases():
    warm = 1 * STEPS_PER_EPOCH
    lrs = drawn(cfg(schedule="onecycle", warmup_epochs=1))
    start, end = 0.1 / 25, 0.1 / 25 / 1e4  # OneCycleLR's div_factor and final_div_factor
    up, down = warm - 1, TOTAL - 1 - (warm - 1)  # its phase ends: pct_start * total - 1, then total - 1

    def anneal(a, b, t):
        return b + (a - b) / 2 * (1 + math.cos(math.pi * t))

    expected = [anneal(start, 0.1, s / up) if s <= up else anneal(0.1, end, (s - up) / down) for s in range(TOTAL)]
    assert lrs == pytest.approx(expected)


def test_paper_divides_by_ten_when_the_holdout_stalls():
    # Holdout top-1 rises for two epochs, then stalls: when more than `patience` epochs in a row
    # bring no improvement (epochs 3, 4, 5), the lr is divided by 10 for the next epoch.
    top1 = [10, 20, 20, 20, 20, 20]
    lrs = drawn(cfg(schedule="paper", plateau_patience=2), holdout_top1=top1)
    per_epoch = lrs[::STEPS_PER_EPOCH]
    assert per_epoch == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.1, 0.01])
    assert all(lrs[e * STEPS_PER_EPOCH:(e + 1) * STEPS_PER_EPOCH] == [per_epoch[e]] * STEPS_PER_EPOCH
               for e in range(EPOCHS))


def test_paper_with_warmup_ramps_per_step_first():
    lrs = drawn(cfg(schedule="paper", warmup_epochs=1), holdout_top1=[10, 20, 30, 40, 50, 60])
    warm = STEPS_PER_EPOCH
    assert lrs[:warm] == pytest.approx([0.1 * (s + 1) / warm for s in range(warm)])
    assert lrs[warm:] == pytest.approx([0.1] * (TOTAL - warm))


def test_formula_refuses_schedules_without_one():
    with pytest.raises(ValueError):
        schedules.factor("paper", 0, 10, 0, 5)
