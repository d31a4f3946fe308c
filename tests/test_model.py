"""AlexNet against the 2012 paper: shapes, parameter counts, ablation switches, initialization.

The LRN layer has its own tests in test_lrn.py."""

import functools
import math
from types import SimpleNamespace

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
    assert list(main.kernel.iloc[:3]) == ["11x11/4", "3x3/2", "5x5/1"]  # overlapping 3x3 pooling, stride 2
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


# ----------------------------------------------------------------- ablation switches (issue 9)

SWITCHES = [
    dict(lrn=False),
    dict(pool=2),
    dict(activation="tanh"),
    dict(dropout_position="before"),
    dict(lrn_impl="torch", lrn_alpha=2e-4),
    dict(init="pytorch"),
    dict(lrn=False, pool=2, activation="tanh", dropout_position="before", init="pytorch"),
]


@functools.lru_cache(maxsize=None)
def paper_net_on_meta(groups):
    with torch.device("meta"):
        return model.AlexNet(10, groups)


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("switches", SWITCHES, ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()))
def test_every_switch_keeps_the_paper_shapes_and_shows_in_the_summary(switches, groups):
    with torch.device("meta"):  # shapes without the arithmetic; test_from_config runs a switched network for real
        net = model.AlexNet(10, groups, **switches)
        s = model.layer_summary(net)
    main = s[s.type.isin(["Conv2d", "MaxPool2d", "Linear"])]
    assert list(main.output) == PAPER_SHAPES + ["10"]
    paper = paper_net_on_meta(groups)
    assert model.count_parameters(net) == model.count_parameters(paper)  # no weights added or lost
    # Checkpoints and analysis code rely on the weight layers' names: the same for every switch.
    assert net.state_dict().keys() == paper.state_dict().keys()
    lrn = switches.get("lrn", True)
    assert list(s.layer[s.type == "LRN"]) == (["norm1", "norm2"] if lrn else [])
    act = switches.get("activation", "relu")
    assert list(s.layer[s.type == {"relu": "ReLU", "tanh": "Tanh"}[act]]) == [f"{act}{i}" for i in range(1, 8)]
    pool = switches.get("pool", 3)
    assert set(s.kernel[s.type == "MaxPool2d"]) == {f"{pool}x{pool}/2"}
    order = [n for n in s.layer if n.startswith(("fc6", "fc7", "drop"))]
    before = switches.get("dropout_position") == "before"
    assert order == (["drop6", "fc6", "drop7", "fc7"] if before else ["fc6", "drop6", "fc7", "drop7"])


def test_lrn_switch_sets_alpha_and_implementation():
    net = model.AlexNet(10, lrn_alpha=2e-4, lrn_impl="torch")
    norms = [m for m in net.modules() if isinstance(m, model.LRN)]
    assert len(norms) == 2 and all(m.alpha == 2e-4 and m.impl == "torch" for m in norms)
    # The blog's nn.LocalResponseNorm(size=5, alpha=1e-3): torch divides by n, so alpha 2e-4 in the paper's terms.
    x = torch.randn(1, 96, 5, 5) * 60
    torch.testing.assert_close(norms[0](x), nn.LocalResponseNorm(5, alpha=1e-3, beta=0.75, k=2.0)(x))


def test_dropout_before_acts_on_the_inputs_of_fc6_and_fc7():
    net = model.AlexNet(10, dropout=0.3, dropout_position="before")
    kinds = [type(m).__name__ for m in net.classifier]
    assert kinds == ["Dropout", "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Linear"]
    assert all(m.p == 0.3 for m in net.classifier if isinstance(m, nn.Dropout))


@pytest.mark.parametrize("switches", [dict(), dict(activation="tanh", dropout_position="before")])
def test_fc7_features_are_the_fc7_activation(switches):
    torch.manual_seed(0)
    net = model.AlexNet(10, **switches).eval()
    act7 = getattr(net.classifier, f"{switches.get('activation', 'relu')}7")
    seen = []
    act7.register_forward_hook(lambda m, i, out: seen.append(out.clone()))
    x = torch.randn(2, 3, 227, 227)
    with torch.no_grad():
        net(x)
        feats = net.fc7_features(x)
    assert feats.shape == (2, 4096)
    torch.testing.assert_close(feats, seen[0])


def test_tanh_gets_the_tanh_gain_and_pytorch_init_is_pytorchs():
    torch.manual_seed(0)
    conv3 = model.weight_layers(model.AlexNet(10, activation="tanh"))[2]
    assert abs(conv3.weight.std().item() - (5 / 3) / math.sqrt(256 * 9)) < 0.001  # Kaiming with tanh's gain
    net = model.AlexNet(10, init="pytorch")
    for m in model.weight_layers(net):  # PyTorch's default: uniform within 1/sqrt(fan_in), weights and biases
        bound = 1 / math.sqrt(m.weight[0].numel())
        assert 0.9 * bound < m.weight.abs().max() <= bound and 0.9 * bound < m.bias.abs().max() <= bound
    paper = model.AlexNet(10, init="paper")
    model.init_weights(paper, "pytorch")  # re-initializes, like a fresh network
    assert not torch.all(model.weight_layers(paper)[1].bias == 1)


def test_from_config_builds_the_same_network():
    full = SimpleNamespace(groups=2, init="paper", dropout=0.2, lrn=False, lrn_alpha=2e-4, lrn_impl="torch",
                           pool=2, activation="tanh", dropout_position="before", epochs=3)  # extra fields ignored
    torch.manual_seed(0)
    net = model.from_config(full, 7)
    torch.manual_seed(0)
    direct = model.AlexNet(7, 2, "paper", 0.2, lrn=False, lrn_alpha=2e-4, lrn_impl="torch", pool=2,
                           activation="tanh", dropout_position="before")
    assert repr(net) == repr(direct)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), direct.state_dict().values()))
    net.eval()
    with torch.no_grad():
        assert net(torch.randn(2, 3, 227, 227)).shape == (2, 7)
    old = SimpleNamespace(groups=1, init="default", dropout=0.5)  # a config saved before the switches existed
    with torch.device("meta"):
        assert repr(model.from_config(old, 7)) == repr(model.AlexNet(7))


@pytest.mark.parametrize("bad", [dict(pool=4), dict(activation="gelu"), dict(dropout_position="middle"),
                                 dict(lrn_impl="cudnn"), dict(init="xavier")])
def test_invalid_switches_are_refused(bad):
    with pytest.raises(ValueError, match=next(iter(bad))), torch.device("meta"):
        model.AlexNet(10, lrn=False, **bad)  # checked even where unused
