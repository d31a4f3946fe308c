"""Every recipe and every ablation switch trains one quick epoch, and its checkpoint rebuilds the exact network."""

import subprocess
import sys

import pandas as pd
import pytest
import torch

from alexnet_nb import checkpoint, config, evaluate, model, synthetic, train


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return str(synthetic.make_tiny_imagenet(root, num_classes=2, train_per_class=4, val_per_class=2))


def one_epoch(source, out_dir, recipe="paper", **kw):
    cfg = config.recipe(recipe, quick=True, **{**dict(source=source, out_dir=str(out_dir), classes=None,
                                                      holdout_per_class=1, max_train_images=2, batch_size=2,
                                                      epochs=1, progress=False, deterministic=True), **kw})
    return cfg, train.fit(cfg)


@pytest.mark.parametrize("name", list(config.RECIPES))
def test_every_recipe_trains_a_quick_epoch(source, tmp_path, name):
    cfg, history = one_epoch(source, tmp_path / name, name)
    assert len(history) == 1 and history["train_loss"].notna().all()
    saved = checkpoint.read(tmp_path / name)
    assert saved["config"]["recipe"] == name


# Every ablation switch and training option, in three runs of switches that can go together (each run
# costs a checkpoint of ~460 MB): the architecture, the paper's other network details, training and scoring.
SWITCHES = {
    "architecture": dict(lrn=False, pool=2, activation="tanh", dropout_position="before", init="pytorch"),
    "network-details": dict(groups=2, lrn_impl="torch", lrn_alpha=2e-4, init="paper", dropout=0.0),
    "training": dict(crop_area_min=0.25, crop_size=64, ema_decay=0.5, eval_flip=True, decay_biases=True,
                     max_train_images=4),  # 2 steps: the moving average starts as a copy of the weights
}


@pytest.mark.parametrize("name", list(SWITCHES))
def test_every_switch_trains_and_reloads_as_the_network_it_trained(source, tmp_path, name):
    cfg, history = one_epoch(source, tmp_path / name, **SWITCHES[name])
    net, loaded_cfg, loaded_history = checkpoint.load_checkpoint(tmp_path / name, device="cpu")
    assert loaded_cfg == cfg
    built = model.from_config(cfg, 2)
    assert model.layer_summary(net).equals(model.layer_summary(built))  # same layers, shapes and sizes
    # The reloaded network scores the holdout exactly as the run did at its last epoch.
    (_, holdout, _), _ = train.prepare_data(cfg, torch.device("cpu"), progress=False)
    again = evaluate.evaluate(net, holdout, cfg.eval_batch_size, "cpu", cfg.crop_size, cfg.image_size,
                              channels_last=cfg.channels_last, flip=cfg.eval_flip)
    assert again["top1"] == pytest.approx(history["holdout_top1"].iloc[-1])
    assert again["loss"] == pytest.approx(history["holdout_loss"].iloc[-1], rel=1e-5)
    pd.testing.assert_frame_equal(loaded_history, history, check_dtype=False)
    if cfg.ema_decay:  # the moving average is what was scored, and what load_checkpoint gives by default
        assert (history["scored"] == "ema").all()
        trained, _, _ = checkpoint.load_checkpoint(tmp_path / name, device="cpu", weights="trained")
        w = "features.conv1.weight"
        assert not torch.equal(net.state_dict()[w], trained.state_dict()[w])
        assert torch.equal(trained.state_dict()[w], checkpoint.read(tmp_path / name)["model"][w])
    if cfg.eval_flip:  # the flip score sits beside the centre crop's, never in its place
        assert list(history.columns) == train.HISTORY_COLUMNS + train.FLIP_COLUMNS
        assert history[["val_top1", "val_flip_top1"]].notna().all().all()
        assert again["flip_top1"] == pytest.approx(history["holdout_flip_top1"].iloc[-1])


def test_the_cli_runs_a_named_recipe(source, tmp_path):
    done = subprocess.run([sys.executable, "-m", "alexnet_nb.train", "--recipe", "blog", "--quick", "--source",
                           source, "--classes", "none", "--holdout-per-class", "1", "--max-train-images", "2",
                           "--batch-size", "2", "--epochs", "1", "--no-progress", "--out-dir", str(tmp_path / "b")],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "blog recipe" in done.stdout and "epoch   1/1" in done.stdout
    assert checkpoint.read(tmp_path / "b")["config"]["schedule"] == "step"
