"""What every figure shares: an Agg-backed figure, saving, and the colours that mean the same everywhere."""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from components.evaluation.drawing import SIDE_COLOURS
from components.keypoints import Side

DPI = 110
CHALLENGER_COLOUR = "#4c72b0"
CHAMPION_COLOUR = "#8c8c8c"
MARKER_COLOUR = "#c44e52"


def rgb(colour: tuple[int, int, int]) -> tuple[float, float, float]:
    """An 8-bit RGB triple as matplotlib's 0-1 floats."""
    return (colour[0] / 255, colour[1] / 255, colour[2] / 255)


def side_colour(side: Side) -> tuple[float, float, float]:
    """Left joints orange, right joints blue, the centre green: the colours of `drawing.draw_poses`."""
    return rgb(SIDE_COLOURS[side])


def new_figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas (no pyplot, safe in threads, servers and tests)."""
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: str | Path) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=DPI)
    return target
