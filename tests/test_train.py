"""The training engine: resume, divergence, the CLI, DDP (all on a CPU, tiny data)."""

import json
import os
import subprocess
import sys
from dataclasses import replace

import pandas as pd
import pytest
import torch

from alexnet_nb import augment, synthetic, train


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
    return train.Config.quick(**cfg)


def weights(run_dir):
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]


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
    h_resumed = train.fit(replace(broken, resume=True))

    a, b = weights(tmp_path / "straight"), weights(tmp_path / "broken")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    cols = ["epoch", "lr", "train_loss", "holdout_loss", "val_top1"]
    pd.testing.assert_frame_equal(h_straight[cols], h_resumed[cols])
    net, config, history = train.load_checkpoint(tmp_path / "broken", device="cpu")
    assert config == replace(broken, resume=True) and len(history) == 2 and not net.training


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


def test_cli_flags_mirror_the_config():
    cfg = train.config_from_args(["--classes", "10", "--epochs", "3", "--no-channels-last",
                                  "--lr", "0.02", "--max-train-images", "none", "--schedule", "cosine"])
    assert (cfg.classes, cfg.epochs, cfg.channels_last, cfg.lr, cfg.max_train_images, cfg.schedule) == \
        (10, 3, False, 0.02, None, "cosine")
    assert cfg.batch_size == 128 and cfg.momentum == 0.9 and cfg.weight_decay == 5e-4  # the paper's recipe
    quick = train.config_from_args(["--quick", "--epochs", "1"])
    assert quick.epochs == 1 and quick.classes == train.Config.quick().classes
    assert train.resolve_precision("auto", "cpu")[0] == "fp32"
    assert train.resolve_precision("fp16", "cpu")[2]  # fp16 always comes with a GradScaler


def test_ddp_two_gloo_processes_match_one_process(source, tmp_path):
    # Global batch 2 = 2 processes x 1. Without dropout, DDP must follow the one-process run.
    flags = ["--quick", "--source", source, "--classes", "none", "--holdout-per-class", "1",
             "--max-train-images", "2", "--max-eval-images", "none", "--batch-size", "2", "--lr", "0.001",
             "--epochs", "1", "--dropout", "0", "--no-progress", "--device", "cpu"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           "-m", "alexnet_nb.train", *flags, "--out-dir", str(tmp_path / "ddp")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert len(pd.read_csv(tmp_path / "ddp" / "history.csv")) == 1
    train.main([*flags, "--out-dir", str(tmp_path / "one")])
    a, b = weights(tmp_path / "ddp"), weights(tmp_path / "one")
    assert all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6) for k in a)
    assert b["classifier.fc8.bias"].abs().sum() > 0  # it starts at zero: the run did train


def test_resume_keeps_the_saved_recipe_and_writes_a_summary(source, tmp_path):
    # A Path is a natural thing to pass; it must survive config.json and the weights-only checkpoint.
    first = tiny(source, tmp_path, "run", epochs=1)
    first = replace(first, out_dir=tmp_path / "run")
    train.fit(first, command="python -m alexnet_nb.train --epochs 1")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["epochs_done"] == 1 and summary["command"] == "python -m alexnet_nb.train --epochs 1"
    assert summary["classes"] == 2 and summary["seed"] == first.seed

    # Resumed as a user would after a disconnect: more epochs, but forgetting the other flags.
    later = train.Config(out_dir=str(tmp_path / "run"), resume=True, epochs=2, progress=False)
    history = train.fit(later)
    assert len(history) == 2
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["epochs"] == 2 and saved["lr"] == first.lr and saved["batch_size"] == first.batch_size
    assert saved["max_train_images"] == first.max_train_images
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["epochs_done"] == 2
    assert summary["final"]["val_top1"] == round(float(history["val_top1"].iloc[-1]), 2)
