"""Benchmarks: ``python -m alexnet_nb.bench data|train``.

``data``: how long decoding a split takes (every JPEG, batched), writing the
decoded cache, and reloading it (what every later session pays).

``train``: training images/s, our step (``step.TrainStep``, what training
runs) against the blog's (:mod:`alexnet_nb.baseline`), on the same machine in
the same run; the measuring is :mod:`alexnet_nb.speed`::

    python -m alexnet_nb.bench train                      # ours, the blog's, both input pipelines
    python -m alexnet_nb.bench train --matrix --json F    # eager/compiled x LRN x batch sizes, within --budget

``--json`` is rewritten after every measurement, so a run cut off keeps what
it measured; ``speed.images_per_s(record, batch=128, compiled=True,
lrn_impl="slices")`` reads a figure back.
"""

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

from alexnet_nb import baseline, files, speed
from alexnet_nb.lrn import IMPLS as LRN_IMPLS
from alexnet_nb.bench_record import PEAK_FLOPS, peak_flops, t4_projection_minutes  # noqa: F401 (importable here)


def bench_data(args) -> dict:
    """Time decode (no cache), cache write and cache reload for each split; print and return them."""
    import torch

    from alexnet_nb import data

    source = Path(args.source) if args.source else data.dataset_source()
    scratch = Path(tempfile.mkdtemp(prefix="alexnet_nb_bench_", dir=args.cache_dir))
    print(f"source: {source.name} ({'zip' if source.is_file() else 'folder'}), {os.cpu_count()} CPUs, "
          f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    results = {}
    try:
        for split in args.splits:
            # Cold: list files, decode every JPEG, write the cache. Then warm: reload it.
            cold = data.load_split(source, split, cache_dir=scratch, progress=False)
            first = dict(data.last_load)
            t0 = time.perf_counter()
            warm = data.load_split(source, split, cache_dir=scratch, progress=False)
            reload_s = time.perf_counter() - t0
            if data.last_load.get("cache") != "hit":
                raise RuntimeError("the second load did not come from the cache")
            if not (torch.equal(warm.images, cold.images) and torch.equal(warm.labels, cold.labels)):
                raise RuntimeError("the cache does not reproduce the decoded split")
            results[split] = dict(images=len(cold), decode_s=first["decode_s"], decode_cpu_s=first["decode_cpu_s"],
                                  write_s=first["write_s"], first_load_s=first["total_s"], reload_s=reload_s)
            print(f"{split:>5}: {len(cold):,} images  read+decode {first['decode_s']:.2f} s wall "
                  f"({len(cold) / first['decode_s']:,.0f} img/s, {first['decode_cpu_s']:.2f} s CPU)  "
                  f"first load incl. listing and cache write {first['total_s']:.2f} s  "
                  f"reload from cache {reload_s:.2f} s")
            del cold, warm
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return results


def add_train_arguments(p):
    p.add_argument("--matrix", action="store_true",
                   help="eager and compiled, LRN slices and torch, every batch size, the blog's step and both "
                   "input pipelines, most important first, within --budget")
    p.add_argument("--budget", type=float, metavar="SECONDS",
                   help=f"skip what would not fit in this many seconds from the start (matrix default "
                   f"{speed.DEFAULT_BUDGET_S}: the whole command under 3 minutes on an H100)")
    p.add_argument("--source", help="extracted tiny-imagenet-200 folder (the blog's pipeline reads its JPEGs; "
                   "default: data.dataset_source())")
    p.add_argument("--cache-dir", help="where the decoded split is cached (default: the data folder's cache/)")
    p.add_argument("--device", help="default: the GPU if there is one, else the CPU")
    p.add_argument("--batch-sizes", "--batch-size", dest="batch_sizes", type=int, nargs="+", metavar="N",
                   help="matrix default 128 256 512 on a GPU, 8 16 32 on a CPU; a single run takes one "
                   "(default 128 on a GPU, 8 on a CPU)")
    p.add_argument("--steps", type=int, help="timed steps per repeat (default 50 on a GPU, 2 on a CPU)")
    p.add_argument("--warmup", type=int, help="untimed steps first (default 10 on a GPU, 1 on a CPU; a compiled "
                   "entry at least 1)")
    p.add_argument("--repeats", type=int, help="timed repeats per entry; the figure is their median (default 3)")
    p.add_argument("--pipeline-steps", type=int,
                   help="timed batches per repeat for the input pipelines alone (default 50 on a GPU, 10 on a "
                   "CPU: many more than the DataLoader prefetches, so its queue cannot flatter it)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                   help="our pipeline's precision (the blog's is always fp32)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile our step (single run), or measure the compiled entries (matrix); "
                   "default: on a GPU yes, on a CPU no (compiling is slow there)")
    p.add_argument("--lrn-impl", default="slices", choices=list(LRN_IMPLS),
                   help="single run: our network's LRN (the matrix measures both)")
    p.add_argument("--workers", type=int, default=baseline.WORKERS, help="the blog's DataLoader workers (the blog: 2)")
    p.add_argument("--merge", metavar="RECORD",
                   help="a record of the same device and torch: what it measured is kept, and only the entries it "
                   "lacks are measured (each ratio to the blog's step stays within one run)")
    p.add_argument("--profile", type=int, default=0, metavar="STEPS",
                   help="also profile this many of our training steps (torch.profiler): in a single run our step "
                   "(the top ops printed); in the matrix each compiled step at the first batch size (kept in the "
                   "record, with gpu_busy: the GPU kernels' share of a step)")


def bench_train(args, argv) -> dict:
    """Training images/s of our step against the blog's, same machine, same run: see :mod:`alexnet_nb.speed`."""
    if not args.matrix and args.batch_sizes is not None and len(args.batch_sizes) > 1:
        raise SystemExit("a single run takes one --batch-size; --matrix measures several")
    return speed.run(args, argv)


def main(argv=None):
    """Run a benchmark; returns its results (``train``: the record, see :mod:`alexnet_nb.speed`)."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    parser = argparse.ArgumentParser(prog="python -m alexnet_nb.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("data", help="decode / cache / reload timings of the dataset")
    p.add_argument("--source", help="tiny-imagenet-200 folder or zip (default: data.dataset_source())")
    p.add_argument("--splits", nargs="+", default=["train", "val"], choices=["train", "val"])
    p.add_argument("--cache-dir", help="where the temporary benchmark cache goes (default: system temp)")
    p.set_defaults(func=lambda args: _with_json(bench_data(args), args.json, argv))
    p = sub.add_parser("train", help="training throughput: our step vs the blog's (--matrix: many settings)")
    add_train_arguments(p)
    p.set_defaults(func=lambda args: bench_train(args, argv))
    for p in sub.choices.values():
        p.add_argument("--json", metavar="PATH", help="also write the figures, the command and the versions here")
    args = parser.parse_args(argv)
    return args.func(args)


def _with_json(results, path, argv):
    import platform

    import torch

    if path:
        record = dict(results, command="python -m alexnet_nb.bench " + shlex.join(argv),
                      torch=torch.__version__, python=platform.python_version(),
                      machine=f"{platform.machine()}, {os.cpu_count()} CPUs")
        text = json.dumps(record, indent=2, default=str)
        files.atomic_write(path, lambda tmp: tmp.write_text(text))
        print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
