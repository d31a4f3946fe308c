"""The architecture drawing shows what model.layer_summary says, switches included."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from alexnet_nb import diagram, model  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def texts(fig):
    return "\n".join(t.get_text() for t in fig.axes[0].texts)


def test_blocks_follow_the_summary():
    parts = diagram.blocks(model.layer_summary(model.AlexNet(200)))
    assert [p["name"] for p in parts] == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]
    assert parts[0]["then"] == ["ReLU", "LRN", "max-pool 3x3/2"] and parts[0]["leaves"] == "27x27x96"
    assert parts[4]["leaves"] == "6x6x256" and parts[5]["then"] == ["ReLU", "dropout"]
    assert parts[-1]["output"] == "200" and parts[-1]["then"] == []


def test_the_drawing_carries_every_shape_of_the_summary():
    summary = model.layer_summary(model.AlexNet(200))
    text = texts(diagram.draw(summary))
    for row in summary[summary["type"] == "Conv2d"].itertuples():
        assert f"-> {row.output}" in text
    assert "96 kernels 11x11" in text and "stride 4" in text and "200 units" in text
    assert "37.8M params" in text  # fc6: 9216 x 4096 + 4096


def test_the_drawing_shows_the_model_switches():
    text = texts(diagram.draw(model.layer_summary(model.AlexNet(10, lrn=False, pool=2, activation="tanh"))))
    assert "LRN" not in text and "max-pool 2x2/2" in text and "tanh" in text and "ReLU" not in text
