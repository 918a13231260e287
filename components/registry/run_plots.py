"""The figures a pipeline run logs beside its model: losses, AP against the champion, predictions."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from components.registry.plots import plot_ap_per_method, plot_loss_curves, plot_sample_predictions


def sample_prediction_grid(
    results_file: str | Path, val_ann: str | Path, val_images: str | Path, path: str | Path, num_images: int = 8
) -> Path | None:
    """Draw the predicted people of the first `num_images` validation images that have any."""
    results = json.loads(Path(results_file).read_text())
    if not results:
        return None
    by_image: dict[int, list[np.ndarray]] = defaultdict(list)
    for result in results:
        by_image[int(result["image_id"])].append(np.asarray(result["keypoints"], dtype=np.float64).reshape(-1, 3))
    files = {image["id"]: image["file_name"] for image in json.loads(Path(val_ann).read_text())["images"]}
    images, poses, titles = [], [], []
    for image_id in sorted(by_image)[:num_images]:
        bgr = cv2.imread(str(Path(val_images) / files[image_id]))
        if bgr is None:
            continue
        images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        poses.append(np.stack(by_image[image_id]))
        titles.append(f"image {image_id}")
    if not images:
        return None
    return plot_sample_predictions(images, poses, path, titles=titles)


def run_plots(
    history_file: str | Path,
    results_file: str | Path,
    val_ann: str | Path,
    val_images: str | Path,
    method: str,
    ap: float,
    champion_ap: float | None,
    out_dir: str | Path,
) -> list[Path]:
    out = Path(out_dir)
    plots: list[Path] = []
    history = json.loads(Path(history_file).read_text())
    if any(any("loss" in key or key == "total" for key in row) for row in history):
        plots.append(plot_loss_curves(history, out / "loss_curves.png"))
    bars = {method: ap} if champion_ap is None else {method: ap, "champion": champion_ap}
    plots.append(plot_ap_per_method(bars, out / "ap_per_method.png"))
    grid = sample_prediction_grid(results_file, val_ann, val_images, out / "sample_predictions.png")
    if grid is not None:
        plots.append(grid)
    return plots
