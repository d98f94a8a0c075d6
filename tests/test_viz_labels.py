"""Column labels of image grids (viz.show_images), used for the timesteps under lesson grids."""

from __future__ import annotations

import numpy as np
import pytest


def test_show_images_col_labels_sit_at_column_centres():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from diffusion_jax import viz

    images = np.zeros((6, 5, 4, 1), np.float32)  # 2 rows of 3, each 4 px wide
    fig, ax = plt.subplots()
    viz.show_images(images, 3, ax, col_labels=["t = 0", "t = 5", "t = 9"], row_labels=["a", "b"])
    assert list(ax.get_xticks()) == [1 + 2, 1 + 5 + 2, 1 + 10 + 2]  # pad 1, column pitch w + 1 = 5, centre w // 2
    assert [t.get_text() for t in ax.get_xticklabels()] == ["t = 0", "t = 5", "t = 9"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    with pytest.raises(ValueError, match="col_labels"):
        viz.show_images(images, 3, ax, col_labels=["only one"])
    plt.close(fig)


def test_class_rows_takes_the_first_images_of_each_class_in_class_order():
    from diffusion_jax import viz

    rng = np.random.default_rng(0)
    labels = rng.permutation(np.repeat(np.arange(3), 4))  # (12,) shuffled classes
    images = np.arange(12, dtype=np.float32).reshape(12, 1, 1, 1)  # image i holds the value i
    rows = viz.class_rows(images, labels, 3, 2)
    expected = [i for k in range(3) for i in [j for j in range(12) if labels[j] == k][:2]]
    assert rows.shape == (6, 1, 1, 1) and rows[:, 0, 0, 0].tolist() == expected
