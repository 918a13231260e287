"""The reviewer: a memory of important historical teacher parameters that gives extra pseudo-labels.

Modes (train.reviewer.mode):
- `best`: the teacher snapshot with the best held-out score so far; replaced only when beaten.
- `topk`: the k best snapshots; predictions are the mean of their heatmaps (an ensemble).
- `slow_ema`: a slow EMA of the teacher (momentum train.reviewer.slow_momentum), updated on every
  call and needing no score.

Snapshots are frozen deep copies in eval mode. The training loop calls `maybe_update` whenever
`due(step)` says so, scoring the teacher first with `HoldoutScorer` when `needs_score` is true.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from components.config import ExperimentConfig, ReviewerConfig
from components.data.split import SplitFiles
from components.engine.ema import ema_update_, unwrap
from components.evaluation.coco_eval import load_ground_truth
from components.evaluation.evaluate import build_eval_dataset, evaluate_model


@dataclass
class Snapshot:
    score: float
    step: int
    model: nn.Module


def _frozen_copy(model: nn.Module) -> nn.Module:
    snapshot = copy.deepcopy(unwrap(model))
    snapshot.eval()
    snapshot.requires_grad_(False)
    return snapshot


class Reviewer:
    def __init__(
        self,
        cfg: ReviewerConfig,
        template: nn.Module | None = None,
        runner: Callable[[nn.Module], nn.Module] | None = None,
    ):
        """`runner` gives what runs a snapshot's forward (e.g. its compiled twin); by default the snapshot itself."""
        self.cfg = cfg
        self.template = template
        self.runner = runner
        self.snapshots: list[Snapshot] = []  # best first

    @property
    def capacity(self) -> int:
        return self.cfg.topk if self.cfg.mode == "topk" else 1

    @property
    def needs_score(self) -> bool:
        return self.cfg.mode != "slow_ema"

    @property
    def ready(self) -> bool:
        return bool(self.snapshots)

    @property
    def best_score(self) -> float | None:
        return self.snapshots[0].score if self.snapshots and self.needs_score else None

    def due(self, step: int) -> bool:
        """Whether the loop should call `maybe_update` after optimiser step `step` (1-based)."""
        return self.cfg.mode == "slow_ema" or (step > 0 and step % self.cfg.check_every == 0)

    def maybe_update(self, teacher: nn.Module, score: float | None, step: int) -> bool:
        """Store the teacher if it earns a place; returns whether the reviewer changed."""
        if self.cfg.mode == "slow_ema":
            if not self.snapshots:
                self.snapshots.append(Snapshot(float("nan"), step, _frozen_copy(teacher)))
            else:
                ema_update_(self.snapshots[0].model, teacher, self.cfg.slow_momentum)
                self.snapshots[0].step = step
            return True
        if score is None:
            raise ValueError(f"reviewer mode {self.cfg.mode!r} needs the teacher's held-out score")
        score = float(score)
        if len(self.snapshots) >= self.capacity and score <= self.snapshots[-1].score:
            return False
        if len(self.snapshots) >= self.capacity:
            evicted = self.snapshots.pop()
            evicted.model.load_state_dict(unwrap(teacher).state_dict())  # reuse its memory
            snapshot = Snapshot(score, step, evicted.model)
        else:
            snapshot = Snapshot(score, step, _frozen_copy(teacher))
        self.snapshots.append(snapshot)
        self.snapshots.sort(key=lambda s: s.score, reverse=True)  # stable: earlier snapshot wins ties
        return True

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Heatmaps [B,K,h,w] of the stored snapshot(s), averaged for the top-k ensemble."""
        if not self.snapshots:
            raise RuntimeError("the reviewer holds no snapshot yet; check `ready` first")
        run = self.runner or (lambda model: model)
        with torch.inference_mode():
            total = run(self.snapshots[0].model)(x).heatmaps
            for snapshot in self.snapshots[1:]:
                total = total + run(snapshot.model)(x).heatmaps
            return total / len(self.snapshots)

    def state_dict(self) -> dict[str, Any]:
        return {
            "mode": self.cfg.mode,
            "snapshots": [
                {
                    "score": s.score,
                    "step": s.step,
                    "model": {k: v.detach().clone() for k, v in s.model.state_dict().items()},
                }
                for s in self.snapshots
            ],
        }

    def load_state_dict(self, state: dict[str, Any], template: nn.Module | None = None) -> None:
        """Restore snapshots; `template` (e.g. the teacher) gives the architecture to load them into."""
        if state.get("mode") != self.cfg.mode:
            raise ValueError(f"reviewer state is for mode {state.get('mode')!r}, this run uses {self.cfg.mode!r}")
        template = template or self.template or (self.snapshots[0].model if self.snapshots else None)
        restored = []
        for entry in state["snapshots"]:
            if template is None:
                raise ValueError("Reviewer.load_state_dict needs a template network to rebuild its snapshots")
            model = _frozen_copy(template)
            model.load_state_dict(entry["model"])
            restored.append(Snapshot(float(entry["score"]), int(entry["step"]), model))
        self.snapshots = restored


class HoldoutScorer:
    """AP of a snapshot on the held-out labeled images: the reviewer's ranking signal.

    The crops and the ground truth are built once and reused at every check.
    """

    def __init__(self, split: SplitFiles, cfg: ExperimentConfig, device: torch.device) -> None:
        self.split, self.cfg, self.device = split, cfg, device
        self.dataset = build_eval_dataset(split.holdout_ann, split.train_images, cfg)
        self.ground_truth = load_ground_truth(split.holdout_ann)

    def __call__(self, model: nn.Module) -> float:
        metrics = evaluate_model(
            model,
            self.split.holdout_ann,
            self.split.train_images,
            self.cfg,
            dataset=self.dataset,
            ground_truth=self.ground_truth,
            device=self.device,
            num_workers=0,
            warn_default_sigmas=False,
        )
        return float(metrics["AP"])
