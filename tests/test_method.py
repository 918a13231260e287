"""The method spec: every switch of every method, decided once, and the networks built from it."""

from __future__ import annotations

import pytest

from components.config import load_config
from components.method import METHODS, method_spec
from components.models import build_model

TINY = ["input.image_size=[64,48]", "model.deconv_channels=16", "model.mfl_channels=8"]


def spec_of(*overrides: str):
    return method_spec(load_config(None, [*TINY, *overrides]))


def test_methods_are_the_configs_choices():
    assert METHODS == ("supervised", "mean_teacher", "trs", "dual")


def test_supervised_has_no_teacher_reviewer_mfl_mix_or_burn_in():
    spec = spec_of("train.method=supervised", "train.consistency.burn_in_iters=10")
    assert (spec.has_teacher, spec.has_reviewer, spec.uses_unlabeled) == (False, False, False)
    assert spec.mfl_strides == spec.mfl_weights == () and spec.keypoint_mix_from is None
    assert spec.burn_in_end == 0 and not spec.in_burn_in(0) and not spec.mixes_at(10**6)


def test_dual_trains_two_students_on_the_unlabeled_stream_without_teacher_or_reviewer():
    spec = spec_of("train.method=dual", "train.consistency.burn_in_iters=10")
    assert spec.students == 2 and spec.uses_unlabeled
    assert not spec.has_teacher and not spec.has_reviewer and spec.mfl_weights == ()
    assert spec.keypoint_mix_from is None and spec.in_burn_in(9) and not spec.in_burn_in(10)
    assert spec_of("train.method=dual", "train.mfl.in_baselines=true").mfl_weights
    assert all(spec_of(f"train.method={m}").students == 1 for m in ("supervised", "mean_teacher", "trs"))


def test_mean_teacher_has_a_teacher_alone():
    spec = spec_of("train.method=mean_teacher", "train.consistency.burn_in_iters=10")
    assert spec.has_teacher and not spec.has_reviewer and spec.mfl_weights == ()
    assert spec.keypoint_mix_from is None and spec.in_burn_in(9) and not spec.in_burn_in(10)


def test_trs_has_every_part_and_each_switch_removes_one():
    cfg = load_config(None, [*TINY, "train.method=trs", "train.keypoint_mix.start_iter=7"])
    full = method_spec(cfg)
    assert full.has_teacher and full.has_reviewer
    assert full.mfl_strides == tuple(cfg.model.mfl_strides) and full.mfl_weights == tuple(cfg.train.mfl.weights)
    assert full.keypoint_mix_from == 7 and not full.mixes_at(6) and full.mixes_at(7)
    assert not spec_of("train.method=trs", "train.reviewer.enabled=false").has_reviewer
    assert spec_of("train.method=trs", "train.mfl.enabled=false").mfl_weights == ()
    assert spec_of("train.method=trs", "train.keypoint_mix.enabled=false").keypoint_mix_from is None


def test_mfl_in_baselines_gives_the_baselines_mfl_heads():
    spec = spec_of("train.method=supervised", "train.mfl.in_baselines=true")
    assert spec.mfl_weights and not spec.has_teacher


@pytest.mark.parametrize(
    ("overrides", "heads"),
    [
        (["train.method=trs"], 3),
        (["train.method=mean_teacher"], 0),
        (["train.method=dual"], 0),
        (["train.method=dual", "train.mfl.in_baselines=true"], 3),
        (["train.method=trs", "train.mfl.enabled=false"], 0),
    ],
)
def test_the_model_builder_builds_the_heads_the_spec_supervises(overrides: list[str], heads: int):
    cfg = load_config(None, [*TINY, "model.backbone=resnet18", *overrides])
    net = build_model(cfg)
    assert len(net.aux_heads) == heads == len(method_spec(cfg).mfl_weights)
    assert all(key.startswith("aux_heads.") for key in net.state_dict() if "aux" in key)  # checkpoint keys kept


def test_an_unknown_method_name_is_refused():
    with pytest.raises(ValueError, match="train.method='triple'"):
        method_spec(load_config(None, TINY), "triple")


def test_only_the_spec_reads_the_method_name():
    """Everything else asks the spec which parts a run has; a comparison with a method's name elsewhere
    (the training curves compared `cfg.train.method == "supervised"`) goes stale when a method is added."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    compared = re.compile(r"""\.method\s*(==|!=|in\b|not\s+in\b)|(==|!=)\s*cfg\.train\.method""")
    offenders = [
        f"{path.relative_to(root)}:{number}"
        for folder in ("components", "steps", "pipelines", "cli")
        for path in sorted((root / folder).rglob("*.py"))
        if path != root / "components" / "method.py"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if compared.search(line)
    ]
    assert offenders == []
