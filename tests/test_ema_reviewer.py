"""Teacher EMA rule (parameters and buffers) and the reviewer's best / top-k / slow-EMA memories."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from components.config import ReviewerConfig
from components.engine.ema import EMATeacher, ema_momentum, ema_update_, make_teacher
from components.engine.reviewer import Reviewer
from components.models import PoseOutput


class TinyPose(nn.Module):
    """Conv + BN network with PoseNet's output type: enough to exercise EMA and snapshots fast."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        return PoseOutput(self.bn(self.conv(x)), [])


def with_value(model: nn.Module, value: float) -> nn.Module:
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)
    return model


def test_ema_update_follows_the_rule_for_parameters_and_float_buffers_and_copies_counters():
    torch.manual_seed(0)
    student = TinyPose()
    teacher = make_teacher(student)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    student.train()
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
        for _ in range(3):
            student(torch.randn(2, 3, 8, 8))  # moves BN running stats and the batch counter
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    momentum = 0.9
    ema_update_(teacher, student, momentum)
    for name, value in teacher.state_dict().items():
        source = student.state_dict()[name]
        if value.is_floating_point():
            expected = torch.add(before[name] * momentum, source, alpha=1 - momentum)  # m t + (1 - m) s
            assert torch.equal(value, expected), name
            assert not torch.equal(value, before[name]), name
        else:
            assert torch.equal(value, source), name
    assert int(teacher.bn.num_batches_tracked) == 3


def test_zero_momentum_makes_the_teacher_an_exact_copy():
    torch.manual_seed(0)
    teacher, student = with_value(TinyPose(), 1.0), TinyPose()
    ema_update_(teacher, student, 0.0)
    assert all(torch.equal(a, b) for a, b in zip(teacher.state_dict().values(), student.state_dict().values()))


def test_ema_momentum_ramps_linearly_then_holds():
    assert ema_momentum(0, 0.999, 100) == 0.0
    assert ema_momentum(50, 0.999, 100) == pytest.approx(0.4995)
    assert ema_momentum(100, 0.999, 100) == ema_momentum(5000, 0.999, 100) == 0.999
    assert ema_momentum(0, 0.99, 0) == 0.99


def test_ema_teacher_applies_its_own_warm_up_and_keeps_the_plain_state_dict():
    torch.manual_seed(0)
    student = TinyPose()
    ema = EMATeacher(student, momentum=0.9, warmup_iters=4)
    reference = make_teacher(student)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    assert ema.update(student, 2) == pytest.approx(0.45)  # half-way through the warm-up
    ema_update_(reference, student, 0.45)
    assert all(torch.equal(a, b) for a, b in zip(ema.state_dict().values(), reference.state_dict().values()))
    assert ema.momentum_at(10) == 0.9
    assert set(ema.state_dict()) == set(student.state_dict())  # checkpoints hold the bare network's keys
    restored = EMATeacher(TinyPose(), 0.9, 4)
    restored.load_state_dict(ema.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(restored.state_dict().values(), ema.state_dict().values()))


def test_mismatched_networks_are_refused():
    with pytest.raises(ValueError):
        ema_update_(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)), 0.5)


def test_best_mode_keeps_the_best_snapshot_until_beaten():
    reviewer = Reviewer(ReviewerConfig(mode="best"))
    x = torch.randn(1, 3, 4, 4)
    teacher = TinyPose()
    assert not reviewer.ready
    assert reviewer.maybe_update(with_value(teacher, 1.0), 0.3, step=100)
    assert not reviewer.maybe_update(with_value(teacher, 2.0), 0.2, step=200)
    assert not reviewer.maybe_update(with_value(teacher, 2.5), 0.3, step=250)  # a tie keeps the older one
    torch.testing.assert_close(reviewer.predict(x), with_value(TinyPose(), 1.0).eval()(x).heatmaps)
    assert reviewer.maybe_update(with_value(teacher, 3.0), 0.5, step=300)
    torch.testing.assert_close(reviewer.predict(x), with_value(TinyPose(), 3.0).eval()(x).heatmaps)
    assert reviewer.best_score == 0.5 and reviewer.snapshots[0].step == 300
    with pytest.raises(ValueError, match="score"):
        reviewer.maybe_update(teacher, None, step=400)


def test_snapshots_are_frozen_copies_not_views_of_the_teacher():
    reviewer = Reviewer(ReviewerConfig(mode="best"))
    teacher = with_value(TinyPose(), 1.0)
    reviewer.maybe_update(teacher, 0.1, step=1)
    with_value(teacher, 9.0)
    snapshot = reviewer.snapshots[0].model
    assert not snapshot.training and not snapshot.conv.weight.requires_grad
    assert all(torch.all(p == 1.0) for p in snapshot.parameters())


def test_topk_keeps_the_k_best_and_predicts_their_mean():
    reviewer = Reviewer(ReviewerConfig(mode="topk", topk=2))
    x = torch.randn(2, 3, 4, 4)
    for value, score in [(1.0, 0.3), (2.0, 0.5), (3.0, 0.1), (4.0, 0.4)]:
        reviewer.maybe_update(with_value(TinyPose(), value), score, step=int(value))
    assert [s.score for s in reviewer.snapshots] == [0.5, 0.4]
    expected = (with_value(TinyPose(), 2.0).eval()(x).heatmaps + with_value(TinyPose(), 4.0).eval()(x).heatmaps) / 2
    torch.testing.assert_close(reviewer.predict(x), expected)


def test_slow_ema_mode_averages_the_teacher_without_scores():
    cfg = ReviewerConfig(mode="slow_ema", slow_momentum=0.75)
    reviewer = Reviewer(cfg)
    assert not reviewer.needs_score and reviewer.due(7)
    reviewer.maybe_update(with_value(TinyPose(), 1.0), None, step=1)
    reviewer.maybe_update(with_value(TinyPose(), 3.0), None, step=2)
    assert torch.allclose(reviewer.snapshots[0].model.conv.weight, torch.tensor(1.5))


def test_due_checks_every_n_steps_in_scored_modes():
    reviewer = Reviewer(ReviewerConfig(mode="best", check_every=50))
    assert [s for s in range(0, 201) if reviewer.due(s)] == [50, 100, 150, 200]


def test_state_dict_round_trip_restores_predictions():
    cfg = ReviewerConfig(mode="topk", topk=3)
    reviewer = Reviewer(cfg)
    for value, score in [(1.0, 0.2), (2.0, 0.6)]:
        reviewer.maybe_update(with_value(TinyPose(), value), score, step=int(value))
    x = torch.randn(1, 3, 4, 4)
    restored = Reviewer(cfg)
    with pytest.raises(ValueError, match="template"):
        restored.load_state_dict(reviewer.state_dict())
    restored.load_state_dict(reviewer.state_dict(), template=TinyPose())
    assert [(s.score, s.step) for s in restored.snapshots] == [(0.6, 2), (0.2, 1)]
    assert torch.equal(restored.predict(x), reviewer.predict(x))
    with pytest.raises(ValueError, match="mode"):
        Reviewer(ReviewerConfig(mode="best")).load_state_dict(reviewer.state_dict(), template=TinyPose())
