"""`trs-pose run` as a user sees it, on real SeaweedFS, MLflow and ZenML servers and tiny synthetic data:
a line per step as it ends, the config printed only with --verbose (and always kept in the run
folder), a failed validation's violations, and `--resume` doing what its advice says.

One chain of attempts of one run: it fails on its config (no data at an s3:// data.root: a local one is
refused before any run starts, tests/test_data_sources.py); resumed with a corrected data location that
holds invalid data, it fails validation; resumed on good data, it completes. Its name then cannot be
taken again, and the refusal names the attempt that completed it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.main import cli
from components.services.seaweedfs import S3Endpoint
from tests.service_fixtures import MLflowService, unique_name

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A good synthetic set and a copy whose training file breaks one rule in two records."""
    from components.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("run-cli")
    good = root / "good"
    generate_dataset(good, 16, 6, seed=4, image_size=(128, 160))
    broken = root / "broken"
    shutil.copytree(good, broken)
    ann_file = broken / "annotations" / "person_keypoints_train.json"
    coco = json.loads(ann_file.read_text())
    for annotation in coco["annotations"][:2]:
        annotation["keypoints"][2] = 7  # visibility outside {0, 1, 2}
    ann_file.write_text(json.dumps(coco))
    return {"good": good, "broken": broken}


def settings(data_root: Path | str, work: Path, model: str) -> list[str]:
    overrides = [
        f"name={model}",
        f"data.root={data_root}",
        "data.synthetic=null",
        f"data.cache_dir={work / 'cache'}",
        "data.labeled_fraction=0.5",
        "data.holdout_labeled=2",
        "input.image_size=[64, 48]",
        "model.backbone=resnet10t",
        "model.deconv_channels=16",
        "train.batch_size=4",
        "train.unlabeled_batch_size=4",
        "train.num_workers=0",
        "train.warmup_iters=1",
        "train.log_every=2",
        "train.reviewer.check_every=2",
        "train.iterations=4",
        "train.checkpoint.every=4",
        f"train.checkpoint.dir=s3://trs-pose/{model}/checkpoints",
        "eval.batch_size=8",
        "eval.num_workers=0",
        f"registry.experiment={model}",
        f"registry.model_name={model}",
        "registry.onnx=false",
    ]
    return [arg for override in overrides for arg in ("--set", override)]


def error_lines(result: Result) -> list[str]:
    """The `Error:` line on stderr and the lines that follow it (stderr may carry ZenML's log lines before)."""
    lines = result.stderr.rstrip().splitlines()
    starts = [index for index, line in enumerate(lines) if line.startswith("Error:")]
    assert len(starts) == 1, result.stderr
    return lines[starts[0] :]


def trs_pose(args: list[str], env: dict[str, str | None], cwd: Path) -> Result:
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        return CliRunner(env=env).invoke(cli, args)
    finally:
        os.chdir(previous)


def test_a_run_says_what_each_step_did_and_resume_agrees_with_its_advice(
    datasets: dict[str, Path], mlflow_server: MLflowService, zenml_home: Path, tmp_path: Path
) -> None:
    s3: S3Endpoint = mlflow_server.s3
    model, work = unique_name("run-cli"), tmp_path
    env: dict[str, str | None] = {
        **s3.environment(),
        "TRS_POSE_STATE_DIR": str(tmp_path / "no-local-services"),
        "TRS_POSE_DEBUG_LOG": str(tmp_path / "debug.log"),
    }
    servers = ["--tracking-uri", mlflow_server.tracking_uri, "--endpoint-url", s3.endpoint_url]

    missing = f"s3://{s3.bucket}/{model}/nowhere"  # checked only by the ingest step, which reads S3
    failed = trs_pose(["run", "--run-name", model, *servers, *settings(missing, work, model)], env, work)
    assert failed.exit_code == 1, failed.output
    error = error_lines(failed)
    assert len(error) == 1 and error[0].startswith("Error: step ingest_data failed: DataSourceError:"), error
    assert f"trs-pose run --resume {model}" in error[0] and "data.root" in error[0], error[0]
    assert "augment:" not in failed.output, "the config is printed only with --verbose"
    kept = work / "runs" / model / model / "config.yaml"
    assert f"root: {missing}" in kept.read_text() and "augment:" in kept.read_text()

    invalid = trs_pose(["run", "--resume", model, *servers, *settings(datasets["broken"], work, model)], env, work)
    assert invalid.exit_code == 1, invalid.output
    assert "was started with another config" not in invalid.output, "a corrected data location is accepted"
    assert any(line.startswith("ingest: train 16 images, ") for line in invalid.stdout.splitlines()), invalid.stdout
    lines = error_lines(invalid)
    assert lines[0].startswith(
        "Error: step validate_data failed: DataValidationError: 2 validation rule violation(s)"
    ), lines
    violations = [line for line in lines[1:] if "[keypoints.visibility]" in line]
    assert len(violations) == 2 and all("person_keypoints_train.json: annotation " in line for line in violations)
    assert lines[-1].strip().startswith("full report: ") and lines[-1].strip().endswith("train/report.json")

    done = trs_pose(
        ["run", "--resume", model, "--verbose", *servers, *settings(datasets["good"], work, model)], env, work
    )
    assert done.exit_code == 0, done.output
    assert "augment:" in done.stdout, "--verbose prints the resolved config"
    steps = [line.split(":")[0] for line in done.stdout.splitlines() if ": " in line and not line.startswith(" ")]
    order = ["ingest", "validate", "split", "train", "evaluate", "register", "promote"]
    assert [step for step in steps if step in order] == order, done.stdout
    by_step = {line.split(":")[0]: line for line in done.stdout.splitlines()}
    assert by_step["validate"].startswith("validate: valid: 22 images, ") and "0 violations" in by_step["validate"]
    assert re.match(r"split: \d+ labeled / \d+ unlabeled / 2 held out", by_step["split"]), by_step["split"]
    assert by_step["train"].startswith("train: 4 steps in "), by_step["train"]
    assert by_step["evaluate"].startswith("evaluate: AP "), by_step["evaluate"]
    assert by_step["register"] == f"register: {model} version 1 (alias challenger)"
    assert by_step["promote"] == "promote: promoted: no champion yet"
    assert f"{model}-resume-2: completed" in done.stdout

    again = trs_pose(["run", "--run-name", model, *servers, *settings(datasets["good"], work, model)], env, work)
    assert again.exit_code == 1
    assert error_lines(again) == [
        f"Error: a pipeline run named {model!r} already exists: it failed and its resumption "
        f"'{model}-resume-2' completed it; choose another --run-name"
    ]
