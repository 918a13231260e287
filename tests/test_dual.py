"""The dual baseline: each student learns from the other's easy views; the better one is the run's student."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from components.config import ConfigError, load_config
from components.engine import training_state
from components.engine.checkpoint import load_checkpoint, load_student
from components.engine.dual import compute_dual_losses
from components.engine.losses import consistency_loss, heatmap_mse
from components.engine.objective import lambda_u
from components.engine.pseudo_labels import warp_heatmaps
from components.engine.reviewer import HoldoutScorer
from components.engine.trainer import train
from components.heatmap_codec import heatmap_peaks
from components.keypoints import COCO_PERSON
from components.method import method_spec
from components.models import PoseOutput
from tests.test_objective import batches
from tests.tiny_coco import make_tiny_split, tiny_config

B = 4
TAU = 0.35


class Heatmapper(nn.Module):
    """A stand-in pose network without batch norm: pooled to the heatmap size, one convolution."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.pool = nn.AvgPool2d(4)
        self.conv = nn.Conv2d(3, 17, 3, padding=1)
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> PoseOutput:
        self.inputs.append(x.detach().clone())
        return PoseOutput(self.conv(self.pool(x)), [])


def _cfg(*overrides: str):
    return load_config(
        None,
        [
            "input.image_size=[64,48]",
            "train.method=dual",
            "train.consistency.rampup_iters=0",
            f"train.consistency.confidence_threshold={TAU}",
            *overrides,
        ],
    )


def test_each_student_is_taught_by_the_others_easy_views_on_its_own_hard_views() -> None:
    cfg = _cfg()
    first, second = Heatmapper(0), Heatmapper(1)
    labeled, unlabeled = batches()
    losses = compute_dual_losses(method_spec(cfg), (first, second), labeled, unlabeled, cfg, 5, torch.Generator())
    assert [x.shape[0] for x in first.inputs] == [B, 2 * B] == [x.shape[0] for x in second.inputs]
    assert torch.equal(first.inputs[0], unlabeled["easy"]) and torch.equal(first.inputs[1][B:], unlabeled["hard"])

    stride, weight_u = cfg.input.heatmap_stride, lambda_u(cfg, 5)
    with torch.no_grad():
        easy = {net: net.conv(net.pool(unlabeled["easy"])) for net in (first, second)}
    total = torch.zeros(())
    for own, peer, prefix in ((first, second, ""), (second, first, "peer_")):
        own.zero_grad()
        heatmaps = own.conv(own.pool(torch.cat([labeled["image"], unlabeled["hard"]])))
        target = warp_heatmaps(
            easy[peer], unlabeled["easy_to_hard"], unlabeled["flipped"], stride, COCO_PERSON.flip_index
        )
        mask = heatmap_peaks(target)[1] >= TAU
        assert 0 < float(mask.float().mean()) < 1, "the confidence mask has something to do"
        sup = heatmap_mse(heatmaps[:B], labeled["target"], labeled["target_weight"])
        cons = consistency_loss(heatmaps[B:], target, mask)
        torch.testing.assert_close(losses[f"{prefix}sup"], sup.detach())
        torch.testing.assert_close(losses[f"{prefix}cons_teacher"], cons.detach())
        (sup + weight_u * cons).backward()
        own.expected_grad = [p.grad.clone() for p in own.parameters()]
        total = total + (sup + weight_u * cons).detach()
    torch.testing.assert_close(losses["total"].detach(), total)
    for net in (first, second):
        net.zero_grad()
    losses["total"].backward()
    for net in (first, second):
        for got, expected in zip(net.parameters(), net.expected_grad):
            torch.testing.assert_close(got.grad, expected, msg="its own loss alone: the peer's targets are constants")


def test_without_an_unlabeled_batch_both_students_learn_from_labels_alone() -> None:
    cfg = _cfg()
    first, second = Heatmapper(0), Heatmapper(1)
    labeled, _ = batches()
    losses = compute_dual_losses(method_spec(cfg), (first, second), labeled, None, cfg, 0)
    assert set(losses) == {"total", "sup", "sup_mfl", "peer_sup", "peer_sup_mfl"}
    torch.testing.assert_close(losses["total"].detach(), losses["sup"] + losses["peer_sup"])
    with pytest.raises(ValueError, match="needs 2"):
        compute_dual_losses(method_spec(cfg, "trs"), (first, second), labeled, None, cfg, 0)


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory):
    return make_tiny_split(tmp_path_factory.mktemp("tiny"))


class RiggedScores:
    """Held-out AP by role: the peer wins the checks at the steps in `peer_wins`, the first student the others."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, peer_wins: set[int]) -> None:
        self.states: list[training_state.TrainingState] = []
        self.peer_wins = peer_wins
        built = training_state.TrainingState.__init__

        def remember(state, *args, **kwargs):
            built(state, *args, **kwargs)
            self.states.append(state)

        monkeypatch.setattr(training_state.TrainingState, "__init__", remember)
        monkeypatch.setattr(HoldoutScorer, "__call__", lambda scorer, model: self.score(model))

    def score(self, model: nn.Module) -> float:
        state = self.states[-1]
        peer_ahead = state.step in self.peer_wins
        return 0.6 if (model is state.peer) == peer_ahead else 0.4


def test_the_better_student_on_the_held_out_labels_is_the_checkpoints_student(
    split, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rigged = RiggedScores(monkeypatch, peer_wins={2, 6})
    cfg = tiny_config(tmp_path, "dual", ["augment.hard_recipe=jccm"])
    result = train(cfg, split, progress=False)
    state = rigged.states[-1]
    checks = [row for row in result.history if "dual/registered" in row]
    assert [(row["step"], row["dual/registered"]) for row in checks] == [(2.0, 1.0), (4.0, 0.0), (6.0, 1.0)]
    assert all({row["dual/student_ap"], row["dual/peer_ap"]} == {0.4, 0.6} for row in checks)

    saved = load_checkpoint(result.checkpoint_uri)
    assert saved["dual"] == {"registered": 1, "holdout_ap": [0.4, 0.6]}
    for name, network in (("student", state.peer), ("peer", state.student)):
        assert all(torch.equal(saved[name][k], v) for k, v in network.state_dict().items()), name
    model, _ = load_student(result.checkpoint_uri)
    assert all(torch.equal(v, state.peer.state_dict()[k]) for k, v in model.state_dict().items())
    assert any(not torch.equal(v, state.student.state_dict()[k]) for k, v in model.state_dict().items())
    assert saved["optimizer"]["state"] and saved["peer_optimizer"]["state"], "both students took optimiser steps"
    assert saved["scheduler"]["last_epoch"] == saved["peer_scheduler"]["last_epoch"] == 6
    assert saved["teacher"] is None and saved["reviewer"] is None
    losses = [row for row in result.history if "loss/total" in row]
    assert losses[-1]["loss/cons_teacher"] > 0 and losses[-1]["loss/peer_cons_teacher"] > 0


def test_dual_needs_held_out_labels_to_choose(split, tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "dual", ["data.holdout_labeled=0"])
    with pytest.raises(ConfigError, match="holdout_labeled"):
        train(cfg, split, progress=False)
