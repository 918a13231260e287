"""The dual-network baseline, `train.method: dual` (PoseDual, Xie et al. ICCV 2021): two students teach each other.

Each student learns from the labels and, on the unlabeled crops, from the *other* student's
easy-view heatmaps carried into its own hard views:

    L = sum_i [ L_sup(i) + sum_l w_l L_sup_l(i) + lambda_u(t) (L_cons(i(hard_i), warp(j(easy))) + MFL terms) ]
    with j = 1 - i, the peer of student i.

There is no EMA teacher and no reviewer. As in Xie et al.'s code (MultiAugs' lib/models/pose_dual.py),
each network predicts the easy views in training mode without gradients, so batch norm normalises
them with their own batch statistics. The hard views are made as for every method
(components/engine/hard_views.py, `augment.hard_recipe` and `train.consistency.hard_views`): the two
students share the paths' geometry and each draws its own ops, around the keypoints its peer
predicts (PoseDual cuts out net 1's joints where net 2 puts them), with confidence masks by `tau`
as for the other methods. The two losses are summed and backpropagated once; the networks share no
parameter, so each gets its own gradient and its own optimiser step (components/engine/trainer.py).

Terms: the first student's under the usual names, the second's with the prefix `peer_`. Which of
the two the run registers is the trainer's call, on the held-out labels.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from components.config import ExperimentConfig
from components.engine.batches import LabeledBatch, PseudoTargets, UnlabeledBatch
from components.engine.hard_views import HardViews, PathGeometry, carry
from components.engine.objective import (
    as_input,
    batches_in_use,
    consistency_terms,
    hard_views,
    lambda_u,
    supervised_terms,
)
from components.heatmap_codec import heatmap_peaks
from components.method import MethodSpec

PEER = "peer_"


def peer_targets(
    peer_easy: torch.Tensor,
    unlabeled: UnlabeledBatch,
    geometry: PathGeometry | None,
    stride: int,
    flip_index: NDArray[np.int64],
) -> PseudoTargets:
    """The peer's easy-view heatmaps [B, K, h, w] carried into this student's paths, with their peaks."""
    maps = carry(peer_easy, unlabeled["easy_to_hard"], unlabeled["flipped"], stride, flip_index, geometry)
    coords, conf = heatmap_peaks(maps)
    return {"teacher": maps, "teacher_coords": coords, "teacher_conf": conf}


def compute_dual_losses(
    spec: MethodSpec,
    students: tuple[nn.Module, nn.Module],
    labeled_batch: LabeledBatch,
    unlabeled_batch: UnlabeledBatch | None,
    cfg: ExperimentConfig,
    step: int,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Loss terms of one dual iteration: "total" (both students' losses) carries the graph, the rest are detached."""
    if spec.students != 2:
        raise ValueError(f"method {spec.name!r} trains {spec.students} student(s); the dual objective needs 2")
    unlabeled = batches_in_use(spec, labeled_batch, unlabeled_batch)
    views = HardViews(cfg.augment, cfg.train.consistency.hard_views)
    images = labeled_batch["image"]
    num_labeled = images.shape[0]
    inputs = [images, images]
    pseudo: list[PseudoTargets | None] = [None, None]
    if unlabeled is not None:
        easy = as_input(unlabeled["easy"], cfg)
        with torch.no_grad():  # training mode, as PoseDual's forward: no gradient, batch statistics
            easy_maps = [student(easy).heatmaps.float() for student in students]
        hard = unlabeled["hard"]
        geometry = views.geometry(hard.shape[0], (hard.shape[-2], hard.shape[-1]), generator)
        for own in (0, 1):
            carried = peer_targets(
                easy_maps[1 - own],
                unlabeled,
                geometry,
                cfg.input.heatmap_stride,
                cfg.keypoints.keypoint_set().flip_index,
            )
            pseudo[own] = carried
            own_hard = hard_views(spec, views, hard, geometry, carried, cfg, step, generator)
            inputs[own] = torch.cat([images, own_hard.to(images.dtype)], dim=0)

    total: torch.Tensor | None = None
    terms: dict[str, torch.Tensor] = {}
    weight_u = lambda_u(cfg, step)
    for own, (student, prefix) in enumerate(zip(students, ("", PEER))):
        out = student(as_input(inputs[own], cfg))
        heatmaps = out.heatmaps.float()
        aux = [a.float() for a in out.aux]
        sup = supervised_terms(heatmaps, aux, labeled_batch, cfg, spec)
        loss = sup["sup"] + sup["sup_mfl"]
        named = dict(sup)
        targets = pseudo[own]
        if targets is not None:
            cons = consistency_terms(
                heatmaps[num_labeled:], [a[num_labeled:] for a in aux], targets, cfg, spec, views.paths
            )
            loss = loss + weight_u * (cons["cons_teacher"] + cons["cons_mfl"])
            named.update((k, v) for k, v in cons.items() if not k.startswith("cons_reviewer"))
        total = loss if total is None else total + loss
        terms.update((prefix + k, v.detach()) for k, v in named.items())
    if unlabeled is not None:
        terms["lambda_u"] = torch.tensor(weight_u)
    assert total is not None
    return {"total": total, **terms}
