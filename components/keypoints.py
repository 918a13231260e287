"""Keypoint sets as data (MMPose's dataset metainfo, typed): names, skeleton, flip pairs, OKS sigmas, half-body parts.

A set is read from a COCO file's keypoint category (its `keypoints` names and `skeleton`), completed by
the optional `keypoints:` config section (sigmas, flip pairs, upper body). Nothing downstream assumes
COCO's 17 person keypoints: targets, flips, Keypoint-Mix, evaluation, plots and serving all take a
`KeypointSet`. COCO's own set is `COCO_PERSON`; synthetic people use it.

Defaults for a set that is not COCO's 17:
- flip pairs come from left/right names: `left_wrist`/`right_wrist`, `l_eye`/`r_eye`, `LeftPaw`/`RightPaw`,
  `wing_left`/`wing_right`, ... (a side token swapped); a sided name without its twin is an error;
- a keypoint named like one of COCO's keeps COCO's OKS sigma, any other gets `DEFAULT_SIGMA` (the mean
  of COCO's sigmas), and evaluation warns that AP depends on it;
- half-body augmentation is off unless `upper_body` names its keypoints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from components.errors import TrsPoseError

SigmaSource = Literal["coco", "config", "default"]
Side = Literal["left", "right", "centre"]


class KeypointSetError(TrsPoseError, ValueError):
    """A keypoint set that cannot be used as given; the message names the source and the keypoint."""


COCO_NAMES: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
# 1-based limb pairs exactly as COCO's categories[].skeleton lists them.
COCO_SKELETON: tuple[tuple[int, int], ...] = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8), (7, 9),
    (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
)  # fmt: skip
# Per-keypoint OKS constants from the COCO evaluation code (cocoeval.py).
COCO_SIGMAS: tuple[float, ...] = tuple(
    v / 10.0
    for v in (0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89)
)
COCO_SIGMA_BY_NAME: dict[str, float] = dict(zip(COCO_NAMES, COCO_SIGMAS, strict=True))
DEFAULT_SIGMA: float = round(float(np.mean(COCO_SIGMAS)), 4)  # 0.0669: for keypoints COCO has no sigma for
COCO_UPPER_BODY: tuple[str, ...] = COCO_NAMES[:11]  # head, shoulders, arms

_SIDES = {"left": "right", "right": "left", "l": "r", "r": "l"}
_TOKEN = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+|[^A-Za-z\d]+")


def _swap_case_like(token: str, replacement: str) -> str:
    if token.isupper():
        return replacement.upper()
    if token[0].isupper():
        return replacement.capitalize()
    return replacement


def mirror_name(name: str) -> str | None:
    """`left_wrist` -> `right_wrist`, `LEye` -> `REye`, `wing_l` -> `wing_r`; None for a name without a side."""
    tokens = _TOKEN.findall(name)
    sided = False
    for index, token in enumerate(tokens):
        twin = _SIDES.get(token.lower())
        if twin is not None:
            tokens[index] = _swap_case_like(token, twin)
            sided = True
    return "".join(tokens) if sided else None


def name_side(name: str) -> Side | None:
    """ "left" or "right" when the name carries a side token (`left_knee`, `RPaw`), else None."""
    for token in _TOKEN.findall(name):
        lowered = token.lower()
        if lowered in ("left", "l"):
            return "left"
        if lowered in ("right", "r"):
            return "right"
    return None


def derive_flip_pairs(names: tuple[str, ...], source: str = "keypoints") -> tuple[tuple[int, int], ...]:
    """0-based (left, right) index pairs from left/right names; a sided name without its twin is an error."""
    index = {name: i for i, name in enumerate(names)}
    pairs: set[tuple[int, int]] = set()
    for i, name in enumerate(names):
        twin = mirror_name(name)
        if twin is None or twin == name:
            continue
        if twin not in index:
            raise KeypointSetError(
                f"{source}: keypoint {name!r} has a side but its mirror {twin!r} is not in the set; "
                "rename it, or list the pairs yourself in keypoints.flip_pairs ([] for none)"
            )
        pairs.add((min(i, index[twin]), max(i, index[twin])))
    return tuple(sorted(pairs))


@dataclass(frozen=True)
class KeypointSet:
    """One keypoint definition, everything the pipeline needs to know about it.

    `skeleton` and `flip_pairs` are 0-based index pairs (COCO files store 1-based limbs:
    `coco_category` converts); `upper_body` empty means half-body augmentation is off.
    """

    names: tuple[str, ...]
    skeleton: tuple[tuple[int, int], ...]
    flip_pairs: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...]
    sigma_source: SigmaSource
    upper_body: tuple[int, ...]
    category: str = "person"
    category_id: int = 1
    supercategory: str = "person"

    def __post_init__(self) -> None:
        k = len(self.names)
        if k == 0:
            raise KeypointSetError("a keypoint set needs at least one keypoint")
        if len(set(self.names)) != k:
            repeated = sorted({n for n in self.names if self.names.count(n) > 1})
            raise KeypointSetError(f"keypoint names must be unique; repeated: {', '.join(repeated)}")
        if len(self.sigmas) != k or not all(s > 0 for s in self.sigmas):
            raise KeypointSetError(f"sigmas: need {k} positive values (one a keypoint), got {list(self.sigmas)}")
        for what, pairs in (("skeleton", self.skeleton), ("flip_pairs", self.flip_pairs)):
            bad = [pair for pair in pairs if not all(0 <= i < k for i in pair) or pair[0] == pair[1]]
            if bad:
                raise KeypointSetError(f"{what}: pairs {bad} do not join two of the {k} keypoints")
        used = [i for pair in self.flip_pairs for i in pair]
        if len(used) != len(set(used)):
            raise KeypointSetError(f"flip_pairs: a keypoint appears in more than one pair: {self.flip_pairs}")

    @property
    def num_keypoints(self) -> int:
        return len(self.names)

    @cached_property
    def flip_index(self) -> NDArray[np.int64]:
        """The permutation a horizontal flip applies: keypoint i becomes flip_index[i]."""
        index = np.arange(self.num_keypoints)
        for left, right in self.flip_pairs:
            index[left], index[right] = right, left
        return index

    @cached_property
    def sides(self) -> tuple[Side, ...]:
        """Each keypoint's side for drawing: from its name, else the first of a flip pair is "left"."""
        sides: list[Side] = ["centre"] * self.num_keypoints
        for first, second in self.flip_pairs:
            named = name_side(self.names[first]), name_side(self.names[second])
            sides[first], sides[second] = ("right", "left") if named == ("right", "left") else ("left", "right")
        return tuple(sides)

    @cached_property
    def oks_sigmas(self) -> NDArray[np.float64]:
        return np.asarray(self.sigmas, dtype=np.float64)

    @property
    def lower_body(self) -> tuple[int, ...]:
        """The keypoints outside `upper_body` (empty when half-body is off)."""
        if not self.upper_body:
            return ()
        upper = set(self.upper_body)
        return tuple(i for i in range(self.num_keypoints) if i not in upper)

    @property
    def is_coco_person(self) -> bool:
        return self.names == COCO_NAMES

    def coco_category(self) -> dict[str, Any]:
        """The COCO `categories[]` entry of this set (1-based skeleton, as COCO writes it)."""
        return {
            "supercategory": self.supercategory,
            "id": self.category_id,
            "name": self.category,
            "keypoints": list(self.names),
            "skeleton": [[a + 1, b + 1] for a, b in self.skeleton],
        }

    def summary(self, shown: int = 6) -> str:
        """`13 keypoints (nose, head, left_shoulder, ...)`: for one-line messages."""
        head = ", ".join(self.names[:shown]) + (", ..." if self.num_keypoints > shown else "")
        return f"{self.num_keypoints} keypoints ({head})"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: what checkpoints, registered versions and exported models record."""
        return {
            "category": self.category,
            "category_id": self.category_id,
            "names": list(self.names),
            "skeleton": [list(pair) for pair in self.skeleton],
            "flip_pairs": [list(pair) for pair in self.flip_pairs],
            "sigmas": list(self.sigmas),
            "sigma_source": self.sigma_source,
            "upper_body": list(self.upper_body),
        }


def build_keypoint_set(
    names: tuple[str, ...],
    skeleton_1based: tuple[tuple[int, int], ...] = (),
    *,
    sigmas: tuple[float, ...] | None = None,
    flip_pairs: tuple[tuple[str, str], ...] | None = None,
    upper_body: tuple[str, ...] | None = None,
    category: str = "person",
    category_id: int = 1,
    supercategory: str | None = None,
    source: str = "keypoints",
) -> KeypointSet:
    """The set of `names` with the given options, defaults filled in (see the module doc)."""
    index = {name: i for i, name in enumerate(names)}

    def position(name: str, field: str) -> int:
        if name not in index:
            raise KeypointSetError(f"{source}: {field} names {name!r}, which is not one of the set's keypoints")
        return index[name]

    coco = names == COCO_NAMES
    if flip_pairs is None:
        pairs = derive_flip_pairs(names, source)
    else:
        pairs = tuple(
            (min(a, b), max(a, b))
            for a, b in (
                (position(x, "keypoints.flip_pairs"), position(y, "keypoints.flip_pairs")) for x, y in flip_pairs
            )
        )
    if sigmas is not None:
        if len(sigmas) != len(names):
            raise KeypointSetError(
                f"{source}: keypoints.sigmas has {len(sigmas)} values for {len(names)} keypoints ({', '.join(names)})"
            )
        values, sigma_source = tuple(float(s) for s in sigmas), "config"
    elif coco:
        values, sigma_source = COCO_SIGMAS, "coco"
    else:
        values = tuple(COCO_SIGMA_BY_NAME.get(name, DEFAULT_SIGMA) for name in names)
        sigma_source = "default"
    upper_names = (COCO_UPPER_BODY if coco else ()) if upper_body is None else upper_body
    upper = tuple(sorted(position(name, "keypoints.upper_body") for name in upper_names))
    k = len(names)
    limbs = tuple((a - 1, b - 1) for a, b in skeleton_1based)
    bad = [pair for pair in skeleton_1based if not all(1 <= i <= k for i in pair)]
    if bad:
        raise KeypointSetError(f"{source}: skeleton pairs {bad} are not 1-based indices of the {k} keypoints")
    try:
        return KeypointSet(
            names=tuple(names),
            skeleton=limbs,
            flip_pairs=pairs,
            sigmas=values,
            sigma_source=sigma_source,  # type: ignore[arg-type]
            upper_body=upper,
            category=category,
            category_id=category_id,
            supercategory=supercategory if supercategory is not None else category,
        )
    except KeypointSetError as exc:
        raise KeypointSetError(f"{source}: {exc}") from None


COCO_PERSON: KeypointSet = build_keypoint_set(COCO_NAMES, COCO_SKELETON, source="COCO person")


def keypoint_category(categories: Any, source: str) -> dict[str, Any]:
    """The one category of a COCO `categories` list that carries keypoints; one line naming them otherwise."""
    if not isinstance(categories, list):
        raise KeypointSetError(f"{source}: 'categories' must be a list, got {type(categories).__name__}")
    found = [c for c in categories if isinstance(c, dict) and isinstance(c.get("keypoints"), list) and c["keypoints"]]
    if len(found) == 1:
        return found[0]
    listed = ", ".join(f"{c.get('name', '?')!s} (id {c.get('id', '?')})" for c in categories if isinstance(c, dict))
    if not found:
        raise KeypointSetError(
            f"{source}: no category lists keypoints; exactly one must (categories found: {listed or 'none'})"
        )
    carrying = ", ".join(f"{c.get('name', '?')!s} (id {c.get('id', '?')})" for c in found)
    raise KeypointSetError(f"{source}: {len(found)} categories list keypoints ({carrying}); exactly one must")


def category_names(category: dict[str, Any], source: str) -> tuple[str, ...]:
    """The keypoint names of a category, checked to be unique non-empty strings."""
    names = category.get("keypoints")
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise KeypointSetError(f"{source}: category {category.get('name')!r}: 'keypoints' must be a list of names")
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise KeypointSetError(
            f"{source}: category {category.get('name')!r}: keypoint names repeat: {', '.join(repeated)}"
        )
    return tuple(names)


def category_skeleton(category: dict[str, Any], source: str) -> tuple[tuple[int, int], ...]:
    """The category's 1-based limbs (an absent skeleton is none)."""
    raw = category.get("skeleton") or []
    try:
        return tuple((int(a), int(b)) for a, b in raw)
    except (TypeError, ValueError) as exc:
        raise KeypointSetError(
            f"{source}: category {category.get('name')!r}: 'skeleton' must be a list of [a, b] index pairs"
        ) from exc


def differences(expected: KeypointSet, names: tuple[str, ...]) -> str | None:
    """None when `names` are the set's keypoints in the set's order, else one phrase saying how they differ."""
    if names == expected.names:
        return None
    if len(names) != expected.num_keypoints:
        return f"{len(names)} keypoints where {expected.num_keypoints} are expected"
    first = next(i for i, (a, b) in enumerate(zip(names, expected.names)) if a != b)
    if set(names) == set(expected.names):
        return (
            f"the same names in another order (position {first}: {names[first]!r}, expected {expected.names[first]!r})"
        )
    return f"position {first} is {names[first]!r}, expected {expected.names[first]!r}"
