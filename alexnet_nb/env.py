"""Where data, its cache and runs live, and whether we are in quick mode.

Quick mode is switched on by the test harness (``notebooks/conftest.py`` sets
``ALEXNET_NB_QUICK=1``): notebooks then run top to bottom in seconds on a
small generated dataset, offline, on a CPU. Nobody edits a notebook for it.

Environment variables, all optional:

* ``ALEXNET_NB_DATA``: the data folder (dataset, downloads, decoded cache).
  Default ``data``; in Colab ``/content/data``, the runtime's fast local disk
  (a mounted Google Drive is slow and small, and every notebook of the runtime
  finds there what the first one downloaded).
* ``ALEXNET_NB_CACHE``: where decoded splits are cached (about 1.3 GB).
  Default ``<data folder>/cache``.
* ``ALEXNET_NB_RUNS``: checkpoints and histories. Default ``runs``.
* ``ALEXNET_NB_URL``, ``ALEXNET_NB_DRIVE_ID``: a mirror or a Google Drive copy of the
  official zip, for when its URL is down (see ``data.dataset_source``).
* ``ALEXNET_NB_QUICK``: the small offline run described above.
"""

import os
import sys
from pathlib import Path

import torch

COLAB_DATA = Path("/content/data")


def quick_mode() -> bool:
    """True when the test harness asked for the small, offline run."""
    return os.environ.get("ALEXNET_NB_QUICK", "") not in ("", "0")


def in_colab() -> bool:
    return "google.colab" in sys.modules


def data_dir() -> Path:
    """Folder for the dataset, downloads and cache (``ALEXNET_NB_DATA``: ``data``, in Colab ``/content/data``)."""
    if os.environ.get("ALEXNET_NB_DATA"):
        return Path(os.environ["ALEXNET_NB_DATA"])
    return COLAB_DATA if in_colab() else Path("data")


def cache_dir() -> Path:
    """Folder for decoded splits (``ALEXNET_NB_CACHE``, default ``data_dir() / "cache"``)."""
    if os.environ.get("ALEXNET_NB_CACHE"):
        return Path(os.environ["ALEXNET_NB_CACHE"])
    return data_dir() / "cache"


def runs_dir() -> Path:
    """Folder for checkpoints and histories (``ALEXNET_NB_RUNS``, default ``runs``)."""
    return Path(os.environ.get("ALEXNET_NB_RUNS", "runs"))


def default_device() -> torch.device:
    """The GPU when there is one, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")
