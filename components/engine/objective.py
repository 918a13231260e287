"""The training objective of every method, from one batch of labeled and one of unlabeled crops.

    L = L_sup + sum_l w_l L_sup_l
        + lambda_u(t) [ L_cons(student, teacher) + lambda_r L_cons(student, reviewer) + sum_l w_l L_cons_l ]

Which terms are on is read from the `MethodSpec` (components/method.py), never from method names:
- `supervised`: L_sup only (unlabeled batch ignored).
- `mean_teacher`: + lambda_u(t) L_cons(student(hard), warp(teacher(easy))), no MFL, no Keypoint-Mix.
- `trs`: the full objective; train.reviewer.enabled, train.mfl.enabled and train.keypoint_mix.enabled
  switch its components off for the ablations. With train.reviewer.fuse_by_confidence the teacher
  and reviewer targets are fused per keypoint (the more confident wins) into the one teacher term,
  and the separate reviewer term is dropped.
- train.mfl.in_baselines gives `supervised` and `mean_teacher` the MFL terms too, so an ablation can
  tell the gain of deep supervision on labels from the gain of the unlabeled data.

Hard views (components/engine/hard_views.py): `augment.hard_recipe` adds batch ops (joint cutout,
CutMix, YOCO, ...) to the hard crops, and `train.consistency.hard_views` = M makes M differently
augmented views of each one. The teacher and reviewer still run once per easy view; their heatmaps
are carried into every path. Every path has its own consistency terms to the teacher and reviewer
targets (and MFL terms), and the terms are summed over the paths, as MultiAugs sums its paths'
losses; with M > 1 the per-path values are logged too (`cons_teacher_p0`, ...).

With train.consistency.burn_in_iters the semi-supervised methods start with that many labeled-only
iterations (Unbiased Teacher's burn-in): the EMA teacher of a random student has nothing to teach,
and skipping its pass and the unlabeled batch makes those iterations as cheap as supervised ones.
The ramp-up of lambda_u starts when the burn-in ends.

The student runs once per call on the labeled images and the hard views concatenated (one forward
keeps DistributedDataParallel's one-forward-per-backward rule and batch-norm sees both). Teacher
and reviewer run batched in inference mode; their pseudo-heatmaps are cloned out of inference mode
before entering the autograd graph as constants.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import torch
from torch import nn

from components.config import ExperimentConfig
from components.engine.batches import LABELED_KEYS, UNLABELED_KEYS, LabeledBatch, PseudoTargets, UnlabeledBatch
from components.engine.hard_views import HardViews, PathGeometry, carry
from components.engine.keypoint_mix import keypoint_mix
from components.engine.losses import consistency_loss, heatmap_mse, rampup
from components.engine.reviewer import Reviewer
from components.heatmap_codec import heatmap_peaks, heatmap_to_input_tensor
from components.method import MethodSpec, method_spec

__all__ = [
    "as_input",
    "batches_in_use",
    "compute_losses",
    "consistency_terms",
    "hard_views",
    "lambda_u",
    "pseudo_targets",
    "rampup",
    "supervised_terms",
]


def as_input(images: torch.Tensor, cfg: ExperimentConfig) -> torch.Tensor:
    return (
        images.contiguous(memory_format=torch.channels_last)
        if cfg.train.channels_last and images.dim() == 4
        else images
    )


def _require(batch: Mapping[str, object], keys: tuple[str, ...], name: str) -> None:
    missing = [k for k in keys if k not in batch]
    if missing:
        raise KeyError(f"{name} batch lacks {missing}; it has {sorted(batch)}")


def batches_in_use(
    spec: MethodSpec, labeled_batch: LabeledBatch, unlabeled_batch: UnlabeledBatch | None
) -> UnlabeledBatch | None:
    """Checks both batches' keys; returns the unlabeled batch when the method trains on one and it is not empty."""
    _require(labeled_batch, LABELED_KEYS, "labeled")
    unlabeled = unlabeled_batch if spec.uses_unlabeled else None
    if unlabeled is not None:
        _require(unlabeled, UNLABELED_KEYS, "unlabeled")
        if unlabeled["easy"].shape[0] == 0:
            unlabeled = None
    return unlabeled


def lambda_u(cfg: ExperimentConfig, step: int) -> float:
    """The consistency weight: 0 in the burn-in, then ramped up over `rampup_iters`."""
    consistency = cfg.train.consistency
    if step < consistency.burn_in_iters:
        return 0.0
    return consistency.weight * rampup(step - consistency.burn_in_iters, consistency.rampup_iters)


def pseudo_targets(
    teacher: nn.Module,
    reviewer: Reviewer | None,
    unlabeled: UnlabeledBatch,
    cfg: ExperimentConfig,
    geometry: PathGeometry | None = None,
) -> PseudoTargets:
    """Teacher (and reviewer) heatmaps on the easy views, carried into the hard views, with peaks.

    With `geometry` (several hard views, or views with their own affine) the easy views still go
    through each network once; the heatmaps are carried into every path, path-major [M * B, ...].
    """
    stride = cfg.input.heatmap_stride
    flip = cfg.keypoints.keypoint_set().flip_index
    easy = as_input(unlabeled["easy"], cfg)
    easy_to_hard, flipped = unlabeled["easy_to_hard"], unlabeled["flipped"]
    with torch.inference_mode():
        out: dict[str, torch.Tensor] = {}
        out["teacher"] = carry(teacher(easy).heatmaps.float(), easy_to_hard, flipped, stride, flip, geometry)
        if reviewer is not None and reviewer.ready:
            out["reviewer"] = carry(reviewer.predict(easy).float(), easy_to_hard, flipped, stride, flip, geometry)
        for name in list(out):
            out[f"{name}_coords"], out[f"{name}_conf"] = heatmap_peaks(out[name])
    return cast(PseudoTargets, {k: v.clone() for k, v in out.items()})


def hard_views(
    spec: MethodSpec,
    views: HardViews,
    hard: torch.Tensor,
    geometry: PathGeometry | None,
    pseudo: PseudoTargets,
    cfg: ExperimentConfig,
    step: int,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """The student's hard views [M * B, 3, H, W]: each path's frame, Keypoint-Mix (when the spec mixes), the recipe ops.

    Keypoint-Mix and the keypoint-driven ops take the confident peaks of the path's teacher targets.
    """
    hard = views.warp(hard, geometry)
    tau = cfg.train.consistency.confidence_threshold
    keypoints = heatmap_to_input_tensor(pseudo["teacher_coords"], cfg.input.heatmap_stride)
    confident = pseudo["teacher_conf"] >= tau
    if spec.mixes_at(step):
        if generator is None:
            raise ValueError("Keypoint-Mix needs the training loop's torch.Generator for determinism")
        height = torch.full((hard.shape[0],), float(hard.shape[-2]), device=hard.device)
        mixed = keypoint_mix(hard, keypoints, confident, height, cfg.train.keypoint_mix, generator)
        hard = cast(torch.Tensor, mixed)  # without return_plan: the images alone
    return views.apply(hard, keypoints, confident, generator)


def _sum(values: list[torch.Tensor]) -> torch.Tensor:
    """Left-to-right sum; one value is returned as it is."""
    total = values[0]
    for value in values[1:]:
        total = total + value
    return total


def supervised_terms(
    heatmaps: torch.Tensor, aux: list[torch.Tensor], labeled: LabeledBatch, cfg: ExperimentConfig, spec: MethodSpec
) -> dict[str, torch.Tensor]:
    """L_sup and the MFL heads' sum w_l L_sup_l on the first len(labeled) rows of the student's output."""
    num_labeled = labeled["image"].shape[0]
    target, weight = labeled["target"], labeled["target_weight"]
    # labeled targets only: weighting unnormalised pseudo-heatmaps by their own peaks feeds back
    # through the EMA teacher and blows the heatmap amplitude up (measured on the demo)
    fg = cfg.train.foreground_weight
    sup = heatmap_mse(heatmaps[:num_labeled], target, weight, fg)
    zero = heatmaps.new_zeros(())
    sup_mfl = sum((w * heatmap_mse(a[:num_labeled], target, weight, fg) for w, a in zip(spec.mfl_weights, aux)), zero)
    return {"sup": sup, "sup_mfl": sup_mfl}


def consistency_terms(
    student_hard: torch.Tensor,
    aux_hard: list[torch.Tensor],
    pseudo: PseudoTargets,
    cfg: ExperimentConfig,
    spec: MethodSpec,
    paths: int = 1,
) -> dict[str, torch.Tensor]:
    """The unlabeled terms of the student's outputs on the hard views [M * B, ...] against `pseudo` (same rows).

    Each path has its own teacher, reviewer and MFL terms; each kind is summed over the paths.
    Returns cons_teacher, cons_reviewer, cons_mfl, confident_fraction and, with M > 1, the per-path
    cons_teacher_p{m} and cons_reviewer_p{m}.
    """
    train = cfg.train
    tau = train.consistency.confidence_threshold
    teacher_maps, teacher_conf = pseudo["teacher"], pseudo["teacher_conf"]
    reviewer_term = "reviewer" in pseudo and not train.reviewer.fuse_by_confidence
    if "reviewer" in pseudo and train.reviewer.fuse_by_confidence:
        take_reviewer = pseudo["reviewer_conf"] > teacher_conf
        teacher_maps = torch.where(take_reviewer[..., None, None], pseudo["reviewer"], teacher_maps)
        teacher_conf = torch.maximum(teacher_conf, pseudo["reviewer_conf"])
    mask = teacher_conf >= tau
    batch = student_hard.shape[0] // paths
    rows = [slice(m * batch, (m + 1) * batch) for m in range(paths)]
    zero = student_hard.new_zeros(())
    teacher_paths = [consistency_loss(student_hard[r], teacher_maps[r], mask[r]) for r in rows]
    reviewer_paths = [zero] * paths
    if reviewer_term:
        reviewer_mask = pseudo["reviewer_conf"] >= tau
        reviewer_paths = [consistency_loss(student_hard[r], pseudo["reviewer"][r], reviewer_mask[r]) for r in rows]
    cons_mfl = sum(
        (
            w * _sum([consistency_loss(a[r], teacher_maps[r], mask[r]) for r in rows])
            for w, a in zip(spec.mfl_weights, aux_hard)
        ),
        zero,
    )
    terms = {
        "cons_teacher": _sum(teacher_paths),
        "cons_reviewer": _sum(reviewer_paths),
        "cons_mfl": cons_mfl,
        "confident_fraction": mask.float().mean(),
    }
    if paths > 1:
        for m in range(paths):
            terms[f"cons_teacher_p{m}"] = teacher_paths[m]
            terms[f"cons_reviewer_p{m}"] = reviewer_paths[m]
    return terms


def compute_losses(
    method: MethodSpec | str,
    student: nn.Module,
    teacher: nn.Module | None,
    reviewer: Reviewer | None,
    labeled_batch: LabeledBatch,
    unlabeled_batch: UnlabeledBatch | None,
    cfg: ExperimentConfig,
    step: int,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Loss terms of one iteration: "total" carries the graph, the others are detached 0-d tensors.

    `method` is the run's spec, or a method name read with `cfg`'s switches (`method_spec`).
    """
    spec = method if isinstance(method, MethodSpec) else method_spec(cfg, method)
    train = cfg.train
    if spec.students != 1:
        raise ValueError(f"method {spec.name!r} trains {spec.students} students: components.engine.dual's objective")
    unlabeled = batches_in_use(spec, labeled_batch, unlabeled_batch)
    if unlabeled is not None and teacher is None:
        raise ValueError(f"method {spec.name!r} needs a teacher")
    images = labeled_batch["image"]
    num_labeled = images.shape[0]
    views = HardViews(cfg.augment, train.consistency.hard_views)

    pseudo: PseudoTargets | None = None
    if unlabeled is not None and teacher is not None:
        hard = unlabeled["hard"]
        geometry = views.geometry(hard.shape[0], (hard.shape[-2], hard.shape[-1]), generator)
        pseudo = pseudo_targets(teacher, reviewer if spec.has_reviewer else None, unlabeled, cfg, geometry)
        hard = hard_views(spec, views, hard, geometry, pseudo, cfg, step, generator)
        images = torch.cat([images, hard.to(images.dtype)], dim=0)

    out = student(as_input(images, cfg))
    heatmaps = out.heatmaps.float()
    aux = [a.float() for a in out.aux]
    sup = supervised_terms(heatmaps, aux, labeled_batch, cfg, spec)
    total = sup["sup"] + sup["sup_mfl"]
    terms = {name: value.detach() for name, value in sup.items()}

    if pseudo is not None:
        cons = consistency_terms(heatmaps[num_labeled:], [a[num_labeled:] for a in aux], pseudo, cfg, spec, views.paths)
        weight_u = lambda_u(cfg, step)
        total = total + weight_u * (
            cons["cons_teacher"] + train.reviewer.weight * cons["cons_reviewer"] + cons["cons_mfl"]
        )
        per_path = {name: value.detach() for name, value in cons.items() if name != "confident_fraction"}
        terms.update(per_path, lambda_u=torch.tensor(weight_u), confident_fraction=cons["confident_fraction"])
    return {"total": total, **terms}
