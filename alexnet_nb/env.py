"""Where data and runs live, and whether we are in quick mode.

Quick mode is switched on by the test harness (``notebooks/conftest.py`` sets
``ALEXNET_NB_QUICK=1``): notebooks then run top to bottom in seconds on a
small generated dataset, offline, on a CPU. Nobody edits a notebook for it.
"""

import os
import sys
from pathlib import Path

import torch


def quick_mode() -> bool:
    """True when the test harness asked for the small, offline run."""
    return os.environ.get("ALEXNET_NB_QUICK", "") not in ("", "0")


def in_colab() -> bool:
    return "google.colab" in sys.modules


def data_dir() -> Path:
    """Folder for the dataset and its decoded cache (``ALEXNET_NB_DATA``, default ``data``)."""
    return Path(os.environ.get("ALEXNET_NB_DATA", "data"))


def runs_dir() -> Path:
    """Folder for checkpoints and histories (``ALEXNET_NB_RUNS``, default ``runs``)."""
    return Path(os.environ.get("ALEXNET_NB_RUNS", "runs"))


def default_device() -> torch.device:
    """The GPU when there is one, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")
