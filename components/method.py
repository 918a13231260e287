"""The training method as facts, decided once from the config: the only place `train.method` is read.

`supervised`, `mean_teacher` and `trs` differ in which parts take part: an EMA teacher on unlabeled
data, a reviewer of historical teachers, Multi-level Feature Learning heads, Keypoint-Mix; `dual`
(PoseDual, Xie et al. ICCV 2021) trains two students that teach each other instead of a teacher. The
loop, the objective and the model builder ask a `MethodSpec` which parts are on instead of
comparing method names, so an ablation switch or a new method changes this module alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from components.config import ExperimentConfig, TrainConfig

METHODS: tuple[str, ...] = get_args(TrainConfig.model_fields["method"].annotation)


@dataclass(frozen=True)
class MethodSpec:
    """Which parts of Teacher-Reviewer-Student an experiment trains with.

    - `has_teacher`: an EMA teacher gives pseudo-heatmaps on an unlabeled stream;
    - `students`: networks trained by backpropagation; with 2 (dual) each one's easy-view heatmaps
      teach the other's hard views, and the better on the held-out labels is the run's student;
    - `has_reviewer`: a reviewer of historical teachers gives a second set of pseudo-heatmaps;
    - `mfl_strides` / `mfl_weights`: the backbone strides whose MFL heads are supervised, one weight each
      (both empty: the model has no MFL heads);
    - `keypoint_mix_from`: the first step whose hard views are Keypoint-Mixed (None: never);
    - `burn_in_end`: the first step that draws an unlabeled batch (0 without a teacher).
    """

    name: str
    has_teacher: bool
    has_reviewer: bool
    students: int
    mfl_strides: tuple[int, ...]
    mfl_weights: tuple[float, ...]
    keypoint_mix_from: int | None
    burn_in_end: int

    @property
    def uses_unlabeled(self) -> bool:
        """The unlabeled stream exists exactly when a teacher (or a peer student) labels it."""
        return self.has_teacher or self.students > 1

    def in_burn_in(self, step: int) -> bool:
        """True while a semi-supervised run trains on labels only (no unlabeled batch, no teacher pass)."""
        return self.uses_unlabeled and step < self.burn_in_end

    def mixes_at(self, step: int) -> bool:
        return self.keypoint_mix_from is not None and step >= self.keypoint_mix_from


def method_spec(cfg: ExperimentConfig, name: str | None = None) -> MethodSpec:
    """The spec of `cfg` (of method `name` with `cfg`'s switches when given, for callers holding a name)."""
    name = cfg.train.method if name is None else name
    if name not in METHODS:
        raise ValueError(f"train.method={name!r}: expected one of {METHODS}")
    train = cfg.train
    trs = name == "trs"
    has_teacher = name in ("mean_teacher", "trs")
    students = 2 if name == "dual" else 1
    mfl = train.mfl.enabled and (trs or train.mfl.in_baselines)  # MFL belongs to TRS unless asked for
    return MethodSpec(
        name=name,
        has_teacher=has_teacher,
        has_reviewer=trs and train.reviewer.enabled,
        students=students,
        mfl_strides=tuple(cfg.model.mfl_strides) if mfl else (),
        mfl_weights=tuple(train.mfl.weights) if mfl else (),
        keypoint_mix_from=train.keypoint_mix.start_iter if trs and train.keypoint_mix.enabled else None,
        burn_in_end=train.consistency.burn_in_iters if has_teacher or students > 1 else 0,
    )
