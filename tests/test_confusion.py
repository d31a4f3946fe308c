"""Per-class accuracy, confusions and the order that puts confused classes together, on cases worked out by hand."""

import torch

from alexnet_nb import confusion

NAMES = ["ant", "bee", "cat"]
LABELS = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
PREDICTIONS = torch.tensor([0, 0, 1, 1, 1, 1, 0, 1, 1, 2])


def test_per_class_accuracy_by_hand():
    table = confusion.per_class_accuracy(PREDICTIONS, LABELS, NAMES)
    assert table["name"].tolist() == ["bee", "ant", "cat"]
    assert table.index.tolist() == [1, 0, 2]
    assert table["correct"].tolist() == [2, 2, 1] and table["total"].tolist() == [2, 4, 4]
    assert table["accuracy"].tolist() == [100.0, 50.0, 25.0]


def test_confusions_by_hand():
    counts = confusion.confusion_matrix(PREDICTIONS, LABELS, 3)
    assert counts.tolist() == [[2, 2, 0], [0, 2, 0], [1, 2, 1]]
    pairs = confusion.confused_pairs(PREDICTIONS, LABELS, NAMES, k=5)
    # Only three kinds of mistake were made; a tie keeps the lower index first.
    assert pairs[["true", "predicted", "count"]].values.tolist() == [
        ["ant", "bee", 2], ["cat", "bee", 2], ["cat", "ant", 1]]
    assert pairs["share"].tolist() == [50.0, 50.0, 25.0]
    assert confusion.confused_pairs(LABELS, LABELS, NAMES).empty
    # From the matrix, the same table, and the matrix is left as it was.
    assert confusion.pairs_from_counts(counts, NAMES, k=5).equals(pairs)
    assert counts.tolist() == [[2, 2, 0], [0, 2, 0], [1, 2, 1]]


def test_confusion_rates_divide_each_row_by_its_total():
    rates = confusion.confusion_rates(torch.tensor([[2, 2, 0], [0, 0, 0], [1, 2, 1]]))
    assert rates.tolist() == [[0.5, 0.5, 0.0], [0.0, 0.0, 0.0], [0.25, 0.5, 0.25]]  # an empty row stays zero


def block_counts(groups, n, seed=0):
    """A confusion matrix where classes are confused only within their group."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.zeros(n, n, dtype=torch.long)
    for group in groups:
        for i in group:
            for j in group:
                counts[i, j] = 50 if i == j else int(torch.randint(3, 10, (), generator=g))
    return counts


def contiguous(order, group):
    where = sorted(order.index(c) for c in group)
    return where == list(range(where[0], where[0] + len(group)))


def test_cluster_order_puts_each_confused_group_together():
    # Three groups scattered over eight class indices; class 7 is never confused.
    groups = [[0, 3, 6], [1, 5], [2, 4]]
    order = confusion.cluster_order(block_counts(groups, 8))
    assert sorted(order) == list(range(8))
    for group in groups:
        assert contiguous(order, group), (group, order)
    # The identity order splits every group: the test above is not satisfied by doing nothing.
    assert not any(contiguous(list(range(8)), group) for group in groups)


def test_cluster_order_merges_the_most_confused_pair_first():
    # 0<->2 are confused a lot, 1<->2 a little: 0 and 2 merge first, then 1 joins that pair after it.
    counts = torch.tensor([[10, 0, 8], [0, 10, 1], [8, 1, 10]])
    order = confusion.cluster_order(counts)
    assert abs(order.index(0) - order.index(2)) == 1
    assert order == [0, 2, 1]


def test_cluster_order_without_confusions_keeps_index_order():
    assert confusion.cluster_order(torch.eye(5, dtype=torch.long) * 7) == [0, 1, 2, 3, 4]
    assert confusion.cluster_order(torch.tensor([[3]])) == [0]
