"""The README's serving commands ("Using a promoted model"), run as written on a real photo.

The commands are read from README.md and run in bash, one after another, against a registered version
of a small (untrained) model on the session's MLflow server, which a state folder records as the
local services. Only what ties them to the demo is replaced: the model name, the port, and the
demo's image and annotation paths (a COCO photo of coco-mini stands for `$IMG`, one that is too big
for a command line once base64-encoded). Skipped without ../shared.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from components.config import load_config
from components.models import build_model
from components.registry.lifecycle import CHAMPION, register_student
from components.services.process import find_free_ports
from tests.service_fixtures import MLflowService, record_local_services, unique_name

pytestmark = [pytest.mark.slow, pytest.mark.shared]
REPO_ROOT = Path(__file__).resolve().parents[1]
SECTION = "### Using a promoted model"
TIMEOUT_S = 600
ARG_MAX_STRING = 128 * 1024  # Linux's limit on one command-line argument (MAX_ARG_STRLEN)


def readme_commands() -> list[str]:
    """The bash commands of the README's serving section, one a line (continuations joined)."""
    text = (REPO_ROOT / "README.md").read_text()
    section = text[text.index(SECTION) :]
    section = section[: section.index("\n### ", len(SECTION))]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL):
        joined = re.sub(r"\\\n\s*", "", block)
        commands += [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return commands


def replaced(command: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        command = command.replace(old, new)
    return command


def test_the_readme_serving_commands_work_on_a_real_photo(
    coco_mini: Path, mlflow_server: MLflowService, tmp_path: Path
) -> None:
    name = unique_name("readme")
    cfg = load_config(
        None,
        [
            f"registry.model_name={name}",
            f"registry.experiment={name}",
            "input.image_size=[64, 48]",
            "model.backbone=resnet10t",
            "model.deconv_channels=16",
            "eval.num_workers=0",
        ],
    )
    torch.manual_seed(0)
    version = register_student(build_model(cfg), cfg, {"AP": 0.1}, "b" * 64, tracking_uri=mlflow_server.tracking_uri)
    mlflow_server.client().set_registered_model_alias(name, CHAMPION, version.version)

    photo = max((coco_mini / "val2017").glob("*.jpg"), key=lambda path: path.stat().st_size)
    assert len(base64.b64encode(photo.read_bytes())) > ARG_MAX_STRING, "the photo would fit a command line"
    port = str(find_free_ports(1)[0])
    replacements = {
        "source .venv/bin/activate && ": "",  # the venv's bin folder leads PATH below
        "IMG=$(ls data/synthetic-demo/val/*.jpg | head -1)": f"IMG={photo}",
        "models:/trs-pose@champion": f"models:/{name}@{CHAMPION}",
        "5001": port,
        "data/synthetic-demo/annotations/person_keypoints_val.json": str(
            coco_mini / "annotations" / "person_keypoints_val2017.json"
        ),
        "data/synthetic-demo/val": str(coco_mini / "val2017"),
    }
    commands = readme_commands()
    readme = "\n".join(commands)
    assert all(old in readme for old in replacements), [old for old in replacements if old not in readme]
    script = ["set -eo pipefail"]
    for index, command in enumerate(commands):
        script += [f"echo '<<<{index}>>>'", replaced(command, replacements)]

    state = record_local_services(tmp_path / "services", mlflow_server.s3, mlflow_server.tracking_uri)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "AWS_", "ZENML_STORE"))}
    env.update(
        {
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
            "PYTHONPATH": str(REPO_ROOT),  # this checkout's code, also for the venv's `trs-pose`
            "TRS_POSE_STATE_DIR": str(state),
            "TRS_POSE_DEBUG_LOG": str(tmp_path / "debug.log"),
        }
    )
    work = tmp_path / "work"
    work.mkdir()
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("w") as stdout_file, err.open("w") as stderr_file:  # files: the server in the background
        shell = subprocess.Popen(  # keeps a pipe open until it stops
            ["bash", "-c", "\n".join(script)],
            cwd=work,
            env=env,
            stdout=stdout_file,
            stderr=stderr_file,
            text=True,
            start_new_session=True,  # the backgrounded scoring server goes with the group
        )
        try:
            shell.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running after {TIMEOUT_S} s:\n{out.read_text()[-3000:]}\n{err.read_text()[-3000:]}")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(shell.pid, signal.SIGTERM)  # the scoring server, still in the background
    stdout, stderr = out.read_text(), err.read_text()
    assert shell.returncode == 0, f"{stdout[-3000:]}\n{stderr[-3000:]}"
    assert "Argument list too long" not in stderr
    assert "Downloading artifacts" not in stderr, "loading a model printed MLflow's download progress"
    outputs = dict(re.findall(r"<<<(\d+)>>>\n(.*?)(?=<<<\d+>>>|\Z)", stdout, flags=re.DOTALL))
    by_command = {commands[int(index)]: output for index, output in outputs.items()}

    answered = next(out for command, out in by_command.items() if command.startswith("curl -s") and "-d @" in command)
    answer = re.search(r'\{"predictions".*\}', answered)  # the server's access log shares the output
    assert answer is not None, answered
    prediction = json.loads(answer.group())["predictions"][0]
    assert np.array(prediction["keypoints"]).shape == (1, 17, 3) and prediction["box_source"] == "boxes"
    loaded = next(out for command, out in by_command.items() if "mlflow.pyfunc.load_model" in command)
    assert np.array(json.loads(loaded.strip().replace("'", '"'))).shape == (1, 17, 3)
    onnx = next(out for command, out in by_command.items() if "ort.InferenceSession" in command)
    assert onnx.strip().startswith("[[[") and onnx.count("]]]") == 1
    assert (work / "exported" / "model.onnx").is_file() and (work / "pose.jpg").is_file()
    whole = next(out for command, out in by_command.items() if "--runtime onnx" in command)
    assert json.loads(whole)["box_source"] == "whole_image"
    scored = next(out for command, out in by_command.items() if command.startswith("trs-pose evaluate"))
    assert re.search(r"AP\s+│\s+\d\.\d{4}", scored), scored
