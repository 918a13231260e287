"""A run that starts from trained weights (`train.init`): the student, and with it the teacher's start.

Retraining after a few new labels need not pay the whole budget again: the champion already knows
almost everything. The student loads the source's weights; the optimiser, the schedule and the
reviewer start fresh, and the schedule takes `train.warm_start`'s burn-in, warm-ups and ramp-up.
A source of another keypoint set or network is refused with one line naming the difference. MFL
heads the source lacks (or shapes differently) start fresh: they only guide training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from components.config import ConfigError, ExperimentConfig
from components.keypoints import differences

AUX_PREFIX = "aux_heads."  # the MFL heads' state-dict keys (components/models/pose_net.py)
NETWORK_FIELDS = ("backbone", "head", "deconv_layers", "deconv_channels")


class WarmStartError(ConfigError):
    """train.init names weights this run cannot start from; the message says how they differ."""


@dataclass(frozen=True)
class InitialWeights:
    source: str  # pinned: models:/NAME/VERSION or the checkpoint file
    student: dict[str, torch.Tensor]
    config: ExperimentConfig  # the source's: its keypoint set and network


def warm_start_schedule(cfg: ExperimentConfig) -> ExperimentConfig:
    """`cfg` with train.warm_start's burn-in, warm-ups and ramp-up when it starts from trained weights."""
    train = cfg.train
    if not train.warm:
        return cfg
    warm = train.warm_start
    consistency = train.consistency.model_copy(
        update={"burn_in_iters": warm.burn_in_iters, "rampup_iters": warm.rampup_iters}
    )
    ema = train.ema.model_copy(update={"warmup_iters": warm.ema_warmup_iters})
    train = train.model_copy(
        update={
            "warmup_iters": warm.warmup_iters,
            "lr": train.lr * warm.lr_factor,
            "consistency": consistency,
            "ema": ema,
        }
    )
    return cfg.model_copy(update={"train": train})


def check_compatible(initial: InitialWeights, cfg: ExperimentConfig) -> None:
    """Refuse a source of another keypoint set, backbone, head or heatmap stride (one line)."""
    problems = []
    keypoint_problem = differences(cfg.keypoints.keypoint_set(), initial.config.keypoints.keypoint_set().names)
    if keypoint_problem is not None:
        problems.append(f"another keypoint set ({keypoint_problem})")
    for field in NETWORK_FIELDS:
        theirs, ours = getattr(initial.config.model, field), getattr(cfg.model, field)
        if theirs != ours:
            problems.append(f"model.{field} {theirs!r}, this run's {ours!r}")
    if initial.config.input.heatmap_stride != cfg.input.heatmap_stride:
        problems.append(
            f"input.heatmap_stride {initial.config.input.heatmap_stride}, this run's {cfg.input.heatmap_stride}"
        )
    if problems:
        raise WarmStartError(f"train.init {initial.source}: cannot start from it: {'; '.join(problems)}")


def load_initial_weights(student: nn.Module, initial: InitialWeights) -> list[str]:
    """The source's weights into `student`: every backbone and head tensor must fit; MFL heads load where
    they fit. Returns the keys left at their fresh initialisation."""
    own = student.state_dict()
    main = {k: v for k, v in initial.student.items() if not k.startswith(AUX_PREFIX)}
    missing = sorted(k for k in own if not k.startswith(AUX_PREFIX) and k not in main)
    misshapen = sorted(k for k, v in main.items() if k in own and own[k].shape != v.shape)
    if missing or misshapen:
        raise WarmStartError(
            f"train.init {initial.source}: its network does not fit this run's "
            f"({len(missing)} tensors missing, {len(misshapen)} of another shape; first: {(missing + misshapen)[0]})"
        )
    aux = {
        k: v for k, v in initial.student.items() if k.startswith(AUX_PREFIX) and k in own and own[k].shape == v.shape
    }
    student.load_state_dict({**main, **aux}, strict=False)
    return sorted(k for k in own if k.startswith(AUX_PREFIX) and k not in aux)
