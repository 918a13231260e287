"""Drawing one posed body as shaded, textured body parts, painted far to near.

Every part is written twice: colour into the image and `(slot + 1) * PARTS_PER_PERSON + part` into a
label map, with the same pixels. Keypoint visibility is later read back from that label map, so
the flags describe what was actually drawn. Both sides of the body wear the same clothes; the far
side is only darker (it is turned away from the light) and drawn first (it is behind).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import cv2
import numpy as np
from numpy.typing import NDArray

from components.data.synthetic.body import Body

PARTS_PER_PERSON = 32
SUBPIXEL_BITS = 4
SUBPIXEL = 1 << SUBPIXEL_BITS


class Part(IntEnum):
    HEAD = 0
    NECK = 1
    TORSO = 2
    PELVIS = 3
    UPPER_ARM_L = 4
    UPPER_ARM_R = 5
    FOREARM_L = 6
    FOREARM_R = 7
    HAND_L = 8
    HAND_R = 9
    THIGH_L = 10
    THIGH_R = 11
    SHIN_L = 12
    SHIN_R = 13
    FOOT_L = 14
    FOOT_R = 15


def _sided(left: Part) -> tuple[Part, Part]:
    return left, Part(left + 1)


UPPER_ARM, FOREARM, HAND = _sided(Part.UPPER_ARM_L), _sided(Part.FOREARM_L), _sided(Part.HAND_L)
THIGH, SHIN, FOOT = _sided(Part.THIGH_L), _sided(Part.SHIN_L), _sided(Part.FOOT_L)

# The parts whose surface shows each COCO keypoint when it is in view.
KEYPOINT_PARTS: tuple[frozenset[Part], ...] = (
    frozenset({Part.HEAD}),
    frozenset({Part.HEAD}),
    frozenset({Part.HEAD}),
    frozenset({Part.HEAD}),
    frozenset({Part.HEAD}),
    *(frozenset({Part.TORSO, Part.NECK, UPPER_ARM[s]}) for s in (0, 1)),
    *(frozenset({UPPER_ARM[s], FOREARM[s]}) for s in (0, 1)),
    *(frozenset({FOREARM[s], HAND[s]}) for s in (0, 1)),
    *(frozenset({Part.PELVIS, Part.TORSO, THIGH[s]}) for s in (0, 1)),
    *(frozenset({THIGH[s], SHIN[s]}) for s in (0, 1)),
    *(frozenset({SHIN[s], FOOT[s]}) for s in (0, 1)),
)
TRUNK_PARTS = frozenset({Part.TORSO, Part.PELVIS, Part.NECK})

# A face feature shows when its surface normal turns towards the camera by at least this much
# (nose, eyes, ears); ears stick out, so they show a little past the profile.
FACE_FACING_THRESHOLD = np.array([0.0, 0.15, 0.15, -0.25, -0.25])
# A shoulder or hip seen on the trunk is hidden once it is this far (in half-widths) behind the midline.
TRUNK_HIDDEN_DEPTH = 0.7

SKIN_TONES = np.array(
    [[60, 80, 110], [90, 120, 170], [120, 160, 205], [150, 185, 225], [80, 105, 150], [45, 60, 85], [170, 200, 235]],
    dtype=np.float64,
)
HAIR_COLOURS = np.array([[20, 20, 25], [30, 45, 70], [40, 80, 130], [120, 170, 210], [160, 160, 165], [15, 25, 45]])


@dataclass(frozen=True)
class Appearance:
    skin: NDArray[np.float64]  # BGR
    shirt: NDArray[np.float64]
    shirt_accent: NDArray[np.float64]
    trousers: NDArray[np.float64]
    shoes: NDArray[np.float64]
    hair: NDArray[np.float64]
    long_sleeves: bool
    shorts: bool
    hair_length: float  # how far down the back of the head hair reaches (-1 long .. 0.3 and above: bald)
    shirt_pattern: str  # plain | stripes | checks | noise
    pattern_period: float  # in body heights
    pattern_angle: float
    light_strength: float


def _random_colour(rng: np.random.Generator) -> NDArray[np.float64]:
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(0, 255), rng.uniform(40, 250)]]], dtype=np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float64)


def sample_appearance(rng: np.random.Generator) -> Appearance:
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.85, 1.1, 3)
    shirt = _random_colour(rng)
    trousers = _random_colour(rng)
    while np.abs(trousers - shirt).sum() < 90:  # different garments look different
        trousers = _random_colour(rng)
    return Appearance(
        skin=np.clip(skin, 0, 255),
        shirt=shirt,
        shirt_accent=_random_colour(rng),
        trousers=trousers,
        shoes=_random_colour(rng) * rng.uniform(0.2, 0.7),
        hair=HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))].astype(np.float64),
        long_sleeves=bool(rng.random() < 0.55),
        shorts=bool(rng.random() < 0.25),
        hair_length=float(rng.choice([0.35, -0.2, -0.55, -0.95], p=[0.08, 0.4, 0.32, 0.2])),
        shirt_pattern=str(rng.choice(["plain", "stripes", "checks", "noise"], p=[0.35, 0.3, 0.1, 0.25])),
        pattern_period=float(rng.uniform(0.02, 0.06)),
        pattern_angle=float(rng.uniform(0, np.pi)),
        light_strength=float(rng.uniform(0.15, 0.4)),
    )


@dataclass(frozen=True)
class Placement:
    """Where a body lands in the picture: pixels per body height and the hip centre's pixel."""

    pixels_per_unit: float
    hip_x: float
    hip_y: float

    def project(self, points: NDArray[np.float64]) -> NDArray[np.float64]:
        """(x, y) image pixels of (..., 3) scene points; image y grows downwards."""
        p = np.asarray(points, dtype=np.float64)
        return np.stack([self.hip_x + p[..., 0] * self.pixels_per_unit, self.hip_y - p[..., 1] * self.pixels_per_unit], -1)


@dataclass(frozen=True)
class Primitive:
    depth: float  # larger is nearer the camera
    part: Part
    kind: str  # polygon | capsule
    points: NDArray[np.float64]  # polygon vertices, or the capsule's two end points, in pixels
    radii: tuple[float, float]
    colour: NDArray[np.float64]


def _fixed(points: NDArray[np.float64]) -> NDArray[np.int32]:
    return np.round(np.asarray(points) * SUBPIXEL).astype(np.int32)


def _fill(image: NDArray[np.uint8], labels: NDArray[np.int32], prim: Primitive, label: int) -> None:
    colour = tuple(float(c) for c in np.clip(prim.colour, 0, 255))
    targets = ((image, colour), (labels, label))
    if prim.kind == "polygon":
        poly = _fixed(prim.points)
        for canvas, value in targets:
            cv2.fillConvexPoly(canvas, poly, value, cv2.LINE_8, SUBPIXEL_BITS)
        return
    (a, b), (ra, rb) = prim.points, prim.radii
    ra, rb = max(ra, 0.7), max(rb, 0.7)
    axis = b - a
    length = float(np.hypot(*axis))
    ends = _fixed(prim.points)
    for canvas, value in targets:
        if length > 1e-3:
            normal = np.array([-axis[1], axis[0]]) / length
            quad = _fixed(np.stack([a + normal * ra, b + normal * rb, b - normal * rb, a - normal * ra]))
            cv2.fillConvexPoly(canvas, quad, value, cv2.LINE_8, SUBPIXEL_BITS)
        cv2.circle(canvas, tuple(int(v) for v in ends[0]), int(round(ra * SUBPIXEL)), value, -1, cv2.LINE_8, SUBPIXEL_BITS)
        cv2.circle(canvas, tuple(int(v) for v in ends[1]), int(round(rb * SUBPIXEL)), value, -1, cv2.LINE_8, SUBPIXEL_BITS)


def _ellipse_ring(center: NDArray, axes: NDArray, half_width: float, half_depth: float, n: int = 12) -> NDArray:
    """Points round a horizontal cross-section of the trunk (axes columns: left, up, forward)."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return center + np.outer(np.cos(t) * half_width, axes[:, 0]) + np.outer(np.sin(t) * half_depth, axes[:, 2])


def _hull(points: NDArray[np.float64]) -> NDArray[np.float64]:
    return cv2.convexHull(points.astype(np.float32))[:, 0, :].astype(np.float64)


# Sphere directions (head frame) where hair grows, precomputed once: a cap on top, reaching down the back.
_SPHERE = np.array(
    [
        [np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)]
        for el in np.radians(np.arange(-80, 90, 14))
        for az in np.radians(np.arange(0, 360, 20))
    ]
)


def face_facing(body: Body) -> NDArray[np.bool_]:
    """Whether nose, eyes and ears turn towards the camera far enough to be drawn (camera looks along -z)."""
    normals = body.keypoints[:5] - body.head_center
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    return normals[:, 2] > FACE_FACING_THRESHOLD


class PersonPainter:
    """Builds a person's primitives once, then paints them and reports what they cover."""

    def __init__(self, body: Body, placement: Placement, look: Appearance) -> None:
        self.body, self.placement, self.look = body, placement, look
        self.scale = placement.pixels_per_unit
        self.keypoints_px = placement.project(body.keypoints)
        self.primitives = sorted(self._primitives(), key=lambda p: p.depth)

    def _shade(self, colour: NDArray, depth_units: float) -> NDArray:
        """Nearer parts catch more light; the far side of the body falls into shade."""
        offset = depth_units - 0.5 * float(self.body.neck_base[2] + self.body.hip_center[2])
        return colour * (1.0 + self.look.light_strength * np.clip(offset / 0.12, -1.0, 1.0))

    def _capsule(self, part: Part, start: NDArray, end: NDArray, radii: tuple[float, float], colour: NDArray,
                 bias: float = 0.0) -> Primitive:
        """A tapered limb segment between two scene points; `bias` nudges its place in the drawing order."""
        depth = 0.5 * (start[2] + end[2])
        r = self.scale * self.body.proportions.build
        return Primitive(
            (depth + bias) * self.scale, part, "capsule", self.placement.project(np.stack([start, end])),
            (radii[0] * r, radii[1] * r), self._shade(colour, depth),
        )

    def _primitives(self) -> list[Primitive]:
        b, look, props, s = self.body, self.look, self.body.proportions, self.scale
        kp = b.keypoints
        trunk, hips = b.trunk_axes, b.hip_axes
        half_depth = props.chest_depth * 0.5
        shoulders = b.neck_base - trunk[:, 1] * 0.03
        waist = b.hip_center + trunk[:, 1] * (0.32 * props.torso_length)
        shoulder_ring = _ellipse_ring(shoulders, trunk, props.shoulder_half_width + 0.02 * props.build, half_depth * 0.9)
        waist_ring = _ellipse_ring(waist, trunk, props.shoulder_half_width * 0.8, half_depth)
        hip_ring = _ellipse_ring(b.hip_center - hips[:, 1] * 0.04, hips, props.hip_half_width * 1.55, half_depth)
        # the trunk sorts slightly behind its midline, so limbs hanging beside it are drawn over it
        chest_depth = 0.5 * (shoulders[2] + waist[2]) - half_depth * 0.6
        torso = self.placement.project(np.concatenate([shoulder_ring, waist_ring]))
        pelvis = self.placement.project(np.concatenate([waist_ring, hip_ring]))
        prims = [
            Primitive(chest_depth * s, Part.TORSO, "polygon", _hull(torso), (0, 0), self._shade(look.shirt, b.neck_base[2])),
            Primitive((b.hip_center[2] - half_depth * 0.6) * s, Part.PELVIS, "polygon", _hull(pelvis), (0, 0),
                      self._shade(look.trousers, b.hip_center[2])),
            self._capsule(Part.NECK, b.neck_base, b.head_center, (0.028, 0.026), look.skin, bias=-0.08),
        ]
        forearm_colour = look.shirt if look.long_sleeves else look.skin
        shin_colour = look.skin if look.shorts else look.trousers
        for side in (0, 1):
            shoulder, elbow, wrist = kp[5 + side], kp[7 + side], kp[9 + side]
            hip, knee, ankle = kp[11 + side], kp[13 + side], kp[15 + side]
            prims += [
                self._capsule(UPPER_ARM[side], shoulder, elbow, (0.036, 0.03), look.shirt),
                self._capsule(FOREARM[side], elbow, wrist, (0.03, 0.024), forearm_colour),
                self._capsule(HAND[side], wrist, b.hand_tips[side], (0.022, 0.026), look.skin, bias=0.005),
                self._capsule(THIGH[side], hip, knee, (0.048, 0.038), look.trousers),
                self._capsule(SHIN[side], knee, ankle, (0.036, 0.027), shin_colour),
                self._capsule(FOOT[side], ankle, b.toe_tips[side], (0.026, 0.024), look.shoes, bias=0.005),
            ]
        angles = np.linspace(0, 2 * np.pi, 20, endpoint=False)
        head = self.placement.project(b.head_center) + props.head_radius * s * np.stack([np.cos(angles), np.sin(angles)], 1)
        prims.append(Primitive(b.head_center[2] * s, Part.HEAD, "polygon", head, (0, 0), self._shade(look.skin, b.head_center[2])))
        return prims

    def bounds(self, height: int, width: int) -> tuple[int, int, int, int] | None:
        """Pixel window (y0, y1, x0, x1) holding every primitive, clipped to the image, or None."""
        pts = np.concatenate([p.points for p in self.primitives])
        pad = max(max(p.radii) for p in self.primitives) + self.body.proportions.head_radius * self.scale + 2
        x0, y0 = np.floor(pts.min(0) - pad).astype(int)
        x1, y1 = np.ceil(pts.max(0) + pad).astype(int)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1 + 1, width), min(y1 + 1, height)
        if x0 >= x1 or y0 >= y1:
            return None
        return y0, y1, x0, x1

    def paint(self, image: NDArray[np.uint8], labels: NDArray[np.int32], slot: int, rng: np.random.Generator) -> None:
        base = (slot + 1) * PARTS_PER_PERSON
        for prim in self.primitives:
            _fill(image, labels, prim, base + int(prim.part))
            if prim.part == Part.HEAD:
                self._paint_face_and_hair(image, labels, base + int(Part.HEAD))
            elif prim.part == Part.TORSO:
                self._paint_neckline(image, labels, base + int(Part.TORSO))
        window = self.bounds(*labels.shape)
        if window is not None:
            self._texture(image, labels, window, base, rng)

    def _dot(self, image: NDArray[np.uint8], labels: NDArray[np.int32], centre: NDArray, radius_units: float,
             colour: NDArray, label: int) -> None:
        """A filled disc of `radius_units` body heights, labelled as the part it sits on."""
        c = tuple(int(v) for v in _fixed(centre))
        rad = int(round(max(radius_units * self.scale, 0.5) * SUBPIXEL))
        cv2.circle(image, c, rad, tuple(float(v) for v in np.clip(colour, 0, 255)), -1, cv2.LINE_8, SUBPIXEL_BITS)
        cv2.circle(labels, c, rad, label, -1, cv2.LINE_8, SUBPIXEL_BITS)

    def _paint_neckline(self, image: NDArray[np.uint8], labels: NDArray[np.int32], label: int) -> None:
        """The collar opening shows on the chest only: a front-or-back cue that real clothes give."""
        b, props = self.body, self.body.proportions
        forward = b.trunk_axes[:, 2]
        if forward[2] < 0.25:
            return
        front = b.neck_base + forward * props.chest_depth * 0.45
        corners = np.stack([
            front + b.trunk_axes[:, 0] * 0.035,
            front - b.trunk_axes[:, 0] * 0.035,
            front - b.trunk_axes[:, 1] * 0.06,
        ])
        colour = tuple(float(v) for v in np.clip(self._shade(self.look.skin, front[2]), 0, 255))
        poly = _fixed(self.placement.project(corners))
        cv2.fillConvexPoly(image, poly, colour, cv2.LINE_8, SUBPIXEL_BITS)
        cv2.fillConvexPoly(labels, poly, label, cv2.LINE_8, SUBPIXEL_BITS)

    def _paint_face_and_hair(self, image: NDArray[np.uint8], labels: NDArray[np.int32], label: int) -> None:
        b, look = self.body, self.look
        r = b.proportions.head_radius
        facing = face_facing(b)
        kp_px = self.keypoints_px
        for side in (0, 1):
            if facing[3 + side]:
                self._dot(image, labels, kp_px[3 + side], 0.24 * r, look.skin * 0.8, label)
        normals = _SPHERE @ b.head_axes.T
        hair = (_SPHERE[:, 1] > 0.42) | ((_SPHERE[:, 2] < -0.25) & (_SPHERE[:, 1] > look.hair_length))
        show = hair & (normals[:, 2] > -0.1)
        if look.hair_length < 0.3 and show.any():
            tufts = normals[show][np.argsort(normals[show][:, 2])]
            for centre in self.placement.project(b.head_center + tufts * 0.78 * r):
                self._dot(image, labels, centre, 0.36 * r, look.hair, label)
        if facing[0]:
            self._dot(image, labels, kp_px[0], 0.14 * r, look.skin * 0.78, label)
        for side in (0, 1):
            if facing[1 + side]:
                self._dot(image, labels, kp_px[1 + side], 0.12 * r, np.array([25.0, 25.0, 30.0]), label)
        mouth = b.head_axes @ np.array([0.0, -0.5, 0.86])
        if mouth[2] > 0.2:
            lips = np.array([70.0, 60.0, 140.0])
            self._dot(image, labels, self.placement.project(b.head_center + mouth * r), 0.1 * r, lips, label)

    def _texture(self, image: NDArray[np.uint8], labels: NDArray[np.int32], window: tuple[int, int, int, int], base: int,
                 rng: np.random.Generator) -> None:
        """Shirt patterns and cloth grain on the pixels this person owns right now."""
        y0, y1, x0, x1 = window
        look = self.look
        lab = labels[y0:y1, x0:x1]
        shirt_parts = [Part.TORSO, *UPPER_ARM] + (list(FOREARM) if look.long_sleeves else [])
        shirt = np.isin(lab, [base + int(p) for p in shirt_parts])
        own = (lab >= base) & (lab < base + PARTS_PER_PERSON)
        patch = image[y0:y1, x0:x1].astype(np.float32)
        if look.shirt_pattern in ("stripes", "checks"):
            yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
            period = max(look.pattern_period * self.scale, 2.5)
            cos, sin = np.cos(look.pattern_angle), np.sin(look.pattern_angle)
            band = ((xx * cos + yy * sin) / period) % 1.0 < 0.5
            if look.shirt_pattern == "checks":
                band ^= ((yy * cos - xx * sin) / period) % 1.0 < 0.5
            accent = band & shirt
            patch[accent] = patch[accent] * 0.35 + look.shirt_accent.astype(np.float32) * 0.65
        elif look.shirt_pattern == "noise":
            coarse = rng.normal(0.0, 0.18, (max(2, (y1 - y0) // 6), max(2, (x1 - x0) // 6))).astype(np.float32)
            smooth = cv2.resize(coarse, (x1 - x0, y1 - y0), interpolation=cv2.INTER_CUBIC)
            patch[shirt] *= 1.0 + smooth[shirt, None]
        grain = rng.standard_normal(patch.shape[:2], dtype=np.float32) * np.float32(6.0)
        patch[own] += grain[own, None]
        image[y0:y1, x0:x1] = np.clip(patch, 0, 255).astype(np.uint8)
