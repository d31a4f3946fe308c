"""Warm the compile cache for a run: ``python -m alexnet_nb.warm --recipe NAME [flags]``.

Takes the same flags as ``python -m alexnet_nb.train`` and runs a few training
steps and one evaluation batch of exactly that run's network, batch and
precision on random images, through the same code (``step.TrainStep``,
``evaluate.evaluate``). Compiled graphs land in PyTorch's on-disk cache, so the
real run, started later on the same machine, skips most of its compiling. The
GPU plan runs this while the dataset is still arriving. On a CPU (compiling
off) it is a smoke test of the run's network.
"""

import time

import torch

from alexnet_nb import cli, data, evaluate, train
from alexnet_nb import step as step_lib


# What decides the compiled graphs of a run: the network and the shapes. Recipes that differ only in the
# schedule, the augmentation, the loss's label smoothing or the moving average share their graphs.
GRAPH_FIELDS = ("groups", "lrn", "lrn_alpha", "lrn_impl", "pool", "activation", "dropout", "dropout_position",
                "batch_size", "eval_batch_size", "eval_flip", "precision", "channels_last", "classes",
                "compile_mode", "compile_scope")
# With compile_scope "step" the augmentation and the loss are in the graph too.
STEP_SCOPE_FIELDS = ("crop_size", "crop_area_min", "crop_ratio", "pca_lighting", "label_smoothing")


def graph_key(cfg) -> str:
    fields = GRAPH_FIELDS + (STEP_SCOPE_FIELDS if cfg.compile_scope == "step" else ())
    return " ".join(f"{f}={getattr(cfg, f)}" for f in fields)


def warm(cfg, num_classes=200, steps=3):
    """Seconds spent: ``steps`` training steps and one evaluation on random data, as the run would do them."""
    device = train.pick_device(cfg, 0)
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    parts = step_lib.build(cfg, num_classes, device)
    gen = torch.Generator(device).manual_seed(0)
    images = torch.randint(0, 256, (cfg.batch_size, 3, 64, 64), dtype=torch.uint8, device=device, generator=gen)
    labels = torch.randint(0, num_classes, (cfg.batch_size,), device=device, generator=gen)
    for _ in range(steps):
        parts.step(images, labels, step_lib.draw_params(cfg, cfg.batch_size, gen, 64, 64, device))
    fake = data.Split(images[:1].expand(cfg.eval_batch_size, -1, -1, -1).contiguous(),
                      labels[:1].expand(cfg.eval_batch_size).contiguous(), [], [])
    evaluate.evaluate(parts.eval_net, fake, cfg.eval_batch_size, device, cfg.crop_size, cfg.image_size,
                      parts.amp_dtype, cfg.channels_last, flip=cfg.eval_flip)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started, device, parts.precision, parts.compiled


def main(argv=None):
    cfg = cli.parse_config(argv, description=__doc__.split("\n\n")[0])
    seconds, device, precision, compiled = warm(cfg, num_classes=cfg.classes or 200)
    print(f"{cfg.recipe}: {'compiled' if compiled else 'ran'} training and evaluation on {device.type} "
          f"({precision}, batch {cfg.batch_size}) in {seconds:.1f} s")


if __name__ == "__main__":
    main()
