"""The training engine: resume, stops, divergence, DDP (all on a CPU, tiny data)."""

import json
import os
import signal
import subprocess
import sys
from dataclasses import replace

import pandas as pd
import pytest
import torch

from alexnet_nb import augment, checkpoint, config, step, synthetic, train


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    # AlexNet at 227x227 trains at a few images/s on a shared 2-core CPU: keep it tiny.
    # 2 classes x 4 train images: 1 per class goes to the holdout; 2 of the rest train (one step of 2 per epoch).
    root = tmp_path_factory.mktemp("data")
    return str(synthetic.make_tiny_imagenet(root, num_classes=2, train_per_class=4, val_per_class=2))


def tiny(source, tmp_path, name, **kw):
    cfg = dict(source=source, out_dir=str(tmp_path / name), classes=None, holdout_per_class=1,
               max_train_images=2, max_eval_images=None, batch_size=2, lr=0.001, deterministic=True,
               progress=False)
    cfg.update(kw)
    return config.Config.quick(**cfg)


def weights(run_dir):
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_matches_an_uninterrupted_run(source, tmp_path):
    # cosine (a per-step schedule), dropout and random crops all have state that resume must restore.
    straight = tiny(source, tmp_path, "straight", schedule="cosine", warmup_epochs=0.5)
    h_straight = train.fit(straight)
    assert list(h_straight.columns) == train.HISTORY_COLUMNS and len(h_straight) == 2

    class Disconnect(Exception):
        pass

    def cut(history):
        raise Disconnect  # the session dies right after epoch 1 is saved

    broken = replace(straight, out_dir=str(tmp_path / "broken"))
    with pytest.raises(Disconnect):
        train.fit(broken, callback=cut)
    assert len(pd.read_csv(tmp_path / "broken" / "history.csv")) == 1
    assert not (tmp_path / "broken" / ".lock").exists()  # the lock goes with the process's run
    h_resumed = train.fit(replace(broken, resume=True))

    assert same_weights(weights(tmp_path / "straight"), weights(tmp_path / "broken"))
    cols = ["epoch", "lr", "train_loss", "holdout_loss", "val_top1"]
    pd.testing.assert_frame_equal(h_straight[cols], h_resumed[cols])
    net, cfg, history = train.load_checkpoint(tmp_path / "broken", device="cpu")
    assert cfg == replace(broken, resume=True) and len(history) == 2 and not net.training


def test_a_time_limited_run_stops_cleanly_and_resumes_exactly(source, tmp_path, capsys):
    straight = tiny(source, tmp_path, "straight", epochs=3, schedule="linear", ema_decay=0.5)
    train.fit(straight)
    # Any epoch takes longer than a millisecond: the run stops after its first, checkpoint written.
    limited = replace(straight, out_dir=str(tmp_path / "limited"), time_limit=0.001)
    history = train.fit(limited)
    assert len(history) == 1 and "time limit" in capsys.readouterr().out
    summary = json.loads((tmp_path / "limited" / "summary.json").read_text())
    assert summary["finished"] is False and "time limit" in summary["stopped"] and summary["epochs_done"] == 1
    assert torch.load(tmp_path / "limited" / "checkpoint.pt", weights_only=True)["epoch"] == 1
    resumed = train.fit(replace(limited, resume=True, time_limit=None))
    assert len(resumed) == 3
    assert same_weights(weights(tmp_path / "straight"), weights(tmp_path / "limited"))
    assert json.loads((tmp_path / "limited" / "summary.json").read_text())["finished"] is True


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_run_after_the_epoch_in_progress(source, tmp_path, signum):
    before = signal.getsignal(signum)
    cfg = tiny(source, tmp_path, "signal", epochs=3, checkpoint_every=5)

    def ask_to_stop(history):
        if len(history) == 1:
            os.kill(os.getpid(), signum)  # while epoch 1's results are handled: the next step (epoch 2's only) runs

    history = train.fit(cfg, callback=ask_to_stop)
    assert len(history) == 2
    state = torch.load(tmp_path / "signal" / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2  # written on the stop, although checkpoint_every is 5
    assert json.loads((tmp_path / "signal" / "summary.json").read_text())["stopped"] == signal.Signals(signum).name
    assert signal.getsignal(signum) == before  # the caller's handler is back


def test_checkpoints_every_n_epochs_and_always_at_the_end(source, tmp_path, monkeypatch):
    saved = []
    save = checkpoint.save
    monkeypatch.setattr(checkpoint, "save", lambda path, state: (saved.append(state["epoch"]), save(path, state)))
    train.fit(tiny(source, tmp_path, "every", epochs=3, checkpoint_every=2))
    assert saved == [2, 3]
    assert len(pd.read_csv(tmp_path / "every" / "history.csv")) == 3  # the history is written every epoch


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(source, tmp_path, monkeypatch):
    calls = {"n": 0}
    apply = augment.apply_params

    def poisoned(*args, **kw):  # epoch 2 (its one step) gets NaN pixels
        calls["n"] += 1
        x = apply(*args, **kw)
        return x * float("nan") if calls["n"] > 1 else x

    monkeypatch.setattr(augment, "apply_params", poisoned)
    cfg = tiny(source, tmp_path, "nan", log_every=1)
    with pytest.raises(train.NonFiniteLossError, match=r"loss became nan in epoch 2.*checkpoint.*epoch 1"):
        train.fit(cfg)
    state = torch.load(tmp_path / "nan" / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert len(pd.read_csv(tmp_path / "nan" / "history.csv")) == 1


def test_ddp_two_gloo_processes_match_one_process(source, tmp_path):
    # Global batch 2 = 2 processes x 1. Without dropout, DDP must follow the one-process run.
    flags = ["--quick", "--source", source, "--classes", "none", "--holdout-per-class", "1",
             "--max-train-images", "2", "--max-eval-images", "none", "--batch-size", "2", "--lr", "0.001",
             "--epochs", "1", "--dropout", "0", "--no-progress", "--device", "cpu"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           "-m", "alexnet_nb.train", *flags, "--out-dir", str(tmp_path / "ddp")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert len(pd.read_csv(tmp_path / "ddp" / "history.csv")) == 1
    train.main([*flags, "--out-dir", str(tmp_path / "one")])
    a, b = weights(tmp_path / "ddp"), weights(tmp_path / "one")
    assert all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6) for k in a)
    assert b["classifier.fc8.bias"].abs().sum() > 0  # it starts at zero: the run did train


def test_resume_keeps_the_saved_recipe_and_writes_a_summary(source, tmp_path, capsys):
    # A Path is a natural thing to pass; it must survive config.json and the weights-only checkpoint.
    first = tiny(source, tmp_path, "run", epochs=1, recipe="blog", schedule="step")
    first = replace(first, out_dir=tmp_path / "run")
    train.fit(first, command="python -m alexnet_nb.train --epochs 1")
    out = capsys.readouterr().out
    assert "epoch   1/1" in out  # one line per epoch even without a progress bar
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["epochs_done"] == 1 and summary["command"] == "python -m alexnet_nb.train --epochs 1"
    assert summary["classes"] == 2 and summary["seed"] == first.seed and summary["recipe"] == "blog"
    assert summary["config"]["schedule"] == "step" and summary["train_loss_first_epoch"] > 0

    # Resumed as a user would after a disconnect: more epochs, but forgetting the other flags.
    later = config.Config(out_dir=str(tmp_path / "run"), resume=True, epochs=2, progress=False)
    history = train.fit(later)
    assert len(history) == 2
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["epochs"] == 2 and saved["lr"] == first.lr and saved["batch_size"] == first.batch_size
    assert saved["max_train_images"] == first.max_train_images and saved["recipe"] == "blog"
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["epochs_done"] == 2 and summary["finished"] is True
    assert summary["final"]["val_top1"] == round(float(history["val_top1"].iloc[-1]), 2)


def test_resume_works_whether_or_not_the_saved_run_used_fused_sgd(source, tmp_path):
    cfg = tiny(source, tmp_path, "fused", epochs=1, fused_sgd=True)
    train.fit(cfg)
    state = torch.load(tmp_path / "fused" / "checkpoint.pt", weights_only=True)
    assert state["optimizer"]["param_groups"][0]["fused"] is True
    train.fit(replace(cfg, resume=True, epochs=2, fused_sgd=False))  # e.g. saved on a GPU, resumed on a CPU
    state = torch.load(tmp_path / "fused" / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2 and not state["optimizer"]["param_groups"][0]["fused"]
    # And back: the saved state without the fused kernel, loaded into an optimizer that has it.
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, fused=True)
    saved = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9).state_dict()
    step.load_optimizer_state(opt, saved, fused=True)
    assert opt.param_groups[0]["fused"] is True


def test_weight_decay_on_weights_only_or_on_everything():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    groups = step.param_groups(net, 5e-4, decay_biases=False)
    assert [g["weight_decay"] for g in groups] == [5e-4, 0.0]
    assert all(p.ndim == 2 for p in groups[0]["params"]) and all(p.ndim == 1 for p in groups[1]["params"])
    assert len(step.param_groups(net, 5e-4, decay_biases=True)) == 1


def test_a_run_that_finished_is_not_told_to_resume(source, tmp_path, capsys):
    # The time limit is reached in the last epoch: the run is complete, not stopped.
    history = train.fit(tiny(source, tmp_path, "done", epochs=1, time_limit=0.001))
    out = capsys.readouterr().out
    assert len(history) == 1 and "--resume" not in out and "Stopped" not in out
    summary = json.loads((tmp_path / "done" / "summary.json").read_text())
    assert summary["finished"] is True and summary["stopped"] is None


def stop_after_steps(monkeypatch, k, signum=signal.SIGTERM):
    """Send ``signum`` to this process right after the k-th training step."""
    calls = {"n": 0}
    real = step.TrainStep.__call__

    def counted(self, *args):
        out = real(self, *args)
        calls["n"] += 1
        if calls["n"] == k:
            os.kill(os.getpid(), signum)
        return out

    monkeypatch.setattr(step.TrainStep, "__call__", counted)
    return calls


def test_a_stop_mid_epoch_checkpoints_that_step_and_resumes_from_it_exactly(source, tmp_path, monkeypatch, capsys):
    # 6 training images in steps of 2: 3 steps an epoch. Dropout, crops, flips, lighting, a per-step schedule and
    # the moving average all have state the resumed step must find as the uninterrupted run had it.
    straight = tiny(source, tmp_path, "straight", max_train_images=6, schedule="cosine", warmup_epochs=0.5,
                    ema_decay=0.5)
    h_straight = train.fit(straight)
    calls = stop_after_steps(monkeypatch, 5)  # epoch 2, step 2 of 3
    cut = replace(straight, out_dir=str(tmp_path / "cut"))
    h_cut = train.fit(cut)
    assert calls["n"] == 5  # it stopped at once, not at the end of the epoch
    assert len(h_cut) == 1 and len(pd.read_csv(tmp_path / "cut" / "history.csv")) == 1  # no row for half an epoch
    state = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and state["step"] == 2
    summary = json.loads((tmp_path / "cut" / "summary.json").read_text())
    assert summary["stopped"] == "SIGTERM" and summary["finished"] is False
    assert summary["stopped_in_epoch"] == {"epoch": 2, "step": 2, "steps": 3}
    assert "--resume" in capsys.readouterr().out
    monkeypatch.undo()

    h_resumed = train.fit(replace(cut, resume=True))
    assert "at step 2 of epoch 2" in capsys.readouterr().out
    assert same_weights(weights(tmp_path / "straight"), weights(tmp_path / "cut"))
    cols = ["epoch", "lr", "train_loss", "train_top1", "holdout_loss", "val_top1"]
    pd.testing.assert_frame_equal(h_straight[cols], h_resumed[cols])
    assert json.loads((tmp_path / "cut" / "summary.json").read_text())["stopped_in_epoch"] is None


def test_a_stop_in_the_first_epoch_and_an_old_checkpoint_without_a_step(source, tmp_path, monkeypatch):
    cfg = tiny(source, tmp_path, "first", max_train_images=4, epochs=1)  # 2 steps an epoch
    stop_after_steps(monkeypatch, 1)
    assert len(train.fit(cfg)) == 0  # stopped before any epoch ended: no history yet, but a checkpoint
    summary = json.loads((tmp_path / "first" / "summary.json").read_text())
    assert summary["epochs_done"] == 0 and summary["stopped_in_epoch"]["step"] == 1 and summary["final"] is None
    monkeypatch.undo()
    assert len(train.fit(replace(cfg, resume=True))) == 1
    # A checkpoint written before steps were recorded resumes at its epoch's end.
    path = tmp_path / "first" / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    for key in ("step", "partial"):
        state.pop(key)
    torch.save(state, path)
    assert len(train.fit(replace(cfg, resume=True, epochs=2))) == 2


def failing_compile(fn, **kw):
    """What torch.compile gives on a GPU Triton does not support: a module (or function) whose calls raise."""
    def fail(*args, **kwargs):
        raise torch._dynamo.exc.BackendCompilerFailed(
            failing_compile, RuntimeError("Found Tesla T4 which is too old to be supported by the triton GPU "
                                          "compiler"), None)

    if not isinstance(fn, torch.nn.Module):
        return fail

    class Compiled(torch.nn.Module):  # like torch's OptimizedModule: .train() and .eval() reach the network
        def __init__(self):
            super().__init__()
            self.orig_mod = fn

        forward = staticmethod(fail)
    return Compiled()


@pytest.mark.parametrize("scope", ["net", "step"])
def test_a_compiler_that_fails_falls_back_to_eager_and_trains_as_eager_does(source, tmp_path, monkeypatch, capsys,
                                                                             scope):
    eager = tiny(source, tmp_path, "eager", compile=False, compile_scope=scope)
    train.fit(eager)
    capsys.readouterr()
    monkeypatch.setattr(torch, "compile", failing_compile)
    history = train.fit(replace(eager, out_dir=str(tmp_path / "fallback"), compile=True))
    out = capsys.readouterr().out
    said = [line for line in out.splitlines() if "eager" in line]
    assert len(said) == 1 and "BackendCompilerFailed" in said[0] and "too old" in said[0]
    assert len(history) == 2
    assert same_weights(weights(tmp_path / "eager"), weights(tmp_path / "fallback"))
    assert json.loads((tmp_path / "fallback" / "summary.json").read_text())["compiled"] is False
