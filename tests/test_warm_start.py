"""Warm starts (train.init): the student and teacher begin at the source's weights, the schedule takes
train.warm_start, and a source of another keypoint set or network is refused with one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from components.config import ConfigError
from components.engine.checkpoint import load_checkpoint
from components.engine.distributed import init_distributed
from components.engine.trainer import train
from components.engine.training_state import TrainingState
from components.engine.warm_start import (
    InitialWeights,
    WarmStartError,
    check_compatible,
    load_initial_weights,
    warm_start_schedule,
)
from components.method import method_spec
from components.models import build_model
from components.serving.model_source import load_initial_weights as read_initial_weights
from components.serving.model_source import pin_init
from tests.tiny_coco import make_tiny_split, tiny_config


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("warm")
    split = make_tiny_split(root / "data", num_labeled=4, num_unlabeled=4, num_holdout=2)
    result = train(tiny_config(root / "champion", "trs", iterations=4), split, progress=False)
    return {"root": root, "split": split, "checkpoint": result.checkpoint_uri, "folder": root / "champion"}


def test_the_schedule_of_a_warm_start_is_train_warm_start() -> None:
    cfg = tiny_config("unused", "trs", extra=["train.init=champion", "train.warm_start.warmup_iters=3"])
    warm = warm_start_schedule(cfg)
    assert (warm.train.warmup_iters, warm.train.consistency.burn_in_iters, warm.train.ema.warmup_iters) == (3, 0, 0)
    assert warm.train.consistency.rampup_iters == 0 and warm.train.lr == pytest.approx(0.3 * cfg.train.lr)
    cold = tiny_config("unused", "trs")
    assert warm_start_schedule(cold) == cold
    with pytest.raises(ConfigError, match="models:/NAME/VERSION or models:/NAME@ALIAS"):
        tiny_config("unused", "trs", extra=["train.init=models:/only-a-name"])


def test_a_checkpoint_folder_pins_to_its_latest_file(champion: dict[str, Any]) -> None:
    assert pin_init("scratch", "m", None) is None
    assert pin_init(str(champion["folder"]), "m", None) == champion["checkpoint"]
    initial = read_initial_weights(champion["checkpoint"], None, champion["root"] / "scratch")
    assert initial.source == champion["checkpoint"] and initial.config.keypoints.names is not None


def test_student_and_teacher_start_at_the_sources_weights(champion: dict[str, Any], tmp_path: Path) -> None:
    initial = read_initial_weights(champion["checkpoint"], None, tmp_path)
    cfg = tiny_config(tmp_path / "warm", "trs", extra=[f"train.init={champion['checkpoint']}"])
    cfg = cfg.model_copy(update={"keypoints": initial.config.keypoints})
    state = TrainingState(cfg, method_spec(cfg), init_distributed("cpu"), initial)
    assert state.teacher is not None
    for name, tensor in state.student.state_dict().items():
        assert torch.equal(tensor, initial.student[name]), name
        assert torch.equal(state.teacher.module.state_dict()[name], tensor), name
    fresh = TrainingState(tiny_config(tmp_path / "cold", "trs"), method_spec(cfg), init_distributed("cpu"))
    assert any(not torch.equal(t, initial.student[n]) for n, t in fresh.student.state_dict().items())


def test_a_warm_run_trains_on_its_own_schedule_and_records_where_it_started(
    champion: dict[str, Any], tmp_path: Path
) -> None:
    initial = read_initial_weights(champion["checkpoint"], None, tmp_path)
    cfg = tiny_config(tmp_path / "warm", "trs", extra=[f"train.init={champion['checkpoint']}"], iterations=2)
    result = train(cfg, champion["split"], init=initial, progress=False)
    saved = load_checkpoint(result.checkpoint_uri)["config"]["train"]
    assert saved["init"] == champion["checkpoint"] and saved["consistency"]["burn_in_iters"] == 0
    with pytest.raises(WarmStartError, match="were not resolved"):
        train(cfg.model_copy(update={"train": cfg.train.model_copy(update={"checkpoint": cfg.train.checkpoint.model_copy(update={"dir": str(tmp_path / "x")})})}), champion["split"], progress=False)  # fmt: skip


def test_another_keypoint_set_or_network_is_refused_in_one_line(champion: dict[str, Any], tmp_path: Path) -> None:
    initial = read_initial_weights(champion["checkpoint"], None, tmp_path)
    run = tiny_config(tmp_path / "r", "trs").model_copy(update={"keypoints": initial.config.keypoints})
    check_compatible(initial, run)  # the same set and network
    other_set = run.model_copy(update={"keypoints": run.keypoints.model_copy(update={"names": tuple(f"k{i}" for i in range(17)), "skeleton": ()})})  # fmt: skip
    with pytest.raises(
        WarmStartError, match=r"train.init .*: cannot start from it: another keypoint set \(position 0 is 'nose'"
    ):
        check_compatible(initial, other_set)
    other_backbone = run.model_copy(update={"model": run.model.model_copy(update={"backbone": "resnet10t"})})
    with pytest.raises(WarmStartError, match=r"model.backbone 'resnet18', this run's 'resnet10t'"):
        check_compatible(initial, other_backbone)


def test_mfl_heads_the_source_lacks_start_fresh(champion: dict[str, Any], tmp_path: Path) -> None:
    initial = read_initial_weights(champion["checkpoint"], None, tmp_path)
    no_aux = {k: v for k, v in initial.student.items() if not k.startswith("aux_heads.")}
    student = build_model(initial.config)
    fresh = {k: v.clone() for k, v in student.state_dict().items()}
    left = load_initial_weights(student, InitialWeights("plain", no_aux, initial.config))
    assert left and all(k.startswith("aux_heads.") for k in left)
    assert all(torch.equal(student.state_dict()[k], fresh[k]) for k in left)
    assert all(torch.equal(student.state_dict()[k], v) for k, v in no_aux.items())
    broken = dict(no_aux)
    broken.pop(next(iter(broken)))
    with pytest.raises(WarmStartError, match="does not fit this run's"):
        load_initial_weights(build_model(initial.config), InitialWeights("broken", broken, initial.config))
