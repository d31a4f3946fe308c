"""Training throughput, ours against the blog's: ``python -m alexnet_nb.bench train [--matrix]``.

Our whole step is what training runs: random indices into the uint8 split on
the device, ``augment.random_params``, then ``step.TrainStep`` (augmentation,
forward, backward, SGD update), built from a ``config.recipe("paper", ...)``
as the training loop builds it. The blog's is :mod:`alexnet_nb.baseline`.
Each figure is the median images/s of ``repeats`` timed runs of ``steps``
steps after ``warmup`` steps; the first step is also timed on its own
(``first_step_s``; for a compiled entry, less one steady step, it is the
compile time ``compile_s``).

The matrix (``--matrix``), most important first, so that a run cut short
keeps the head: (1) ours compiled, "slices" LRN, first batch size (128 on a
GPU: the target); (2) the blog's step at that batch, the reference of every
ratio; (3, 4) ours eager with the slices and the old LRN
(``nn.LocalResponseNorm``); (5) our input pipeline alone; (6, 7) the
candidates that may close the gap to the 30,000 images/s target
(``bench_record.CANDIDATES``, each checked against the slices LRN on the
device before it is timed); (8) the blog's input pipeline alone; then ours
eager, slices LRN, at the other batch sizes (no compile: cheap); ours compiled
at the other batch sizes (a compile each); ours eager, old LRN, at the other
batch sizes. No longer planned, measured on an H200 on 2026-11-27 (the numbers
are in git's history of ``results/bench-gpu-nvidia-h200.json``): the compiled
old LRN (3-4% slower than slices, twice), the network's graphs as CUDA graphs
alone (+1.3%) and the whole step compiled without CUDA graphs (-3%). Not
planned either: the blog at other batch sizes (its step waits on its 2-worker
DataLoader, whatever the batch). On a CPU the compiled entries are skipped
unless ``--compile`` asks for them.

Budget (``--budget SECONDS``, counted from the start): before each entry its
time is estimated from the most similar entry measured so far (per image, plus
the first compile's time for a compiled one); one that would not fit is
skipped, saying so, and the next is tried. An entry unlike anything measured
yet runs whenever time is left.

The record and its table: :mod:`alexnet_nb.bench_record`.
"""

import gc
import json
import os
import platform
import shlex
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from alexnet_nb import baseline, config, data, env, files, step
from alexnet_nb.bench_record import (CANDIDATES, NUM_CLASSES, SCHEMA, VARIANTS, derive, flops_per_image, merge,
                                     new_entry, peak_flops, row, table)
from alexnet_nb.bench_record import (  # noqa: F401 (the experiment runner reads records through speed)
    compile_seconds, example_record, images_per_s, markdown, matching, training_entry)

# The target is the whole command in under 3 minutes on an H100; what the budget does not count
# (starting Python, importing torch) gets the other 20 s.
DEFAULT_BUDGET_S = 160
BLOG_SETUP = "fp32, NCHW, eager, PyTorch's default SGD, cudnn.benchmark off, nn.LocalResponseNorm"

# ---------------------------------------------------------------------------
# The plan


def plan(batches, matrix=True, compile=None, gpu=True, lrn_impl="slices"):
    """The entries to measure, most important first (the module's docstring says why this order).

    Single mode (``matrix=False``): ours (compiled as ``compile``, automatic:
    on a GPU; ``lrn_impl``), the blog's step and both input pipelines at
    ``batches[0]``. In the matrix, ``compile=None`` skips the compiled
    entries on a CPU and ``False`` everywhere; skipped entries stay in the
    plan with the reason.
    """
    b0, rest = batches[0], list(batches[1:])

    def ours(b, c, lrn):
        return new_entry("step", "ours", b, c, lrn)

    inputs = [new_entry("input", "ours", b0), new_entry("input", "blog", b0)]
    if not matrix:
        return [ours(b0, step.on_gpu(compile, "cuda" if gpu else "cpu"), lrn_impl), new_entry("step", "blog", b0),
                *inputs]
    # The candidates after the cheap established entries: a hard crash in one (a kernel, a CUDA graph, the
    # profiler) can then only take what comes after it.
    candidates = [new_entry("step", "ours", b0, True, lrn, name) for lrn, name, _ in CANDIDATES]
    entries = ([ours(b0, True, "slices"), new_entry("step", "blog", b0), ours(b0, False, "slices"),
                ours(b0, False, "torch"), inputs[0], *candidates, inputs[1]]
               + [ours(b, False, "slices") for b in rest] + [ours(b, True, "slices") for b in rest]
               + [ours(b, False, "torch") for b in rest])
    for e in entries:
        if e["compiled"] and compile is False:
            e.update(status="skipped", reason="--no-compile")
        elif e["compiled"] and compile is None and not gpu:
            e.update(status="skipped", reason="on a CPU only with --compile (compiling is slow there)")
    return entries


# ---------------------------------------------------------------------------
# Measuring


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fn, warmup, steps, repeats, device, batch):
    """Median images/s of ``repeats`` runs of ``steps`` calls of ``fn()``, after ``warmup`` calls.

    The first warm-up call is also timed alone (``first_step_s``): it holds a compile, cuDNN's autotuning.
    """
    first, t0 = None, time.perf_counter()
    for i in range(warmup):
        fn()
        if i == 0:
            _sync(device)
            first = time.perf_counter() - t0
    rates = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        for _ in range(steps):
            fn()
        _sync(device)
        rates.append(steps * batch / (time.perf_counter() - t))
    return dict(images_per_s=statistics.median(rates), repeats_images_per_s=rates, first_step_s=first)


def train_step(cfg, device):
    """``step.TrainStep`` built as the training loop (``train._fit``) builds it, for one process."""
    return step.build(cfg, NUM_CLASSES, device).step


class _Run:
    """One benchmark run: the settings, the split on the device, the record and its file."""

    def __init__(self, args, device, split, source, record, path, start):
        self.args, self.device, self.source, self.record, self.path, self.start = \
            args, device, source, record, path, start
        self.images, self.labels = split.images.to(device), split.labels.to(device)
        self.blog_batches = {}  # batch size -> endless DataLoader iterator, shared by the blog's two entries
        self.lrn_check = None  # lrn_triton.check's answer on this device

    def save(self):
        self.record["elapsed_s"] = time.perf_counter() - self.start
        if self.path:
            text = json.dumps(self.record, indent=1, default=str)
            files.atomic_write(self.path, lambda tmp: tmp.write_text(text))

    def config(self, entry):
        scope, mode, _ = VARIANTS[entry["variant"]] if entry.get("variant") else ("net", "default", "")
        return config.recipe("paper", batch_size=entry["batch"], compile=entry["compiled"],
                             lrn_impl=entry["lrn_impl"] or "slices", precision=self.args.precision,
                             device=str(self.device), compile_scope=scope, compile_mode=mode)

    def draw(self, cfg):
        """``draw() -> (images_u8, labels, params)``: a batch as the training loop draws one."""
        gen = torch.Generator(self.device).manual_seed(0)
        h, w = self.images.shape[-2:]

        def draw():
            idx = torch.randint(0, len(self.labels), (cfg.batch_size,), generator=gen, device=self.device)
            return self.images[idx], self.labels[idx], step.draw_params(cfg, cfg.batch_size, gen, h, w, self.device)
        return draw

    def blog(self, batch):
        if batch not in self.blog_batches:
            self.blog_batches[batch] = baseline.endless(baseline.loader(self.source, batch, self.args.workers))
        return self.blog_batches[batch]

    def measure(self, entry):
        a, b = self.args, entry["batch"]
        steps, warmup = _counts(entry, a)
        entry.update(steps=steps, warmup=warmup, repeats=a.repeats)
        # Ours as training sets it; the blog's with PyTorch's default (no cuDNN autotuning).
        torch.backends.cudnn.benchmark = self.device.type == "cuda" and entry["pipeline"] == "ours"
        if entry["pipeline"] == "blog":
            batches = self.blog(b)
            fn = baseline.BlogStep(batches, NUM_CLASSES, b, self.device) if entry["what"] == "step" \
                else (lambda: next(batches))
        else:
            cfg = self.config(entry)
            if cfg.lrn_impl == "triton" and self.device.type == "cuda":
                from alexnet_nb import lrn_triton

                if self.lrn_check is None:  # timed only once it computes the same LRN; once per run
                    self.lrn_check = lrn_triton.check(self.device)
                entry["check"] = self.lrn_check
                if not entry["check"]["ok"]:
                    raise ValueError(f"the triton LRN differs from the slices formulas: {entry['check']['errors']}")
            draw = self.draw(cfg)
            if entry["compiled"]:
                torch._dynamo.reset()  # a fresh graph per batch size: no dynamic-shape recompile, a true compile time
            if entry["what"] == "step":
                ts = train_step(cfg, self.device)
                fn = lambda: ts(*draw())  # noqa: E731
            else:
                # Only TrainStep.augment runs; a stand-in module tells it the device.
                ts = step.TrainStep(torch.nn.Linear(1, 1).to(self.device), None, None, None, cfg)
                fn = lambda: ts.augment(*draw()[::2])  # noqa: E731
        result = measure(fn, warmup, steps, a.repeats, self.device, b)
        if entry["compiled"] and result["first_step_s"] is not None:
            result["compile_s"] = max(0.0, result["first_step_s"] - b / result["images_per_s"])
        self.last_fn = fn  # what add_profile profiles, once the figure is saved
        return result

    def add_profile(self, entry):
        """Profile the entry just measured: into the entry (matrix) or the record (single run)."""
        try:
            found = profile(self.last_fn, self.args.profile, self.device,
                            step_s=entry["batch"] / entry["images_per_s"])
        except Exception as exc:  # a profile is a diagnosis: its failure must not lose the measurement
            found = dict(error=_first_line(exc))
        if self.args.matrix:
            entry["profile"] = found
        else:
            self.record["profile"] = found
            print(found.get("table") or found.get("error"))


def profiled(entry, args) -> bool:
    """Whether ``--profile`` profiles this entry: our step in a single run; in the matrix, each compiled step of
    ours at the first batch size (the target's), whose kernels the speed work must go after."""
    if not args.profile or (entry["what"], entry["pipeline"]) != ("step", "ours"):
        return False
    return not args.matrix or (entry["compiled"] and entry["batch"] == args.batch_sizes[0])


def profile(fn, steps, device, step_s=None, rows=25):
    """``steps`` calls of ``fn()`` under torch.profiler: the ops that cost most (by their own device time on a
    GPU, CPU time on a CPU), and on a GPU the kernels' time per step against ``step_s``, the unprofiled step
    (``gpu_busy`` well under 1: the GPU waits for the Python that launches its work)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    gpu = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu else [])
    _sync(device)
    start = time.perf_counter()
    with torch_profile(activities=activities) as prof:
        for _ in range(steps):
            fn()
        _sync(device)
    wall = time.perf_counter() - start
    kernel_s = gpu_seconds(prof.events(), DeviceType.CUDA)
    found = dict(steps=steps, wall_s=wall, step_s=step_s, kernel_s=kernel_s if gpu else None,
                 gpu_busy=kernel_s / steps / step_s if gpu and step_s else None,
                 table=prof.key_averages().table(sort_by="self_device_time_total" if gpu else "self_cpu_time_total",
                                                 row_limit=rows))
    return found


def gpu_seconds(events, gpu_type) -> float:
    """How long the GPU was busy in the profiler's ``events``: kernels, copies and sets, each instant counted
    once. User annotations (the GPU-side spans of "Torch-Compiled Region", "Optimizer.step") wrap kernels
    already listed, and streams may overlap."""
    spans = sorted((e.time_range.start, e.time_range.end) for e in events
                   if e.device_type == gpu_type and not getattr(e, "is_user_annotation", False))
    busy_us, reach = 0.0, float("-inf")
    for start, end in spans:
        busy_us += max(0.0, end - max(start, reach))
        reach = max(reach, end)
    return busy_us / 1e6


def _counts(entry, args):
    """(timed steps per repeat, warm-up steps) of an entry."""
    steps = args.pipeline_steps if entry["what"] == "input" else args.steps
    # The first call compiles: a compiled entry always warms up, or the compile lands in the timing.
    return steps, max(args.warmup, 1) if entry["compiled"] else args.warmup


def _images(entry, args):
    steps, warmup = _counts(entry, args)
    return (warmup + args.repeats * steps) * entry["batch"]


def estimate(entry, entries, args):
    """Seconds ``entry`` should take, from the most similar measured entry; None when nothing is similar."""
    done = [e for e in entries if e["status"] == "measured"]
    similar = [("what", "pipeline", "compiled", "lrn_impl"), ("what", "pipeline", "compiled"), ("what", "pipeline")]
    if entry["pipeline"] == "blog":  # its step waits on its DataLoader: its input alone costs about the same
        similar.append(("pipeline",))
    for keys in similar:
        like = [e for e in done if all(e[k] == entry[k] for k in keys)]
        if like:
            e = like[-1]
            seconds = _images(entry, args) * (e["wall_s"] - e.get("compile_s", 0.0)) / _images(e, args)
            break
    else:
        return None
    if entry["compiled"]:
        compiles = [e["compile_s"] for e in done if "compile_s" in e]
        if not compiles:
            return None
        seconds += compiles[0]  # assume every compile costs what the first one did
    return seconds


def _over_budget(entry, entries, args, elapsed):
    """Why ``entry`` is skipped for the budget, or None when it fits (or nothing is known of its cost)."""
    if args.budget is None:
        return None
    left = args.budget - elapsed
    entry["estimate_s"] = estimate(entry, entries, args)
    if left > 0 and (entry["estimate_s"] is None or entry["estimate_s"] <= left):
        return None
    need = f"needs ~{entry['estimate_s']:.0f} s, " if entry["estimate_s"] is not None else ""
    return f"budget: {need}{max(left, 0):.0f} s of {args.budget:g} s left"


def _first_line(e):
    text = str(e).strip()
    return type(e).__name__ + (": " + text.splitlines()[0] if text else "")


def _free(device):
    gc.collect()  # the last entry's network, optimizer and (after a failure) its traceback's tensors
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _header(args, argv, device, source, split, precision):
    def setting(get):
        try:
            return bool(get())
        except (AttributeError, RuntimeError):  # a torch without this switch
            return None

    gpu, ours = device.type == "cuda", config.recipe("paper")
    return dict(
        schema=SCHEMA, mode="matrix" if args.matrix else "single",
        command="python -m alexnet_nb.bench " + shlex.join(argv),
        started=datetime.now(timezone.utc).isoformat(timespec="seconds"), elapsed_s=0.0, finished=False,
        device=torch.cuda.get_device_name(device) if gpu else (platform.processor() or "CPU"),
        device_type=device.type, torch=torch.__version__, torchvision=_torchvision_version(),
        python=platform.python_version(), cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
        source=str(source), train_images=len(split), precision=precision, channels_last=ours.channels_last,
        fused_sgd=step.on_gpu(ours.fused_sgd, device), blog=BLOG_SETUP,
        tf32_matmul=setting(lambda: torch.backends.cuda.matmul.allow_tf32),
        tf32_cudnn=setting(lambda: torch.backends.cudnn.allow_tf32),
        batch_sizes=args.batch_sizes, steps=args.steps, warmup=args.warmup, repeats=args.repeats,
        pipeline_steps=args.pipeline_steps, workers=args.workers, budget_s=args.budget,
        flops_per_image=flops_per_image(), peak_flops=peak_flops(device, precision), peak_precision=precision,
        projection=None)


def _torchvision_version():
    import torchvision

    return torchvision.__version__


def _defaults(args, gpu):
    """Fill the settings left unset: a GPU gets the real sizes, a CPU a small run."""
    for name, on_gpu, on_cpu in (("steps", 50, 2), ("warmup", 10, 1), ("repeats", 3, 3),
                                 ("pipeline_steps", 50, 10)):
        if getattr(args, name) is None:  # "is None", not "or": --warmup 0 means no warm-up
            setattr(args, name, on_gpu if gpu else on_cpu)
    if args.batch_sizes is None:
        args.batch_sizes = ([128, 256, 512] if gpu else [8, 16, 32]) if args.matrix else [128 if gpu else 8]
    if args.matrix and args.budget is None:
        args.budget = DEFAULT_BUDGET_S


def run(args, argv) -> dict:
    """Measure the plan, rewriting ``args.json`` around every entry; print the table; return the record."""
    start = time.perf_counter()
    device = torch.device(args.device) if args.device else env.default_device()
    _defaults(args, device.type == "cuda")
    source = Path(args.source) if args.source else data.dataset_source()
    if not (source / "train").is_dir():
        raise SystemExit(f"the blog's pipeline reads JPEGs from an extracted folder; {source} is not one (unzip it)")
    entries = plan(args.batch_sizes, args.matrix, args.compile, device.type == "cuda", args.lrn_impl)
    if args.profile and device.type == "cuda":
        # The profiler must be set up before any CUDA graph is captured, or the replays' kernels go unseen
        # (pytorch#100441): this is PyTorch's own remedy.
        try:
            from torch.profiler._utils import _init_for_cuda_graphs
        except ImportError:  # a torch without it: the CUDA-graph entries' profiles may miss kernels
            pass
        else:
            _init_for_cuda_graphs()
    split = data.load_split(source, "train", cache_dir=args.cache_dir, progress=False)
    precision = step.resolve_precision(args.precision, device)[0]
    record = dict(_header(args, argv, device, source, split, precision), entries=entries)
    if getattr(args, "merge", None):
        kept = merge(record, json.loads(Path(args.merge).read_text()))
        print(f"kept {len(kept)} entries measured before on this device and torch ({args.merge}); measuring the "
              f"{sum(e['status'] == 'pending' for e in entries)} it lacks", flush=True)
    r = _Run(args, device, split, source, record, args.json, start)
    del split
    saved_benchmark = torch.backends.cudnn.benchmark
    r.save()
    try:
        for i, e in enumerate(entries):
            if e["status"] != "pending":
                continue
            reason = _over_budget(e, entries, args, time.perf_counter() - start)
            if reason:
                e.update(status="skipped", reason=reason)
            else:
                _measure_entry(r, e, entries[i:])
                print(f"[{time.perf_counter() - start:4.0f} s]", row(e, i + 1), flush=True)
            r.save()
        record["finished"] = True
    finally:
        r.blog_batches.clear()  # stops the DataLoader workers
        torch.backends.cudnn.benchmark = saved_benchmark
        r.save()
    print(table(record))
    if args.json:
        print(f"wrote {args.json}")
    return record


def _measure_entry(r, e, rest):
    """Measure ``e`` into the record; a failure is recorded, an interrupt marks ``rest`` and stops the run."""
    e.update(status="running", reason="cut off while measuring it")
    r.save()
    t0 = time.perf_counter()
    try:
        result = r.measure(e)
        # wall_s before any profile: the budget's estimates scale it
        e.update(result, status="measured", reason=None, wall_s=time.perf_counter() - t0)
        derive(r.record)
        r.save()  # the figure is on disk before the profiler runs: a crash there cannot take it
        if profiled(e, r.args):
            r.add_profile(e)
    except KeyboardInterrupt:
        for later in rest:
            if later["status"] in ("pending", "running"):
                later.update(status="skipped", reason="interrupted (KeyboardInterrupt)")
        raise
    except Exception as exc:  # one entry's failure (a compile, out of memory) must not lose the others
        e.update(status="failed", reason=_first_line(exc))
    finally:
        e.setdefault("wall_s", time.perf_counter() - t0)
        _free(r.device)
        derive(r.record)
