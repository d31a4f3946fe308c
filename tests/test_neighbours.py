"""fc7 features and the nearest-neighbour search of the paper's figure 4 (right)."""

import pytest
import torch

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
