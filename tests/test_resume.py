"""A run killed after any step and resumed ends bitwise where an uninterrupted run ends (CPU, same seed)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from components.config import ExperimentConfig, load_config
from components.engine.checkpoint import ResumeError, latest_checkpoint, load_checkpoint
from components.engine.trainer import train
from components.engine.training_state import check_resumable
from tests.test_dual import RiggedScores
from tests.tiny_coco import make_tiny_split, tiny_config


class Killed(RuntimeError):
    pass


def _kill_after(stop: int):
    def hook(step: int) -> None:
        if step == stop:
            raise Killed(f"killed after step {stop}")

    return hook


def _assert_same(left: Any, right: Any, where: str) -> int:
    """Recursively compare checkpoint trees; tensors with torch.equal. Returns how many tensors matched."""
    if isinstance(left, torch.Tensor):
        assert isinstance(right, torch.Tensor) and left.dtype == right.dtype, where
        assert torch.equal(left, right), f"{where} differs"
        return 1
    if isinstance(left, dict):
        assert set(left) == set(right), f"{where}: keys {sorted(map(str, set(left) ^ set(right)))}"
        return sum(_assert_same(left[k], right[k], f"{where}.{k}") for k in left)
    if isinstance(left, (list, tuple)):
        assert len(left) == len(right), where
        return sum(_assert_same(a, b, f"{where}[{i}]") for i, (a, b) in enumerate(zip(left, right)))
    if isinstance(left, float) and left != left:
        assert right != right, where
        return 0
    assert left == right, f"{where}: {left!r} != {right!r}"
    return 0


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory):
    return make_tiny_split(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def uninterrupted(split, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    cfg = tiny_config(tmp_path_factory.mktemp("whole"), "trs")
    return load_checkpoint(train(cfg, split, progress=False).checkpoint_uri)


@pytest.mark.parametrize(("kill_after", "workers"), [(3, 0), (4, 2)])
def test_killed_and_resumed_run_matches_uninterrupted(
    split, uninterrupted: dict[str, Any], tmp_path: Path, kill_after: int, workers: int
) -> None:
    """TRS exercises every saved state: teacher, reviewer, Keypoint-Mix generator, both data streams.

    Killed after step 3 the run loses step 3 and replays it from the step-2 checkpoint; killed
    right after the step-4 checkpoint it loses nothing. Resuming with DataLoader workers shows the
    data do not depend on the worker count.
    """
    cfg = tiny_config(tmp_path, "trs")
    with pytest.raises(Killed):
        train(cfg, split, on_step=_kill_after(kill_after), progress=False)
    saved = load_checkpoint(latest_checkpoint(tmp_path))
    assert saved["step"] == kill_after - kill_after % cfg.train.checkpoint.every

    resumed_cfg = tiny_config(tmp_path, "trs", num_workers=workers)
    result = train(resumed_cfg, split, progress=False)
    final = load_checkpoint(result.checkpoint_uri)
    assert final["step"] == 6
    expected = copy.deepcopy(uninterrupted)
    for state in (final, expected):
        state["config"]["train"].pop("num_workers")
        state["config"]["train"]["checkpoint"].pop("dir")
    for record in [*final["history"], *expected["history"]]:
        record.pop("images_per_s", None)
    matched = _assert_same(final, expected, "checkpoint")
    assert matched > 200, "student, teacher, reviewer and optimizer tensors were all compared"


@pytest.mark.slow
def test_resume_from_s3_matches_uninterrupted(
    split, uninterrupted: dict[str, Any], s3_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same kill-and-resume on a real S3 endpoint (SeaweedFS): object first, then the `latest` pointer."""
    from tests.service_fixtures import unique_name

    for name, value in s3_server.environment().items():
        monkeypatch.setenv(name, value)
    prefix = f"s3://{s3_server.bucket}/{unique_name('resume')}"
    cfg = tiny_config(prefix, "trs", [f"storage.endpoint_url={s3_server.endpoint_url}"])
    with pytest.raises(Killed):
        train(cfg, split, on_step=_kill_after(3), progress=False)
    client = s3_server.client()
    assert latest_checkpoint(prefix, client) == f"{prefix}/ckpt-00000002.pt"
    result = train(cfg, split, progress=False)
    assert result.checkpoint_uri == f"{prefix}/ckpt-00000006.pt"
    final, expected = load_checkpoint(result.checkpoint_uri, client), copy.deepcopy(uninterrupted)
    for part in ("student", "teacher", "reviewer", "optimizer"):
        _assert_same(final[part], expected[part], part)


def _other_world_size(state: dict[str, Any]) -> None:
    state["rng"]["per_rank"].append(state["rng"]["per_rank"][0])


def _other_step(state: dict[str, Any]) -> None:
    state["step"] = 1


@pytest.mark.parametrize(
    ("tamper", "message"), [(_other_world_size, "saved by 2 ranks"), (_other_step, "data position")]
)
def test_resume_refuses_an_inconsistent_checkpoint(split, tmp_path: Path, tamper, message: str) -> None:
    cfg = tiny_config(tmp_path, "supervised", iterations=2)
    uri = train(cfg, split, progress=False).checkpoint_uri
    state = load_checkpoint(uri)
    tamper(state)
    torch.save(state, uri)
    with pytest.raises(ValueError, match=message):
        train(tiny_config(tmp_path, "supervised", iterations=4), split, progress=False)


def test_resume_refuses_a_checkpoint_of_another_experiment(split, tmp_path: Path) -> None:
    train(tiny_config(tmp_path, "supervised", iterations=2), split, progress=False)
    with pytest.raises(ValueError, match=r"train.method: checkpoint 'supervised', config 'mean_teacher'"):
        train(tiny_config(tmp_path, "mean_teacher", iterations=4), split, progress=False)
    extended = train(tiny_config(tmp_path, "supervised", iterations=3), split, progress=False)
    assert extended.step == 3 and len(extended.history) == 3, "a longer budget continues the run"


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("train.consistency.hard_views=2", "train.consistency.hard_views: checkpoint 1, config 2"),
        ("augment.hard_recipe=joco", "augment.hard_recipe: checkpoint ['standard'], config ['joco']"),
    ],
)
def test_resume_refuses_a_checkpoint_of_other_hard_views(override: str, named: str) -> None:
    saved = ExperimentConfig().model_dump(mode="json")
    with pytest.raises(ResumeError, match=re.escape(named)):
        check_resumable(saved, load_config(None, [override]), "ckpt/step-2.pt")


def test_a_checkpoint_older_than_a_field_resumes_as_its_default() -> None:
    saved = ExperimentConfig().model_dump(mode="json")
    del saved["keypoints"], saved["augment"]["hard_recipe"], saved["train"]["consistency"]["hard_views"]
    check_resumable(saved, ExperimentConfig(), "ckpt/step-2.pt")
    with pytest.raises(ResumeError, match=re.escape("train.consistency.hard_views: checkpoint 1, config 3")):
        check_resumable(saved, load_config(None, ["train.consistency.hard_views=3"]), "ckpt/step-2.pt")


def test_fresh_run_refuses_a_directory_with_checkpoints(split, tmp_path: Path) -> None:
    train(tiny_config(tmp_path, "supervised", iterations=2), split, progress=False)
    fresh = tiny_config(tmp_path, "supervised", ["train.checkpoint.resume=false"], iterations=2)
    with pytest.raises(ValueError, match="resume is false"):
        train(fresh, split, progress=False)


@pytest.mark.parametrize("kill_after", [2, 4])
def test_burn_in_run_resumed_on_either_side_of_its_end_matches_uninterrupted(
    split, tmp_path: Path, kill_after: int
) -> None:
    """The unlabeled stream starts after the burn-in; a checkpoint inside or after it resumes exactly."""
    burn_in = ["train.consistency.burn_in_iters=3"]
    whole = train(tiny_config(tmp_path / "whole", "trs", burn_in), split, progress=False)
    expected = load_checkpoint(whole.checkpoint_uri)
    people = len(json.loads(Path(split.unlabeled_ann).read_text())["annotations"])
    unlabeled = expected["data_position"]["unlabeled"]
    assert unlabeled["epoch"] * people + unlabeled["index"] == 3 * 2, "3 unlabeled batches of 2 after 3 burn-in steps"
    losses = [r for r in expected["history"] if "loss/total" in r]
    assert [("loss/cons_teacher" in r) for r in losses] == [False] * 3 + [True] * 3

    cfg = tiny_config(tmp_path / "killed", "trs", burn_in)
    with pytest.raises(Killed):
        train(cfg, split, on_step=_kill_after(kill_after), progress=False)
    final = load_checkpoint(train(cfg, split, progress=False).checkpoint_uri)
    for state in (final, expected):
        state["config"]["train"]["checkpoint"].pop("dir")
    for record in [*final["history"], *expected["history"]]:
        record.pop("images_per_s", None)
    assert _assert_same(final, expected, "checkpoint") > 200


NEW_OPTIONS = {
    "trs, every hard-view op over three paths": (
        "trs",
        ["augment.hard_recipe=[af+jo+co, jc+cm+mu, ra+ta+yo]", "train.consistency.hard_views=3"],
    ),
    "dual, two paths": ("dual", ["augment.hard_recipe=[joco, af+jccm]", "train.consistency.hard_views=2"]),
}


@pytest.mark.parametrize("name", list(NEW_OPTIONS))
def test_runs_with_hard_recipes_paths_and_the_dual_method_resume_bitwise(
    split, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """The hard-view ops draw from the saved generator; a dual checkpoint puts each student back in its role
    (the peer is the checkpoint's `student` at step 2, where the killed run resumes)."""
    method, options = NEW_OPTIONS[name]
    RiggedScores(monkeypatch, peer_wins={2, 6})
    whole = train(tiny_config(tmp_path / "whole", method, options), split, progress=False)
    expected = load_checkpoint(whole.checkpoint_uri)
    cfg = tiny_config(tmp_path / "killed", method, options)
    with pytest.raises(Killed):
        train(cfg, split, on_step=_kill_after(3), progress=False)
    if method == "dual":
        assert load_checkpoint(latest_checkpoint(tmp_path / "killed"))["dual"]["registered"] == 1
    final = load_checkpoint(train(cfg, split, progress=False).checkpoint_uri)
    for state in (final, expected):
        state["config"]["train"]["checkpoint"].pop("dir")
    for record in [*final["history"], *expected["history"]]:
        record.pop("images_per_s", None)
    assert _assert_same(final, expected, "checkpoint") > 200
    losses = [r for r in expected["history"] if "loss/total" in r]
    paths = 3 if method == "trs" else 2
    assert all(f"loss/cons_teacher_p{paths - 1}" in r for r in losses)
