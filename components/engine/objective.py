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
from components.engine.keypoint_mix import keypoint_mix
from components.engine.losses import consistency_loss, heatmap_mse, rampup
from components.engine.pseudo_labels import warp_heatmaps
from components.engine.reviewer import Reviewer
from components.heatmap_codec import heatmap_peaks, heatmap_to_input_tensor
from components.method import MethodSpec, method_spec

__all__ = ["compute_losses", "lambda_u", "pseudo_targets", "rampup"]


def _as_input(images: torch.Tensor, cfg: ExperimentConfig) -> torch.Tensor:
    return (
        images.contiguous(memory_format=torch.channels_last)
        if cfg.train.channels_last and images.dim() == 4
        else images
    )


def _require(batch: Mapping[str, object], keys: tuple[str, ...], name: str) -> None:
    missing = [k for k in keys if k not in batch]
    if missing:
        raise KeyError(f"{name} batch lacks {missing}; it has {sorted(batch)}")


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
) -> PseudoTargets:
    """Teacher (and reviewer) heatmaps on the easy views, carried into the hard views, with peaks."""
    stride = cfg.input.heatmap_stride
    flip_index = cfg.keypoints.keypoint_set().flip_index
    easy = _as_input(unlabeled["easy"], cfg)
    with torch.inference_mode():
        out: dict[str, torch.Tensor] = {}
        out["teacher"] = warp_heatmaps(
            teacher(easy).heatmaps.float(), unlabeled["easy_to_hard"], unlabeled["flipped"], stride, flip_index
        )
        if reviewer is not None and reviewer.ready:
            out["reviewer"] = warp_heatmaps(
                reviewer.predict(easy).float(), unlabeled["easy_to_hard"], unlabeled["flipped"], stride, flip_index
            )
        for name in list(out):
            out[f"{name}_coords"], out[f"{name}_conf"] = heatmap_peaks(out[name])
    return cast(PseudoTargets, {k: v.clone() for k, v in out.items()})


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
    _require(labeled_batch, LABELED_KEYS, "labeled")
    train = cfg.train
    unlabeled = unlabeled_batch if spec.uses_unlabeled else None
    if unlabeled is not None:
        _require(unlabeled, UNLABELED_KEYS, "unlabeled")
        if unlabeled["easy"].shape[0] == 0:
            unlabeled = None
    if unlabeled is not None and teacher is None:
        raise ValueError(f"method {spec.name!r} needs a teacher")
    images = labeled_batch["image"]
    num_labeled = images.shape[0]

    pseudo: PseudoTargets | None = None
    if unlabeled is not None and teacher is not None:
        pseudo = pseudo_targets(teacher, reviewer if spec.has_reviewer else None, unlabeled, cfg)
        hard = unlabeled["hard"]
        if spec.mixes_at(step):
            if generator is None:
                raise ValueError("Keypoint-Mix needs the training loop's torch.Generator for determinism")
            tau = train.consistency.confidence_threshold
            keypoints = heatmap_to_input_tensor(pseudo["teacher_coords"], cfg.input.heatmap_stride)
            height = torch.full((hard.shape[0],), float(hard.shape[-2]), device=hard.device)
            confident = pseudo["teacher_conf"] >= tau
            mixed = keypoint_mix(hard, keypoints, confident, height, train.keypoint_mix, generator)
            hard = cast(torch.Tensor, mixed)  # without return_plan: the images alone
        images = torch.cat([images, hard.to(images.dtype)], dim=0)

    out = student(_as_input(images, cfg))
    heatmaps = out.heatmaps.float()
    aux = [a.float() for a in out.aux]
    mfl_weights = spec.mfl_weights  # the model carries one MFL head per weight (built from the same spec)
    target, weight = labeled_batch["target"], labeled_batch["target_weight"]
    # labeled targets only: weighting unnormalised pseudo-heatmaps by their own peaks feeds back
    # through the EMA teacher and blows the heatmap amplitude up (measured on the demo)
    fg = train.foreground_weight

    sup = heatmap_mse(heatmaps[:num_labeled], target, weight, fg)
    zero = heatmaps.new_zeros(())
    sup_mfl = sum((w * heatmap_mse(a[:num_labeled], target, weight, fg) for w, a in zip(mfl_weights, aux)), zero)
    total = sup + sup_mfl
    terms = {"sup": sup.detach(), "sup_mfl": sup_mfl.detach()}

    if pseudo is not None:
        tau = train.consistency.confidence_threshold
        teacher_maps, teacher_conf = pseudo["teacher"], pseudo["teacher_conf"]
        reviewer_term = "reviewer" in pseudo and not train.reviewer.fuse_by_confidence
        if "reviewer" in pseudo and train.reviewer.fuse_by_confidence:
            take_reviewer = pseudo["reviewer_conf"] > teacher_conf
            teacher_maps = torch.where(take_reviewer[..., None, None], pseudo["reviewer"], teacher_maps)
            teacher_conf = torch.maximum(teacher_conf, pseudo["reviewer_conf"])
        student_hard = heatmaps[num_labeled:]
        mask = teacher_conf >= tau
        cons_teacher = consistency_loss(student_hard, teacher_maps, mask)
        cons_reviewer = zero
        if reviewer_term:
            cons_reviewer = consistency_loss(student_hard, pseudo["reviewer"], pseudo["reviewer_conf"] >= tau)
        cons_mfl = sum(
            (w * consistency_loss(a[num_labeled:], teacher_maps, mask) for w, a in zip(mfl_weights, aux)), zero
        )
        weight_u = lambda_u(cfg, step)
        total = total + weight_u * (cons_teacher + train.reviewer.weight * cons_reviewer + cons_mfl)
        terms.update(
            cons_teacher=cons_teacher.detach(),
            cons_reviewer=cons_reviewer.detach(),
            cons_mfl=cons_mfl.detach(),
            lambda_u=torch.tensor(weight_u),
            confident_fraction=mask.float().mean(),
        )
    return {"total": total, **terms}
