"""How hard a synthetic scene is: crowding, person sizes, facing, clutter and occluders, as data.

`standard` is the benchmark set: COCO-like crowding and sizes, any facing, cluttered backgrounds with
limb-like distractors and objects placed to hide joints. `easy` keeps the same bodies, painting and
labelling but poses a problem a network learns from scratch in minutes on a CPU: one or two large
people who mostly face the camera (as most people in COCO photos do), in front of plain backgrounds,
with nothing in front of them. The CPU demo uses `easy`; the ssl_gain benchmark uses `standard`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SceneStyle:
    people_counts: tuple[int, ...]
    people_weights: tuple[float, ...]
    height_bands: tuple[tuple[float, float], ...]  # person height as fractions of the image height
    height_band_weights: tuple[float, ...]
    hip_x_range: tuple[float, float]  # where the hips stand, as fractions of the image width
    hip_y_range: tuple[float, float] | None  # fractions of the height; None: anywhere the person fits
    group_probability: float  # chance that a person stands close beside one already placed
    max_yaw_degrees: float  # 0 faces the camera, 180 allows any facing
    wild_roll_probability: float  # chance of a roll anywhere in +-60 degrees (a fall, a cartwheel)
    clutter_shapes: tuple[int, int]  # [low, high) number of background shapes
    distractor_strokes: tuple[int, int]  # [low, high) number of limb-like strokes
    occluder_counts: tuple[int, ...]
    occluder_weights: tuple[float, ...]


STYLES: dict[str, SceneStyle] = {
    "standard": SceneStyle(
        people_counts=(1, 2, 3, 4, 5, 6),
        people_weights=(0.12, 0.2, 0.24, 0.2, 0.14, 0.1),
        height_bands=((0.12, 0.3), (0.3, 0.7), (0.7, 1.35)),  # far away, medium, near (often truncated)
        height_band_weights=(0.35, 0.45, 0.2),
        hip_x_range=(-0.1, 1.1),
        hip_y_range=None,
        group_probability=0.3,
        max_yaw_degrees=180.0,
        wild_roll_probability=0.15,
        clutter_shapes=(8, 30),
        distractor_strokes=(0, 6),
        occluder_counts=(0, 1, 2, 3),
        occluder_weights=(0.35, 0.35, 0.2, 0.1),
    ),
    "easy": SceneStyle(
        people_counts=(1, 2),
        people_weights=(0.6, 0.4),
        height_bands=((0.55, 0.95),),
        height_band_weights=(1.0,),
        hip_x_range=(0.2, 0.8),
        hip_y_range=(0.45, 0.58),
        group_probability=0.0,
        max_yaw_degrees=75.0,
        wild_roll_probability=0.0,
        clutter_shapes=(0, 4),
        distractor_strokes=(0, 1),
        occluder_counts=(0,),
        occluder_weights=(1.0,),
    ),
}


def scene_style(name: str) -> SceneStyle:
    try:
        return STYLES[name]
    except KeyError:
        raise ValueError(f"unknown synthetic style {name!r}; choose one of {sorted(STYLES)}") from None
