"""The training benchmark's record: its keys, the figures derived from it, reading it back, its table.

:mod:`alexnet_nb.speed` measures and writes the record (``python -m
alexnet_nb.bench train [--matrix] --json F``); the experiment runner reads it
with :func:`images_per_s` (e.g. to estimate how long 30 epochs take).

The record (JSON), rewritten atomically before and after every entry:

- the run: ``schema``, ``mode`` (matrix | single), ``command``, ``started``
  (UTC), ``elapsed_s``, ``finished`` (false: cut off; its entries say where),
  ``budget_s``, ``batch_sizes``, ``steps``, ``warmup``, ``repeats``,
  ``pipeline_steps``, ``workers`` (the blog's DataLoader);
- the machine: ``device``, ``device_type``, ``torch``, ``torchvision``,
  ``python``, ``cpu_count``, ``torch_threads``, ``tf32_matmul`` and
  ``tf32_cudnn`` (torch's settings in this run: the blog's fp32 step runs
  under them);
- the data and the settings: ``source`` (the dataset), ``train_images``;
  ours: ``precision``, ``channels_last``, ``fused_sgd``; ``blog`` (its setup);
- the model: ``flops_per_image`` (one training image: 3 passes x 2 x
  multiply-adds), ``peak_flops`` and ``peak_precision`` (data sheet; null
  when unknown), ``projection`` (null, or ``entry``, ``fraction_of_peak``,
  ``t4_30_epochs_min``, ``assumption``: what training runs, no variant), ``profile`` (single mode,
  ``--profile``);
- ``entries``, one per planned entry, in the order run: ``id``, ``what``
  (step | input), ``pipeline`` (ours | blog), ``batch``, ``compiled``,
  ``lrn_impl``, ``variant`` (None: the default way of compiling; else a key of
  ``VARIANTS``), ``status`` (pending | running: cut off; measured | skipped |
  failed), ``reason`` (why not measured: the budget, the exception's first
  line...), ``images_per_s`` (the median), ``repeats_images_per_s``,
  ``steps``, ``warmup``, ``repeats``, ``first_step_s``, ``compile_s``
  (compiled only: ``first_step_s`` less one steady step), ``wall_s`` (the
  whole entry), ``estimate_s`` (the budget's guess beforehand), ``vs_blog``
  (over the blog's whole step) and, for ours steps where the peak is known,
  ``tflops`` and ``fraction_of_peak``; ``check`` (triton LRN entries on a GPU:
  ``lrn_triton.check``'s answer); with ``--profile`` in the matrix, each
  compiled step of ours at the first batch size also has ``profile``: ``steps``,
  ``wall_s``, ``kernel_s`` (the GPU kernels' time in them), ``gpu_busy`` (the
  ratio: well under 1 means the GPU waits for Python) and ``table`` (the ops
  that cost most, by their own device time).
"""

import json
from functools import lru_cache
from pathlib import Path

import torch

from alexnet_nb import config, model

SCHEMA = "alexnet_nb.bench.train/1"
NUM_CLASSES = config.NUM_CLASSES  # the network of a Tiny ImageNet run, whatever the folder holds
TABLE_LIMIT = 4000  # characters: the printed table must take in at a glance

# Dense tensor-core peaks (FLOP/s) from the vendors' data sheets, by a fragment of the
# device name; fp32 rows are plain fp32 (no TF32). Used only to say how close we get.
PEAK_FLOPS = {
    "H100 PCIe": {"bf16": 756e12, "fp16": 756e12, "fp32": 51e12},
    "H100": {"bf16": 989e12, "fp16": 989e12, "fp32": 67e12},  # SXM
    "H200": {"bf16": 989e12, "fp16": 989e12, "fp32": 67e12},
    "A100": {"bf16": 312e12, "fp16": 312e12, "fp32": 19.5e12},
    "L4": {"bf16": 121e12, "fp16": 121e12, "fp32": 30.3e12},
    "A10G": {"bf16": 70e12, "fp16": 70e12, "fp32": 31.2e12},
    "V100": {"fp16": 125e12, "fp32": 15.7e12},
    "T4": {"fp16": 65e12, "fp32": 8.1e12},
}
T4_FP16 = PEAK_FLOPS["T4"]["fp16"]
EPOCH_IMAGES = 90_000  # training images per epoch once the 10,000-image holdout is carved out
PROJECTION_ASSUMPTION = (
    "a projection, not a measurement: 30 epochs x 90,000 images x the model's FLOPs, assuming a T4 sustains the "
    "same fraction of its fp16 tensor-core peak (65 TFLOP/s) as this device did of its {precision} peak. "
    "Optimistic: a T4 has no bf16 (fp16 needs the GradScaler) and far less memory bandwidth for the "
    "bandwidth-bound work (augmentation, LRN, pooling, the optimizer); evaluation is not included")


def peak_flops(device, precision):
    """The device's dense peak for ``precision`` from ``PEAK_FLOPS``, or None when unknown."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peaks in PEAK_FLOPS.items():  # the more specific names come first
        if key in name:
            return peaks.get(precision)
    return None


def t4_projection_minutes(flops_per_image, fraction_of_peak, epochs=30):
    """30 epochs on a T4, *projected*: this FLOP count at ``fraction_of_peak`` of the T4's published fp16 rate."""
    return epochs * EPOCH_IMAGES * flops_per_image / (T4_FP16 * fraction_of_peak) / 60


@lru_cache(maxsize=None)
def flops_per_image():
    """Model FLOPs of one training image: multiply-add = 2 FLOPs; backward costs about twice the forward."""
    return 3 * 2 * int(model.layer_summary(model.AlexNet(NUM_CLASSES)).iloc[-1]["mult_adds"])


# ---------------------------------------------------------------------------
# Entries, and reading a record back (the experiment runner's view)


# Ways of compiling our step beyond the default (Config's compile_scope and compile_mode): variant name ->
# (compile_scope, compile_mode, label). All three were measured on an H200; CANDIDATES says which the matrix
# still measures (older records name the others).
VARIANTS = {
    "cudagraphs": ("net", "reduce-overhead", "compiled, CUDA graphs"),
    "whole-step-cudagraphs": ("step", "reduce-overhead", "whole step, CUDA graphs"),
    "whole-step": ("step", "default", "compiled whole step"),
}


# The speed matrix's candidates, measured after its established entries: (LRN implementation, variant or None,
# why). Profiled on an H200, the compiled step kept the GPU 97% busy, CUDA graphs gained 1-2%, and the
# kernels torch.compile makes of the LRN's backward were the largest after the convolutions.
CANDIDATES = [
    ("triton", None, "the LRN as hand-written kernels, its backward written out (alexnet_nb.lrn_triton)"),
    ("triton", "whole-step-cudagraphs", ("the same, with the whole step as CUDA graphs (+2.4% with slices): "
                                         "launches weigh more once the kernels are shorter")),
]
# Training runs a faster LRN implementation than "slices" only when the matrix measured it at least this
# much faster (compiled, the default way): two runs of one step differ by up to 1-2% on a warm GPU.
ADOPT_MARGIN = 1.03


def new_entry(what, pipeline, batch, compiled=False, lrn_impl="slices", variant=None):
    """A planned entry, not measured yet: ``what`` step | input, ``pipeline`` ours | blog; ``variant`` (a key of
    ``VARIANTS``, compiled steps of ours only) or None, the default way of compiling."""
    lrn_impl = "torch" if pipeline == "blog" else lrn_impl if what == "step" else None
    kind = f"-{'compiled' if compiled else 'eager'}-{lrn_impl}" if (what, pipeline) == ("step", "ours") else ""
    kind += f"-{variant}" if variant else ""
    return dict(id=f"{pipeline}-{what}{kind}-b{batch}", what=what, pipeline=pipeline, batch=batch,
                compiled=compiled, lrn_impl=lrn_impl, variant=variant, status="pending",
                reason="not reached: the run was cut off before it", images_per_s=None)


def _load(record):
    return record if isinstance(record, dict) else json.loads(Path(record).read_text())


def matching(record, what="step", pipeline="ours", batch=128, compiled=True, lrn_impl="slices", variant=None):
    """The entries of ``record`` (a dict or a JSON path) with these settings, in the record's order.

    ``None`` matches any value, except for ``variant``: None is the default way
    of compiling (what training runs), a name one of ``VARIANTS``. ``compiled``,
    ``lrn_impl`` and ``variant`` only select among our steps: the blog's step
    and the input pipelines have one setting each.
    """
    want = dict(what=what, pipeline=pipeline, batch=batch)
    if (what, pipeline) == ("step", "ours"):
        want.update(compiled=compiled, lrn_impl=lrn_impl)
    return [e for e in _load(record).get("entries", []) if all(v is None or e[k] == v for k, v in want.items())
            and ((what, pipeline) != ("step", "ours") or e.get("variant") == variant)]


def images_per_s(record, batch=128, compiled=True, lrn_impl="slices", pipeline="ours", what="step", variant=None):
    """The median images/s measured with these settings, or None (not planned, skipped, failed, cut off).

    With ``None`` for a setting, the first measured match in the record's
    order, which is the order of importance (the first batch size first).
    """
    return next((e["images_per_s"] for e in matching(record, what, pipeline, batch, compiled, lrn_impl, variant)
                 if e["status"] == "measured"), None)


def training_entry(record, batch=128):
    """The measured entry training runs at ``batch``: ours compiled the default way, with the "slices" LRN unless
    another implementation was measured at least ``ADOPT_MARGIN`` times as fast (the fastest such); or None.
    The triton LRN is timed only after it matched the slices formulas on the device (``speed``), so a
    measured one is also a checked one; the other ("torch", in older records) is PyTorch's own."""
    found = {e["lrn_impl"]: e for e in matching(record, batch=batch, lrn_impl=None) if e["status"] == "measured"}
    base = found.get("slices")
    if base is None:
        return None
    # Compared within one run only (a merged record holds entries of several): 3% is within two runs' spread.
    faster = [e for e in found.values() if e["images_per_s"] >= ADOPT_MARGIN * base["images_per_s"]
              and e.get("kept_from") == base.get("kept_from")]
    return max(faster, key=lambda e: e["images_per_s"], default=base)


def compile_seconds(record):
    """How long the first measured compile took (``compile_s``: the first step less a steady one), or None."""
    return next((e["compile_s"] for e in _load(record).get("entries", [])
                 if e["status"] == "measured" and e.get("compile_s") is not None), None)


def example_record(images_per_s=100.0, compile_s=60.0, batch=128):
    """A small record in the real format, every figure made up: for tests of the code that reads records.

    Ours measures ``images_per_s`` at ``batch`` compiled or not, with either
    LRN; the blog's step a tenth of it.
    """
    entries = [new_entry("step", "ours", batch, c, lrn) for c in (True, False) for lrn in ("slices", "torch")]
    for e in entries:
        e.update(status="measured", reason=None, images_per_s=images_per_s,
                 compile_s=compile_s if e["compiled"] else None)
    entries.append(dict(new_entry("step", "blog", batch), status="measured", reason=None,
                        images_per_s=images_per_s / 10))
    record = dict(schema=SCHEMA, mode="matrix", command="(example)", finished=True, elapsed_s=0.0, budget_s=None,
                  device="example", device_type="cpu", cpu_count=1, torch=torch.__version__, torchvision="-",
                  python="-", precision="fp32", channels_last=True, fused_sgd=False, tf32_matmul=None,
                  tf32_cudnn=None, workers=2, repeats=1, steps=1, warmup=0, pipeline_steps=1, batch_sizes=[batch],
                  flops_per_image=None, peak_flops=None, peak_precision="fp32", projection=None, entries=entries)
    for e in entries:
        e.update(repeats_images_per_s=[e["images_per_s"]], steps=1, warmup=0, repeats=1)
    derive(record)
    return record


# ---------------------------------------------------------------------------
# Figures derived from the measurements


def merge(record, old) -> list:
    """Keep in ``record`` (a matrix about to run) what ``old``, a record of the same device and torch, measured
    for the same entries, so that only the entries it lacks are measured (``kept_from``: when that run
    started); returns the kept ids. Failed entries are measured again: a failure may have been fixed since."""
    if not old or (old.get("device"), old.get("torch")) != (record.get("device"), record.get("torch")):
        return []
    before = {e["id"]: e for e in old.get("entries", []) if e.get("status") == "measured"}
    planned = {e["id"] for e in record["entries"]}
    # A candidate is adopted by its ratio to the compiled slices step of the same run (two runs of one step
    # differ by up to 3%): with a candidate to measure, its baseline is measured again beside it.
    baselines = {new_entry("step", "ours", e["batch"], True)["id"] for e in record["entries"]
                 if e["status"] == "pending" and e["what"] == "step" and e["pipeline"] == "ours" and e["compiled"]
                 and (e["lrn_impl"] != "slices" or e.get("variant")) and e["id"] not in before}
    kept = []
    for i, e in enumerate(record["entries"]):
        if e["status"] == "pending" and e["id"] in before and e["id"] not in baselines:
            record["entries"][i] = _kept(before[e["id"]], old)
            kept.append(e["id"])
    # What the old record measured that the matrix no longer plans stays in the record (and README's table):
    # measured once, on GPU time that will not come again.
    for key, e in before.items():
        if key not in planned:
            record["entries"].append(_kept(e, old))
            kept.append(key)
    return kept


def _kept(entry, old):
    return dict(entry, kept_from=entry.get("kept_from") or old.get("started"))


def derive(record):
    """Ratios to the blog's step, FLOP/s, fraction of peak and the T4 projection from what is measured.

    A ratio to the blog's step is taken within one run only (the target is "30x the blog's pipeline, same
    run": the blog's DataLoader ran at 652 and 791 images/s in two runs): an entry kept from an earlier run
    keeps the ratio of that run; one measured now gets one only when the blog's step was measured now too."""
    measured = [e for e in record["entries"] if e["status"] == "measured"]
    blog = next((e for e in measured if (e["what"], e["pipeline"]) == ("step", "blog")), None)
    flops, peak = record["flops_per_image"], record["peak_flops"]
    for e in measured:
        if blog is not None and e.get("kept_from") == blog.get("kept_from"):
            e["vs_blog"] = e["images_per_s"] / blog["images_per_s"]
        elif not e.get("kept_from"):
            e["vs_blog"] = None
        if (e["what"], e["pipeline"]) == ("step", "ours") and peak:
            e["tflops"] = e["images_per_s"] * flops / 1e12
            e["fraction_of_peak"] = e["images_per_s"] * flops / peak
    ours = [e for e in measured if "fraction_of_peak" in e and not e.get("variant")]
    # The projection is for what training runs (no candidate variant), at the recipe's batch when it was
    # measured, else for the fastest.
    trained = training_entry(record, config.Config.batch_size)
    best = trained if trained is not None and "fraction_of_peak" in trained else \
        max(ours, key=lambda e: e["images_per_s"], default=None)
    record["projection"] = None if best is None else dict(
        entry=best["id"], fraction_of_peak=best["fraction_of_peak"],
        t4_30_epochs_min=t4_projection_minutes(flops, best["fraction_of_peak"]),
        assumption=PROJECTION_ASSUMPTION.format(precision=record["peak_precision"]))


# ---------------------------------------------------------------------------
# The table (printed) and its Markdown form (the README's speed block)


def _label(e):
    if e["what"] == "input":
        return "ours input: indices+augment" if e["pipeline"] == "ours" else "blog input: DataLoader"
    if e["pipeline"] == "blog":
        return "blog step: fp32 NCHW eager"
    how = VARIANTS[e["variant"]][2] if e.get("variant") else "compiled" if e["compiled"] else "eager"
    return f"ours step: {how}, LRN {e['lrn_impl']}"


def _num(v):
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"  # a CPU's few images/s keep three figures


def _cells(e):
    """(label, batch, images/s, vs blog, repeats, notes) of an entry; a status and its reason when not measured."""
    if e["status"] != "measured":
        return _label(e), str(e["batch"]), "", "", "", f"{e['status']}: {e['reason'] or ''}"[:100]
    notes = []
    if e.get("compile_s") is not None:
        notes.append(f"compile {e['compile_s']:.0f} s")
    if e.get("fraction_of_peak") is not None:
        notes.append(f"{100 * e['fraction_of_peak']:.1f}% of peak")
    ratio = f"{e['vs_blog']:.2f}x" if e.get("vs_blog") else "-"
    return (_label(e), str(e["batch"]), _num(e["images_per_s"]), ratio,
            "/".join(_num(v) for v in e["repeats_images_per_s"]), ", ".join(notes))


def row(e, n):
    """One line of the table: entry ``e``, numbered ``n``."""
    label, batch, ips, ratio, runs, notes = _cells(e)
    if e["status"] != "measured":
        return f"{n:>2} {label:<46} {batch:>5}   {notes}"
    return f"{n:>2} {label:<46} {batch:>5} {ips:>10} {ratio:>8}  {runs:<24} {notes}".rstrip()


def _settings(r):
    tf32 = (f"TF32 matmul {'on' if r['tf32_matmul'] else 'off'}, cuDNN TF32 {'on' if r['tf32_cudnn'] else 'off'}"
            if r["device_type"] == "cuda" else "no TF32 on a CPU")
    return (f"ours: {r['precision']}, {'channels_last' if r['channels_last'] else 'NCHW'}"
            f"{', fused SGD' if r['fused_sgd'] else ''}; blog: fp32 ({tf32}), NCHW, {r['workers']} workers")


def _footer(r):
    entries = r["entries"]
    measured = {(e["what"], e["pipeline"]): e for e in reversed(entries) if e["status"] == "measured"}
    foot = []
    if ("input", "ours") in measured and ("input", "blog") in measured:
        ours, blog = measured["input", "ours"]["images_per_s"], measured["input", "blog"]["images_per_s"]
        foot.append(f"input pipelines alone: ours {_num(ours)} vs blog {_num(blog)} images/s ({ours / blog:.1f}x)")
    p = r["projection"]
    if p:
        foot.append(f"FLOP/s: {r['flops_per_image'] / 1e9:.2f} GFLOP per training image; {p['entry']} runs at "
                    f"{100 * p['fraction_of_peak']:.1f}% of this device's {r['peak_precision']} peak "
                    f"({r['peak_flops'] / 1e12:.0f} TFLOP/s, data sheet)")
        foot.append(f"T4, 30 epochs: {p['t4_30_epochs_min']:.0f} min PROJECTED -- {p['assumption']}")
    elif r["peak_flops"] is None:
        foot.append(f"no known {r['peak_precision']} peak for this device: no fraction of peak, no T4 projection")
    counts = {s: sum(e["status"] == s for e in entries)
              for s in ("measured", "skipped", "failed", "running", "pending")}
    foot.append(f"{'finished' if r['finished'] else 'CUT OFF'} after {r['elapsed_s']:.0f} s"
                + (f" of a {r['budget_s']:g} s budget" if r["budget_s"] is not None else "")
                + "; " + ", ".join(f"{v} {k}" for k, v in counts.items() if v))
    return foot


def table(record) -> str:
    """The run at a glance (at most ``TABLE_LIMIT`` characters): every entry, the ratios, peak, projection."""
    r, entries = record, record["entries"]
    lines = [f"Training images/s on {r['device']} ({r['device_type']}, {r['cpu_count']} CPUs), torch {r['torch']}, "
             f"torchvision {r['torchvision']}, Python {r['python']}",
             f"median of {r['repeats']} repeats of {r['steps']} steps ({r['pipeline_steps']} batches for inputs) "
             f"after {r['warmup']} warm-up; a step = augmentation + forward + backward + SGD update",
             _settings(r),
             f"{'#':>2} {'entry':<46} {'batch':>5} {'images/s':>10} {'vs blog':>8}  {'repeats':<24} notes"]
    rows, foot = [row(e, i + 1) for i, e in enumerate(entries)], _footer(r)
    text = "\n".join(lines + rows + foot)
    while len(text) > TABLE_LIMIT and rows:  # many batch sizes: the record keeps every row
        rows.pop()
        text = "\n".join(lines + rows + [f"... {len(entries) - len(rows)} more rows in the JSON record"] + foot)
    return text


def markdown(record, name="") -> str:
    """The record as a Markdown table, with the same settings and footer lines as :func:`table`."""
    r = _load(record)
    head = (f"**{name}**: " if name else "") + (f"`{r.get('command', '')}` on {r['device']} "
                                                f"({r.get('cpu_count', '?')} CPUs), torch {r['torch']}, median of "
                                                f"{r['repeats']} repeats of {r['steps']} steps; {_settings(r)}")
    rows = ["| entry | batch | images/s | vs blog | notes |", "|---|---:|---:|---:|---|"]
    for e in r["entries"]:
        label, batch, ips, ratio, _, notes = _cells(e)
        rows.append(f"| {label} | {batch} | {ips} | {ratio} | {notes.replace('|', '/')} |")  # a reason's | ends a cell
    return "\n".join([head, ""] + rows + [""] + [f"{line}  " for line in _footer(r)])
