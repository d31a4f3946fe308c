"""Local response normalization (section 3.3) against the paper's formula and nn.LocalResponseNorm."""

import shutil

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from alexnet_nb import model
from alexnet_nb.lrn import LRN

CL = torch.channels_last


def paper_lrn(a, k=2.0, n=5, alpha=1e-4, beta=0.75, groups=1):
    """Section 3.3 with explicit loops over channels; each group of channels on its own."""
    if groups > 1:
        return torch.cat([paper_lrn(c, k, n, alpha, beta) for c in a.chunk(groups, dim=1)], dim=1)
    b = torch.empty_like(a)
    N = a.shape[1]
    for i in range(N):
        s = sum(a[:, j] ** 2 for j in range(max(0, i - n // 2), min(N - 1, i + n // 2) + 1))
        b[:, i] = a[:, i] / (k + alpha * s) ** beta
    return b


def activations(shape, scale=60.0, dtype=torch.float64, seed=0):
    # alpha * sum(a^2) ~ k at scale 60: the division matters, the test can tell a wrong alpha.
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype)


def test_model_lrn_is_this_one():
    assert model.LRN is LRN


@pytest.mark.parametrize("impl", ["slices", "torch", "triton"])
def test_lrn_matches_the_paper_formula(impl):
    a = activations((2, 9, 3, 3))
    expected = paper_lrn(a)
    assert not torch.allclose(expected, a / 2 ** 0.75, rtol=1e-3)  # it is not just a constant
    torch.testing.assert_close(LRN(impl=impl)(a), expected)
    # The pitfall: PyTorch's alpha is divided by n, so passing the paper's 1e-4 is wrong.
    naive = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)(a)
    assert not torch.allclose(naive, expected, rtol=1e-3)


@pytest.mark.parametrize("size", [3, 4, 5])
@pytest.mark.parametrize("layout", [torch.contiguous_format, CL])
def test_slices_match_torch_local_response_norm_forward_and_backward(size, layout):
    """fp32, against nn.LocalResponseNorm with alpha * n (also an even window: the extra channel goes after)."""
    a = activations((3, 16, 5, 4), dtype=torch.float32).contiguous(memory_format=layout)
    ours, ref = a.clone().requires_grad_(), a.clone().requires_grad_()
    out = LRN(size, alpha=2e-4)(ours)
    expected = nn.LocalResponseNorm(size, alpha=2e-4 * size, beta=0.75, k=2.0)(ref)
    torch.testing.assert_close(out, expected)
    g = activations(a.shape, scale=1.0, dtype=torch.float32, seed=1)
    out.backward(g)
    expected.backward(g)
    torch.testing.assert_close(ours.grad, ref.grad)


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("layout", [torch.contiguous_format, CL])
def test_slices_keep_the_layout_and_groups(groups, layout):
    a = activations((2, 12, 4, 3), dtype=torch.float32).contiguous(memory_format=layout)
    a.requires_grad_()
    out = LRN(groups=groups)(a)
    torch.testing.assert_close(out, paper_lrn(a.detach().double(), groups=groups).float())
    assert out.is_contiguous(memory_format=layout)
    out.sum().backward()
    assert a.grad.is_contiguous(memory_format=layout)


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("layout", [torch.contiguous_format, CL])
def test_slices_gradients(groups, layout):
    a = activations((2, 8, 3, 2), scale=30.0).contiguous(memory_format=layout).requires_grad_()
    assert torch.autograd.gradcheck(LRN(groups=groups), (a,))


@pytest.mark.parametrize("impl", ["slices", "torch", "triton"])
def test_lrn_groups_keep_each_gpu_separate(impl):
    a = activations((1, 8, 2, 2), dtype=torch.float32)
    b = a.clone()
    b[:, 4:] *= 3  # change the second GPU's maps only
    lrn = LRN(groups=2, impl=impl)
    torch.testing.assert_close(lrn(a)[:, :4], lrn(b)[:, :4])
    assert not torch.allclose(LRN(impl=impl)(a)[:, :4], LRN(impl=impl)(b)[:, :4])


class DtypesOfResults(TorchDispatchMode):
    """Records the dtype of every tensor that an operator returns."""

    def __init__(self):
        super().__init__()
        self.dtypes = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.dtypes.add(t.dtype)
        return out


def bf16_ulp(v):
    """The spacing of bf16 numbers (8 significant bits) at |v|."""
    return torch.exp2(torch.floor(torch.log2(v.abs())) - 7)


@pytest.mark.parametrize("scale", [1.0, 30.0, 300.0])
def test_bf16_stays_bf16_and_within_three_ulps(scale):
    a = torch.relu(activations((2, 32, 9, 9), scale=scale, dtype=torch.bfloat16)).contiguous(memory_format=CL)
    with DtypesOfResults() as seen:
        out = LRN(groups=2)(a)
    assert seen.dtypes == {torch.bfloat16}  # no fp32 copy of the activation in eager mode
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=CL)
    expected = paper_lrn(a.double(), groups=2)  # exact, from the same bf16 input
    nonzero = expected != 0
    ulps = ((out.double() - expected).abs()[nonzero] / bf16_ulp(expected[nonzero]))
    assert ulps.max() <= 3 and ulps.mean() < 0.6  # a correctly rounded result: <= 0.5, mean 0.25


def test_fp16_is_computed_in_fp32():
    # Activations in the hundreds: their squares (up to ~1e6) overflow fp16's 65504.
    a = torch.relu(activations((2, 16, 5, 5), scale=300.0, dtype=torch.float16))
    assert (a.float() ** 2).max() > 65504
    out = LRN()(a)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    torch.testing.assert_close(out.double(), paper_lrn(a.double()), rtol=2 ** -11, atol=0)  # correctly rounded


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("clang++") is None,
                    reason="torch.compile on a CPU needs a C++ compiler")
def test_compiled_lrn_matches_eager():
    """One compile, forward and backward: 12 to 18 s without inductor's cache on two busy CPU cores."""
    lrn = LRN(groups=2)
    a = activations((2, 16, 4, 3), dtype=torch.float32).contiguous(memory_format=CL)
    eager, compiled = a.clone().requires_grad_(), a.clone().requires_grad_()
    g = activations(a.shape, scale=1.0, dtype=torch.float32, seed=1)
    lrn(eager).backward(g)
    out = torch.compile(lrn, dynamic=False)(compiled)
    out.backward(g)
    torch.testing.assert_close(out, lrn(a))
    torch.testing.assert_close(compiled.grad, eager.grad)
    assert out.is_contiguous(memory_format=CL)


def test_invalid_impl():
    with pytest.raises(ValueError, match="impl"):
        LRN(impl="cudnn")
