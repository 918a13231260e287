"""compute_losses for every method on tiny random data: losses fall, switches switch, runs repeat."""

from __future__ import annotations

import copy

import pytest
import torch

from components.config import ExperimentConfig, load_config
from components.engine import objective
from components.engine.ema import ema_momentum, ema_update_, make_teacher
from components.engine.losses import consistency_loss
from components.engine.objective import compute_losses
from components.engine.pseudo_labels import warp_heatmaps
from components.engine.reviewer import Reviewer
from components.heatmap_codec import heatmap_peaks
from components.keypoints import COCO_PERSON
from components.method import method_spec
from components.models import build_model

B = 4
TINY = [
    "input.image_size=[64,48]",
    "model.deconv_channels=16",
    "model.mfl_channels=8",
    "train.consistency.rampup_iters=0",
]


def config(*overrides: str) -> ExperimentConfig:
    return load_config(None, TINY + list(overrides))


def batches(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(16.0), torch.arange(12.0), indexing="ij")
    centres = torch.rand(B, 17, 2, generator=generator) * torch.tensor([11.0, 15.0])
    target = torch.exp(-((xs - centres[..., :1, None]) ** 2 + (ys - centres[..., 1:, None]) ** 2) / 8.0)
    labeled = {
        "image": torch.randn(B, 3, 64, 48, generator=generator),
        "target": target,
        "target_weight": (torch.rand(B, 17, generator=generator) > 0.2).float(),
    }
    shift = torch.tensor([[1.0, 0.0, 4.0], [0.0, 1.0, -4.0]])
    mirror = torch.tensor([[-1.0, 0.0, 47.0], [0.0, 1.0, 0.0]])
    unlabeled = {
        "easy": torch.randn(B, 3, 64, 48, generator=generator),
        "hard": torch.randn(B, 3, 64, 48, generator=generator),
        "easy_to_hard": torch.stack([shift, mirror, shift, mirror]),
        "flipped": torch.tensor([False, True, False, True]),
    }
    return labeled, unlabeled


def train(cfg: ExperimentConfig, iterations: int, reviewer_at: int | None = 1, seed: int = 0):
    torch.manual_seed(seed)
    student = build_model(cfg)
    teacher = make_teacher(student)
    reviewer = Reviewer(cfg.train.reviewer)
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    labeled, unlabeled = batches(seed)
    history = []
    for step in range(iterations):
        losses = compute_losses(cfg.train.method, student, teacher, reviewer, labeled, unlabeled, cfg, step, generator)
        optimizer.zero_grad()
        losses["total"].backward()
        optimizer.step()
        ema_update_(teacher, student, ema_momentum(step, cfg.train.ema.momentum, 2))
        if reviewer_at is not None and step == reviewer_at:
            reviewer.maybe_update(teacher, 0.1, step)
        history.append({k: float(v.detach()) for k, v in losses.items()})
    return history, student


@pytest.mark.parametrize("method", ["supervised", "mean_teacher", "trs"])
def test_a_few_iterations_lower_the_loss(method):
    history, _ = train(config(f"train.method={method}", "train.consistency.confidence_threshold=0.0"), iterations=8)
    assert history[-1]["total"] < 0.8 * history[0]["total"]
    assert history[-1]["sup"] < history[0]["sup"]
    if method == "supervised":
        assert set(history[0]) == {"total", "sup", "sup_mfl"}
    else:
        assert history[-1]["cons_teacher"] > 0
    if method == "trs":
        assert history[0]["sup_mfl"] > 0 and history[-1]["cons_mfl"] > 0
        assert history[0]["cons_reviewer"] == 0 and history[-1]["cons_reviewer"] > 0  # reviewer joins at step 1
    else:
        assert all(h["sup_mfl"] == 0 for h in history)


def test_same_seed_same_losses_and_weights():
    cfg = config("train.method=trs", "train.consistency.confidence_threshold=0.0")
    (first, a), (second, b) = train(cfg, 3), train(cfg, 3)
    assert first == second
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def run_once(cfg: ExperimentConfig, reviewer_ready: bool = True, generator: torch.Generator | None = None):
    torch.manual_seed(0)
    student = build_model(cfg)
    teacher = make_teacher(student)
    reviewer = Reviewer(cfg.train.reviewer)
    if reviewer_ready:
        noisy = copy.deepcopy(teacher)
        with torch.no_grad():
            for p in noisy.parameters():
                p.add_(0.01 * torch.randn_like(p))
        reviewer.maybe_update(noisy, 0.5, 10)
    labeled, unlabeled = batches()
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    return compute_losses(cfg.train.method, student, teacher, reviewer, labeled, unlabeled, cfg, 5, generator)


def test_ablation_switches_remove_their_terms():
    base = ["train.method=trs", "train.consistency.confidence_threshold=0.0"]
    full = run_once(config(*base))
    assert full["cons_reviewer"] > 0 and full["sup_mfl"] > 0
    assert run_once(config(*base, "train.reviewer.enabled=false"))["cons_reviewer"] == 0
    assert run_once(config(*base, "train.mfl.enabled=false"))["sup_mfl"] == 0
    fused = run_once(config(*base, "train.reviewer.fuse_by_confidence=true"))
    assert fused["cons_reviewer"] == 0 and fused["cons_teacher"] > 0


@pytest.mark.parametrize("method", ["supervised", "mean_teacher"])
def test_mfl_in_baselines_adds_the_deep_supervision_terms_and_nothing_else(method):
    base = [f"train.method={method}", "train.consistency.confidence_threshold=0.0"]
    plain, deep = run_once(config(*base)), run_once(config(*base, "train.mfl.in_baselines=true"))
    assert plain["sup_mfl"] == 0 and deep["sup_mfl"] > 0
    assert "cons_reviewer" not in deep or deep["cons_reviewer"] == 0
    if method == "mean_teacher":
        assert plain["cons_mfl"] == 0 and deep["cons_mfl"] > 0


def test_keypoint_mix_runs_on_hard_views_only_when_enabled(monkeypatch):
    calls = []
    real = objective.keypoint_mix

    def spy(images, keypoints, valid, height, cfg, generator):
        calls.append((images.shape, keypoints.shape, valid.shape))
        return real(images, keypoints, valid, height, cfg, generator)

    monkeypatch.setattr(objective, "keypoint_mix", spy)
    run_once(config("train.method=trs", "train.consistency.confidence_threshold=0.0"))
    assert calls == [((B, 3, 64, 48), (B, 17, 2), (B, 17))]
    run_once(config("train.method=trs", "train.keypoint_mix.enabled=false"))
    run_once(config("train.method=mean_teacher"))
    run_once(config("train.method=trs", "train.keypoint_mix.start_iter=6"))  # run_once is step 5
    assert len(calls) == 1
    run_once(config("train.method=trs", "train.keypoint_mix.start_iter=5"))
    assert len(calls) == 2


def test_keypoint_mix_without_a_generator_is_an_error():
    with pytest.raises(ValueError, match="Generator"):
        compute_losses("trs", *_models("train.method=trs"), *batches(), config("train.method=trs"), 0, None)


def _models(*overrides: str):
    cfg = config(*overrides)
    student = build_model(cfg)
    return student, make_teacher(student), Reviewer(cfg.train.reviewer)


def test_a_threshold_no_pseudo_label_reaches_masks_everything():
    losses = run_once(config("train.method=mean_teacher", "train.consistency.confidence_threshold=1.0"))
    assert losses["confident_fraction"] == 0 and losses["cons_teacher"] == 0


def test_unknown_method_and_missing_teacher_are_errors():
    student, _, reviewer = _models("train.method=mean_teacher")
    labeled, unlabeled = batches()
    cfg = config("train.method=mean_teacher")
    with pytest.raises(ValueError, match="method"):
        compute_losses("triple", student, None, reviewer, labeled, unlabeled, cfg, 0)
    with pytest.raises(ValueError, match="trains 2 students"):
        compute_losses("dual", student, None, reviewer, labeled, unlabeled, cfg, 0)
    with pytest.raises(ValueError, match="teacher"):
        compute_losses("mean_teacher", student, None, reviewer, labeled, unlabeled, cfg, 0)
    with pytest.raises(KeyError, match="target_weight"):
        compute_losses(
            "supervised", student, None, None, {"image": labeled["image"], "target": labeled["target"]}, None, cfg, 0
        )


def test_consistency_weight_is_zero_in_the_burn_in_then_ramps_from_its_end():
    cfg = load_config(None, ["train.consistency.burn_in_iters=10", "train.consistency.rampup_iters=20"])
    assert [objective.lambda_u(cfg, step) for step in (0, 9)] == [0.0, 0.0]
    assert objective.lambda_u(cfg, 10) == pytest.approx(objective.rampup(0, 20))
    assert objective.lambda_u(cfg, 20) == pytest.approx(objective.rampup(10, 20))
    assert objective.lambda_u(cfg, 30) == pytest.approx(1.0)
    assert method_spec(cfg).in_burn_in(9) and not method_spec(cfg).in_burn_in(10)
    supervised = load_config(None, ["train.method=supervised", "train.consistency.burn_in_iters=10"])
    assert not method_spec(supervised).in_burn_in(0)


class Recording(torch.nn.Module):
    """A network that records what it was given and what it answered."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network
        self.calls: list[tuple[torch.Tensor, object]] = []

    def forward(self, x: torch.Tensor):
        out = self.network(x)
        self.calls.append((x.detach().clone(), out))
        return out


def test_each_hard_view_gets_its_own_terms_against_targets_computed_once():
    cfg = config(
        "train.method=trs",
        "train.consistency.confidence_threshold=0.0",
        "train.consistency.hard_views=2",
        "augment.hard_recipe=[joco, jccm]",
        "train.keypoint_mix.enabled=false",
    )
    torch.manual_seed(0)
    network = build_model(cfg)
    teacher = Recording(make_teacher(network))
    reviewer = Reviewer(cfg.train.reviewer)
    noisy = copy.deepcopy(teacher.network)
    with torch.no_grad():
        for p in noisy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    reviewer.maybe_update(noisy, 0.5, 10)
    reviewed = []
    predict = reviewer.predict
    reviewer.predict = lambda x: reviewed.append(x.shape[0]) or predict(x)
    student = Recording(network)
    labeled, unlabeled = batches()
    losses = compute_losses(
        "trs", student, teacher, reviewer, labeled, unlabeled, cfg, 5, torch.Generator().manual_seed(0)
    )

    assert [x.shape[0] for x, _ in teacher.calls] == [B] and reviewed == [B], "one pass per easy view"
    ((inputs, out),) = student.calls
    assert inputs.shape[0] == B + 2 * B
    first, second = inputs[B : 2 * B], inputs[2 * B :]
    assert not torch.equal(first, second) and not torch.equal(first, unlabeled["hard"]), "two views, each its own"

    stride = cfg.input.heatmap_stride
    targets = {"teacher": teacher.calls[0][1].heatmaps, "reviewer": reviewer.predict(unlabeled["easy"])}
    carried = {
        k: warp_heatmaps(v.float(), unlabeled["easy_to_hard"], unlabeled["flipped"], stride, COCO_PERSON.flip_index)
        for k, v in targets.items()
    }
    masks = {k: heatmap_peaks(v)[1] >= 0.0 for k, v in carried.items()}
    heatmaps, aux = out.heatmaps.float(), [a.float() for a in out.aux]
    for m in range(2):
        rows = slice(B + m * B, B + (m + 1) * B)
        for name in ("teacher", "reviewer"):
            expected = consistency_loss(heatmaps[rows], carried[name], masks[name])
            torch.testing.assert_close(losses[f"cons_{name}_p{m}"], expected.detach(), rtol=1e-5, atol=0)
        assert losses[f"cons_teacher_p{m}"] > 0
    for name in ("teacher", "reviewer"):
        assert losses[f"cons_{name}"] == losses[f"cons_{name}_p0"] + losses[f"cons_{name}_p1"]
    mfl = sum(
        w
        * (
            consistency_loss(a[B : 2 * B], carried["teacher"], masks["teacher"])
            + consistency_loss(a[2 * B :], carried["teacher"], masks["teacher"])
        )
        for w, a in zip(cfg.train.mfl.weights, aux)
    )
    assert len(aux) == 3 and losses["cons_mfl"] > 0
    torch.testing.assert_close(losses["cons_mfl"], mfl.detach(), rtol=1e-6, atol=0)
    unlabeled_terms = losses["cons_teacher"] + cfg.train.reviewer.weight * losses["cons_reviewer"] + losses["cons_mfl"]
    torch.testing.assert_close(losses["total"].detach(), losses["sup"] + losses["sup_mfl"] + unlabeled_terms)


@pytest.mark.parametrize("method", ["mean_teacher", "trs"])
def test_the_standard_recipe_hands_the_hard_crop_through_and_a_recipe_changes_it(method):
    unlabeled = batches()[1]
    plain = config(f"train.method={method}", "train.keypoint_mix.enabled=false")
    student = Recording(build_model(plain))
    compute_losses(method, student, make_teacher(student.network), Reviewer(plain.train.reviewer), *batches(), plain, 5)
    assert torch.equal(student.calls[0][0][B:], unlabeled["hard"])
    recipe = config(f"train.method={method}", "train.keypoint_mix.enabled=false", "augment.hard_recipe=co")
    with pytest.raises(ValueError, match="Generator"):
        compute_losses(method, student, make_teacher(student.network), None, *batches(), recipe, 5)
    compute_losses(method, student, make_teacher(student.network), None, *batches(), recipe, 5, torch.Generator())
    hard = student.calls[-1][0][B:]
    assert not torch.equal(hard, unlabeled["hard"]) and torch.any(hard == 0), "Cutout's boxes"
