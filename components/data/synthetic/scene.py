"""A scene: background, people and occluders painted far to near, and the labels read back from it.

Visibility comes from the final label map, not from guesses: a keypoint inside the image is v=2
when the pixel under it still shows one of the body parts that carry it (and, for the face and the
trunk, the side that faces the camera), v=1 when something else covers it (an object, another
person, or the person's own body), and v=0 when it falls outside the image.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from numpy.typing import NDArray

from components.data.synthetic.background import Occluder, draw_background, draw_occluder, sample_occluder
from components.data.synthetic.body import build_body, camera_rotation, sample_angles, sample_proportions
from components.data.synthetic.person import (
    KEYPOINT_PARTS,
    PARTS_PER_PERSON,
    TRUNK_HIDDEN_DEPTH,
    TRUNK_PARTS,
    Part,
    PersonPainter,
    Placement,
    face_facing,
    sample_appearance,
)
from components.data.synthetic.style import STYLES, SceneStyle

MIN_BOX_SIDE = 8.0  # pixels; smaller people are drawn but not annotated
MIN_AREA = 32  # visible pixels


@dataclass
class SceneLayer:
    depth: float
    painter: PersonPainter | None = None
    occluder: Occluder | None = None


@dataclass(frozen=True)
class PersonLabel:
    """One person as COCO will record it; `slot` is its index among the scene's people."""

    slot: int
    keypoints: NDArray[np.float64]  # [17, 3]: x, y (pixel centres at integers), v in {0, 1, 2}
    bbox: tuple[float, float, float, float]  # x, y, w, h
    area: int  # visible pixels
    annotated: bool  # False when too small or too hidden to be worth a label


@dataclass
class Scene:
    image: NDArray[np.uint8]  # BGR
    labels: NDArray[np.int32]  # 0 background, 1 occluder, (slot + 1) * 32 + part for people
    people: list[PersonLabel] = field(default_factory=list)


def sample_layers(
    rng: np.random.Generator, height: int, width: int, style: SceneStyle = STYLES["standard"]
) -> list[SceneLayer]:
    """People of varied size, pose and facing, and a few occluders placed where they hide someone."""
    count = int(rng.choice(style.people_counts, p=style.people_weights))
    layers: list[SceneLayer] = []
    people: list[PersonPainter] = []
    for _ in range(count):
        band = style.height_bands[rng.choice(len(style.height_bands), p=style.height_band_weights)]
        person_height = rng.uniform(*band) * height
        hip_x = rng.uniform(*style.hip_x_range) * width
        if style.hip_y_range is not None:
            hip_y = rng.uniform(*style.hip_y_range) * height
        elif person_height < height:
            hip_y = rng.uniform(0.15, 0.95) * height
        else:
            hip_y = rng.uniform(0.35, 0.85) * height
        if people and rng.random() < style.group_probability:  # stand beside someone: people overlap people
            friend = people[rng.integers(len(people))].placement
            person_height = friend.pixels_per_unit * rng.uniform(0.85, 1.15)
            hip_x = friend.hip_x + rng.normal(0, 0.22) * person_height
            hip_y = friend.hip_y + rng.normal(0, 0.04) * person_height
        body = build_body(sample_proportions(rng), sample_angles(rng))
        yaw = np.radians(rng.uniform(-style.max_yaw_degrees, style.max_yaw_degrees))
        calm = rng.random() < 1.0 - style.wild_roll_probability
        roll = np.radians(rng.normal(0, 8)) if calm else np.radians(rng.uniform(-60, 60))
        body = body.transformed(camera_rotation(yaw, np.radians(rng.uniform(-12, 12)), roll))
        placement = Placement(pixels_per_unit=person_height, hip_x=hip_x, hip_y=hip_y)
        depth = np.log(person_height) + rng.normal(0, 0.15)
        people.append(PersonPainter(body, placement, sample_appearance(rng)))
        layers.append(SceneLayer(depth, painter=people[-1]))
    person_layers = list(layers)
    for _ in range(int(rng.choice(style.occluder_counts, p=style.occluder_weights))):
        target = people[rng.integers(len(people))]
        joint = target.keypoints_px[rng.integers(17)] if rng.random() < 0.75 else None
        size = target.scale * rng.uniform(0.15, 0.5)
        depth = rng.normal(max(layer.depth for layer in person_layers), 0.5)
        layers.append(SceneLayer(depth, occluder=sample_occluder(rng, height, width, joint, size, depth)))
    return layers


def render_layers(
    rng: np.random.Generator,
    layers: list[SceneLayer],
    height: int,
    width: int,
    background: NDArray[np.uint8] | None = None,
    style: SceneStyle = STYLES["standard"],
) -> Scene:
    """Paint the layers far to near over a background, then label every person from what shows."""
    image = draw_background(rng, height, width, style) if background is None else background.copy()
    labels = np.zeros((height, width), np.int32)
    painters = [layer.painter for layer in layers if layer.painter is not None]
    slot_of = {id(p): i for i, p in enumerate(painters)}
    amodal_boxes: dict[int, tuple[int, int, int, int] | None] = {}
    for layer in sorted(layers, key=lambda l: l.depth):
        if layer.occluder is not None:
            draw_occluder(image, labels, layer.occluder)
            continue
        painter = layer.painter
        assert painter is not None  # a layer holds a person or an occluder
        slot = slot_of[id(painter)]
        painter.paint(image, labels, slot, rng)
        amodal_boxes[slot] = _owned_box(labels, painter, slot)
    visible_area = np.bincount((labels // PARTS_PER_PERSON).ravel(), minlength=len(painters) + 1)
    people = [
        _label_person(painter, slot, labels, amodal_boxes[slot], int(visible_area[slot + 1]))
        for slot, painter in enumerate(painters)
    ]
    return Scene(image=image, labels=labels, people=people)


def _owned_box(labels: NDArray[np.int32], painter: PersonPainter, slot: int) -> tuple[int, int, int, int] | None:
    """Tight pixel box (x0, y0, x1, y1 inclusive) of everything the person covers when just painted."""
    window = painter.bounds(*labels.shape)
    if window is None:
        return None
    y0, y1, x0, x1 = window
    own = (labels[y0:y1, x0:x1] // PARTS_PER_PERSON) == slot + 1
    rows, cols = np.flatnonzero(own.any(1)), np.flatnonzero(own.any(0))
    if rows.size == 0:
        return None
    return x0 + int(cols[0]), y0 + int(rows[0]), x0 + int(cols[-1]), y0 + int(rows[-1])


def keypoint_visibility(painter: PersonPainter, slot: int, labels: NDArray[np.int32]) -> NDArray[np.int64]:
    """COCO visibility of each keypoint, read from the final label map at its recorded (rounded) position."""
    height, width = labels.shape
    xy = np.round(painter.keypoints_px, 2)
    inside = (xy[:, 0] >= 0) & (xy[:, 0] <= width - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= height - 1)
    visibility = np.where(inside, 1, 0)
    cols = np.clip(np.rint(xy[:, 0]).astype(int), 0, width - 1)
    rows = np.clip(np.rint(xy[:, 1]).astype(int), 0, height - 1)
    under = labels[rows, cols]
    owner, part = under // PARTS_PER_PERSON - 1, under % PARTS_PER_PERSON
    facing = face_facing(painter.body)
    body = painter.body
    props = body.proportions
    for k in np.flatnonzero(inside & (owner == slot)):
        p = Part(int(part[k]))
        if p not in KEYPOINT_PARTS[k]:
            continue  # the person's own other limb is in front
        if k < 5 and not facing[k]:
            continue  # the face turned away: the back of the head covers it
        if p in TRUNK_PARTS and k >= 5:
            centre = body.neck_base if k < 11 else body.hip_center
            half_width = props.shoulder_half_width if k < 11 else props.hip_half_width
            if body.keypoints[k, 2] - centre[2] < -TRUNK_HIDDEN_DEPTH * half_width:
                continue  # behind the chest or hips
        visibility[k] = 2
    return visibility


def _label_person(
    painter: PersonPainter, slot: int, labels: NDArray[np.int32], box: tuple[int, int, int, int] | None, area: int
) -> PersonLabel:
    height, width = labels.shape
    visibility = keypoint_visibility(painter, slot, labels)
    keypoints = np.concatenate([np.round(painter.keypoints_px, 2), visibility[:, None]], 1)
    keypoints[visibility == 0, :2] = 0.0
    if box is None:
        return PersonLabel(slot, keypoints, (0.0, 0.0, 0.0, 0.0), area, False)
    # pixels cover +-0.5 around their centres; labeled keypoints always lie inside the box
    labeled = keypoints[visibility > 0, :2]
    x0 = min([box[0] - 0.5, *labeled[:, 0]]) if labeled.size else box[0] - 0.5
    y0 = min([box[1] - 0.5, *labeled[:, 1]]) if labeled.size else box[1] - 0.5
    x1 = max([box[2] + 0.5, *labeled[:, 0]]) if labeled.size else box[2] + 0.5
    y1 = max([box[3] + 0.5, *labeled[:, 1]]) if labeled.size else box[3] + 0.5
    x0, y0, x1, y1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height))
    bbox = (round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2))
    annotated = bool((visibility > 0).any() and min(bbox[2], bbox[3]) >= MIN_BOX_SIDE and area >= MIN_AREA)
    return PersonLabel(slot, keypoints, bbox, area, annotated)


def finish_photo(rng: np.random.Generator, image: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Camera effects over the whole frame: slight blur, exposure and sensor noise."""
    out: NDArray[np.float32] = image.astype(np.float32)
    if rng.random() < 0.5:
        out = np.asarray(cv2.GaussianBlur(out, (0, 0), rng.uniform(0.4, 1.0)), dtype=np.float32)
    out = out * rng.uniform(0.75, 1.2) + rng.uniform(-20, 20)
    out += rng.standard_normal(out.shape, dtype=np.float32) * np.float32(rng.uniform(1.0, 7.0))
    return np.clip(out, 0, 255).astype(np.uint8)


def render_scene(
    rng: np.random.Generator, height: int, width: int, style: SceneStyle = STYLES["standard"]
) -> Scene:
    """A complete random picture with its people's labels."""
    scene = render_layers(rng, sample_layers(rng, height, width, style), height, width, style=style)
    scene.image = finish_photo(rng, scene.image)
    return scene
