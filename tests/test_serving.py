"""The whole predictor: the same keypoints as `trs-pose predict`, in eager PyTorch and from its ONNX export;
`trs-pose export`; `trs-pose predict --runtime onnx` and `--detector`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli.export import export
from cli.predict import predict
from components.evaluation.inference import predict_boxes
from components.serving.detector import COCO_PERSON_LABEL, build_detector, detect_people, load_detector
from components.serving.predictor import TopDownPredictor
from components.serving.runtime import OnnxRuntime, TorchRuntime
from tests.serving_fixtures import ExportedStudent, TrainedStudent

CONFIDENT = 0.2  # the keypoints compared: those predict scores at least this
CLOSE_PX = 0.5


def run_cli(command: Any, args: list[Any]) -> Any:
    return CliRunner().invoke(command, [str(a) for a in args], catch_exceptions=False)


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path))
    assert bgr is not None, path
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def synthetic_cases(student: TrainedStudent, tmp_path: Path) -> list[tuple[Path, list[list[float]]]]:
    """Each held-out and training image with its person box, a shifted box and a box past the edge;
    and each image at 1.5x with the boxes scaled (a second image size for the dynamic H, W)."""
    coco = json.loads(Path(student.split.labeled_ann).read_text())
    holdout = json.loads(Path(student.split.holdout_ann).read_text())
    cases = []
    for part in (coco["annotations"], holdout["annotations"]):
        for annotation in part:
            image = next(i for i in coco["images"] + holdout["images"] if i["id"] == annotation["image_id"])
            path = Path(student.split.train_images) / image["file_name"]
            x, y, w, h = annotation["bbox"]
            boxes = [[x, y, w, h], [x + 0.3 * w, y - 0.1 * h, 0.9 * w, h], [x - 0.5 * w, y + 0.2 * h, w, 1.1 * h]]
            cases.append((path, boxes))
            larger = tmp_path / f"large-{path.name}"
            pixels = read_rgb(path)[..., ::-1]
            cv2.imwrite(str(larger), cv2.resize(pixels, None, fx=1.5, fy=1.5), [cv2.IMWRITE_JPEG_QUALITY, 95])
            cases.append((larger, [[v * 1.5 for v in box] for box in boxes]))
    return cases


def coco_cases(root: Path, limit: int = 10) -> list[tuple[Path, list[list[float]]]]:
    coco = json.loads((root / "annotations" / "person_keypoints_val2017.json").read_text())
    boxes: dict[int, list[list[float]]] = {}
    for annotation in coco["annotations"]:
        if annotation.get("num_keypoints", 0) > 0 and annotation["bbox"][2] > 1 and annotation["bbox"][3] > 1:
            boxes.setdefault(annotation["image_id"], []).append(annotation["bbox"])
    files = {image["id"]: image["file_name"] for image in coco["images"]}
    return [(root / "val2017" / files[i], b) for i, b in sorted(boxes.items())[:limit]]


def predict_reference(student: TrainedStudent, image: np.ndarray, boxes: list[list[float]], flip: bool) -> np.ndarray:
    """What `trs-pose predict --checkpoint` runs (the evaluation's own cv2 crop and decoding), [N, 17, 3]."""
    keypoints, _ = predict_boxes(student.network, image, boxes, student.cfg, flip_test=flip)
    return keypoints


def parity(
    student: TrainedStudent, runtime: Any, cases: list[tuple[Path, list[list[float]]]], flip: bool
) -> tuple[int, int, float]:
    """(confident keypoints, those within CLOSE_PX of predict's, the largest distance among them)."""
    confident = close = 0
    worst = 0.0
    for image, boxes in cases:
        pixels = read_rgb(image)
        reference = predict_reference(student, pixels, boxes, flip)
        ours = runtime(pixels, np.asarray(boxes, dtype=np.float32))
        mask = reference[..., 2] >= CONFIDENT
        distance = np.linalg.norm(ours[..., :2] - reference[..., :2], axis=-1)[mask]
        confident += int(mask.sum())
        close += int((distance <= CLOSE_PX).sum())
        worst = max(worst, float(distance.max(initial=0.0)))
    print(f"parity: {close}/{confident} confident keypoints within {CLOSE_PX} px (largest gap {worst:.3f} px)")
    return confident, close, worst


def test_eager_predictor_matches_predict(trained_student: TrainedStudent, tmp_path: Path) -> None:
    runtime = TorchRuntime(TopDownPredictor(trained_student.network, trained_student.cfg))
    cases = synthetic_cases(trained_student, tmp_path)[:8]
    confident, close, _ = parity(trained_student, runtime, cases, False)
    assert confident >= 0.5 * 8 * 3 * 17  # a trained model: most keypoints are confident
    assert close >= 0.99 * confident


def test_predict_command_prints_the_reference(trained_student: TrainedStudent, tmp_path: Path) -> None:
    image, boxes = synthetic_cases(trained_student, tmp_path)[0]
    out = tmp_path / "kp.json"
    args = ["--checkpoint", trained_student.checkpoint, "--image", image, "--boxes", json.dumps(boxes)]
    outcome = run_cli(predict, [*args, "--no-flip-test", "--out-json", out])
    assert outcome.exit_code == 0, outcome.output
    document = json.loads(out.read_text())
    assert document["box_source"] == "boxes"
    printed = np.array([person["keypoints"] for person in document["people"]])
    assert np.allclose(printed, predict_reference(trained_student, read_rgb(image), boxes, False), atol=0.006)


def test_onnx_matches_predict_on_synthetic_images(
    trained_student: TrainedStudent, exported_student: ExportedStudent, tmp_path: Path
) -> None:
    cases = synthetic_cases(trained_student, tmp_path)
    confident, close, _ = parity(trained_student, OnnxRuntime(exported_student.plain), cases, False)
    assert confident >= 0.5 * len(cases) * 3 * 17
    assert close >= 0.99 * confident


def test_onnx_flip_test_variant_matches_predict_flip_test(
    trained_student: TrainedStudent, exported_student: ExportedStudent, tmp_path: Path
) -> None:
    cases = synthetic_cases(trained_student, tmp_path)[:8]
    runtime = OnnxRuntime(exported_student.flip_test)
    confident, close, _ = parity(trained_student, runtime, cases, True)
    assert confident >= 0.5 * 8 * 3 * 17
    assert close >= 0.99 * confident


def test_onnx_matches_predict_on_coco_mini(
    trained_student: TrainedStudent, exported_student: ExportedStudent, coco_mini: Path
) -> None:
    cases = coco_cases(coco_mini)
    runtime = OnnxRuntime(exported_student.plain)
    confident, close, _ = parity(trained_student, runtime, cases, False)
    assert confident > 0, "no confident keypoint on coco-mini: nothing compared"
    assert close >= 0.99 * confident


def test_onnx_graph_has_the_whole_predictor_interface(exported_student: ExportedStudent) -> None:
    import onnx

    model = onnx.load(str(exported_student.plain))
    inputs = {i.name: i.type.tensor_type for i in model.graph.input}
    output = model.graph.output[0].type.tensor_type
    assert list(inputs) == ["image", "boxes"] and model.graph.output[0].name == "keypoints"
    assert inputs["image"].elem_type == onnx.TensorProto.UINT8
    assert inputs["boxes"].elem_type == output.elem_type == onnx.TensorProto.FLOAT
    image_dims = [d.dim_param or d.dim_value for d in inputs["image"].shape.dim]
    boxes_dims = [d.dim_param or d.dim_value for d in inputs["boxes"].shape.dim]
    output_dims = [d.dim_param or d.dim_value for d in output.shape.dim]
    assert isinstance(image_dims[0], str) and isinstance(image_dims[1], str) and image_dims[2] == 3
    assert isinstance(boxes_dims[0], str) and boxes_dims[1] == 4
    assert output_dims[1:] == [17, 3] and output_dims[0] == boxes_dims[0]
    ops = {node.op_type for node in model.graph.node}
    assert "GridSample" in ops  # the crop is in the graph, not left to the caller


def test_export_command_writes_a_model_that_runs(trained_student: TrainedStudent, tmp_path: Path) -> None:
    outcome = run_cli(export, ["--checkpoint", trained_student.checkpoint, "--out", tmp_path / "out"])
    assert outcome.exit_code == 0, outcome.output
    path = tmp_path / "out" / "model.onnx"
    assert str(path) in outcome.output
    keypoints = OnnxRuntime(path)(np.zeros((30, 50, 3), np.uint8), np.array([[1, 2, 20, 25]], np.float32))
    assert keypoints.shape == (1, 17, 3) and np.isfinite(keypoints).all()


def test_predict_onnx_runtime_reports_whole_image_when_no_boxes(
    trained_student: TrainedStudent, tmp_path: Path
) -> None:
    image = Path(trained_student.split.train_images) / "000001.jpg"
    out = tmp_path / "kp.json"
    args = ["--checkpoint", trained_student.checkpoint, "--image", image, "--runtime", "onnx", "--no-flip-test"]
    outcome = run_cli(predict, [*args, "--out-json", out])
    assert outcome.exit_code == 0, outcome.output
    document = json.loads(out.read_text())
    height, width = read_rgb(image).shape[:2]
    assert document["box_source"] == "whole_image"
    assert [p["bbox"] for p in document["people"]] == [[0.0, 0.0, float(width), float(height)]]


@pytest.fixture(scope="module")
def person_detector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised detector, its person logit raised so that it reports people: plumbing, not accuracy."""
    torch.manual_seed(0)
    detector: Any = build_detector("fasterrcnn_mobilenet_v3_large_320_fpn")
    with torch.no_grad():
        detector.roi_heads.box_predictor.cls_score.bias[COCO_PERSON_LABEL] = 8.0
    path = tmp_path_factory.mktemp("detector") / "detector.pth"
    torch.save(detector.state_dict(), path)
    return path


def test_detector_boxes_feed_the_pose_model(
    trained_student: TrainedStudent, person_detector: Path, tmp_path: Path
) -> None:
    image = Path(trained_student.split.train_images) / "000002.jpg"
    detector = load_detector(person_detector, "fasterrcnn_mobilenet_v3_large_320_fpn")
    boxes, scores = detect_people(detector, read_rgb(image), score_threshold=0.5)
    assert len(boxes) > 0 and (scores >= 0.5).all() and (np.diff(scores) <= 0).all()
    out = tmp_path / "kp.json"
    args = ["--checkpoint", trained_student.checkpoint, "--image", image, "--detector", person_detector]
    args += ["--detector-arch", "fasterrcnn_mobilenet_v3_large_320_fpn", "--detector-threshold", 0.5]
    outcome = run_cli(predict, [*args, "--out-json", out])
    assert outcome.exit_code == 0, outcome.output
    document = json.loads(out.read_text())
    assert document["box_source"] == "detector"
    assert np.allclose([p["bbox"] for p in document["people"]], boxes, atol=1e-3)
    assert all(np.array(p["keypoints"]).shape == (17, 3) for p in document["people"])

    outcome = run_cli(predict, [*args[:-2], "--detector-threshold", 1.0, "--out-json", out])
    assert outcome.exit_code == 0 and json.loads(out.read_text())["people"] == []  # nobody that sure


def test_detector_weights_of_another_model_are_one_line(trained_student: TrainedStudent, tmp_path: Path) -> None:
    weights = tmp_path / "not-a-detector.pth"
    torch.save({"conv.weight": torch.zeros(1)}, weights)
    image = Path(trained_student.split.train_images) / "000001.jpg"
    args = ["--checkpoint", trained_student.checkpoint, "--image", image, "--detector", weights]
    outcome = CliRunner().invoke(predict, [str(a) for a in args])
    assert outcome.exit_code == 2 and f"{weights}: not fasterrcnn_mobilenet_v3_large_fpn weights" in outcome.output
    assert "Traceback" not in outcome.output
