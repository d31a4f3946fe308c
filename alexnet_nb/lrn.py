"""Local response normalization across channels (section 3.3 of the paper).

b_i = a_i / (k + alpha * sum_{j in the window of n channels around i} a_j^2)^beta,
with the paper's k=2, n=5, alpha=1e-4, beta=0.75.

``impl="slices"`` (the default) writes the window sum as ``n`` channel-shifted
slices of a zero-padded a^2: elementwise ops only, so the memory layout of the
input (channels_last included) is kept, eager mode makes no 5-D copies, and
``torch.compile`` fuses it into one kernel each way (measured on CPU with
torch 2.14: one fused C++ function forward, one backward, which saves only
the input and ``k + alpha * sum``). ``impl="torch"`` is the first version, kept for
benchmarks: it calls ``nn.LocalResponseNorm``, which unsqueezes to 5-D, pads
and runs ``avg_pool3d`` on an fp32 copy, and returns a contiguous tensor.
``impl="triton"`` runs hand-written kernels on a GPU, with the backward
written out (``alexnet_nb.lrn_triton``: why, and the formulas); off a GPU the
same formulas in PyTorch ops.
"""

import torch
import torch.nn.functional as F
from torch import nn

IMPLS = ("slices", "torch", "triton")


def window(size):
    """(before, after): the channels each side of channel c in its window (an even size puts the extra one after)."""
    return size // 2, size - 1 - size // 2


def window_sum(t, before, after):
    """sum_{j = c - before .. c + after} t_j over dim 1, as channel-shifted slices of a zero-padded ``t``: the
    paper's window is cut off at the first and last kernel map."""
    c = t.shape[1]
    padded = F.pad(t, (0, 0, 0, 0, before, after))
    out = padded[:, :c] + padded[:, 1:c + 1] if before + after else padded.clone()
    for i in range(2, before + after + 1):
        out += padded[:, i:i + c]
    return out


class LRN(nn.Module):
    """The paper's LRN; ``alpha`` is the paper's (not divided by n).

    ``torch.nn.LocalResponseNorm`` (like Caffe) divides alpha by n, so the
    paper's alpha=1e-4 is alpha * n = 5e-4 there. ``groups=2`` normalizes
    each GPU's half of the channels on its own, as on the paper's two GPUs.

    Precision: fp16 inputs are computed in fp32, since sums of squares of
    activations in the hundreds overflow fp16 (max 65504). bf16 inputs are
    computed in bf16 in eager mode: bf16 has fp32's range, and an fp32 copy
    would take twice the activation's bytes. Measured against an fp64
    reference on ReLU outputs of spread 1 to 300: under 3 bf16 ulps off
    (mean at most 0.46 ulp; a correctly rounded result is within 0.5).
    Compiled (CPU), the fused kernel computes in fp32: within 0.5 ulp.
    """

    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=2.0, groups=1, impl="slices"):
        super().__init__()
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        self.size, self.alpha, self.beta, self.k, self.groups, self.impl = size, alpha, beta, k, groups, impl
        if impl == "torch":
            self.norm = nn.LocalResponseNorm(size, alpha=alpha * size, beta=beta, k=k)

    def forward(self, x):
        norm = {"slices": self._slices, "torch": self._torch, "triton": self._triton}[self.impl]
        if self.groups == 1:
            return norm(x)
        return torch.cat([norm(c) for c in x.chunk(self.groups, dim=1)], dim=1)

    def _slices(self, x):
        xf = x.float() if x.dtype == torch.float16 else x
        total = window_sum(xf.square(), *window(self.size))
        return (xf * total.mul_(self.alpha).add_(self.k).pow(-self.beta)).to(x.dtype)

    def _triton(self, x):
        from alexnet_nb import lrn_triton

        return lrn_triton.lrn(x, self.size, self.alpha, self.beta, self.k)

    def _torch(self, x):
        # At least fp32, even under autocast: see the class docstring.
        return self.norm(x.to(torch.promote_types(x.dtype, torch.float32))).to(x.dtype)

    def extra_repr(self):
        return (f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}, groups={self.groups}, "
                f"impl={self.impl!r}")
