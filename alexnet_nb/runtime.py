"""The first check of every notebook: is there a GPU, and if not, how to get one in Colab.

The notebooks open in Colab on a T4 (their metadata asks for one), but a
runtime can still start without a GPU (none free, or the setting was changed).
``check_gpu`` says so at the top, before any long CPU fallback starts, with
the menu path that fixes it. It never fails: without a GPU every chapter
still runs, smaller or slower, as its ``without_gpu`` text says.
"""

import torch

from alexnet_nb import env

SWITCH = "Runtime > Change runtime type > Hardware accelerator: T4 GPU > Save, then Runtime > Run all"


def describe_gpu() -> str | None:
    """``"Tesla T4, 15.6 GB"`` for the GPU PyTorch sees, or None without one."""
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return f"{props.name}, {props.total_memory / 1e9:.1f} GB"


def check_gpu(without_gpu: str = "") -> torch.device:
    """Print which device this notebook will use; without a GPU, how to switch the runtime. Returns the device."""
    gpu = describe_gpu()
    if gpu:
        print(f"GPU: {gpu}.")
        return torch.device("cuda")
    where = (f"To use a GPU in Colab: {SWITCH}." if env.in_colab() else
             f"(In Colab: {SWITCH}.)")
    print(f"No GPU in this runtime: this notebook runs on the CPU. {where}")
    if without_gpu:
        print(f"Without a GPU: {without_gpu}")
    return torch.device("cpu")
