"""AlexNet against the 2012 paper: shapes, parameter counts, LRN, initialization."""

import math

import pytest
import torch
from torch import nn

from alexnet_nb import model

# Section 3 / figure 2, one entry per conv, pool and FC layer (HxWxC).
PAPER_SHAPES = ["55x55x96", "27x27x96", "27x27x256", "13x13x256", "13x13x384",
                "13x13x384", "13x13x256", "6x6x256", "4096", "4096"]


@pytest.fixture(scope="module")
def net200():
    torch.manual_seed(0)
    return model.AlexNet(200)


@pytest.mark.parametrize("num_classes, groups, expected", [
    (1000, 1, 62_378_344), (1000, 2, 60_965_224), (200, 1, 59_100_744)])
def test_parameter_counts(num_classes, groups, expected):
    assert model.count_parameters(model.AlexNet(num_classes, groups=groups)) == expected


def test_two_gpu_connectivity_only_in_conv2_conv4_conv5():
    net = model.AlexNet(10, groups=2)
    groups = [m.groups for m in net.features if isinstance(m, nn.Conv2d)]
    assert groups == [1, 2, 1, 2, 2]


@pytest.mark.parametrize("num_classes", [200, 7])
def test_summary_shapes_follow_the_paper(num_classes):
    net = model.AlexNet(num_classes)
    s = model.layer_summary(net)
    main = s[s.type.isin(["Conv2d", "MaxPool2d", "Linear"])]
    assert list(main.output) == PAPER_SHAPES + [str(num_classes)]
    assert list(main.layer) == ["conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5",
                                "pool5", "fc6", "fc7", "fc8"]
    total = s.iloc[-1]
    assert total.layer == "total" and total.params == model.count_parameters(net)
    # conv1: 55*55 outputs per kernel, 96 kernels, 11*11*3 multiply-adds each
    assert s.set_index("layer").loc["conv1", "mult_adds"] == 55 * 55 * 96 * 11 * 11 * 3
    assert total.mult_adds == s.mult_adds.iloc[:-1].sum()


def test_summary_at_other_sizes_and_for_torchvision(net200):
    s = model.layer_summary(net200, (3, 224, 224))  # the paper's text says 224
    assert s[s.layer == "pool5"].output.item() == "5x5x256"
    assert "fc6" not in set(s.layer)  # FC6 is defined only for 6x6x256
    tv = pytest.importorskip("torchvision").models.alexnet(num_classes=200)
    t = model.layer_summary(tv, (3, 64, 64))
    assert t[t.type == "Conv2d"].output.iloc[0] == "15x15x64"
    assert t.iloc[-1].params == model.count_parameters(tv) == 57_823_240


def test_forward_shape_and_input_check(net200):
    net200.eval()
    with torch.no_grad():
        assert net200(torch.randn(2, 3, 227, 227)).shape == (2, 200)
        with pytest.raises(ValueError, match="227"):
            net200(torch.randn(1, 3, 224, 224))


def test_dropout_acts_on_outputs_of_fc6_and_fc7():
    net = model.AlexNet(10, dropout=0.3)
    kinds = [type(m).__name__ for m in net.classifier]
    assert kinds == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert all(m.p == 0.3 for m in net.classifier if isinstance(m, nn.Dropout))
    assert not any(isinstance(m, nn.Dropout) for m in net.features)
    assert net.features[0].weight.shape == (96, 3, 11, 11)


def paper_lrn(a, k=2.0, n=5, alpha=1e-4, beta=0.75):
    """Section 3.3 with explicit loops over channels."""
    b = torch.empty_like(a)
    N = a.shape[1]
    for i in range(N):
        s = sum(a[:, j] ** 2 for j in range(max(0, i - n // 2), min(N - 1, i + n // 2) + 1))
        b[:, i] = a[:, i] / (k + alpha * s) ** beta
    return b


def test_lrn_matches_the_paper_formula():
    torch.manual_seed(0)
    a = torch.randn(2, 9, 3, 3, dtype=torch.float64) * 60  # alpha*sum(a^2) ~ k: the division matters
    expected = paper_lrn(a)
    assert not torch.allclose(expected, a / 2 ** 0.75, rtol=1e-3)  # it is not just a constant
    torch.testing.assert_close(model.LRN()(a), expected)
    # The pitfall: PyTorch's alpha is divided by n, so passing the paper's 1e-4 is wrong.
    naive = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)(a)
    assert not torch.allclose(naive, expected, rtol=1e-3)


def test_lrn_groups_keep_each_gpu_separate():
    a = torch.randn(1, 8, 2, 2) * 60
    b = a.clone()
    b[:, 4:] *= 3  # change the second GPU's maps only
    lrn = model.LRN(groups=2)
    torch.testing.assert_close(lrn(a)[:, :4], lrn(b)[:, :4])
    assert not torch.allclose(model.LRN()(a)[:, :4], model.LRN()(b)[:, :4])


def test_paper_initialization():
    torch.manual_seed(0)
    net = model.AlexNet(200, init="paper")
    names = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]
    layers = dict(zip(names, model.weight_layers(net)))
    for name, m in layers.items():
        assert abs(m.weight.std().item() - 0.01) < 0.0005, name
        assert abs(m.weight.mean().item()) < 0.001, name
        bias = 1.0 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
        assert torch.all(m.bias == bias), name


def test_default_init_keeps_the_signal_and_paper_init_loses_it():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 227, 227)
    default = model.activation_stats(model.AlexNet(10), x).set_index("layer")
    paper = model.activation_stats(model.AlexNet(10, init="paper"), x).set_index("layer")
    hidden = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"]
    assert default.loc[hidden, "std"].between(0.3, 5).all()
    assert (default.loc[hidden, "image_std"] > 0.1).all()
    # Under the paper's init (and inputs of spread 1) the top layers hardly depend on the image.
    assert (paper.loc[["fc7", "fc8"], "image_std"] < 0.01).all()
    with pytest.raises(ValueError):
        model.AlexNet(10, init="xavier")


def test_default_init_fc8_starts_near_uniform():
    net = model.AlexNet(200)
    last = model.weight_layers(net)[-1]
    assert abs(last.weight.std().item() - 0.001) < 0.0001 and torch.all(last.bias == 0)
    conv3 = model.weight_layers(net)[2]
    assert abs(conv3.weight.std().item() - math.sqrt(2 / (256 * 9))) < 0.001  # Kaiming, fan_in


def test_overfit_lowers_the_loss_of_a_model_that_can_learn():
    torch.manual_seed(0)
    x, y = torch.randn(32, 20), torch.arange(32) % 4
    net = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 4))
    losses = model.overfit(net, x, y, steps=30, lr=0.1)
    assert len(losses) == 30 and losses[-1] < 0.5 * losses[0]


def test_channels_last_and_autocast_on_cpu(net200):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 227, 227)
    net200.eval()
    with torch.no_grad():
        ref = net200(x)
        net = net200.to(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = net(x.to(memory_format=torch.channels_last))
            lrn_out = model.LRN()(torch.randn(1, 8, 4, 4, dtype=torch.bfloat16))
    net200.to(memory_format=torch.contiguous_format)
    assert out.dtype == torch.bfloat16 and lrn_out.dtype == torch.bfloat16
    assert torch.isfinite(out).all()
    assert (out.float() - ref).abs().max() < 0.1 * ref.abs().max() + 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_channels_last_and_fp16_autocast_on_gpu():
    net = model.AlexNet(200).cuda().to(memory_format=torch.channels_last).eval()
    x = torch.randn(4, 3, 227, 227, device="cuda").to(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
        out = net(x)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()


def test_side_by_side_with_torchvision(net200):
    tv = pytest.importorskip("torchvision").models.alexnet(num_classes=200)
    t = model.side_by_side({"ours": model.layer_summary(net200),
                            "torchvision": model.layer_summary(tv, (3, 224, 224))})
    assert list(t.index) == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]
    assert t.loc["conv1", ("ours", "params")] == 96 * (3 * 11 * 11 + 1)
    assert t.loc["conv1", ("torchvision", "params")] == 64 * (3 * 11 * 11 + 1)
    assert list(t[("torchvision", "output")].iloc[:2]) == ["55x55x64", "27x27x192"]


def test_compare_inits_trains_each_scheme_from_the_same_seed():
    torch.manual_seed(1)
    x, y = torch.randn(1, 3, 227, 227), torch.tensor([1])
    losses = model.compare_inits(x, y, num_classes=3, steps=1, lr=0.001)
    assert list(losses.columns) == ["paper", "default"] and len(losses) == 1
    assert torch.isfinite(torch.tensor(losses.values)).all()
    assert losses.paper[0] != losses.default[0]
