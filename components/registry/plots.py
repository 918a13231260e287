"""The figures logged with a registered model: loss curves, AP per method, sample predictions.

Figures are built with matplotlib's object API on an Agg canvas, so no display and no global pyplot
state are involved (safe in servers, threads and tests).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import ArrayLike, NDArray


def _save(figure: Figure, path: str | Path) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(target, dpi=100, bbox_inches="tight")
    return target


def plot_loss_curves(history: Sequence[Mapping[str, float]], path: str | Path, step_key: str = "step") -> Path:
    """One line per loss term (keys containing "loss" or named "total") against the training step."""
    if not history:
        raise ValueError("plot_loss_curves needs a non-empty training history")
    names = sorted({key for row in history for key in row if key != step_key and ("loss" in key or key == "total")})
    if not names:
        raise ValueError(f"no loss terms in the history; keys are {sorted(history[0])}")
    figure = Figure(figsize=(7, 4))
    axes = figure.add_subplot()
    for name in names:
        rows = [row for row in history if name in row]
        steps = [row.get(step_key, index) for index, row in enumerate(rows)]
        axes.plot(steps, [row[name] for row in rows], label=name, linewidth=1.5)
    axes.set_xlabel(step_key)
    axes.set_ylabel("loss")
    axes.set_title("Training losses")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return _save(figure, path)


def plot_ap_per_method(ap_by_method: Mapping[str, float], path: str | Path, title: str = "Validation AP (OKS)") -> Path:
    """A bar per method (supervised, mean_teacher, trs...) with its AP written on top."""
    if not ap_by_method:
        raise ValueError("plot_ap_per_method needs at least one method")
    methods = list(ap_by_method)
    values = np.array([ap_by_method[m] for m in methods], dtype=np.float64)
    figure = Figure(figsize=(max(4, 1.4 * len(methods)), 4))
    axes = figure.add_subplot()
    bars = axes.bar(methods, values, color="#4c72b0")
    axes.bar_label(bars, labels=[f"{v:.3f}" for v in values], padding=2)
    axes.set_ylim(0, max(1.0, float(values.max()) * 1.15))
    axes.set_ylabel("AP")
    axes.set_title(title)
    return _save(figure, path)


def plot_sample_predictions(
    images: Sequence[NDArray[np.uint8]],
    keypoints: Sequence[ArrayLike],
    path: str | Path,
    titles: Sequence[str] | None = None,
    threshold: float = 0.2,
    columns: int = 4,
) -> Path:
    """A grid of RGB images with their predicted people `[N,K,3]` (x, y, score) drawn on them."""
    from components.evaluation.drawing import draw_poses

    if len(images) != len(keypoints) or not images:
        raise ValueError(f"need as many keypoint arrays as images (got {len(images)} images, {len(keypoints)} poses)")
    columns = min(columns, len(images))
    rows = -(-len(images) // columns)
    figure = Figure(figsize=(3 * columns, 3 * rows))
    for index, (image, people) in enumerate(zip(images, keypoints, strict=True)):
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.imshow(draw_poses(image, people, threshold=threshold))
        axes.set_axis_off()
        if titles is not None:
            axes.set_title(titles[index], fontsize=8)
    return _save(figure, path)
