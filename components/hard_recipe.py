"""The hard-view recipe grammar: which batch ops turn an unlabeled hard crop into a hard view.

`augment.hard_recipe` lists one recipe per hard view (`train.consistency.hard_views` paths take
them in turn). A recipe is op codes joined by `+`, applied left to right, or one of the names
MultiAugs (Zhou et al. 2024) gives its combinations; `standard` is today's hard crop with no op.
The ops themselves are `components.engine.hard_views`; this module only says what a recipe means,
so the config can refuse a misspelt one before anything trains.
"""

from __future__ import annotations

OPS: dict[str, str] = {
    "af": "a further rotation and zoom of the hard view; the pseudo-targets follow it (ours)",
    "jc": "joint cutout: boxes around pseudo-keypoints filled with the mean colour (Xie et al., ICCV 2021)",
    "jo": "joint cut-occlude: a box around another crop's pseudo-keypoint pasted over one of ours (SSCO, SSPCM)",
    "co": "Cutout: boxes anywhere filled with the mean colour",
    "cm": "CutMix: boxes copied from the same place of another crop",
    "mu": "MixUp: a light blend with another crop",
    "ra": "RandAugment over photometric ops",
    "ta": "TrivialAugment over photometric ops",
    "yo": "YOCO: half of the crop, cut across or along, gets RandAugment",
}
ALIASES: dict[str, str] = {"standard": "", "joco": "jo+co", "jccm": "jc+cm"}
GEOMETRIC = ("af",)  # ops that move pixels, so the pseudo-targets must move with them


def parse_recipe(text: str) -> tuple[str, ...]:
    """`"joco"` -> ("jo", "co"); `"af+jccm"` -> ("af", "jc", "cm"); `"standard"` -> ().

    Geometry comes first: the keypoint-driven ops then see the view's final frame, and its
    pseudo-targets are one warp of the easy-view heatmaps.
    """
    ops: tuple[str, ...] = ()
    for token in (part.strip() for part in text.split("+")):
        if not token:
            raise ValueError(f"hard recipe {text!r}: an empty op; `standard` is the recipe with no op")
        spelled = ALIASES.get(token, token)
        ops += tuple(op for op in spelled.split("+") if op)
    unknown = [op for op in ops if op not in OPS]
    if unknown:
        raise ValueError(
            f"hard recipe {text!r}: unknown ops {unknown}; "
            f"use {'+'.join(OPS)} joined by '+', or one of {sorted(ALIASES)}"
        )
    placed_late = [op for position, op in enumerate(ops) if op in GEOMETRIC and position > 0]
    if placed_late:
        raise ValueError(f"hard recipe {text!r}: {placed_late[0]!r} must come first (geometry before the other ops)")
    return ops


def path_recipes(recipes: tuple[str, ...] | list[str], paths: int) -> list[tuple[str, ...]]:
    """The ops of each of `paths` hard views: path m takes `recipes[m % len(recipes)]`."""
    if not recipes:
        raise ValueError("augment.hard_recipe needs at least one recipe")
    return [parse_recipe(recipes[m % len(recipes)]) for m in range(paths)]
