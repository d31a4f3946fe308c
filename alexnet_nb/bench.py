"""Throughput benchmarks: ``python -m alexnet_nb.bench data|train``.

``data``: how long decoding a split takes (every JPEG, batched), writing the
decoded cache, and reloading it (what every later session pays).
``train``: see :func:`bench_train`.
"""

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path


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


def add_train_arguments(p):
    p.add_argument("--source", help="extracted tiny-imagenet-200 folder (the baseline reads its JPEGs; "
                   "default: data.dataset_source())")
    p.add_argument("--device", help="default: the GPU if there is one, else the CPU")
    p.add_argument("--batch-size", type=int, help="default 128 on a GPU, 32 on a CPU")
    p.add_argument("--steps", type=int, help="timed steps per measurement (default 50 on a GPU, 3 on a CPU)")
    p.add_argument("--warmup", type=int, help="untimed steps first (default 10 on a GPU, 1 on a CPU)")
    p.add_argument("--pipeline-steps", type=int, default=50,
                   help="timed batches when measuring the input pipelines alone (many more than the "
                   "DataLoader prefetches, so its queue cannot flatter it)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                   help="our pipeline's precision (the baseline is always fp32)")
    p.add_argument("--compile", action="store_true", help="torch.compile our network")
    p.add_argument("--workers", type=int, default=2, help="the baseline's DataLoader workers (the blog: 2)")
    p.add_argument("--profile", type=int, default=0, metavar="STEPS",
                   help="also profile this many of our training steps (torch.profiler) and print the top ops")


def peak_flops(device, precision):
    """The device's dense peak for ``precision`` from ``PEAK_FLOPS``, or None when unknown."""
    import torch

    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peaks in PEAK_FLOPS.items():  # the more specific names come first
        if key in name:
            return peaks.get(precision)
    return None


def _timed(step, warmup, steps, device, images_per_step):
    """Images per second of ``step()`` over ``steps`` calls, after ``warmup`` untimed ones."""
    import torch

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return steps * images_per_step / (time.perf_counter() - t0)


def _blog_loader(folder, batch, workers):
    """The blog's input pipeline: PIL decode every epoch, Resize(227), flip, ToTensor, Normalize."""
    import torch
    from torchvision import datasets, transforms

    from alexnet_nb import augment

    tf = transforms.Compose([transforms.Resize(augment.IMAGE_SIZE), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(), transforms.Normalize(augment.MEAN, augment.STD)])
    ds = datasets.ImageFolder(str(Path(folder) / "train"), transform=tf)
    return torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                                       drop_last=True, persistent_workers=workers > 0)


def _endless(loader):
    while True:
        yield from loader


def _profile(step, steps, device, rows=25):
    """torch.profiler's table of the ops that cost most over ``steps`` calls of ``step()``."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    key = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows)


T4_FP16 = PEAK_FLOPS["T4"]["fp16"]
EPOCH_IMAGES = 90_000  # training images per epoch once the 10,000-image holdout is carved out


def t4_projection_minutes(flops_per_image, fraction_of_peak, epochs=30):
    """30 epochs on a T4, *projected*: this FLOP count at ``fraction_of_peak`` of the T4's published fp16 rate."""
    return epochs * EPOCH_IMAGES * flops_per_image / (T4_FP16 * fraction_of_peak) / 60


def bench_train(args) -> dict:
    """Steady-state training images/s: our on-device pipeline vs the blog's, same machine, same run.

    For each: the input pipeline alone, then whole training steps (input,
    forward, backward, SGD). Ours also as model FLOP/s and, on a GPU with a
    known peak, as a fraction of it. Prints both, their ratio; returns a dict.
    """
    import torch
    import torch.nn.functional as F

    from alexnet_nb import augment, data, env, evaluate, model, train

    device = torch.device(args.device) if args.device else env.default_device()
    gpu = device.type == "cuda"
    # "is None", not "or": an explicit --warmup 0 must mean no warm-up, not the default.
    batch = args.batch_size if args.batch_size is not None else (128 if gpu else 32)
    steps = args.steps if args.steps is not None else (50 if gpu else 3)
    warmup = args.warmup if args.warmup is not None else (10 if gpu else 1)
    source = Path(args.source) if args.source else data.dataset_source()
    if not (source / "train").is_dir():
        raise SystemExit(f"the baseline reads JPEGs from an extracted folder; {source} is not one (unzip it)")
    name = torch.cuda.get_device_name(device) if gpu else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; batch {batch}; {steps} timed training steps "
          f"({args.pipeline_steps} batches for the pipelines alone) after {warmup} warm-up")
    torch.backends.cudnn.benchmark = gpu
    results = {}

    # Ours: the decoded split on the device as uint8, batched augmentation, mixed precision, NHWC.
    split = data.load_split(source, "train", progress=False)
    images, labels = split.images.to(device), split.labels.to(device)
    precision, amp_dtype, use_scaler = train.resolve_precision(args.precision, device)
    gen = torch.Generator(device).manual_seed(0)

    def our_batch():
        idx = torch.randint(0, len(labels), (batch,), generator=gen, device=device)
        x = augment.train_batch(images[idx], gen).contiguous(memory_format=torch.channels_last)
        return x, labels[idx]

    net = model.AlexNet(len(split.classes)).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    fwd = torch.compile(net) if args.compile else net

    def our_step():
        x, y = our_batch()
        with evaluate.autocast(device, amp_dtype):
            loss = F.cross_entropy(fwd(x).float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    results["ours_pipeline"] = _timed(our_batch, warmup, args.pipeline_steps, device, batch)
    results["ours_step"] = _timed(our_step, warmup, steps, device, batch)
    if args.profile:
        results["profile"] = _profile(our_step, args.profile, device)
        print(results["profile"])
    del images, labels, split, net, opt, fwd

    # The blog's: PIL + torchvision transforms in a 2-worker DataLoader, fp32, NCHW.
    loader = _endless(_blog_loader(source, batch, args.workers))
    results["blog_pipeline"] = _timed(lambda: next(loader), warmup, args.pipeline_steps, device, batch)
    blog_net = model.AlexNet(200).to(device)
    blog_opt = torch.optim.SGD(blog_net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def blog_step():
        x, y = next(loader)
        loss = F.cross_entropy(blog_net(x.to(device)), y.to(device))
        blog_opt.zero_grad(set_to_none=True)
        loss.backward()
        blog_opt.step()

    results["blog_step"] = _timed(blog_step, warmup, steps, device, batch)
    del loader

    macs = int(model.layer_summary(model.AlexNet(200)).iloc[-1]["mult_adds"])
    flops = 3 * 2 * macs  # multiply-add = 2 FLOPs; backward costs about twice the forward
    results.update(flops_per_image=flops, ours_flops=results["ours_step"] * flops, device=name,
                   precision=precision, batch=batch)
    peak = peak_flops(device, precision)
    results["fraction_of_peak"] = results["ours_flops"] / peak if peak else None
    print(f"input pipeline only   ours {results['ours_pipeline']:>9,.0f} img/s   "
          f"blog {results['blog_pipeline']:>9,.0f} img/s   ratio {results['ours_pipeline'] / results['blog_pipeline']:.1f}x")
    print(f"whole training step   ours {results['ours_step']:>9,.0f} img/s   "
          f"blog {results['blog_step']:>9,.0f} img/s   ratio {results['ours_step'] / results['blog_step']:.2f}x")
    print(f"ours: {precision}, channels_last{', compiled' if args.compile else ''}; blog: fp32, "
          f"DataLoader with {args.workers} workers")
    print(f"model: {macs / 1e9:.2f} G multiply-adds per 227x227 image forward, {flops / 1e9:.2f} GFLOP per "
          f"training image; ours runs at {results['ours_flops'] / 1e12:.3f} TFLOP/s"
          + (f" = {100 * results['fraction_of_peak']:.1f}% of this device's {precision} peak "
             f"({peak / 1e12:.0f} TFLOP/s)" if peak else " (peak unknown for this device)"))
    if results["fraction_of_peak"]:
        results["t4_30_epochs_min_projected"] = t4_projection_minutes(flops, results["fraction_of_peak"])
        print(f"projection, not a measurement: 30 epochs on a T4 at the same {100 * results['fraction_of_peak']:.1f}% "
              f"of its fp16 peak would take {results['t4_30_epochs_min_projected']:.0f} minutes")
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m alexnet_nb.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("data", help="decode / cache / reload timings of the dataset")
    p.add_argument("--source", help="tiny-imagenet-200 folder or zip (default: data.dataset_source())")
    p.add_argument("--splits", nargs="+", default=["train", "val"], choices=["train", "val"])
    p.add_argument("--cache-dir", help="where the temporary benchmark cache goes (default: system temp)")
    p.set_defaults(func=bench_data)
    p = sub.add_parser("train", help="training throughput: our pipeline vs the blog's")
    add_train_arguments(p)
    p.set_defaults(func=bench_train)
    for p in sub.choices.values():
        p.add_argument("--json", metavar="PATH", help="also write the figures, the command and the versions here")
    args = parser.parse_args(argv)
    results = args.func(args)
    if args.json:
        _write_json(args.json, results, argv)
    return results


def _write_json(path, results, argv):
    import json
    import platform
    import sys

    import torch

    args = sys.argv[1:] if argv is None else list(argv)
    record = dict(results, command="python -m alexnet_nb.bench " + " ".join(args),
                  torch=torch.__version__, python=platform.python_version())
    Path(path).write_text(json.dumps(record, indent=2, default=str))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
