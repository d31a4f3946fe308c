"""The paper's LRN as two hand-written Triton kernels on a GPU (``LRN(impl="triton")``).

Why: profiled on an H200 (``results/bench-gpu-nvidia-h200.json``), the
compiled training step keeps the GPU busy 97% of its 6.5 ms, and the largest
kernels after the convolutions are the ones ``torch.compile`` makes of the
``slices`` LRN: 0.58 ms for one backward kernel, where reading and writing
its tensors once needs under 0.1 ms. Differentiating the slices, the compiler
inlines everything into one kernel per element: five window sums of five
squares each, five powers, and whatever produced the incoming gradient (the
max-pool's backward), all recomputed for each of the five neighbours.

Here the backward is written out, with one intermediate kept in memory:

    y_c  = x_c * B_c^-beta,   B_c = k + alpha * sum_{j in W(c)} x_j^2
    u_c  = g_c * x_c * B_c^(-beta-1)
    dx_i = g_i * B_i^-beta - 2 * alpha * beta * x_i * sum_{c : i in W(c)} u_c

so each kernel reads its tensors once (the window's neighbours come from the
cache) and computes one power per element. ``W(c)`` is the channels from
``c - size // 2`` to ``c + (size - 1) // 2``, cut off at both ends, as in
``alexnet_nb.lrn``; alpha is the paper's, not divided by n.

The kernels see a 4-D tensor as rows of channels, so they need channels_last
memory (what training uses): other layouts are copied to it first, and the
result is channels_last whatever the input's layout. Off a GPU, and for
anything but a 4-D tensor of under 2^31 elements (the kernels index with
int32), the same operator runs the same formulas in PyTorch ops (the CPU
tests check them against autograd); its Triton kernels can be checked on a
CPU under ``TRITON_INTERPRET=1``. Compiling sees the kernels (``torch.library.triton_op``)
and runs them as they are: nothing is fused into them, which is the point.
"""

import torch

from alexnet_nb.lrn import window, window_sum

try:
    import triton
    import triton.language as tl
except ImportError:  # e.g. macOS: only impl="triton" needs it, and says so
    triton = None

BLOCK = 1024  # elements per program: a multiple of the channel counts is not needed, the loads are masked


def available() -> bool:
    return triton is not None


# ---------------------------------------------------------------------------
# The formulas in PyTorch ops: the CPU path, and what the kernels are tested against


def _base(xf, size, alpha, k):
    return window_sum(xf.square(), *window(size)).mul_(alpha).add_(k)


def _wide(t):
    """At least fp32, as the kernels compute fp16, bf16 and fp32 (fp64 stays fp64 here, for the gradient checks;
    the kernels never see it: they compute in fp32)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def reference_forward(x, size, alpha, beta, k):
    xf = _wide(x)
    return (xf * _base(xf, size, alpha, k).pow(-beta)).to(x.dtype)


def reference_backward(x, g, size, alpha, beta, k):
    xf, gf = _wide(x), _wide(g)
    base = _base(xf, size, alpha, k)
    p = base.pow(-beta)
    u = gf * xf * p / base
    before, after = window(size)
    # i is in W(c) for c from i - after to i + before: the mirror of the forward window
    return (gf * p - 2 * alpha * beta * xf * window_sum(u, after, before)).to(x.dtype)


# ---------------------------------------------------------------------------
# The kernels

if triton is not None:
    @triton.jit
    def _block(n, C, BLOCK: tl.constexpr):
        """This program's elements, which exist, and their channels (a row of C channels per pixel)."""
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        return offs, offs < n, offs % C

    @triton.jit
    def _load(ptr, offs, mask):
        return tl.load(ptr + offs, mask=mask, other=0.0).to(tl.float32)

    @triton.jit
    def _window(ptr, offs, c, mask, C, LO: tl.constexpr, HI: tl.constexpr, SQUARE: tl.constexpr,
                BLOCK: tl.constexpr):
        """sum over channels c + LO .. c + HI (of the squares, with SQUARE), zero beyond both ends."""
        total = tl.zeros([BLOCK], tl.float32)
        for d in tl.static_range(LO, HI + 1):
            v = tl.load(ptr + offs + d, mask=mask & (c + d >= 0) & (c + d < C), other=0.0).to(tl.float32)
            if SQUARE:
                v = v * v
            total += v
        return total

    @triton.jit
    def _base_and_power(x_ptr, offs, c, mask, C, alpha, beta, k, BEFORE: tl.constexpr, AFTER: tl.constexpr,
                        BLOCK: tl.constexpr):
        base = k + alpha * _window(x_ptr, offs, c, mask, C, -BEFORE, AFTER, True, BLOCK)
        return base, tl.exp2(-beta * tl.log2(base))

    @triton.jit
    def _forward_kernel(x_ptr, y_ptr, n, C, alpha, beta, k, BEFORE: tl.constexpr, AFTER: tl.constexpr,
                        BLOCK: tl.constexpr):
        offs, mask, c = _block(n, C, BLOCK)
        _, p = _base_and_power(x_ptr, offs, c, mask, C, alpha, beta, k, BEFORE, AFTER, BLOCK)
        tl.store(y_ptr + offs, (_load(x_ptr, offs, mask) * p).to(y_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _u_kernel(x_ptr, g_ptr, u_ptr, n, C, alpha, beta, k, BEFORE: tl.constexpr, AFTER: tl.constexpr,
                  BLOCK: tl.constexpr):
        offs, mask, c = _block(n, C, BLOCK)
        base, p = _base_and_power(x_ptr, offs, c, mask, C, alpha, beta, k, BEFORE, AFTER, BLOCK)
        tl.store(u_ptr + offs, _load(g_ptr, offs, mask) * _load(x_ptr, offs, mask) * p / base, mask=mask)

    @triton.jit
    def _dx_kernel(x_ptr, g_ptr, u_ptr, dx_ptr, n, C, alpha, beta, k, BEFORE: tl.constexpr, AFTER: tl.constexpr,
                   BLOCK: tl.constexpr):
        offs, mask, c = _block(n, C, BLOCK)
        _, p = _base_and_power(x_ptr, offs, c, mask, C, alpha, beta, k, BEFORE, AFTER, BLOCK)
        wu = _window(u_ptr, offs, c, mask, C, -AFTER, BEFORE, False, BLOCK)  # the mirror of the forward window
        dx = _load(g_ptr, offs, mask) * p - 2.0 * alpha * beta * _load(x_ptr, offs, mask) * wu
        tl.store(dx_ptr + offs, dx.to(dx_ptr.dtype.element_ty), mask=mask)


def _rows(t):
    """``t`` as rows of channels in memory (channels_last), the layout the kernels index."""
    return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t.contiguous()


def launch_forward(x, size, alpha, beta, k, launch=None):
    """Run the forward kernel (``launch``: ``wrap_triton`` inside the operator, plain under the interpreter)."""
    x = _rows(x)
    y = torch.empty_like(x)
    before, after = window(size)
    grid = (triton.cdiv(x.numel(), BLOCK),)
    (launch or (lambda f: f))(_forward_kernel)[grid](x, y, x.numel(), x.shape[1], alpha, beta, k,
                                                     BEFORE=before, AFTER=after, BLOCK=BLOCK)
    return y


def launch_backward(x, g, size, alpha, beta, k, launch=None):
    """Run the two backward kernels: u, then the gradient."""
    x, g = _rows(x), _rows(g)
    u = torch.empty_like(x, dtype=torch.float32)  # fp32: it is summed over the window before it is scaled
    dx = torch.empty_like(x)
    before, after = window(size)
    grid = (triton.cdiv(x.numel(), BLOCK),)
    wrap = launch or (lambda f: f)
    wrap(_u_kernel)[grid](x, g, u, x.numel(), x.shape[1], alpha, beta, k, BEFORE=before, AFTER=after, BLOCK=BLOCK)
    wrap(_dx_kernel)[grid](x, g, u, dx, x.numel(), x.shape[1], alpha, beta, k, BEFORE=before, AFTER=after,
                           BLOCK=BLOCK)
    return dx


# ---------------------------------------------------------------------------
# The operator: what LRN(impl="triton") calls


def _on_gpu(x):
    return x.device.type == "cuda" and triton is not None and x.dim() == 4 and x.numel() < 2**31


@torch.library.triton_op("alexnet_nb::lrn", mutates_args=())
def lrn(x: torch.Tensor, size: int, alpha: float, beta: float, k: float) -> torch.Tensor:
    if _on_gpu(x):
        return launch_forward(x, size, alpha, beta, k, torch.library.wrap_triton)
    return reference_forward(x, size, alpha, beta, k)


@torch.library.triton_op("alexnet_nb::lrn_backward", mutates_args=())
def lrn_backward(x: torch.Tensor, g: torch.Tensor, size: int, alpha: float, beta: float, k: float) -> torch.Tensor:
    if _on_gpu(x):
        return launch_backward(x, g, size, alpha, beta, k, torch.library.wrap_triton)
    return reference_backward(x, g, size, alpha, beta, k)


def _setup_context(ctx, inputs, output):
    x, ctx.size, ctx.alpha, ctx.beta, ctx.k = inputs
    ctx.save_for_backward(x)


def _backward(ctx, grad):
    (x,) = ctx.saved_tensors
    return lrn_backward(x, grad, ctx.size, ctx.alpha, ctx.beta, ctx.k), None, None, None, None


lrn.register_autograd(_backward, setup_context=_setup_context)


# ---------------------------------------------------------------------------
# The check the speed matrix runs on the device before it times the kernels


def _ulps(bits):
    """The largest difference, in spacings of a float with ``bits`` significant bits at ``want``; a floor of 1e-6
    of the largest value keeps a near-zero gradient (a difference of two terms) from counting fp32 noise."""
    def measure(got, want):
        want, got = want.float(), got.float()
        spacing = torch.exp2(torch.floor(torch.log2(want.abs().clamp_min(1e-30))) - (bits - 1))
        return ((got - want).abs() / (spacing + 1e-6 * want.abs().max())).max().item()
    return measure


def _relative_l2(got, want):
    return ((got.float() - want.float()).norm() / want.float().norm()).item()


# What each dtype may differ by: fp32, the order of a few additions; bf16 and fp16 (the T4's), one rounding
# (Triton's interpreter truncates where a GPU rounds to nearest: up to 1 ulp either way).
CHECK = {torch.float32: ("relative L2", _relative_l2, 1e-5), torch.bfloat16: ("ulps", _ulps(8), 1.0),
         torch.float16: ("ulps", _ulps(11), 1.0)}


def _compiled(x, g, size, alpha, beta, k):
    """Forward and gradient through ``torch.compile``: the kernels as inductor launches them in training."""
    fn = torch.compile(lambda t: lrn(t, size, alpha, beta, k), dynamic=False, fullgraph=True)
    t = x.detach().clone().requires_grad_()
    y = fn(t)
    y.backward(g)
    return y.detach(), t.grad


def check(device, shapes=((8, 96, 55, 55), (8, 256, 27, 27)), size=5, alpha=1e-4, beta=0.75, k=2.0,
          compiled=True) -> dict:
    """The kernels against the same formulas in PyTorch ops, on ``device``, at the paper's LRN shapes.

    ``{"ok", "errors": {what: the measure of CHECK for its dtype}}``. Inputs in [0, 40) (ReLU outputs large
    enough that the normalization moves them by up to a third) and gradients N(0, 1): a wrong window or a
    wrong term of the backward is off by percents, many ulps; a correct kernel by roundings. ``compiled``:
    also through ``torch.compile`` (forward and backward, bf16, the first shape), as training runs them
    (Triton's interpreter cannot trace them that way).
    """
    gen = torch.Generator(device).manual_seed(0)
    errors, ok = {}, True
    for i, shape in enumerate(shapes):
        for dtype, (measure, differ, tolerance) in CHECK.items():
            x = (torch.rand(shape, generator=gen, device=device) * 40).to(dtype)
            g = torch.randn(shape, generator=gen, device=device).to(dtype)
            x, g = (t.contiguous(memory_format=torch.channels_last) for t in (x, g))
            want = (reference_forward(x, size, alpha, beta, k), reference_backward(x, g, size, alpha, beta, k))
            pairs = {"forward": (launch_forward(x, size, alpha, beta, k), want[0]),
                     "backward": (launch_backward(x, g, size, alpha, beta, k), want[1])}
            if compiled and i == 0 and dtype == torch.bfloat16:
                got = _compiled(x, g, size, alpha, beta, k)
                pairs.update({"compiled forward": (got[0], want[0]), "compiled backward": (got[1], want[1])})
            for what, (got, expected) in pairs.items():
                err = differ(got, expected)
                errors[f"{what} {str(dtype).removeprefix('torch.')} {'x'.join(map(str, shape))} ({measure})"] = err
                ok = ok and err <= tolerance and got.is_contiguous(memory_format=torch.channels_last)
    return dict(ok=ok, errors=errors)
