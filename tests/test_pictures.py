"""Figures made of images: read the drawn pixels, titles and captions back."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from alexnet_nb import augment, pictures, plots  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_image_grid_titles_every_image_with_a_readable_name():
    images = torch.randint(0, 256, (5, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    titles = ["European fire salamander, Salamandra salamandra", "lemon", "a", "b", "c"]
    fig = pictures.image_grid(images, titles, cols=3)
    axes = fig.axes
    assert len(axes) == 6 and len(axes[5].images) == 0
    np.testing.assert_array_equal(axes[4].images[0].get_array(), images[4].permute(1, 2, 0).numpy())
    assert axes[0].get_title() == "European fire\nsalamander"  # wrapped, not cut at 16 characters


def test_augmentation_rows_differ_only_by_their_lighting():
    image = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    fig = pictures.plot_augmentation(image, pca_lighting=0.1, n=3, seed=5, exaggerate=10)
    axes = np.array(fig.axes).reshape(3, 4)
    drawn = [[np.asarray(ax.images[0].get_array()) for ax in row[1:]] for row in axes]
    plain = augment.train_batch(image.unsqueeze(0).expand(3, -1, -1, -1), torch.Generator().manual_seed(5))
    np.testing.assert_allclose(drawn[0][0], augment.to_image(plain)[0].permute(1, 2, 0).numpy())
    assert "0.1" in axes[1, 1].get_title(loc="left") and "1 (10x" in axes[2, 1].get_title(loc="left")
    # Lighting adds one colour offset per image: the difference from the plain view is nearly constant
    # (clamping at 0 and 1 aside), and larger in the exaggerated row.
    for c in range(3):
        weak = drawn[1][c] - drawn[0][c]
        strong = drawn[2][c] - drawn[0][c]
        assert np.median(np.abs(strong)) > 5 * np.median(np.abs(weak)) > 0
    np.testing.assert_array_equal(axes[0, 0].images[0].get_array(), image.permute(1, 2, 0).numpy())


def test_neighbours_put_the_query_first_and_colour_each_neighbour_by_its_class():
    g = torch.Generator().manual_seed(0)
    queries = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8, generator=g)
    found = torch.randint(0, 256, (2, 3, 3, 64, 64), dtype=torch.uint8, generator=g)
    names = ["tabby, tabby cat", "lemon", "volleyball"]
    fig = pictures.plot_neighbours(queries, torch.tensor([0, 2]), found, torch.tensor([[0, 1, 0], [2, 2, 1]]), names)
    axes = np.array(fig.axes).reshape(2, 4)
    np.testing.assert_array_equal(axes[1, 0].images[0].get_array(), queries[1].permute(1, 2, 0).numpy())
    np.testing.assert_array_equal(axes[0, 3].images[0].get_array(), found[0, 2].permute(1, 2, 0).numpy())
    assert axes[0, 0].get_xlabel() == "tabby" and axes[1, 2].get_xlabel() == "volleyball"
    colour = lambda ax: mcolors.to_hex(ax.xaxis.label.get_color())  # noqa: E731
    assert [colour(ax) for ax in axes[0, 1:]] == [mcolors.to_hex(c) for c in (plots.RIGHT, plots.WRONG, plots.RIGHT)]
    assert [colour(ax) for ax in axes[1, 1:]] == [mcolors.to_hex(c) for c in (plots.RIGHT, plots.RIGHT, plots.WRONG)]


def test_prediction_grid_shows_images_truth_and_guesses():
    images = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2])
    names = ["cat, house cat", "dog", "fox", "owl", "bee", "ant"]  # words.txt lists synonyms
    probs = torch.tensor([[0.5, 0.1, 0.1, 0.1, 0.1, 0.1],     # right
                          [0.6, 0.2, 0.05, 0.05, 0.05, 0.05],  # wrong, true class second
                          [0.3, 0.3, 0.0, 0.2, 0.1, 0.1]])     # wrong, true class outside the top 5
    fig = pictures.plot_predictions(images, labels, probs, names, indices=[2, 0, 1], cols=2)
    axes = fig.axes
    np.testing.assert_array_equal(axes[0].images[0].get_array(), images[2].permute(1, 2, 0).numpy())
    assert [ax.get_title() for ax in axes[:3]] == ["true: fox", "true: cat", "true: dog"]
    colours = [mcolors.to_hex(ax.title.get_color()) for ax in axes[:3]]
    assert colours == [mcolors.to_hex(plots.WRONG), mcolors.to_hex(plots.RIGHT), mcolors.to_hex(plots.WRONG)]
    guesses = axes[2].texts[0].get_text().splitlines()
    assert len(guesses) == 5 and "cat" in guesses[0] and guesses[1].startswith(">") and "dog" in guesses[1]
    assert not any(line.startswith(">") for line in axes[0].texts[0].get_text().splitlines())
    assert "house cat" not in axes[1].texts[0].get_text()  # only the first synonym is shown
    assert len(axes[3].images) == 0  # the fourth cell of the 2x2 grid stays empty


def test_kernel_figure_draws_the_kernel_grid():
    weight = torch.randn(96, 3, 11, 11, generator=torch.Generator().manual_seed(0))
    ax = pictures.plot_kernels(weight).axes[0]
    drawn = np.asarray(ax.images[0].get_array())
    np.testing.assert_array_equal(drawn, pictures.kernel_grid(weight))
    assert drawn.shape == (8 * 12 - 1, 12 * 12 - 1, 3)


def test_kernel_grid_places_and_stretches_each_kernel():
    weight = torch.randn(96, 3, 11, 11, generator=torch.Generator().manual_seed(0))
    weight[5] *= 100  # a loud kernel must not wash out the others
    grid = pictures.kernel_grid(weight)
    assert grid.shape == (95, 143, 3)
    for i in (0, 5, 13, 95):
        r, c = divmod(i, 12)
        tile = grid[r * 12:r * 12 + 11, c * 12:c * 12 + 11]
        assert tile.min() == 0.0 and tile.max() == pytest.approx(1.0)
        w = weight[i]
        np.testing.assert_allclose(tile, ((w - w.min()) / (w.max() - w.min())).permute(1, 2, 0).numpy(), atol=1e-6)
    assert (grid[11, :] == 1).all() and (grid[:, 11] == 1).all()  # white padding between tiles
    with pytest.raises(ValueError):
        pictures.kernel_grid(torch.randn(97, 3, 11, 11))
