"""Learning-rate schedule: linear warm-up, then cosine decay or step decay, as a pure function.

Written as a multiplier of the base LR so `torch.optim.lr_scheduler.LambdaLR` can drive it and its
state (just the step count) round-trips through a checkpoint.
"""

from __future__ import annotations

import math

import torch

from components.config import TrainConfig

STEP_DECAY = 0.1  # LR factor applied at every step milestone


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of `cfg.lr` for optimiser step `step` (0-based)."""
    if cfg.warmup_iters > 0 and step < cfg.warmup_iters:
        return (step + 1) / cfg.warmup_iters
    if cfg.schedule == "step":
        passed = sum(step >= milestone * cfg.iterations for milestone in cfg.step_milestones)
        return STEP_DECAY**passed
    decay_span = max(1, cfg.iterations - cfg.warmup_iters)
    progress = min(1.0, (step - cfg.warmup_iters) / decay_span)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg))


def build_optimizer(params: list[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser named by the config; weight decay skips biases and norm scales (1-D tensors)."""
    decayed = [p for p in params if p.requires_grad and p.ndim > 1]
    undecayed = [p for p in params if p.requires_grad and p.ndim <= 1]
    groups = [
        {"params": decayed, "weight_decay": cfg.weight_decay},
        {"params": undecayed, "weight_decay": 0.0},
    ]
    # foreach: one multi-tensor op per update over all parameters; torch picks it only on CUDA by default
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, foreach=True)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, foreach=True)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True, foreach=True)
