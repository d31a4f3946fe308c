"""The architecture drawing of the model chapter, made from ``model.layer_summary`` so it cannot disagree with the code.

One box per layer with weights (conv1..conv5, fc6..fc8), tall in proportion to
its output's side for convolutions; under each box, its kernels, the layers
that follow it up to the next box (activation, LRN, pooling, dropout) and the
shape that leaves it. Any network ``layer_summary`` can summarize is drawn the
same way, so a switch of ``model.AlexNet`` (no LRN, 2x2 pooling, tanh, dropout
before fc6) shows up in the picture.
"""

import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

WEIGHTED = ("Conv2d", "Linear")
AFTER = {"ReLU": "ReLU", "Tanh": "tanh", "LRN": "LRN", "Dropout": "dropout", "LocalResponseNorm": "LRN"}


def blocks(summary) -> list[dict]:
    """``layer_summary`` rows grouped: each layer with weights, and the layers after it up to the next one."""
    found = []
    for row in summary[summary["layer"] != "total"].itertuples():
        if row.type in WEIGHTED:
            found.append(dict(name=row.layer, type=row.type, kernel=row.kernel, output=row.output,
                              params=int(row.params), then=[], leaves=row.output))
        elif found:
            step = f"max-pool {row.kernel}" if row.type == "MaxPool2d" else AFTER.get(row.type, row.type)
            found[-1]["then"].append(step)
            found[-1]["leaves"] = row.output
    return found


def _size(params):
    return f"{params / 1e6:.1f}M" if params >= 1e6 else f"{params / 1e3:.0f}K"


def _side(output):
    # "55x55x96" -> 55; a fully connected "4096" has no side.
    parts = output.split("x")
    return int(parts[0]) if len(parts) == 3 else None


def draw(summary, input_shape="227x227x3", title="AlexNet, from model.layer_summary"):
    """The network as a row of boxes; returns the Figure. ``summary`` is ``model.layer_summary(net)``."""
    parts = blocks(summary)
    fig, ax = plt.subplots(figsize=(1.55 * (len(parts) + 1), 4.8))
    step, width, base = 1.5, 1.05, 3.2
    sides = [_side(p["output"]) for p in parts]
    largest = max([s for s in sides if s] or [1])

    def box(x, height, colour, name):
        ax.add_patch(FancyBboxPatch((x - width / 2, base - height / 2), width, height,
                                    boxstyle="round,pad=0.02", facecolor=colour, edgecolor="black"))
        ax.text(x, base, name, ha="center", va="center", fontsize=10, fontweight="bold")

    box(0, 2.6, "#eeeeee", "input")
    ax.text(0, base - 1.55, input_shape, ha="center", va="top", fontsize=7.5)
    for i, (part, side) in enumerate(zip(parts, sides), start=1):
        x = i * step
        height = 0.8 + 1.8 * (side / largest) if side else (1.3 if part["name"] != parts[-1]["name"] else 0.8)
        box(x, height, "#cfe2f3" if part["type"] == "Conv2d" else "#fce5cd", part["name"])
        ax.annotate("", xy=(x - width / 2, base), xytext=(x - step + width / 2, base),
                    arrowprops=dict(arrowstyle="->", lw=1))
        units = part["output"].split("x")[-1]
        if part["kernel"]:
            size, stride = part["kernel"].split("/")
            lines = [f"{units} kernels {size}", f"stride {stride}", f"-> {part['output']}", *part["then"]]
        else:
            lines = [f"{units} units", *part["then"]]
        if part["leaves"] != part["output"]:
            lines.append(f"-> {part['leaves']}")
        ax.text(x, base - 1.55, "\n".join(lines), ha="center", va="top", fontsize=7.5)
        ax.text(x, base + 1.55, f"{_size(part['params'])} params", ha="center", va="bottom", fontsize=7,
                color="dimgray")
    ax.set(xlim=(-0.8, len(parts) * step + 0.8), ylim=(-0.2, 5.0), title=title)
    ax.axis("off")
    fig.tight_layout()
    return fig
