"""Settings: every bad value is refused when the Config is made, recipes are data, the CLI speaks in one line."""

import dataclasses
import subprocess
import sys

import pytest

from alexnet_nb import cli, config


@pytest.mark.parametrize("field, value, says", [
    ("classes", 0, "from 1 to 200"),
    ("classes", 500, "from 1 to 200"),
    ("max_eval_images", 0, ">= 1"),
    ("max_train_images", 0, ">= 1"),
    ("epochs", 0, ">= 1"),
    ("batch_size", 0, ">= 1"),
    ("crop_size", 80, "images are 64x64"),
    ("log_every", 0, ">= 1"),
    ("eval_batch_size", 0, ">= 1"),
    ("lr", -1.0, "positive"),
    ("lr", float("nan"), "positive"),
    ("momentum", 1.0, "below 1"),
    ("dropout", 1.0, "below 1"),
    ("image_size", 224, "must be 227"),
    ("schedule", "cosine-ish", "one of paper, step, linear, cosine, onecycle"),
    ("crop_area_min", 0.0, "above 0"),
    ("crop_ratio", 0.5, ">= 1"),
    ("ema_decay", 1.0, "below 1"),
    ("checkpoint_every", 0, ">= 1"),
    ("time_limit", 0.0, "positive"),
    ("pool", 4, "one of 2, 3"),
    ("activation", "gelu", "relu, tanh"),
    ("name", "a/b", "--out-dir"),
    ("device", "tpu", "cpu, cuda"),
    ("epochs", "30", ">= 1"),  # a string from a notebook is refused, not compared
])
def test_every_bad_value_is_refused_naming_flag_value_and_what_is_allowed(field, value, says):
    with pytest.raises(config.ConfigError) as e:
        config.Config(**{field: value})
    message = str(e.value)
    assert message.startswith(f"--{field.replace('_', '-')} {value}: ") and says in message, message
    assert "\n" not in message


def test_defaults_are_valid_and_changes_are_checked_too():
    cfg = config.Config()
    with pytest.raises(config.ConfigError):
        dataclasses.replace(cfg, epochs=-3)


def test_recipes_are_named_overridable_and_recorded():
    assert config.recipe("paper") == config.Config()  # the paper's recipe is the default
    blog = config.recipe("blog", epochs=3)
    assert blog.recipe == "blog" and blog.epochs == 3 and blog.schedule == "step" and blog.crop_size == 64
    assert (blog.step_size, blog.step_gamma, blog.init, blog.dropout_position) == (7, 0.1, "pytorch", "before")
    assert blog.lrn_alpha == 2e-4 and blog.decay_biases and blog.pca_lighting == 0
    assert (blog.lr, blog.momentum, blog.weight_decay, blog.batch_size) == (0.01, 0.9, 5e-4, 128)
    quick = config.recipe("blog", quick=True)
    assert quick.schedule == "step" and quick.classes == config.QUICK["classes"]
    with pytest.raises(config.ConfigError, match="must be one of paper, blog"):
        config.recipe("nope")
    for name, r in config.RECIPES.items():  # every recipe is valid and says what it is for
        assert r.summary and r.why and config.recipe(name).recipe == name
    assert len([n for n in config.RECIPES if n.startswith("ours-")]) >= 2


def test_differences_between_recipes_are_listed():
    fields = {f for f, _, _ in config.differences("paper", "blog")}
    assert {"crop_size", "schedule", "init", "lrn_alpha", "dropout_position", "decay_biases"} <= fields
    assert "recipe" not in fields and "lr" not in fields


def test_device_availability_is_checked_before_work(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = config.Config(device="cuda")  # a valid value: it may be loaded on another machine
    with pytest.raises(config.ConfigError, match="no CUDA GPU"):
        config.check_device(cfg)
    config.check_device(config.Config(device="cpu"))


def test_cli_flags_mirror_the_config_and_recipes():
    cfg = cli.parse_config(["--classes", "10", "--epochs", "3", "--no-channels-last",
                            "--lr", "0.02", "--max-train-images", "none", "--schedule", "cosine"])
    assert (cfg.classes, cfg.epochs, cfg.channels_last, cfg.lr, cfg.max_train_images, cfg.schedule) == \
        (10, 3, False, 0.02, None, "cosine")
    assert cfg.batch_size == 128 and cfg.momentum == 0.9 and cfg.weight_decay == 5e-4  # the paper's recipe
    quick = cli.parse_config(["--quick", "--epochs", "1"])
    assert quick.epochs == 1 and quick.classes == config.Config.quick().classes
    blog = cli.parse_config(["--recipe", "blog", "--quick", "--lr", "0.005"])
    assert blog.recipe == "blog" and blog.schedule == "step" and blog.lr == 0.005 and blog.batch_size == 8
    assert cli.parse_config(["--compile"]).compile is True and cli.parse_config([]).compile is None
    helptext = cli.parser().format_help()
    for name in config.RECIPES:
        assert f"  {name} " in helptext


@pytest.mark.parametrize("args, says", [
    (["--classes", "0"], "--classes 0: must be from 1 to 200"),
    (["--crop-size", "80"], "--crop-size 80: must be from 1 to 64"),
    (["--epochs", "zero"], "argument --epochs: invalid"),
    (["--recipe", "nope"], "argument --recipe: invalid choice"),
    (["--device", "cuda:7"], "--device cuda:7"),
    (["--source", "/no/such/tiny-imagenet-200"], "no such file or folder: /no/such/tiny-imagenet-200"),
])
def test_cli_errors_are_one_line_with_status_2(args, says, capsys, tmp_path, monkeypatch):
    from alexnet_nb import train

    monkeypatch.setenv("ALEXNET_NB_RUNS", str(tmp_path))
    with pytest.raises(SystemExit) as e:
        train.main(args)
    assert e.value.code == 2
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], out.err


def test_the_real_process_prints_one_line_and_no_traceback():
    done = subprocess.run([sys.executable, "-m", "alexnet_nb.train", "--classes", "0"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "error: --classes 0: must be from 1 to 200 (Tiny ImageNet has 200 classes), or none " \
                          "for all of them\n"
