"""Cluttered backgrounds and the solid objects that stand in front of people.

Backgrounds are drawn into the image only (label 0): gradients, a ground plane, blotchy colour
noise, random shapes and limb-like distractor strokes in skin and cloth colours, so a detector of
"anything elongated and skin-coloured" does not find keypoints. Occluders are drawn into the label
map too, so whatever they cover counts as occluded.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from components.data.synthetic.style import STYLES, SceneStyle

OCCLUDER_LABEL = 1


def _colour(rng: np.random.Generator, low: float = 0, high: float = 255) -> tuple[float, float, float]:
    """Mostly muted colours, as in real scenes; a few saturated ones."""
    saturation = rng.uniform(0, 255) if rng.random() < 0.2 else rng.uniform(0, 110)
    hsv = np.array([[[rng.uniform(0, 180), saturation, rng.uniform(low, high)]]], dtype=np.uint8)
    b, g, r = (float(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])
    return b, g, r


def draw_background(
    rng: np.random.Generator, height: int, width: int, style: SceneStyle = STYLES["standard"]
) -> NDArray[np.uint8]:
    """A textured scene with no people in it, as cluttered as `style` says."""
    top, bottom = np.array(_colour(rng, 30, 240)), np.array(_colour(rng, 30, 240))
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    image = (top * (1 - ramp) + bottom * ramp).astype(np.float32) * np.ones((1, width, 1), np.float32)
    if rng.random() < 0.6:  # a ground plane below a horizon
        horizon = int(rng.uniform(0.3, 0.8) * height)
        image[horizon:] = image[horizon:] * 0.4 + np.array(_colour(rng, 30, 220), np.float32) * 0.6
    grid = (int(rng.integers(3, 12)), int(rng.integers(3, 12)))
    shade = rng.normal(0.0, rng.uniform(8, 35), grid)[..., None]  # light and shadow, same in every channel
    tint = rng.normal(0.0, rng.uniform(0, 12), (*grid, 3))  # a little colour variation on top
    image += cv2.resize((shade + tint).astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    canvas = np.clip(image, 0, 255).astype(np.uint8)

    for _ in range(rng.integers(*style.clutter_shapes)):
        _draw_clutter_shape(canvas, rng, height, width)
    for _ in range(rng.integers(*style.distractor_strokes)):  # limb-like strokes: hard negatives
        a = rng.uniform([0, 0], [width, height])
        b = a + rng.normal(0, 0.12 * height, 2)
        colour = _colour(rng, 60, 230)
        thickness = int(rng.integers(2, 9))
        cv2.line(canvas, tuple(int(v) for v in a), tuple(int(v) for v in b), colour, thickness, cv2.LINE_AA)
        cv2.circle(canvas, tuple(int(v) for v in b), thickness, colour, -1, cv2.LINE_AA)
    return canvas


def _draw_clutter_shape(canvas: NDArray[np.uint8], rng: np.random.Generator, height: int, width: int) -> None:
    kind = rng.integers(5)
    colour = _colour(rng)
    centre = (int(rng.uniform(0, width)), int(rng.uniform(0, height)))
    size = rng.uniform(0.02, 0.3) * min(height, width)
    if kind == 0:
        w, h = rng.uniform(0.2, 2.0, 2) * size
        cv2.rectangle(canvas, (int(centre[0] - w), int(centre[1] - h)), (int(centre[0] + w), int(centre[1] + h)), colour, -1)
    elif kind == 1:
        axes = (int(rng.uniform(0.3, 1.0) * size), int(rng.uniform(0.3, 1.0) * size))
        cv2.ellipse(canvas, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)
    elif kind == 2:
        points = (np.array(centre) + rng.normal(0, size, (int(rng.integers(3, 7)), 2))).astype(np.int32)
        cv2.fillPoly(canvas, [points], colour, cv2.LINE_AA)
    elif kind == 3:
        points = (np.array(centre) + np.cumsum(rng.normal(0, size * 0.5, (int(rng.integers(2, 6)), 2)), 0)).astype(np.int32)
        cv2.polylines(canvas, [points], False, colour, int(rng.integers(1, 4)), cv2.LINE_AA)
    else:  # a striped panel
        w, h = (rng.uniform(0.5, 2.0, 2) * size).astype(int) + 2
        x0, y0 = max(centre[0] - w, 0), max(centre[1] - h, 0)
        x1, y1 = min(centre[0] + w, width), min(centre[1] + h, height)
        if x1 > x0 and y1 > y0:
            period = int(rng.integers(3, 12))
            stripe = (np.arange(x0, x1) // period) % 2 == 0 if rng.random() < 0.5 else None
            region = canvas[y0:y1, x0:x1]
            if stripe is None:
                rows = (np.arange(y0, y1) // period) % 2 == 0
                region[rows] = colour
            else:
                region[:, stripe] = colour


@dataclass(frozen=True)
class Occluder:
    """A solid object in front of (some) people: a box, a post, a ball or a plant-like blob."""

    kind: str  # box | ellipse | polygon
    points: NDArray[np.float64]  # box: [[x0, y0], [x1, y1]]; ellipse: [[cx, cy], [ax, ay]]; polygon vertices
    colour: tuple[float, float, float]
    depth: float  # scene depth rank: larger is nearer
    stripes: int  # 0 for plain, else the stripe period in pixels


def sample_occluder(
    rng: np.random.Generator, height: int, width: int, near: NDArray | None, size: float, depth: float
) -> Occluder:
    """An object of about `size` pixels, centred near `near` (a point on a person) when given.

    Size is capped at a third of the image so that one object rarely hides a whole scene.
    """
    size = min(size, min(height, width) / 3.0)
    centre = near + rng.normal(0, 0.3 * size, 2) if near is not None else rng.uniform([0, 0], [width, height])
    kind = str(rng.choice(["box", "ellipse", "polygon"], p=[0.5, 0.25, 0.25]))
    if kind == "box":
        half = rng.uniform(0.15, 1.0, 2) * size * 0.5
        if rng.random() < 0.3:  # a post or a table edge
            half[rng.integers(2)] *= 3.0
        points = np.stack([centre - half, centre + half])
    elif kind == "ellipse":
        points = np.stack([centre, rng.uniform(0.25, 0.6, 2) * size])
    else:
        angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(4, 8))))
        radii = rng.uniform(0.2, 0.6, len(angles)) * size
        points = centre + np.stack([np.cos(angles) * radii, np.sin(angles) * radii], 1)
    return Occluder(kind, points, _colour(rng, 20, 235), depth, int(rng.integers(3, 10)) if rng.random() < 0.4 else 0)


def draw_occluder(image: NDArray[np.uint8], labels: NDArray[np.int32], occluder: Occluder) -> None:
    mask = np.zeros(labels.shape, np.uint8)
    p = np.round(occluder.points).astype(np.int32)
    if occluder.kind == "box":
        cv2.rectangle(mask, tuple(int(v) for v in p[0]), tuple(int(v) for v in p[1]), 1, -1)
    elif occluder.kind == "ellipse":
        cv2.ellipse(mask, tuple(int(v) for v in p[0]), (max(int(p[1][0]), 1), max(int(p[1][1]), 1)), 0, 0, 360, 1, -1)
    else:
        cv2.fillPoly(mask, [p], 1)
    covered = mask.astype(bool)
    image[covered] = occluder.colour
    if occluder.stripes:
        rows = (np.arange(labels.shape[0]) // occluder.stripes) % 2 == 0
        striped = covered & rows[:, None]
        image[striped] = (image[striped] * 0.6).astype(np.uint8)
    labels[covered] = OCCLUDER_LABEL
