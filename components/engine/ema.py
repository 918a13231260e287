"""The teacher: an exponential moving average of the student, parameters and buffers alike.

Batch-norm running statistics are averaged like weights (the teacher runs in eval mode, so its
statistics must describe its own averaged weights), integer buffers such as `num_batches_tracked`
are copied. The update is fused with torch's `_foreach_` kernels: one launch per op, not per tensor.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def make_teacher(student: nn.Module) -> nn.Module:
    """A frozen copy of the student in eval mode."""
    teacher = copy.deepcopy(unwrap(student))
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


def ema_momentum(step: int, base: float, warmup: int) -> float:
    """Linear warm-up from 0 to `base` over `warmup` steps.

    At step 0 the teacher becomes a copy of the student; early on, when the student changes fast,
    the teacher follows it closely instead of averaging in the random initialisation.
    """
    if warmup <= 0:
        return base
    return base * min(1.0, max(step, 0) / warmup)


@torch.no_grad()
def ema_update_(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """teacher <- momentum * teacher + (1 - momentum) * student, in place, for params and float buffers."""
    student = unwrap(student)
    t_params = list(teacher.parameters())
    s_params = [p.detach() for p in student.parameters()]
    if len(t_params) != len(s_params):
        raise ValueError(f"teacher has {len(t_params)} parameters, student {len(s_params)}: not the same network")
    t_float, s_float, t_copy, s_copy = [], [], [], []
    for (name, tb), (_, sb) in zip(teacher.named_buffers(), student.named_buffers()):
        if tb.shape != sb.shape:
            raise ValueError(f"buffer {name}: teacher {tuple(tb.shape)} vs student {tuple(sb.shape)}")
        if tb.is_floating_point():
            t_float.append(tb)
            s_float.append(sb)
        else:
            t_copy.append(tb)
            s_copy.append(sb)
    targets, sources = t_params + t_float, s_params + s_float
    if targets:
        torch._foreach_mul_(targets, momentum)
        torch._foreach_add_(targets, sources, alpha=1.0 - momentum)
    for tb, sb in zip(t_copy, s_copy):
        tb.copy_(sb)


class EMATeacher:
    """The teacher with its own schedule: an EMA copy of the student whose momentum warms up (timm's ModelEmaV3).

    It owns the momentum `base` and the `warmup_iters` of its linear warm-up, so the loop only says
    which step just finished. `module` is the averaged network (frozen, eval mode); checkpoints
    hold its state dict unchanged.
    """

    def __init__(self, student: nn.Module, momentum: float, warmup_iters: int) -> None:
        self.module = make_teacher(student)
        self.base_momentum = momentum
        self.warmup_iters = warmup_iters

    def momentum_at(self, step: int) -> float:
        return ema_momentum(step, self.base_momentum, self.warmup_iters)

    def update(self, student: nn.Module, step: int) -> float:
        """Average the student in after optimiser step `step` (0-based); returns the momentum used."""
        momentum = self.momentum_at(step)
        ema_update_(self.module, student, momentum)
        return momentum

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
