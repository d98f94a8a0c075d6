"""Plots people would rather look at than read: schedules, 2-D samples, image grids.

Every function draws into a Matplotlib ``Axes`` it is given (or makes a figure) and
returns it, so lessons can compose panels. The backend is left to Matplotlib; scripts
call :func:`use_headless_backend` first. Library code saves generated figures with
:func:`save_figure`, which embeds a provenance label.
"""

from __future__ import annotations

import numpy as np

__all__ = ["save_figure", "use_headless_backend", "plot_schedules", "plot_density", "plot_points",
           "plot_paths", "image_grid", "class_rows", "show_images"]


def save_figure(fig, path, record=None, **kwargs):
    """Save ``fig`` with a provenance label embedded (see :mod:`diffusion_jax.provenance`).

    ``record``: a :func:`~diffusion_jax.provenance.record`; ``None`` labels the file with a
    minimal one (synthetic, tool, version, time). PNG files carry it as text chunks; other
    formats get a ``<path>.provenance.json`` sidecar. Returns the path.
    """
    from diffusion_jax import provenance

    return provenance.savefig(fig, path, provenance.record() if record is None else record, **kwargs)


def use_headless_backend():
    """Switch Matplotlib to the file-only Agg backend, unless a notebook's inline backend is
    active: library code called from a lesson (``demo.run``) must not turn off its plots."""
    import matplotlib

    if "inline" in str(matplotlib.get_backend()).lower():
        return
    matplotlib.use("Agg")


def _axes(ax, figsize=(4, 4)):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def plot_schedules(schedules, ax=None, quantity: str = "alpha_bars"):
    """One curve per schedule of ``alpha_bars``, ``log_snr`` or ``betas`` against t."""
    ax = _axes(ax, (5, 3.5))
    for s in schedules:
        y = np.asarray(getattr(s, quantity))
        ax.plot(np.arange(y.shape[0]), y, label=s.name)
    ax.set_xlabel("timestep t")
    ax.set_ylabel(quantity)
    ax.legend(fontsize=8)
    return ax


def plot_density(ax, mixture, lim=1.2, n=200, fractions=(0.05, 0.3, 0.7)):
    """Contours of a 2-D :class:`~diffusion_jax.toy.GaussianMixture`'s data density.

    Levels are fractions of the peak density, so tails far from the data draw nothing.
    """
    g = np.linspace(-lim, lim, n)
    xx, yy = np.meshgrid(g, g)
    pts = np.stack([xx.ravel(), yy.ravel()], axis=1)  # (n*n, 2)
    density = np.exp(np.asarray(mixture.log_prob(pts))).reshape(n, n)  # (n, n)
    ax.contour(xx, yy, density, levels=density.max() * np.asarray(fractions), colors="0.5", linewidths=0.6)
    return ax


def plot_points(x, ax=None, title=None, lim=1.2, color="C0", size=2.0, mixture=None):
    """Scatter 2-D samples ``(N, 2)``, optionally over the mixture's density contours."""
    ax = _axes(ax)
    if mixture is not None:
        plot_density(ax, mixture, lim)
    x = np.asarray(x)
    ax.scatter(x[:, 0], x[:, 1], s=size, alpha=0.5, color=color, linewidths=0)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def plot_paths(xs, ax=None, num=40, color="C1"):
    """Draw the first ``num`` trajectories of a sampler, ``xs`` of shape ``(S + 1, B, 2)``."""
    ax = _axes(ax)
    xs = np.asarray(xs)[:, :num]  # (S + 1, num, 2)
    for i in range(xs.shape[1]):
        ax.plot(xs[:, i, 0], xs[:, i, 1], color=color, lw=0.5, alpha=0.6)
    ax.scatter(xs[-1, :, 0], xs[-1, :, 1], s=6, color="k", zorder=3)
    return ax


def class_rows(images, labels, num_classes: int, per_row: int):
    """The first ``per_row`` images of each class ``0..num_classes-1``, class after class:
    ``(num_classes * per_row, H, W, C)``, ready for :func:`show_images` with ``nrow=per_row``."""
    images, labels = np.asarray(images), np.asarray(labels)
    return np.concatenate([images[labels == k][:per_row] for k in range(num_classes)])


def image_grid(images, nrow: int, pad: int = 1):
    """Tile ``(N, H, W, C)`` images in [-1, 1] into one ``(rows*H', nrow*W', C)`` array in [0, 1]."""
    images = np.clip((np.asarray(images, np.float32) + 1) / 2, 0, 1)
    n, h, w, c = images.shape
    rows = -(-n // nrow)
    out = np.ones((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), np.float32)
    for i in range(n):
        r, k = divmod(i, nrow)
        out[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + k * (w + pad) : pad + k * (w + pad) + w] = images[i]
    return out


def show_images(images, nrow: int, ax=None, title=None, row_labels=None, fontsize: float = 8, col_labels=None):
    """Display a grid from :func:`image_grid` (grey for one channel) with fixed [0, 1] range.

    ``row_labels``: one label per grid row, drawn as y tick labels at the rows' centres;
    ``col_labels``: one label per grid column (``nrow`` of them), drawn under the columns.
    """
    ax = _axes(ax, (nrow, max(1, len(images) // nrow)))
    grid = image_grid(images, nrow)
    if grid.shape[-1] == 1:
        ax.imshow(grid[..., 0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(grid, vmin=0, vmax=1)
    ax.axis("off")
    if row_labels is not None or col_labels is not None:
        ax.axis("on")
        ax.set_xticks([])
        ax.set_yticks([])
    if row_labels is not None:
        rows = -(-len(images) // nrow)
        if len(row_labels) != rows:
            raise ValueError(f"row_labels must name each of the {rows} grid rows, got {len(row_labels)}")
        h = np.asarray(images).shape[1] + 1  # image height + the 1-pixel pad of image_grid
        ax.set_yticks([1 + h * k + h // 2 for k in range(rows)], [str(r) for r in row_labels], fontsize=fontsize)
    if col_labels is not None:
        if len(col_labels) != nrow:
            raise ValueError(f"col_labels must name each of the {nrow} grid columns, got {len(col_labels)}")
        w = np.asarray(images).shape[2] + 1  # image width + the 1-pixel pad of image_grid
        ax.set_xticks([1 + w * k + w // 2 for k in range(nrow)], [str(c) for c in col_labels], fontsize=fontsize)
    if title:
        ax.set_title(title, fontsize=9)
    return ax
