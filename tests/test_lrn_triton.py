"""The LRN's hand-written kernels (alexnet_nb.lrn_triton): their formulas on the CPU, the kernels under Triton's
interpreter, and the check the speed matrix runs on a GPU before it times them."""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from alexnet_nb import lrn_triton
from alexnet_nb.lrn import LRN, window, window_sum

CL = torch.channels_last


def relu_like(shape, scale=40.0, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g, dtype=torch.float64) * scale).to(dtype)


@pytest.mark.parametrize("size", [3, 4, 5])
@pytest.mark.parametrize("layout", [torch.contiguous_format, CL])
def test_the_written_out_backward_is_autograds_of_the_slices(size, layout):
    x = relu_like((2, 11, 4, 3)).contiguous(memory_format=layout)
    g = relu_like(x.shape, scale=1.0, seed=1) - 0.5
    ours, ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = LRN(size, alpha=2e-4, impl="triton")(ours)
    expected = LRN(size, alpha=2e-4, impl="slices")(ref)
    torch.testing.assert_close(out, expected)
    out.backward(g)
    expected.backward(g)
    torch.testing.assert_close(ours.grad, ref.grad)
    # the correction term through the window matters here: dropping it would be far off
    assert not torch.allclose(ours.grad, g * (2 + 2e-4 * window_sum(x * x, *window(size))) ** -0.75, rtol=1e-3)


@pytest.mark.parametrize("groups", [1, 2])
def test_the_operators_gradient_passes_gradcheck(groups):
    x = relu_like((2, 8, 3, 2), scale=30.0).contiguous(memory_format=CL).requires_grad_()
    assert torch.autograd.gradcheck(LRN(groups=groups, impl="triton"), (x,))


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("clang++") is None,
                    reason="torch.compile on a CPU needs a C++ compiler")
def test_compiling_traces_the_operator_and_its_backward():
    lrn = LRN(groups=2, impl="triton")
    x = relu_like((2, 16, 4, 3), dtype=torch.float32).contiguous(memory_format=CL)
    g = relu_like(x.shape, scale=1.0, seed=1, dtype=torch.float32)
    eager, compiled = x.clone().requires_grad_(), x.clone().requires_grad_()
    lrn(eager).backward(g)
    out = torch.compile(lrn, dynamic=False, fullgraph=True)(compiled)
    out.backward(g)
    torch.testing.assert_close(out, lrn(x))
    torch.testing.assert_close(compiled.grad, eager.grad)
    # the device check's compiled pair: here it traces the PyTorch formulas (a GPU traces the kernels)
    y, dx = lrn_triton._compiled(x, g, 5, 1e-4, 0.75, 2.0)
    torch.testing.assert_close(y, lrn_triton.reference_forward(x, 5, 1e-4, 0.75, 2.0))
    torch.testing.assert_close(dx, lrn_triton.reference_backward(x, g, 5, 1e-4, 0.75, 2.0))


INTERPRETED = textwrap.dedent("""
    import torch
    from alexnet_nb import lrn_triton as T

    shapes = ((2, 96, 5, 5), (2, 20, 3, 3))  # 96: the first LRN's channels; 20: not a multiple of anything
    found = T.check("cpu", shapes=shapes, compiled=False)
    assert found["ok"], found
    assert max(v for k, v in found["errors"].items() if "float32" in k) < 1e-6, found
    assert max(v for k, v in found["errors"].items() if "float16" in k) <= 1, found  # bf16 and fp16
    # NCHW input: copied to rows of channels, the same numbers
    x = (torch.rand(2, 20, 3, 3) * 40)
    torch.testing.assert_close(T.launch_forward(x, 5, 1e-4, 0.75, 2.0), T.reference_forward(x, 5, 1e-4, 0.75, 2.0))
    # an even window: the kernels' window and its mirror in the backward
    g = torch.randn(2, 20, 3, 3)
    torch.testing.assert_close(T.launch_backward(x, g, 4, 1e-3, 0.75, 2.0),
                               T.reference_backward(x, g, 4, 1e-3, 0.75, 2.0))
    # the check can fail: against a reference with another window it reports the difference
    right = T.reference_backward
    T.reference_backward = lambda x, g, size, *rest: right(x, g, size - 2, *rest)
    wrong = T.check("cpu", shapes=shapes, compiled=False)
    assert not wrong["ok"], wrong
    assert all(v > 1e-2 if "float32" in k else v > 4 for k, v in wrong["errors"].items() if "backward" in k), wrong
    print("interpreted kernels ok")
""")


@pytest.mark.skipif(not lrn_triton.available(), reason="Triton is not installed")
def test_the_kernels_under_tritons_interpreter():
    """The Triton kernels themselves, run on the CPU by Triton's interpreter (set before Triton is imported)."""
    env = dict(os.environ, TRITON_INTERPRET="1")
    done = subprocess.run([sys.executable, "-c", INTERPRETED], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "interpreted kernels ok" in done.stdout


KERNEL_ARGS = {"_forward_kernel": ("x_ptr", "y_ptr"), "_u_kernel": ("x_ptr", "g_ptr", "u_ptr"),
               "_dx_kernel": ("x_ptr", "g_ptr", "u_ptr", "dx_ptr")}


@pytest.mark.skipif(not lrn_triton.available(), reason="Triton is not installed")
@pytest.mark.parametrize("capability, dtype", [(90, "bf16"), (75, "fp16")])  # an H100/H200; Colab's T4
def test_the_kernels_compile_for_the_gpus_they_run_on(capability, dtype):
    """Compiled ahead of time to GPU code, as a GPU would compile them (the interpreter checks no types)."""
    try:
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
    except ImportError:  # pragma: no cover - another Triton's internals
        pytest.skip("this Triton has no ahead-of-time compile API")
    import triton

    for name, pointers in KERNEL_ARGS.items():
        signature = {p: "*fp32" if p == "u_ptr" else f"*{dtype}" for p in pointers}
        signature.update(n="i32", C="i32", alpha="fp32", beta="fp32", k="fp32", BEFORE="constexpr",
                         AFTER="constexpr", BLOCK="constexpr")
        src = ASTSource(fn=getattr(lrn_triton, name), signature=signature,
                        constexprs={"BEFORE": 2, "AFTER": 2, "BLOCK": lrn_triton.BLOCK})
        compiled = triton.compile(src, target=GPUTarget("cuda", capability, 32))
        assert compiled.asm["cubin"], name
