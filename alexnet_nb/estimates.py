"""What a benchmark record says about this machine, for the plan runner (``alexnet_nb.runner``).

Which record to trust (this machine's, else a committed one of the same GPU
and torch that holds every entry the speed matrix plans now), whether
compiling works here, how long a run should take (the measured images/s and
compile time), and which LRN implementation training runs with.
"""

import json
from pathlib import Path



def speed_record(state, committed, device=None):
    """The benchmark record to estimate with: this machine's (``state``), else a committed one measured on
    the same kind of device with the same torch (``device``: its name) that holds every entry the matrix
    plans now (a record from before new candidates were added is measured again), else None."""
    for folder, same_device_only in ((state, False), (committed, True)):
        for path in sorted(Path(folder).glob("bench-*.json"), reverse=True):
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if "entries" not in record:  # a `bench data` record
                continue
            if not same_device_only and not record.get("finished"):  # killed mid-matrix: measure it again
                continue
            if not same_device_only or (device and record.get("device") == device
                                        and record.get("torch") == _torch_version() and covers_matrix(record)):
                return record
    return None


def record_to_merge(committed, device):
    """A committed matrix record of this ``device`` (its name) and torch, whether or not it covers the matrix
    planned now: the speed matrix keeps what it measured and measures only what it lacks. Or None."""
    for path in sorted(Path(committed).glob("bench-*.json"), reverse=True):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if "entries" in record and device and record.get("device") == device \
                and record.get("torch") == _torch_version():
            return path
    return None


def covers_matrix(record, batch=128) -> bool:
    """Whether ``record`` holds every entry that the GPU command's speed matrix (at ``batch``) plans now, with
    an answer (measured, or failed with its reason) for each step the targets are judged on: the blog's, and
    ours compiled as training runs it and as each candidate. The rest may have been skipped for the
    budget: measuring the whole matrix again for those would cost every later session a run's worth of
    minutes."""
    from alexnet_nb import speed

    status = {e.get("id"): e.get("status") for e in record.get("entries", [])}
    for e in speed.plan([batch], gpu=True):
        judged = e["what"] == "step" and (e["pipeline"] == "blog" or e["compiled"])
        if e["id"] not in status or (judged and status[e["id"]] not in ("measured", "failed")):
            return False
    return True


def _torch_version():
    import torch

    return torch.__version__


def compile_works(record, warmed=()) -> bool:
    """False when compiling failed on this machine: the benchmark's compiled steps all failed or never ended
    (a crash leaves them "running"), or a compile warm-up failed; then runs go eager."""
    if any(w.get("status") == "failed" and w.get("compile_error") for w in warmed):
        return False
    if not record:
        return True
    compiled = [e for e in record.get("entries", []) if e.get("compiled") and e.get("pipeline") == "ours"]
    if any(e.get("status") == "measured" for e in compiled):
        return True
    return not any(e.get("status") in ("failed", "running") for e in compiled)


# Markers of a failed compile. Not a bare "triton": our LRN's kernels live in alexnet_nb/lrn_triton.py, so any
# traceback through them (out of memory, say) would read as a compile failure and send the rest eager.
COMPILE_TRACES = ("torch._dynamo", "torch._inductor", "triton.compiler", "CompilationError", "InductorError",
                  "BackendCompilerFailed")


def compile_failed(text) -> bool:
    """Whether a log (a file, or its text) shows that compiling, not training, is what failed."""
    if isinstance(text, Path):
        try:
            text = text.read_text()[-20000:]
        except OSError:
            return False
    return any(t in text for t in COMPILE_TRACES)


def measured_speed(record, cfg, compiled):
    """Training images/s for ``cfg``'s batch from the benchmark record; the nearest measured batch otherwise."""
    from alexnet_nb import speed

    if not record:
        return None
    for impl in (cfg.lrn_impl, None):
        for batch in (cfg.batch_size, None):
            found = speed.images_per_s(record, batch=batch, compiled=compiled, lrn_impl=impl)
            if found:
                return found
    return speed.images_per_s(record, batch=None, compiled=None, lrn_impl=None)


COMPILE_FLOOR_S = 45.0  # a graph the benchmark did not compile (another network, batch): assume at least this
WARM_EXTRA_S = 10.0
GUESSED_GPU_SPEED = 4000.0  # img/s when the benchmark measured nothing: slow on purpose, so estimates err long


def overhead_seconds(record, compiled, warm=False):
    """Start-up of a run beyond its epochs: process, data from the cache, and compiling the run's graphs.

    ``warm``: this machine has compiled the run's graphs before (a warm-up, or an earlier run of the same
    network and batch), so the compile costs what the benchmark's did from its cache. On the H200 that took
    7 s where the floor assumes 45, and estimates of 232 s met runs of 166-179 s: the floor had kept a run
    that fitted from starting.
    """
    from alexnet_nb import speed

    compile_s = (speed.compile_seconds(record) or 0.0) if record else 0.0
    if not compiled:
        return 20.0
    # Warm: the benchmark's cached compile covers the training graph only; the evaluation graph and a
    # CUDA graph's capture get WARM_EXTRA_S more.
    return 20.0 + (compile_s + WARM_EXTRA_S if warm and compile_s else max(compile_s, COMPILE_FLOOR_S))


def adopted_lrn(record, compiled):
    """The LRN implementation training runs use on this machine: the one ``bench_record.training_entry`` picks
    from the matrix (another than "slices" only when measured clearly faster, compiled, after its check on the
    device), or None for the recipes' own."""
    from alexnet_nb import speed

    found = speed.training_entry(record) if record and compiled else None
    return found["lrn_impl"] if found and found["lrn_impl"] != "slices" else None


# A run's process beyond its own wall_time_s (import, data from the cache, the compile cache's lookup, writing
# the checkpoint): 16.5-20.6 s in the first two H200 sessions (the plan table's seconds less each summary's
# wall_time_s: blog 170/150.7, paper 166/149.5, ours 179/158.7, ours-a 173/152.4). Runs record it since
# (summary.json's plan_entry.process_seconds); the largest recorded is used.
PROCESS_OVERHEAD_S = 21.0
MARGIN_SPREADS = 2.0  # per-epoch time: the mean plus two standard deviations of the runs measured


def from_runs(known, cfg, compiled, device, warm=True):
    """Seconds for ``cfg``'s epochs from finished runs measured on this ``device`` with the same batch size, LRN
    implementation and compile state (the same recipe when there are such runs, else any recipe): per epoch the
    mean plus ``MARGIN_SPREADS`` standard deviations of their seconds per epoch (with one run, 5% over it), plus
    the process overhead, and a cold compile unless ``warm`` (the runs measured found their graphs cached by the
    warm-up). None when no such run exists (then the benchmark's speed estimates). The H200's
    bench-based estimates erred 25% long (217-233 s for runs of 166-179 s)."""
    def matches(s, same_recipe):
        c = s.get("config", {})
        return (s.get("finished") and s.get("device") == device and bool(s.get("compiled")) == bool(compiled)
                and c.get("batch_size") == cfg.batch_size and c.get("lrn_impl") == cfg.lrn_impl
                and s.get("epochs_done") and s.get("wall_time_s") and "--resume" not in s.get("command", "")
                and (not same_recipe or s.get("recipe") == cfg.recipe))

    if not device:
        return None
    runs = [s for s in known.values() if s and matches(s, True)] or \
           [s for s in known.values() if s and matches(s, False)]
    if not runs:
        return None
    per_epoch = [s["wall_time_s"] / s["epochs_done"] for s in runs]
    mean = sum(per_epoch) / len(per_epoch)
    spread = (sum((p - mean) ** 2 for p in per_epoch) / (len(per_epoch) - 1)) ** 0.5 if len(per_epoch) > 1 \
        else 0.05 * mean
    overhead = max([PROCESS_OVERHEAD_S] + [s.get("plan_entry", {}).get("process_seconds", 0) - s["wall_time_s"]
                                           for s in runs if s.get("plan_entry", {}).get("process_seconds")])
    return overhead + cfg.epochs * (mean + MARGIN_SPREADS * spread) + (0.0 if warm else COMPILE_FLOOR_S)
