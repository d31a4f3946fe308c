"""fc7 features and the nearest-neighbour search of the paper's figure 4 (right)."""

from collections import OrderedDict

import pytest
import torch
from torch import nn

from alexnet_nb import augment, model, neighbours


@pytest.mark.parametrize("position", ["after", "before"])
def test_fc7_features_are_relu7_outputs_of_the_centre_view(position):
    torch.manual_seed(0)
    net = model.AlexNet(5, dropout_position=position).train()  # features must come out in eval mode anyway
    images = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    features = neighbours.fc7_features(net, images, batch_size=2, dtype=torch.float32)
    assert net.training  # the mode is restored
    with torch.no_grad():
        net.eval()
        h = torch.flatten(net.features(augment.center_view(images)), 1)
        expected = torch.relu(net.classifier.fc7(torch.relu(net.classifier.fc6(h))))
    assert features.shape == (3, 4096) and features.device.type == "cpu"
    torch.testing.assert_close(features, expected, rtol=1e-4, atol=1e-5)
    assert (features >= 0).all() and (features > 0).any()
    assert neighbours.fc7_features(net, images).dtype == torch.float16  # stored compactly by default


class NoAccessor(nn.Module):
    """A network without fc7_features: the search falls back to a hook on classifier.relu7."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 2, 4, stride=32), nn.Flatten())
        self.classifier = nn.Sequential(OrderedDict(fc7=nn.Linear(98, 6), relu7=nn.ReLU(), drop7=nn.Dropout(0.5),
                                                    fc8=nn.Linear(6, 2)))

    def forward(self, x):
        return self.classifier(self.features(x))


def test_a_hook_on_relu7_stands_in_for_the_accessor():
    torch.manual_seed(0)
    net = NoAccessor()
    images = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    features = neighbours.fc7_features(net, images, dtype=torch.float32)
    with torch.no_grad():
        expected = torch.relu(net.classifier.fc7(net.features(augment.center_view(images))))
    torch.testing.assert_close(features, expected)
    with pytest.raises(ValueError, match="relu7"):
        neighbours.fc7_features(nn.Sequential(nn.Flatten()).append(nn.Linear(3, 3)), images)


def test_nearest_matches_a_brute_force_search_across_chunks():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(50, 8, generator=g).half()
    queries = torch.randn(7, 8, generator=g)
    d, i = neighbours.nearest(queries, features, k=4, chunk=6, query_chunk=3)
    full = torch.cdist(queries, features.float())
    expected_d, expected_i = full.sort(dim=1)
    assert i.tolist() == expected_i[:, :4].tolist()
    torch.testing.assert_close(d, expected_d[:, :4], rtol=1e-4, atol=1e-4)
    # A query equal to a stored feature finds it first, at distance 0.
    d, i = neighbours.nearest(features[[10, 20]].float(), features, k=1, chunk=16)
    assert i.flatten().tolist() == [10, 20] and d.abs().max() < 1e-3
    # Asking for more neighbours than there are features returns them all.
    assert neighbours.nearest(queries, features[:3], k=6)[1].shape == (7, 3)


def test_neighbour_agreement_by_hand():
    neighbour_labels = torch.tensor([[1, 1, 2], [0, 3, 3]])
    # Query 0 (label 1) has two of three neighbours of its class, query 1 (label 3) two: 4 of 6.
    assert neighbours.neighbour_agreement(neighbour_labels, torch.tensor([1, 3])) == pytest.approx(100 * 4 / 6)
