"""An articulated 3D body: proportions and anatomically bounded joint angles, sampled per person.

The body frame is the person's own: +x towards the person's LEFT, +y up, +z forward (the way the
person faces). Lengths are in units of body height. Left and right therefore differ only in which
side of the body a limb hangs from; once the body is turned by a camera yaw, telling them apart in
the picture takes the same cues it takes with real people: the face, the feet, the overlap order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Vector = NDArray[np.float64]

SIDE_SIGN = (1.0, -1.0)  # side 0 is the person's left (+x), side 1 the right
FORWARD = np.array([0.0, 0.0, 1.0])
UP = np.array([0.0, 1.0, 0.0])
DOWN = -UP


def rot_x(angle: float) -> NDArray[np.float64]:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_y(angle: float) -> NDArray[np.float64]:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_z(angle: float) -> NDArray[np.float64]:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class Proportions:
    """Segment lengths and widths as fractions of body height (adult averages, jittered)."""

    head_radius: float
    neck_length: float
    torso_length: float  # hip-joint centre to the base of the neck
    shoulder_half_width: float
    hip_half_width: float
    chest_depth: float
    upper_arm: float
    forearm: float
    thigh: float
    shin: float
    foot: float
    build: float  # limb thickness multiplier


def sample_proportions(rng: np.random.Generator) -> Proportions:
    jitter = lambda base, spread=0.08: base * (1.0 + rng.uniform(-spread, spread))  # noqa: E731
    return Proportions(
        head_radius=jitter(0.062, 0.1),
        neck_length=jitter(0.035),
        torso_length=jitter(0.30, 0.06),
        shoulder_half_width=jitter(0.115, 0.12),
        hip_half_width=jitter(0.075, 0.12),
        chest_depth=jitter(0.12, 0.15),
        upper_arm=jitter(0.17),
        forearm=jitter(0.15),
        thigh=jitter(0.235, 0.06),
        shin=jitter(0.23, 0.06),
        foot=jitter(0.075, 0.1),
        build=float(rng.uniform(0.8, 1.2)),
    )


@dataclass(frozen=True)
class JointAngles:
    """Joint angles in radians; per-side arrays are indexed by side (0 left, 1 right)."""

    shoulder_flexion: Vector  # arm raised forwards from hanging down
    shoulder_abduction: Vector  # arm raised sideways, away from the body
    elbow_flexion: Vector
    elbow_plane: Vector  # where the forearm folds: 0 forwards, +pi/2 across the body
    hip_flexion: Vector  # thigh raised forwards
    hip_abduction: Vector
    knee_flexion: Vector  # shin folds backwards
    trunk_pitch: float  # leaning forwards
    trunk_bend: float  # leaning sideways
    trunk_twist: float  # shoulders turned against the hips
    head_yaw: float
    head_pitch: float


POSE_KINDS = ("stand", "walk", "reach", "arms_up", "crossed_arms", "crouch", "kick", "free")
POSE_WEIGHTS = np.array([0.16, 0.2, 0.14, 0.1, 0.1, 0.1, 0.07, 0.13])


def sample_angles(rng: np.random.Generator) -> JointAngles:
    """A pose from a mixture of everyday activities, each limb within its anatomical range."""
    deg = np.radians
    kind = POSE_KINDS[rng.choice(len(POSE_KINDS), p=POSE_WEIGHTS)]
    u = lambda lo, hi, n=2: rng.uniform(lo, hi, n)  # noqa: E731

    sh_flex, sh_abd = deg(u(-20, 30)), deg(u(3, 25))
    el_flex, el_plane = deg(u(0, 40)), deg(u(-20, 60))
    hip_flex, hip_abd, knee = deg(u(-8, 15)), deg(u(-5, 12)), deg(u(0, 20))
    pitch, bend = deg(rng.uniform(-5, 12)), deg(rng.uniform(-8, 8))

    if kind == "stand" and rng.random() < 0.35:  # legs crossed: one thigh swings across the other
        side = rng.integers(2)
        hip_abd[side], hip_flex[side] = deg(rng.uniform(-30, -18)), deg(rng.uniform(0, 15))
    if kind == "walk":
        swing = deg(rng.uniform(15, 40)) * np.array([1.0, -1.0]) * rng.choice([-1.0, 1.0])
        hip_flex = swing + deg(u(-5, 5))
        sh_flex = -swing * rng.uniform(0.6, 1.2) + deg(u(-5, 5))
        knee = deg(u(5, 60))
        el_flex = deg(u(10, 70))
    elif kind == "reach":
        sh_flex, sh_abd = deg(u(-30, 150)), deg(u(0, 110))
        el_flex, el_plane = deg(u(0, 120)), deg(u(-30, 100))
    elif kind == "arms_up":
        sh_flex, sh_abd = deg(u(60, 175)), deg(u(10, 120))
        el_flex = deg(u(0, 110))
    elif kind == "crossed_arms":
        sh_flex, sh_abd = deg(u(10, 45)), deg(u(0, 15))
        el_flex, el_plane = deg(u(95, 145)), deg(u(70, 100))
    elif kind == "crouch":
        hip_flex = deg(u(60, 115))
        knee = deg(u(70, 140))
        hip_abd = deg(u(0, 30))
        pitch = deg(rng.uniform(10, 45))
        sh_flex, el_flex = deg(u(-10, 80)), deg(u(0, 120))
    elif kind == "kick":
        side = rng.integers(2)
        hip_flex[side] = deg(rng.uniform(40, 110))
        knee[side] = deg(rng.uniform(0, 100))
        hip_abd[side] = deg(rng.uniform(-5, 40))
        sh_abd = deg(u(20, 100))
        pitch = deg(rng.uniform(-15, 10))
    elif kind == "free":
        sh_flex, sh_abd = deg(u(-40, 170)), deg(u(0, 160))
        el_flex, el_plane = deg(u(0, 145)), deg(u(-30, 100))
        hip_flex, hip_abd, knee = deg(u(-25, 100)), deg(u(-10, 40)), deg(u(0, 130))
        pitch, bend = deg(rng.uniform(-15, 35)), deg(rng.uniform(-20, 20))

    return JointAngles(
        shoulder_flexion=sh_flex,
        shoulder_abduction=sh_abd,
        elbow_flexion=el_flex,
        elbow_plane=el_plane,
        hip_flexion=hip_flex,
        hip_abduction=hip_abd,
        knee_flexion=knee,
        trunk_pitch=float(pitch),
        trunk_bend=float(bend),
        trunk_twist=float(deg(rng.uniform(-25, 25))),
        head_yaw=float(deg(rng.uniform(-55, 55))),
        head_pitch=float(deg(rng.uniform(-15, 25))),
    )


@dataclass(frozen=True)
class Body:
    """Joint positions of one posed body plus what rendering needs (frames and cross-sections)."""

    keypoints: NDArray[np.float64]  # [17, 3] in COCO order
    head_center: Vector
    head_axes: NDArray[np.float64]  # columns: the head's left, up, forward
    trunk_axes: NDArray[np.float64]  # columns: the chest's left, up, forward
    hip_axes: NDArray[np.float64]  # columns: the pelvis's left, up, forward
    neck_base: Vector
    hip_center: Vector
    hand_tips: NDArray[np.float64]  # [2, 3] by side
    toe_tips: NDArray[np.float64]  # [2, 3] by side
    proportions: Proportions

    def transformed(self, rotation: NDArray[np.float64]) -> Body:
        """The same body seen through a rotation of the whole scene."""
        r = np.asarray(rotation, dtype=np.float64)
        return Body(
            keypoints=self.keypoints @ r.T,
            head_center=r @ self.head_center,
            head_axes=r @ self.head_axes,
            trunk_axes=r @ self.trunk_axes,
            hip_axes=r @ self.hip_axes,
            neck_base=r @ self.neck_base,
            hip_center=r @ self.hip_center,
            hand_tips=self.hand_tips @ r.T,
            toe_tips=self.toe_tips @ r.T,
            proportions=self.proportions,
        )


def _towards(direction: Vector, reference: Vector, fallback: Vector) -> Vector:
    """Unit vector perpendicular to `direction` pointing as much as possible towards `reference`."""
    w = reference - (reference @ direction) * direction
    norm = np.linalg.norm(w)
    if norm < 1e-6:
        w = fallback - (fallback @ direction) * direction
        norm = np.linalg.norm(w)
    return w / norm


def _limb_direction(flexion: float, abduction: float, sign: float) -> Vector:
    """Hanging-down direction raised sideways (abduction) then forwards (flexion)."""
    sideways = np.array([sign * math.sin(abduction), -math.cos(abduction), 0.0])
    return rot_x(-flexion) @ sideways


def build_body(props: Proportions, angles: JointAngles) -> Body:
    """Forward kinematics from the hip-joint centre (origin) outwards."""
    keypoints = np.zeros((17, 3))
    hip_axes = np.eye(3)
    trunk = rot_z(angles.trunk_bend) @ rot_x(angles.trunk_pitch) @ rot_y(angles.trunk_twist)
    neck_base = trunk @ np.array([0.0, props.torso_length, 0.0])
    hand_tips = np.zeros((2, 3))
    toe_tips = np.zeros((2, 3))

    for side, sign in enumerate(SIDE_SIGN):
        shoulder = trunk @ np.array([sign * props.shoulder_half_width, props.torso_length - 0.025, 0.0])
        upper = trunk @ _limb_direction(angles.shoulder_flexion[side], angles.shoulder_abduction[side], sign)
        medial = trunk @ np.array([-sign, 0.0, 0.0])
        plane = angles.elbow_plane[side]
        fold = _towards(upper, math.cos(plane) * (trunk @ FORWARD) + math.sin(plane) * medial, trunk @ UP)
        bend = angles.elbow_flexion[side]
        fore = math.cos(bend) * upper + math.sin(bend) * fold
        elbow = shoulder + props.upper_arm * upper
        wrist = elbow + props.forearm * fore
        keypoints[5 + side], keypoints[7 + side], keypoints[9 + side] = shoulder, elbow, wrist
        hand_tips[side] = wrist + 0.07 * fore

        hip = np.array([sign * props.hip_half_width, 0.0, 0.0])
        thigh = _limb_direction(angles.hip_flexion[side], angles.hip_abduction[side], sign)
        back = _towards(thigh, -FORWARD, DOWN)
        knee_angle = angles.knee_flexion[side]
        shin = math.cos(knee_angle) * thigh + math.sin(knee_angle) * back
        knee = hip + props.thigh * thigh
        ankle = knee + props.shin * shin
        keypoints[11 + side], keypoints[13 + side], keypoints[15 + side] = hip, knee, ankle
        toe_tips[side] = ankle + props.foot * _towards(shin, FORWARD, -back)

    head_axes = trunk @ rot_y(angles.head_yaw) @ rot_x(-angles.head_pitch)
    head_center = neck_base + trunk @ np.array([0.0, props.neck_length + props.head_radius * 0.9, 0.0])
    r = props.head_radius
    keypoints[0] = head_center + head_axes @ (np.array([0.0, -0.15, 1.0]) * r)
    for side, sign in enumerate(SIDE_SIGN):
        eye = np.array([sign * 0.38, 0.18, 0.9])
        keypoints[1 + side] = head_center + head_axes @ (eye / np.linalg.norm(eye) * r)
        keypoints[3 + side] = head_center + head_axes @ np.array([sign * r, 0.0, -0.08 * r])

    return Body(
        keypoints=keypoints,
        head_center=head_center,
        head_axes=head_axes,
        trunk_axes=trunk,
        hip_axes=hip_axes,
        neck_base=neck_base,
        hip_center=np.zeros(3),
        hand_tips=hand_tips,
        toe_tips=toe_tips,
        proportions=props,
    )


def camera_rotation(yaw: float, pitch: float, roll: float) -> NDArray[np.float64]:
    """Scene rotation: turn the person (yaw 0 faces the camera, pi shows the back), tilt, roll."""
    return rot_z(roll) @ rot_x(pitch) @ rot_y(yaw)
