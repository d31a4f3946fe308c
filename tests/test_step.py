"""The one training step: compiled and eager agree, and what it builds is what training uses."""

import pytest
import torch

from alexnet_nb import config, step


def two_steps(compiled, **speed):
    torch.manual_seed(0)
    # No dropout: compiled code draws its masks from another random generator than eager code does.
    cfg = config.Config(compile=compiled, precision="fp32", batch_size=2, pca_lighting=0.1, crop_area_min=0.5,
                        ema_decay=0.9, dropout=0.0, lr=1e-3, **speed)
    parts = step.build(cfg, 3, "cpu")
    gen = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8, generator=gen)
    labels = torch.tensor([0, 2])
    losses = []
    for _ in range(2):
        loss, hits = parts.step(images, labels, step.draw_params(cfg, 2, gen, 64, 64, "cpu"))
        losses.append(loss.item())
    return parts, losses


def test_a_compiled_step_matches_an_eager_one():
    # torch.compile on a CPU takes ~30 s here (a cold cache): two small cases, each run once. The second compiles
    # augmentation, network and loss as one graph in the CUDA-graph mode (on a CPU no CUDA graph is made, but
    # the step's bookkeeping for one runs).
    eager, eager_losses = two_steps(False)
    assert not eager.compiled and eager.step.forward == eager.step._forward
    for speed in ({}, dict(compile_scope="step", compile_mode="reduce-overhead")):
        compiled, compiled_losses = two_steps(True, **speed)
        assert compiled.compiled and compiled.step.cuda_graphs == bool(speed)
        # what is compiled: the network alone, or the whole forward pass
        assert (compiled.step.net is compiled.net) == bool(speed)
        assert (compiled.step.forward == compiled.step._forward) != bool(speed)
        torch.testing.assert_close(compiled_losses, eager_losses, rtol=1e-5, atol=1e-6)
        for name, w in eager.net.state_dict().items():
            torch.testing.assert_close(compiled.net.state_dict()[name], w, rtol=1e-4, atol=1e-6)
        for name, w in eager.ema.module.state_dict().items():  # the moving average follows the same weights
            torch.testing.assert_close(compiled.ema.module.state_dict()[name], w, rtol=1e-4, atol=1e-6)


def test_build_follows_the_config():
    cfg = config.Config(precision="fp32", weight_decay=1e-3, decay_biases=False, fused_sgd=False, lrn=False,
                        pool=2, ema_decay=0.0)
    parts = step.build(cfg, 5, "cpu")
    assert parts.ema is None and parts.eval_net is parts.net and not parts.compiled
    assert [g["weight_decay"] for g in parts.optimizer.param_groups] == [1e-3, 0.0]
    assert parts.net.features.pool1.kernel_size == 2 and not hasattr(parts.net.features, "norm1")
    assert parts.net.features.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert step.on_gpu(None, "cpu") is False and step.on_gpu(None, "cuda") is True and step.on_gpu(True, "cpu")


def test_the_compile_warm_up_key_follows_what_is_compiled():
    from alexnet_nb import warm

    paper, ours = config.recipe("paper"), config.recipe("ours")
    assert warm.graph_key(paper) == warm.graph_key(ours)  # the network alone: their augmentation is outside it
    whole = dict(compile_scope="step")
    assert warm.graph_key(config.recipe("paper", **whole)) != warm.graph_key(config.recipe("ours", **whole))
    assert warm.graph_key(config.recipe("paper", compile_mode="reduce-overhead")) != warm.graph_key(paper)


def test_a_candidate_way_of_compiling_is_refused_under_torchrun_where_it_is_untried():
    cfg = config.Config(compile_scope="step", precision="fp32")
    with pytest.raises(ValueError, match="untried under torchrun"):
        step.build(cfg, 3, "cpu", wrap=lambda net: net)
    assert step.build(config.Config(precision="fp32"), 3, "cpu", wrap=lambda net: net).step is not None
