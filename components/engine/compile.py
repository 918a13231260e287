"""`train.compile`: which networks of an iteration run as `torch.compile`d graphs.

An eager iteration launches one kernel per operation from Python; on a fast GPU that host work,
not the arithmetic, bounds it (docs/benchmarks.md, GPU). Compiling fuses elementwise work into
fewer kernels, and `mode="reduce-overhead"` replays them as CUDA graphs. The compiled wrappers only
*run* the networks: weights, EMA updates, reviewer snapshots and checkpoints keep using the plain
modules, so a checkpoint is the same with or without compilation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from components.config import CompileConfig

Runner = Callable[[nn.Module], nn.Module]


def compile_module(module: nn.Module, cfg: CompileConfig) -> nn.Module:
    """`module` wrapped by `torch.compile` with the configured backend and mode (the parameters stay shared)."""
    mode = None if cfg.backend != "inductor" or cfg.mode == "default" else cfg.mode
    return torch.compile(module, backend=cfg.backend, mode=mode)  # type: ignore[return-value]


def student_runner(network: nn.Module, cfg: CompileConfig) -> nn.Module:
    """What the loop calls for the student's forward (and, through AOTAutograd, its backward)."""
    return compile_module(network, cfg) if cfg.student_step else network


class InferenceRunners:
    """Compiled twins of the teacher and reviewer snapshots, made once per module and reused.

    `torch.compile` treats a module's parameters as graph inputs, so snapshots of one architecture
    share the compiled code; a snapshot overwritten in place (the reviewer reuses its memory) keeps
    its wrapper.
    """

    def __init__(self, cfg: CompileConfig) -> None:
        self.cfg = cfg
        self._wrapped: dict[int, tuple[nn.Module, nn.Module]] = {}

    def __call__(self, module: nn.Module) -> nn.Module:
        if not self.cfg.teacher_forward:
            return module
        held = self._wrapped.get(id(module))
        if held is None:  # the module is held too, so its id cannot be reused by another
            held = (module, compile_module(module, self.cfg))
            self._wrapped[id(module)] = held
        return held[1]
