"""Checkpoints: what a run saves every few epochs, and how it is read back.

A checkpoint (``checkpoint.pt`` in the run folder) holds the weights (and their
moving average when the run keeps one), the optimizer, scaler and schedule
states, the random-number states, the history so far, every Config value and
the class list (:func:`training_state`). A checkpoint taken inside an epoch
(a stop request) also records the step reached (``step``, 0 at an epoch's end)
and the epoch's loss and hit sums so far (``partial``); older checkpoints lack
both and resume at their epoch's end. It is written atomically (``files.atomic_write``), so the
previous one stays whole until the new one is complete; there is only ever
one, since a checkpoint is ~460 MB.

``load_checkpoint`` rebuilds exactly the network the run trained (LRN variant,
pooling, activation, dropout placement) from the saved Config.
"""

import dataclasses
import pickle
import random
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from alexnet_nb import config as config_lib
from alexnet_nb import env, files, model, summary

NAME = "checkpoint.pt"


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used; the message names the file and what to do."""


def rng_state():
    np_state = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def path_of(path) -> Path:
    """``checkpoint.pt`` of a run folder, or the path itself when it names a file."""
    path = Path(path)
    return path / NAME if path.is_dir() else path


def training_state(parts, schedule, epochs_done, frame, cfg, train, progress=None) -> dict:
    """What a checkpoint holds after ``epochs_done`` whole epochs (``parts``: a ``step.Parts``; ``frame``: the
    history); ``progress`` (an ``epoch.Progress``) when a stop came inside the next epoch."""
    return dict(model=parts.net.state_dict(), optimizer=parts.optimizer.state_dict(),
                scaler=parts.scaler.state_dict(), scheduler=schedule.state_dict(),
                ema=parts.ema.state_dict() if parts.ema is not None else None, rng=rng_state(),
                epoch=epochs_done, step=progress.step if progress else 0,
                partial=progress.to_dict() if progress else None, history=frame.to_dict("list"),
                config=summary.values(cfg), num_classes=len(train.classes), classes=list(train.classes),
                names=list(train.names))


# Where a checkpoint could not be written (a full or read-only disk), what is still true and what to do.
KEPT = (" The previous checkpoint.pt, if any, is intact: continue with --resume once the folder can be written "
        "(or copy the run folder to one that can, and --resume there with --out-dir).")


def save(path, state: dict) -> None:
    def write(tmp):
        # Through a Python file, not a path: torch's own writer reports a full disk as "unexpected pos", without
        # the errno, where Python's raises OSError(ENOSPC), which files.atomic_write can name.
        with open(tmp, "wb") as f:
            torch.save(state, f)

    files.atomic_write(path, write, fix=KEPT)


def _others(path: Path) -> str:
    """What else in the folder could stand in for a damaged checkpoint."""
    found = sorted(p.name for p in path.parent.glob("*.pt") if p != path)
    found += sorted(p.name for p in path.parent.glob(f".{path.name}.*.tmp"))
    if found:
        return (f" Other files there: {', '.join(found)} (a .tmp file is the write that was cut off; "
                "it is complete only if its size matches a normal checkpoint).")
    return " There is no other checkpoint in that folder (only the latest is kept, by design)."


def _damaged(path: Path, e: Exception) -> str:
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return (f"{path} is damaged and cannot be read ({path.stat().st_size:,} bytes; {reason}): it was probably cut "
            "off while being copied or written outside this suite. Start the run again with --overwrite (its "
            "history.csv keeps the curves so far), or restore the file from a copy." + _others(path))


def read(path) -> dict:
    """A checkpoint as a dict, on the CPU (RNG states must stay CPU tensors; ``optimizer.load_state_dict``
    moves the momentum to the parameters' device). A damaged or foreign file raises :class:`CheckpointError`."""
    path = path_of(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: train the run first, or pass its run folder.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" not in str(e):
            raise CheckpointError(_damaged(path, e)) from None
        # Our checkpoints hold only tensors and plain values, so the safe loader's refusal means another kind of
        # file. Torch's hint to load it with weights_only=False (running whatever code it holds) is left out.
        why = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\.\s|\n|$)", str(e), re.S)
        raise CheckpointError(
            f"{path} is not a checkpoint of this project: torch's safe loader refused it"
            + (f" ({why.group(1).strip()})" if why else "") + ". This project's checkpoints hold only tensors and "
            "plain values; pass the run folder (or checkpoint.pt) of a run trained with alexnet_nb.") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as e:
        raise CheckpointError(_damaged(path, e)) from None
    missing = [k for k in ("model", "config", "epoch", "history") if k not in state]
    if missing:
        raise CheckpointError(f"{path} is not a checkpoint of this suite (it lacks {', '.join(missing)}).")
    return state


def history_frame(state) -> pd.DataFrame:
    """The history stored in a checkpoint (older ones lack the columns added since: they read as missing)."""
    return pd.DataFrame(state["history"])


# What may change when a run is resumed: how it runs, not what it computes (every LRN implementation computes
# the same function, and the LRN has no weights).
RESUME_MAY_CHANGE = ("epochs", "device", "precision", "compile", "fused_sgd", "eval_batch_size", "progress",
                     "log_every", "resume", "overwrite", "name", "out_dir", "source", "checkpoint_every",
                     "time_limit", "lrn_impl", "backup_dir", "backup_every")


def resumed_config(cfg, saved, say=print):
    """The saved run's recipe with this call's ``RESUME_MAY_CHANGE`` settings; says what it ignored."""
    differ = [f.name for f in dataclasses.fields(config_lib.Config) if f.name not in RESUME_MAY_CHANGE
              and getattr(cfg, f.name) != getattr(saved, f.name)]
    if differ:
        say("Resuming with the run's saved settings: " + ", ".join(
            f"{k}={getattr(saved, k)!r} (not {getattr(cfg, k)!r})" for k in differ))
    keep = {k: getattr(cfg, k) for k in RESUME_MAY_CHANGE}
    if keep["source"] is None:  # not given again: the data the run started on
        keep["source"] = saved.source
    return dataclasses.replace(saved, **keep)


def check_classes(state, classes, source, path) -> None:
    """A resumed run must see the classes in the order it was trained on, or its outputs mean other classes."""
    saved = list(state.get("classes") or [])
    if saved and saved != list(classes):
        first = next((i for i, (a, b) in enumerate(zip(saved, classes)) if a != b), min(len(saved), len(classes)))
        pair = (f"label {first} is {saved[first]} in the checkpoint but {classes[first]} in the data"
                if first < min(len(saved), len(classes)) else
                f"the checkpoint has {len(saved)} classes, the data {len(classes)}")
        raise CheckpointError(
            f"the checkpoint {path} was trained on another class order than the data at {source} lists "
            f"({pair}): resuming would silently relabel the network's outputs. Resume with the same copy of "
            "the dataset (its wnids.txt order), or start a new run.")


def load_checkpoint(path, device=None, weights="scored"):
    """(network in eval mode, Config, history DataFrame) from a run folder or a ``checkpoint.pt``.

    ``weights="scored"`` gives the weights the history's accuracies were measured
    on: the moving average when the run kept one (``ema_decay`` > 0), else the
    trained weights; ``weights="trained"`` always gives the trained ones.
    """
    device = torch.device(device) if device is not None else env.default_device()
    state = read(path)
    cfg = config_lib.from_dict(state["config"])
    net = model.from_config(cfg, state["num_classes"])
    ema = state.get("ema")
    if weights == "scored" and ema:
        net.load_state_dict({k[len("module."):]: v for k, v in ema.items() if k.startswith("module.")})
    else:
        net.load_state_dict(state["model"])
    net.to(device).eval()
    if cfg.channels_last:  # the layout the run computed in: the same kernels, the same numbers
        net.to(memory_format=torch.channels_last)
    return net, cfg, history_frame(state)
