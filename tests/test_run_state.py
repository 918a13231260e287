"""What `run --resume` accepts, decided from the run's record: the config differences it names, and
the data location that may change while nothing was trained (no servers: attempts are plain records)."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace
from typing import Any

import pytest

from components.config import load_config
from pipelines.run_state import RunRefused, check_resume_config, config_differences

BASE = ["data.root=data/missing", "data.synthetic=null", "train.iterations=20"]


def attempt(*steps: str, started: bool = True) -> Any:
    """A run attempt with these steps, each started (or only planned, as after an earlier failure)."""
    when = datetime(2026, 12, 7) if started else None
    return SimpleNamespace(steps={name: SimpleNamespace(start_time=when) for name in steps})


def test_differences_name_only_the_fields_that_differ() -> None:
    """Both configs set data.synthetic to null: the refusal listed `data.synthetic: run None, given None`."""
    stored = load_config(None, BASE)
    assert config_differences(stored, load_config(None, BASE)) == {}
    moved = load_config(None, [*BASE, "data.root=data/coco"])
    assert config_differences(stored, moved) == {"data.root": 'run "data/missing", given "data/coco"'}
    synthetic = load_config(None, ["data.root=data/missing", "train.iterations=20"])
    assert list(config_differences(stored, synthetic)) == ["data.synthetic"]  # one section, not each of its fields
    assert config_differences(stored, synthetic)["data.synthetic"].startswith('run null, given {"num_train_images"')


def test_a_run_that_failed_before_training_resumes_with_a_corrected_data_location() -> None:
    stored, corrected = load_config(None, BASE), load_config(None, [*BASE, "data.root=data/coco"])
    never_trained = [attempt("ingest_data"), attempt("ingest_data", "validate_data", "train_model", started=False)]
    assert check_resume_config("r", stored, corrected, never_trained) is True  # from ingest, on the new data
    assert check_resume_config("r", stored, load_config(None, BASE), never_trained) is False  # the same: a replay


def test_once_trained_the_data_location_is_refused_and_a_new_run_advised() -> None:
    stored, corrected = load_config(None, BASE), load_config(None, [*BASE, "data.root=data/coco"])
    trained = [attempt("ingest_data", "validate_data", "split_data", "train_model")]
    with pytest.raises(RunRefused, match=r"trained on its data already.*data.root.*Start a new run"):
        check_resume_config("r", stored, corrected, trained)


def test_any_other_difference_is_refused_with_what_may_change() -> None:
    stored = load_config(None, BASE)
    longer = load_config(None, [*BASE, "train.iterations=40"])
    with pytest.raises(RunRefused, match=r"train.iterations: run 20, given 40\) \(only data.root, .* may change"):
        check_resume_config("r", stored, longer, [attempt("ingest_data")])


def test_step_lines_count_in_plain_english() -> None:
    """`boxes: 600 boxs (whole_image)` was what the own-data example printed."""
    from cli.step_lines import _plural

    assert [_plural(1, "box"), _plural(600, "box"), _plural(2, "image"), _plural(0, "violation")] == [
        "1 box", "600 boxes", "2 images", "0 violations"
    ]  # fmt: skip
