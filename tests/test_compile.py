"""train.compile: a compiled student step and compiled teacher/reviewer forwards give the eager iteration's numbers."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest
import torch

from components.config import ExperimentConfig
from components.engine.batches import LabeledBatch, UnlabeledBatch
from components.engine.compile import InferenceRunners, student_runner
from components.engine.ema import make_teacher
from components.engine.objective import compute_losses
from components.engine.reviewer import Reviewer
from components.models import build_model
from tests.tiny_coco import tiny_config

ON = ["train.compile.student_step=true", "train.compile.teacher_forward=true"]


def _batches(cfg: ExperimentConfig, device: torch.device) -> tuple[LabeledBatch, UnlabeledBatch]:
    generator = torch.Generator().manual_seed(1)
    batch, (height, width), (h, w) = cfg.train.batch_size, cfg.input.image_size, cfg.input.heatmap_size
    labeled = {
        "image": torch.randn(batch, 3, height, width, generator=generator),
        "target": torch.rand(batch, 17, h, w, generator=generator),
        "target_weight": torch.ones(batch, 17),
    }
    shift = torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]])
    unlabeled = {
        "easy": torch.randn(batch, 3, height, width, generator=generator),
        "hard": torch.randn(batch, 3, height, width, generator=generator),
        "easy_to_hard": shift.expand(batch, 2, 3).contiguous(),
        "flipped": torch.tensor([True, False])[:batch],
    }
    return (
        cast(LabeledBatch, {k: v.to(device) for k, v in labeled.items()}),
        cast(UnlabeledBatch, {k: v.to(device) for k, v in unlabeled.items()}),
    )


def _step(
    cfg: ExperimentConfig, device: torch.device, compiled: bool
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One TRS iteration's loss terms and student gradients from seed-0 weights."""
    torch.manual_seed(0)
    student = build_model(cfg).to(device).train()
    teacher = make_teacher(student)
    runners = InferenceRunners(cfg.train.compile) if compiled else None
    reviewer = Reviewer(cfg.train.reviewer, template=teacher, runner=runners)
    reviewer.maybe_update(teacher, 0.5, 0)
    network = student_runner(student, cfg.train.compile) if compiled else student
    teacher_forward = runners(teacher) if runners is not None else teacher
    labeled, unlabeled = _batches(cfg, device)
    losses = compute_losses(
        "trs", network, teacher_forward, reviewer, labeled, unlabeled, cfg, 10, torch.Generator().manual_seed(0)
    )
    losses["total"].backward()
    grads = {name: p.grad.detach().clone() for name, p in student.named_parameters() if p.grad is not None}
    return {k: v.detach() for k, v in losses.items()}, grads


@pytest.mark.slow  # tracing forward and backward of three networks: minutes on a busy 2-core CPU
@pytest.mark.parametrize(
    "backend",
    [
        "aot_eager",  # graph capture and the AOTAutograd split of forward and backward: seconds on a CPU
        pytest.param(
            "inductor",  # generated kernels: minutes of C++ compilation on a CPU, so on CUDA only
            marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
        ),
    ],
)
def test_compiled_iteration_matches_eager(backend: str) -> None:
    device = torch.device("cuda" if backend == "inductor" else "cpu")
    extra = [*ON, f"train.compile.backend={backend}", "train.consistency.confidence_threshold=0.0"]
    cfg = tiny_config("unused", "trs", [*extra, "model.backbone=resnet10t"], amp=False)
    eager_losses, eager_grads = _step(cfg, device, compiled=False)
    losses, grads = _step(cfg, device, compiled=True)
    assert eager_losses["cons_teacher"] > 0 and eager_losses["cons_reviewer"] > 0  # every network ran
    for name, value in eager_losses.items():
        torch.testing.assert_close(losses[name], value, rtol=1e-4, atol=1e-6, msg=name)
    assert grads.keys() == eager_grads.keys() and len(grads) > 10
    for name, grad in eager_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-3, atol=1e-5, msg=name)


def test_inference_runners_wrap_once_and_only_when_asked() -> None:
    cfg = tiny_config("unused", "trs", ["train.compile.backend=aot_eager"])
    module = torch.nn.Linear(2, 2)
    assert InferenceRunners(cfg.train.compile)(module) is module  # teacher_forward off
    runners = InferenceRunners(cfg.model_copy(deep=True).train.compile.model_copy(update={"teacher_forward": True}))
    wrapped = runners(module)
    assert wrapped is not module and runners(module) is wrapped
    assert list(wrapped.parameters()) == list(module.parameters())  # shares the weights


@pytest.mark.slow
def test_the_trainer_runs_compiled_and_checkpoints_plain_weights(tmp_path: Path) -> None:
    from components.engine.checkpoint import load_checkpoint
    from components.engine.trainer import train
    from tests.tiny_coco import make_tiny_split

    split = make_tiny_split(tmp_path / "data")
    extra = ["train.compile.student_step=true", "train.compile.backend=aot_eager", "model.backbone=resnet10t"]
    cfg = tiny_config(tmp_path / "ckpt", "supervised", extra, iterations=2)
    state = load_checkpoint(train(cfg, split, progress=False).checkpoint_uri)
    assert state["step"] == 2 and not any(key.startswith("_orig_mod") for key in state["student"])
    assert state["config"]["train"]["compile"]["student_step"] is True
