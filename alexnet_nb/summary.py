"""``summary.json``: what a reader of ``results/`` needs beside the curves.

Written into the run folder with ``history.csv`` after every epoch: the command,
the recipe and every Config value, the final scores (the reported figures: the
last epoch's, single centre crop), the best holdout epoch (how recipes are
compared), whether the run finished or was stopped (and where, if inside an
epoch), its speed, the machine and the versions.
"""

import dataclasses
import json
import os
import sys

import torch

from alexnet_nb import files

SCORES = ["holdout_top1", "holdout_top5", "val_top1", "val_top5"]


def values(cfg) -> dict:
    """Every Config value as plain JSON data."""
    return dataclasses.asdict(cfg)


def version(package):
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed(package)
    except PackageNotFoundError:
        return "not installed"


def device_name(device) -> str:
    device = torch.device(device)
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"


def versions() -> dict:
    return {"python": sys.version.split()[0], "torch": torch.__version__,
            "torchvision": version("torchvision"), "alexnet_nb": version("alexnet_nb")}


def run_summary(history, cfg, num_classes, device, precision, world=1, command=None, compiled=False,
                stopped=None, images=None, stopped_in_epoch=None) -> dict:
    """The summary of the run so far. ``stopped_in_epoch`` (``{"epoch", "step", "steps"}``) says where a stop
    inside an epoch left it; before the first whole epoch, the scores and speeds are None."""
    done = int(history["epoch"].iloc[-1]) if len(history) else 0
    s = {
        "run": cfg.run_dir().name,
        "command": command or "alexnet_nb.train.fit(Config(...)) from Python; see config",
        "recipe": cfg.recipe,
        "classes": num_classes,
        "images": images or {},  # how many train, holdout and val images: the scores' sample sizes
        "epochs_done": done, "epochs_planned": cfg.epochs,
        "finished": done >= cfg.epochs,
        "stopped": stopped,
        "stopped_in_epoch": stopped_in_epoch,
        "final": None, "best_by_holdout": None, "scored_weights": None, "train_loss_first_epoch": None,
        "wall_time_s": None, "train_images_per_s_median": None,
        "device": device_name(device),
        "processes": world, "precision": precision, "compiled": bool(compiled), "seed": cfg.seed,
        "versions": versions(),
        "config": values(cfg),
    }
    if len(history):
        last = history.iloc[-1]
        best = history.loc[history["holdout_top1"].idxmax()]  # chosen on the holdout, never on val
        extra = [c for c in history.columns if "_flip_" in c]
        s.update({
            "final": {k: round(float(last[k]), 2) for k in SCORES + extra},
            "best_by_holdout": {"epoch": int(best["epoch"]), **{k: round(float(best[k]), 2) for k in SCORES}},
            "scored_weights": str(last.get("scored", "weights")),
            "train_loss_first_epoch": round(float(history["train_loss"].iloc[0]), 4),
            "wall_time_s": round(float(last["elapsed_s"]), 1),
            "train_images_per_s_median": round(float(history["images_per_s"].median()), 1),
        })
    return s


def write(run_dir, frame, cfg, num_classes, device, precision, world, command, compiled=False, stopped=None,
          images=None, stopped_in_epoch=None):
    """``history.csv`` and ``summary.json`` of the run so far, each written atomically."""
    files.atomic_write(run_dir / "history.csv", lambda tmp: frame.to_csv(tmp, index=False))
    s = run_summary(frame, cfg, num_classes, device, precision, world, command, compiled, stopped, images,
                    stopped_in_epoch)
    files.atomic_write(run_dir / "summary.json", lambda tmp: tmp.write_text(json.dumps(s, indent=2)))
    return s
