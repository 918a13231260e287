"""The registered model in use: a real `mlflow models serve` scoring server (one start for all tests),
the CLI reading the registry (`--model`, `--runtime onnx`), `trs-pose models list` showing the ONNX."""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import requests
from click.testing import CliRunner

from cli.evaluate import evaluate
from cli.export import export
from cli.main import cli
from cli.predict import predict
from components.evaluation.inference import person_scores
from components.registry.lifecycle import CHAMPION, TAG_ONNX, register_student
from components.services.process import (
    LOOPBACK,
    find_free_ports,
    start_process,
    stop_process_group,
    wait_until_healthy,
)
from components.serving.predictor import TopDownPredictor
from components.serving.runtime import OnnxRuntime, TorchRuntime
from tests.service_fixtures import MLflowService, unique_name
from tests.serving_fixtures import TrainedStudent


@dataclass(frozen=True)
class Served:
    name: str
    uri: str  # models:/NAME@champion
    url: str  # the scoring server's /invocations
    tracking_uri: str


@pytest.fixture(scope="module")
def served(
    trained_student: TrainedStudent, mlflow_server: MLflowService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """Register the trained student, make it champion, and serve models:/NAME@champion on a free port."""
    name = unique_name("serving")
    cfg = trained_student.cfg.model_copy(deep=True)
    cfg.registry.model_name = cfg.registry.experiment = name
    version = register_student(
        trained_student.network, cfg, {"AP": 0.5}, "f" * 64, tracking_uri=mlflow_server.tracking_uri
    )
    mlflow_server.client().set_registered_model_alias(name, CHAMPION, version.version)
    uri = f"models:/{name}@{CHAMPION}"
    port = find_free_ports(1)[0]
    log = tmp_path_factory.mktemp("scoring") / "scoring-server.log"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": mlflow_server.tracking_uri,
        "MLFLOW_REGISTRY_URI": mlflow_server.tracking_uri,
    }
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])  # it execs uvicorn
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    argv = [mlflow, "models", "serve", "-m", uri, "--env-manager", "local", "-h", LOOPBACK, "-p", str(port)]
    process = start_process([*argv, "-w", "1"], log, env=env, tie_to_parent=True)
    base = f"http://{LOOPBACK}:{port}"

    def healthy() -> bool:
        try:
            return requests.get(f"{base}/ping", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_until_healthy(healthy, process, "mlflow scoring server", log, timeout=300.0, interval=0.5)
        with mlflow_server.use():
            yield Served(name, uri, f"{base}/invocations", mlflow_server.tracking_uri)
    finally:
        stop_process_group(process.pid, uri, process=process)


def png_bytes(image_rgb: np.ndarray) -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def image_of(student: TrainedStudent, index: int = 1) -> tuple[np.ndarray, list[float]]:
    """A held-out picture and its person box."""
    holdout = json.loads(Path(student.split.holdout_ann).read_text())
    annotation = holdout["annotations"][index]
    image = next(i for i in holdout["images"] if i["id"] == annotation["image_id"])
    bgr = cv2.imread(str(Path(student.split.val_images) / image["file_name"]))
    assert bgr is not None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), annotation["bbox"]


def post(url: str, records: list[dict[str, Any]]) -> requests.Response:
    return requests.post(url, json={"dataframe_records": records}, timeout=120)


def test_scoring_server_answers_keypoints_in_image_pixels(served: Served, trained_student: TrainedStudent) -> None:
    image, box = image_of(trained_student)
    boxes = [box, [box[0] + 3, box[1] + 2, box[2] * 0.8, box[3]]]
    record = {"image": base64.b64encode(png_bytes(image)).decode(), "boxes": boxes, "scores": [0.9, 0.5]}
    # in a batch every record names every column MLflow's schema checks: [] means none
    response = post(
        served.url, [record, {"image": record["image"], "boxes": [], "scores": []}]
    )  # [] (or no column): whole image
    assert response.status_code == 200, response.text
    first, second = response.json()["predictions"]
    expected = TorchRuntime(TopDownPredictor(trained_student.network, trained_student.cfg, flip_test=False))(
        image, np.asarray(boxes, np.float32)
    )
    assert first["box_source"] == "boxes" and np.allclose(first["keypoints"], expected, atol=2e-3)
    assert np.array(first["keypoints"]).shape == (2, 17, 3) and len(first["scores"]) == 2
    expected_scores = person_scores(expected[..., 2], [0.9, 0.5], trained_student.cfg.eval.keypoint_score_threshold)
    assert np.allclose(first["scores"], expected_scores, atol=1e-3)  # box score times mean confident keypoint
    assert second["box_source"] == "whole_image" and second["boxes"] == [[0.0, 0.0, 48.0, 64.0]]


def test_scoring_server_takes_an_rgb_array(served: Served, trained_student: TrainedStudent) -> None:
    image, box = image_of(trained_student, 2)
    by_bytes = post(served.url, [{"image": base64.b64encode(png_bytes(image)).decode(), "boxes": [box]}])
    by_array = post(served.url, [{"pixels": image.tolist(), "boxes": [[round(v) for v in box]]}])
    no_boxes = post(served.url, [{"pixels": image.tolist()}])
    assert by_bytes.status_code == by_array.status_code == no_boxes.status_code == 200, by_array.text
    rounded = post(
        served.url, [{"image": base64.b64encode(png_bytes(image)).decode(), "boxes": [[round(v) for v in box]]}]
    )
    assert by_array.json()["predictions"][0]["keypoints"] == rounded.json()["predictions"][0]["keypoints"]
    assert no_boxes.json()["predictions"][0]["box_source"] == "whole_image"


@pytest.mark.parametrize(
    ("record", "named"),
    [
        ({"image": base64.b64encode(b"not an image at all").decode()}, "row 0: image: rule 'encoded JPEG or PNG"),
        ({"boxes": [[1, 2, 3, 4]]}, "no image column (columns given: boxes); expected columns: image"),
        ({"boxes": [[500, 10, 20, 30]]}, "row 0: boxes[0]: rule 'box overlaps the 48x64 image'"),
        ({"boxes": [[5, 10, 0, 30]]}, "row 0: boxes[0]: rule 'positive width and height'"),
        ({"boxes": [[5, 10, 20]]}, "row 0: boxes: rule '[[x, y, w, h], ...]'"),
        ({"boxes": "everywhere"}, "Failed to convert column boxes"),  # MLflow's own schema check
        ({"boxes": [[5, 10, 20, 30]], "scores": [0.5, 0.4]}, "row 0: scores: rule 'one finite number a box'"),
        ({"pixels": [[[0, 0, 0]]]}, "row 0: pixels: rule 'RGB array [H, W, 3], H and W at least 2'"),
    ],
)
def test_bad_input_is_a_400_naming_the_input(
    served: Served, trained_student: TrainedStudent, record: dict[str, Any], named: str
) -> None:
    if "image" not in record and "pixels" not in record and "no image column" not in named:
        record = {"image": base64.b64encode(png_bytes(image_of(trained_student)[0])).decode(), **record}
    response = post(served.url, [record])
    assert response.status_code == 400, response.text
    message = response.json()["message"]
    assert named in message, message
    assert "Traceback" not in response.text


def test_a_wrong_column_is_a_400_naming_the_expected_columns(served: Served, trained_student: TrainedStudent) -> None:
    """MLflow drops the columns its signature does not name: `img` reached the model as no column at
    all, and the answer was 200 with no predictions."""
    image = base64.b64encode(png_bytes(image_of(trained_student)[0])).decode()
    response = post(served.url, [{"img": image}])
    assert response.status_code == 400, response.text
    message = response.json()["message"]
    assert "no image column" in message and "expected columns: image" in message and "pixels" in message, message
    assert "boxes" in message and "scores" in message


def test_models_list_shows_the_onnx_and_predict_reads_the_registry(
    served: Served, trained_student: TrainedStudent, tmp_path: Path
) -> None:
    listing = CliRunner().invoke(cli, ["models", "list", "--set", f"registry.model_name={served.name}"])
    assert listing.exit_code == 0, listing.output
    assert "ONNX" in listing.output and "yes" in listing.output

    image, box = image_of(trained_student)
    path = tmp_path / "person.png"
    path.write_bytes(png_bytes(image))
    outputs = {}
    for runtime in ("torch", "onnx"):
        out = tmp_path / f"{runtime}.json"
        args = ["--model", served.uri, "--runtime", runtime, "--image", path, "--boxes", json.dumps([box])]
        outcome = CliRunner().invoke(predict, [str(a) for a in [*args, "--no-flip-test", "--out-json", out]])
        assert outcome.exit_code == 0, outcome.output
        outputs[runtime] = np.array(json.loads(out.read_text())["people"][0]["keypoints"])
    confident = outputs["torch"][:, 2] >= 0.2
    assert confident.sum() >= 10
    gaps = np.linalg.norm(outputs["torch"][confident, :2] - outputs["onnx"][confident, :2], axis=-1)
    assert (gaps <= 0.5).mean() >= 0.99


def test_evaluate_and_export_read_the_registry(served: Served, trained_student: TrainedStudent, tmp_path: Path) -> None:
    split = trained_student.split
    common = ["--ann", split.holdout_ann, "--images", split.val_images, "--json", "--no-flip-test"]
    scores = {}
    for runtime, uri in (("torch", served.uri), ("onnx", f"models:/{served.name}/1")):
        outcome = CliRunner().invoke(evaluate, [str(a) for a in ["--model", uri, "--runtime", runtime, *common]])
        assert outcome.exit_code == 0, outcome.output
        scores[runtime] = json.loads(outcome.stdout)["AP"]  # stderr carries MLflow's download progress
    assert scores["onnx"] == pytest.approx(scores["torch"], abs=0.02)

    outcome = CliRunner().invoke(export, ["--model", served.uri, "--out", str(tmp_path / "exported")])
    assert outcome.exit_code == 0, outcome.output
    keypoints = OnnxRuntime(tmp_path / "exported" / "model.onnx")(
        image_of(trained_student)[0], np.ones((3, 4), np.float32) * 20
    )
    assert keypoints.shape == (3, 17, 3)
    version = served_version(served)
    assert version.tags[TAG_ONNX].endswith("/model.onnx")


def served_version(served: Served) -> Any:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=served.tracking_uri, registry_uri=served.tracking_uri)
    return client.get_model_version_by_alias(served.name, CHAMPION)


@pytest.mark.parametrize("uri", ["models:/no-such-model@champion", "models:/{name}/99", "models:/{name}@nobody"])
def test_a_missing_registry_uri_is_one_line_naming_it_and_the_registry(
    served: Served, uri: str, tmp_path: Path
) -> None:
    uri = uri.format(name=served.name)
    image = tmp_path / "blank.png"
    image.write_bytes(png_bytes(np.zeros((20, 20, 3), np.uint8)))
    outcome = CliRunner().invoke(predict, ["--model", uri, "--image", str(image)])
    assert outcome.exit_code == 1
    assert outcome.output.strip() == f"Error: {uri}: no such model version in the registry at {served.tracking_uri}"
