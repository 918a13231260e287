"""Every user mistake gets one line on stderr and exit 1 (2 for usage and config): no traceback, no hang.

Most commands run in-process through the `trs-pose` group (its error mapping is what users get);
the unreachable-server cases run as real processes under a timeout, the bound a user would feel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import pytest
import torch
from click.testing import CliRunner, Result

from cli.main import cli
from components.config import load_config
from components.engine.checkpoint import save_checkpoint
from components.kubernetes.manifests import check_cron
from components.models import build_model
from components.services.manager import STATE_DIR_ENV, default_state_dir, project_root
from tests.conftest import REPO_ROOT
from tests.tiny_coco import tiny_config, tiny_overrides, write_coco

UNREACHABLE = "http://127.0.0.1:1"  # nothing listens on port 1: refused at once
NETWORK_BOUND_S = 90  # far below the 251 s MLflow's retries took; a process still running then has hung


@pytest.fixture(autouse=True)
def debug_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Tracebacks go to the test's tmp dir, not the checkout's .state."""
    path = tmp_path / "debug.log"
    monkeypatch.setenv("TRS_POSE_DEBUG_LOG", str(path))
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Four one-person images with their COCO file, a checkpoint, and a set of broken inputs."""
    root = tmp_path_factory.mktemp("tiny")
    coco = write_coco(root, num_images=4, seed=5, size=(96, 72))
    ann = root / "ann.json"
    ann.write_text(json.dumps(coco))
    cfg = tiny_config(root / "checkpoints", method="supervised")
    torch.manual_seed(0)
    state = {"config": cfg.model_dump(mode="json"), "step": 0, "student": build_model(cfg).state_dict()}
    checkpoint = save_checkpoint(state, root / "checkpoints", 0)
    image = root / "images" / coco["images"][0]["file_name"]
    files = {
        "garbage": b"\xff\xfe\x00 not json, not yaml, not an image \x80\x81",
        "empty_list.json": b"[]",
        "empty_dict.json": b"{}",
        "list.yaml": b"- a\n- b\n",
        "truncated.jpg": image.read_bytes()[: image.stat().st_size // 2],
        "nan_results.json": json.dumps(
            [{"image_id": 1, "category_id": 1, "keypoints": [float("nan")] * 51, "score": 1.0}]
        ).encode(),
    }
    paths = {"root": root, "ann": ann, "images": root / "images", "image": image, "checkpoint": Path(checkpoint)}
    for name, content in files.items():
        paths[name] = root / name
        paths[name].write_bytes(content)
    (root / "empty_dir").mkdir()
    paths["empty_dir"] = root / "empty_dir"
    return paths


def invoke(args: list[Any], **env: str) -> Result:
    return CliRunner(env=env or None).invoke(cli, [str(a) for a in args])


def assert_one_line(result: Result, code: int, *fragments: str) -> str:
    """Exit `code`, a single `Error:` line on stderr holding every fragment, and no traceback anywhere."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception  # no exception escaped the mapping
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


# --- the cases of the issue, one by one ---------------------------------------------------------


def test_evaluate_names_missing_images_instead_of_a_loader_traceback(tiny: dict[str, Path], tmp_path: Path) -> None:
    wrong = invoke(
        ["evaluate", "--checkpoint", tiny["checkpoint"], "--ann", tiny["ann"], "--images", tiny["empty_dir"]]
    )
    assert_one_line(wrong, 1, f"--images {tiny['empty_dir']}", "4 of the 4 images", "000001.jpg")
    partial = tmp_path / "images"
    partial.mkdir()
    for source in sorted(tiny["images"].iterdir())[1:]:
        (partial / source.name).write_bytes(source.read_bytes())
    missing = invoke(["evaluate", "--checkpoint", tiny["checkpoint"], "--ann", tiny["ann"], "--images", partial])
    assert_one_line(missing, 1, "1 of the 4 images", str(partial / "000001.jpg"))


def test_evaluate_names_an_undecodable_image_read_in_a_loader_worker(tiny: dict[str, Path], tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for source in tiny["images"].iterdir():
        (images / source.name).write_bytes(source.read_bytes())
    (images / "000002.jpg").write_bytes(tiny["garbage"].read_bytes())
    result = invoke(
        ["evaluate", "--checkpoint", tiny["checkpoint"], "--ann", tiny["ann"], "--images", images]
        + ["--set", "eval.num_workers=1", "--no-progress"]  # the worker's error comes back as text
    )
    assert_one_line(result, 1, str(images / "000002.jpg"), "cannot be decoded")
    assert "DataLoader worker" not in result.stderr


@pytest.mark.parametrize("override", ["train.lr=[0.1", "{a", ": x", "train.lr={a"])
@pytest.mark.parametrize("command", [["train"], ["run"], ["k8s", "render"]])
def test_unparsable_set_blames_the_override(command: list[str], override: str) -> None:
    result = invoke([*command, "--config", REPO_ROOT / "configs" / "demo.yaml", "--set", override])
    assert_one_line(result, 2, f"--set {override!r}")


def test_a_wrong_set_value_is_blamed_on_the_override_not_the_file() -> None:
    config = REPO_ROOT / "configs" / "demo.yaml"
    line = assert_one_line(invoke(["k8s", "render", "--config", config, "--set", "train.lr=abc"]), 2)
    assert "--set 'train.lr=abc': train.lr:" in line and f"{config}:" not in line
    both = assert_one_line(
        invoke(["k8s", "render", "--config", config, "--set", "train.lr=-1", "--set", "name=two words"]), 2
    )
    assert "--set 'train.lr=-1': train.lr" in both and "--set 'name=two words': name" in both


def test_a_set_value_is_read_as_people_write_it_or_the_form_is_shown(tiny: dict[str, Path]) -> None:
    """`1e3` is a number (YAML 1.2); a list written another way gets the form to use."""
    assert load_config(None, ["train.iterations=1e3", "train.lr=2e-3"]).train.iterations == 1000
    assert invoke(["k8s", "render", "--set", "train.iterations=1e3"]).exit_code == 0
    assert_one_line(invoke(["k8s", "render", "--set", "train.iterations=1.5e-1"]), 2, "train.iterations", "integer")
    shaped = invoke(["k8s", "render", "--set", "input.image_size=128x96"])
    assert_one_line(shaped, 2, "--set 'input.image_size=128x96'", "write it as a YAML list, such as [128, 96]")


def test_one_box_without_its_outer_brackets_is_named_as_such(tiny: dict[str, Path]) -> None:
    result = invoke(
        ["predict", "--checkpoint", tiny["checkpoint"], "--image", tiny["image"], "--boxes", "[17,43,30,50]"]
    )
    assert_one_line(result, 2, "boxes are a list of [x, y, w, h] boxes", "write [[17, 43, 30, 50]]")


def test_a_missing_s3_key_is_named_wherever_boto3_finds_out() -> None:
    from botocore.exceptions import NoCredentialsError

    from cli.errors import user_error

    error = user_error(NoCredentialsError())
    assert error.exit_code == 1 and "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in error.message
    assert "internal error" not in error.message


def test_a_malformed_version_is_a_usage_error_before_any_server() -> None:
    result = invoke(["models", "promote", "v1", "--tracking-uri", UNREACHABLE])
    assert_one_line(result, 2, "'v1' is not a version number")


def test_train_on_a_checkpoint_dir_of_another_model_is_one_line(tiny: dict[str, Path], tmp_path: Path) -> None:
    other = tiny_config(tmp_path / "ckpt", method="supervised", extra=["model.deconv_channels=16"])
    save_checkpoint({"config": other.model_dump(mode="json"), "step": 2}, tmp_path / "ckpt", 2)
    sizes = ["data.num_labeled=2", "data.holdout_labeled=1"]
    overrides = [a for o in [*tiny_overrides("supervised"), *sizes] for a in ("--set", o)]
    result = invoke(
        ["train", "--ann", tiny["ann"], "--images", tiny["images"], "--split-out", tmp_path / "split"]
        + ["--checkpoint-dir", tmp_path / "ckpt", "--no-progress", *overrides]
    )
    assert_one_line(result, 1, "cannot resume", "model:", "point train.checkpoint.dir elsewhere")


def test_predict_refuses_an_unwritable_out_image_before_inference(tiny: dict[str, Path], tmp_path: Path) -> None:
    result = invoke(["predict", "--checkpoint", tiny["checkpoint"], "--image", tiny["image"], "--out-image", "x.xyz"])
    assert_one_line(result, 2, "x.xyz", ".png or .jpg")
    assert result.stdout == ""  # no keypoints printed: inference never ran


@pytest.mark.parametrize(
    ("boxes", "rule"),
    [
        ("[[NaN, 20, 80, 200]]", "finite numbers"),
        ("[[10, 20, 0, 50]]", "positive w and h"),
        ("[[5000, 5000, 80, 200]]", "overlaps the 72x96 image"),
        ("[[-300, 10, 100, 50]]", "overlaps the 72x96 image"),
        ("[]", "non-empty JSON list"),
        ('[{"bbox": [1, 2, 30, 40], "score": NaN}]', "score is a finite number"),
    ],
)
def test_predict_refuses_boxes_that_are_not_people_in_the_image(tiny: dict[str, Path], boxes: str, rule: str) -> None:
    result = invoke(["predict", "--checkpoint", tiny["checkpoint"], "--image", tiny["image"], "--boxes", boxes])
    assert_one_line(result, 2, "box" if boxes != "[]" else "--boxes", rule)


def test_validate_and_predict_share_the_truncated_jpeg_rule(tiny: dict[str, Path], tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    (images / "000001.jpg").write_bytes(tiny["truncated.jpg"].read_bytes())
    coco = json.loads(tiny["ann"].read_text())
    coco["images"], coco["annotations"] = coco["images"][:1], coco["annotations"][:1]
    ann = tmp_path / "one.json"
    ann.write_text(json.dumps(coco))
    validated = invoke(["data", "validate", "--ann", ann, "--images", images, "--no-expectations"])
    assert validated.exit_code == 1 and "image.corrupt" in validated.stdout
    predicted = invoke(["predict", "--checkpoint", tiny["checkpoint"], "--image", images / "000001.jpg"])
    assert_one_line(predicted, 2, str(images / "000001.jpg"), "rule image.corrupt")
    assert cv2.imread(str(images / "000001.jpg")) is not None  # OpenCV alone would have taken it, grey-padded


def test_evaluate_refuses_an_empty_results_list(tiny: dict[str, Path]) -> None:
    result = invoke(["evaluate", "--ann", tiny["ann"], "--results", tiny["empty_list.json"]])
    assert_one_line(result, 1, str(tiny["empty_list.json"]), "results list is empty")


def test_validate_names_an_empty_annotations_list_and_a_directory_image(tiny: dict[str, Path], tmp_path: Path) -> None:
    coco = json.loads(tiny["ann"].read_text())
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({**coco, "annotations": []}))
    result = invoke(["data", "validate", "--ann", empty, "--no-images", "--no-expectations"])
    assert result.exit_code == 1
    assert "the 'annotations' list is empty" in result.stdout and "no top-level" not in result.stdout
    images = tmp_path / "images"
    (images / coco["images"][0]["file_name"]).mkdir(parents=True)
    result = invoke(["data", "validate", "--ann", tiny["ann"], "--images", images, "--no-expectations"])
    assert "is a directory, not an image file" in result.stdout and "image.not_a_file" in result.stdout


def test_validate_no_images_needs_no_images_option(tiny: dict[str, Path]) -> None:
    result = invoke(["data", "validate", "--ann", tiny["ann"], "--no-images", "--no-expectations"])
    assert result.exit_code == 0 and f"VALID: {tiny['ann']}" in result.stdout
    assert_one_line(invoke(["data", "validate", "--ann", tiny["ann"]]), 2, "--images DIR", "--no-images")


def test_state_folder_is_found_from_the_project_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STATE_DIR_ENV, raising=False)
    project = tmp_path / "project"
    (project / ".state" / "services").mkdir(parents=True)
    (project / "deep" / "below").mkdir(parents=True)
    monkeypatch.chdir(project / "deep" / "below")
    assert project_root() == project and default_state_dir() == project / ".state" / "services"
    monkeypatch.chdir(tmp_path)  # outside any project: the checkout this code runs from
    assert default_state_dir() == REPO_ROOT / ".state" / "services"
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "elsewhere"))
    assert default_state_dir() == tmp_path / "elsewhere"
    result = invoke(["services", "env"])
    assert_one_line(result, 1, f"no local services recorded in {tmp_path / 'elsewhere'}", STATE_DIR_ENV)


def test_render_prints_the_configured_engine_only_and_names_the_others() -> None:
    import yaml

    demo = REPO_ROOT / "configs" / "demo.yaml"
    default = list(yaml.safe_load_all(invoke(["k8s", "render", "--config", demo]).stdout))
    assert [m["kind"] for m in default] == ["Job"]
    trainjob = invoke(["k8s", "render", "--config", demo, "--set", "backend.kubernetes.engine=trainjob"])
    assert [m["kind"] for m in yaml.safe_load_all(trainjob.stdout)] == ["TrainJob"]
    help_text = invoke(["k8s", "render", "--help"]).stdout
    assert all(name in help_text for name in ("trainjob", "pytorchjob", "cronjob", "backend.kubernetes.engine"))


def test_render_warns_at_once_about_a_local_data_root() -> None:
    local = invoke(["k8s", "render", "--config", REPO_ROOT / "configs" / "coco_1k.yaml"])
    assert local.exit_code == 0 and "warning: data.root=data/coco is a local path" in local.stderr
    remote = invoke(
        ["k8s", "render", "--config", REPO_ROOT / "configs" / "coco_1k.yaml", "--set", "data.root=s3://b/coco"]
    )
    assert remote.exit_code == 0 and "warning" not in remote.stderr


@pytest.mark.parametrize("code", [2, 7])
def test_a_pod_without_its_data_root_exits_with_the_config_error_code(tmp_path: Path, code: int) -> None:
    result = invoke(
        ["train", "--set", f"data.root={tmp_path / 'data' / 'coco'}", "--set", "data.synthetic=null"]
        + ["--set", f"backend.kubernetes.config_error_exit_code={code}", "--split-out", tmp_path / "split"]
    )
    assert_one_line(result, code, str(tmp_path / "data" / "coco"), "s3://")


def test_schedule_needs_a_config_and_valid_cron_fields() -> None:
    assert_one_line(invoke(["schedule", "--cron", "0 3 * * 0"]), 2, "--config is required")
    config = REPO_ROOT / "configs" / "demo.yaml"
    assert_one_line(invoke(["schedule", "--config", config, "--cron", "61 3 * * 0"]), 2, "minute '61'", "0-59")
    fine = invoke(["schedule", "--config", config, "--cron", "0 3 * * 0"])
    assert fine.exit_code == 0 and "schedule: 0 3 * * 0" in fine.stdout
    from_config = invoke(["schedule", "--config", config, "--set", "backend.kubernetes.schedule=0 3 * * 9"])
    assert_one_line(from_config, 2, "day of week '9'")


@pytest.mark.parametrize(
    ("expression", "accepted"),
    [
        ("0 3 * * 0", True),
        ("*/15 0-6 1,15 JAN-MAR mon-fri", True),
        ("0 3 ? * 7", True),
        ("@weekly", True),
        ("61 3 * * 0", False),
        ("0 24 * * *", False),
        ("0 3 0 * *", False),
        ("0 3 * 13 *", False),
        ("0 3 * * 8", False),
        ("5-1 * * * *", False),
        ("*/0 * * * *", False),
        ("0 3 * *", False),
        ("0 3 ? ? *", False),
        ("@every 5m", False),
    ],
)
def test_cron_fields_are_checked_before_rendering(expression: str, accepted: bool) -> None:
    from components.config import ConfigError

    if accepted:
        assert check_cron(expression) == " ".join(expression.split())
    else:
        with pytest.raises(ConfigError, match="cron schedule"):
            check_cron(expression)


def test_debug_shows_the_traceback_and_the_log_keeps_it(debug_log: Path) -> None:
    quiet = invoke(["models", "list", "--tracking-uri", UNREACHABLE])
    assert_one_line(quiet, 1, UNREACHABLE)
    assert "Traceback" in debug_log.read_text() and "ServiceUnreachable" in debug_log.read_text()
    loud = invoke(["--debug", "models", "list", "--tracking-uri", UNREACHABLE])
    assert type(loud.exception).__name__ == "ServiceUnreachable"  # raised, so Python prints its traceback


def test_set_messages_use_the_override_syntax_in_config_loading() -> None:
    from components.config import ConfigError

    with pytest.raises(ConfigError, match=r"--set 'train\.lr=\[0\.1': the value is not valid YAML"):
        load_config(None, ["train.lr=[0.1"])


# --- the general check: a corpus of broken inputs for every subcommand -------------------------

BROKEN: list[tuple[str, Callable[[dict[str, Path]], list[Any]]]] = [
    ("train: config of garbage bytes", lambda p: ["train", "--config", p["garbage"]]),
    ("train: config that is a list", lambda p: ["train", "--config", p["list.yaml"]]),
    ("train: NaN iterations", lambda p: ["train", "--set", "train.iterations=.nan"]),
    ("train: empty split dir", lambda p: ["train", "--split-dir", p["empty_dir"]]),
    ("train: annotations that are a list", lambda p: ["train", "--ann", p["empty_list.json"], "--images", p["images"]]),
    ("run: wrong type", lambda p: ["run", "--set", "train.batch_size=many"]),
    ("demo: unparsable override", lambda p: ["demo", "--set", "train.lr=[0.1"]),
    ("evaluate: garbage annotations", lambda p: ["evaluate", "--ann", p["garbage"], "--results", p["nan_results.json"]]),
    ("evaluate: NaN keypoints", lambda p: ["evaluate", "--ann", p["ann"], "--results", p["nan_results.json"]]),
    ("evaluate: results of garbage", lambda p: ["evaluate", "--ann", p["ann"], "--results", p["garbage"]]),
    ("evaluate: garbage checkpoint", lambda p: ["evaluate", "--ann", p["ann"], "--checkpoint", p["garbage"], "--images", p["images"]]),
    ("evaluate: empty checkpoint dir", lambda p: ["evaluate", "--ann", p["ann"], "--checkpoint", p["empty_dir"], "--images", p["images"]]),
    ("evaluate: annotations {}", lambda p: ["evaluate", "--ann", p["empty_dict.json"], "--checkpoint", p["checkpoint"], "--images", p["images"]]),
    ("predict: garbage image", lambda p: ["predict", "--checkpoint", p["checkpoint"], "--image", p["garbage"]]),
    ("predict: garbage checkpoint", lambda p: ["predict", "--checkpoint", p["garbage"], "--image", p["image"]]),
    ("predict: boxes file of garbage", lambda p: ["predict", "--checkpoint", p["checkpoint"], "--image", p["image"], "--boxes-file", p["garbage"]]),
    ("predict: boxes of the wrong type", lambda p: ["predict", "--checkpoint", p["checkpoint"], "--image", p["image"], "--boxes", '{"a": 1}']),
    ("data validate: garbage", lambda p: ["data", "validate", "--ann", p["garbage"], "--images", p["images"], "--no-expectations"]),
    ("data validate: {}", lambda p: ["data", "validate", "--ann", p["empty_dict.json"], "--no-images", "--no-expectations"]),
    ("data split: empty root", lambda p: ["data", "split", "--root", p["empty_dir"], "--out", p["root"] / "split-out"]),
    ("data ingest: missing source", lambda p: ["data", "ingest", p["empty_dir"] / "absent", "--cache", p["root"] / "cache"]),
    ("data synth: out is a file", lambda p: ["data", "synth", "--out", p["garbage"], "--num-images", "1", "--workers", "1"]),
    ("models promote: bad version", lambda p: ["models", "promote", "x", "--tracking-uri", UNREACHABLE]),
    ("models rollback: unreachable", lambda p: ["models", "rollback", "--tracking-uri", UNREACHABLE]),
    ("services env: empty state", lambda p: ["services", "env", "--state-dir", p["empty_dir"]]),
    ("services status: state is a file", lambda p: ["services", "status", "--state-dir", p["garbage"]]),
    ("k8s render: negative gpus", lambda p: ["k8s", "render", "--set", "backend.kubernetes.gpus=-1"]),
    ("k8s render: empty tolerations type", lambda p: ["k8s", "render", "--set", "backend.kubernetes.tolerations={}"]),
    ("schedule: config that is a list", lambda p: ["schedule", "--config", p["list.yaml"]]),
    ("schedule: empty cron", lambda p: ["schedule", "--config", p["empty_dict.json"], "--cron", ""]),
]  # fmt: skip


@pytest.mark.parametrize("make_args", [case for _, case in BROKEN], ids=[name for name, _ in BROKEN])
def test_every_subcommand_fails_in_one_line_on_broken_input(
    tiny: dict[str, Path], make_args: Callable[[dict[str, Path]], list[Any]]
) -> None:
    result = invoke(make_args(tiny))
    assert result.exit_code in (1, 2), (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception  # no exception escaped the mapping
    assert "Traceback" not in result.output
    verdicts = [line for line in result.stderr.splitlines() if line.startswith(("Error:", "INVALID:"))]
    assert len(verdicts) == 1, result.stderr  # `data validate` lists violations on stdout, its verdict here
    assert "internal error" not in result.stderr  # each of these is the user's to fix, and said so


def test_unreachable_servers_fail_within_the_bound_with_the_url(tmp_path: Path) -> None:
    """Real processes, all at once: MLflow, S3, ZenML and the Kubernetes API at an address nobody serves."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    demo = str(REPO_ROOT / "configs" / "demo.yaml")
    cases = {
        "mlflow": (["models", "list", "--tracking-uri", UNREACHABLE], {}),
        "pipeline": (["run", "--config", demo, "--set", f"registry.tracking_uri={UNREACHABLE}"], {}),
        "s3": (["data", "ingest", "s3://b/x", "--endpoint-url", UNREACHABLE, "--cache", str(tmp_path / "c")], {}),
        "zenml": (["run", "--config", demo, "--no-local-services"], {"ZENML_STORE_URL": UNREACHABLE}),
        "kubernetes": (["schedule", "--config", demo, "--apply"], {"KUBECONFIG": str(kubeconfig)}),
    }
    base = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    base.pop("MLFLOW_TRACKING_URI", None)
    running = {
        name: subprocess.Popen(
            [sys.executable, "-m", "cli.main", *args],
            env={**base, **env},
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, (args, env) in cases.items()
    }
    for name, process in running.items():
        try:
            _, stderr = process.communicate(timeout=NETWORK_BOUND_S)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail(f"{name}: still waiting on an unreachable server after {NETWORK_BOUND_S} s")
        assert process.returncode == 1, (name, stderr)
        assert "Traceback" not in stderr, (name, stderr)
        errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and "127.0.0.1:1" in errors[0], (name, stderr)
