"""`trs-pose evaluate` and `trs-pose predict` through click's runner, on a tiny stick-figure set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import pytest
import torch
from click.testing import CliRunner

from cli.evaluate import evaluate
from cli.predict import predict
from components.engine.checkpoint import save_checkpoint
from components.evaluation.coco_eval import METRIC_NAMES
from components.models import build_model
from tests.tiny_coco import tiny_config, write_coco

REQUIRED = ("AP", "AP50", "AP75", "APm", "APl", "AR")


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Six one-person images, their annotations, and a checkpoint of an untrained tiny network."""
    root = tmp_path_factory.mktemp("tiny")
    coco = write_coco(root, num_images=6, seed=3, size=(96, 72))
    ann = root / "val.json"
    ann.write_text(json.dumps(coco))
    cfg = tiny_config(root / "checkpoints", method="supervised")
    torch.manual_seed(0)
    model = build_model(cfg)
    state = {"config": cfg.model_dump(mode="json"), "step": 0, "student": model.state_dict()}
    checkpoint = save_checkpoint(state, root / "checkpoints", 0)
    return {"root": root, "coco": coco, "ann": ann, "images": root / "images", "checkpoint": checkpoint}


def perfect_results(coco: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
        for a in coco["annotations"]
    ]


def run(command: Any, args: list[str]) -> Any:
    return CliRunner().invoke(command, [str(a) for a in args], catch_exceptions=False)


def test_results_file_prints_one_json_object(tiny_set: dict[str, Any], tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps(perfect_results(tiny_set["coco"])[:3]))
    outcome = run(evaluate, ["--ann", tiny_set["ann"], "--results", results, "--json"])
    assert outcome.exit_code == 0, outcome.output
    metrics = json.loads(outcome.output)
    assert set(REQUIRED) <= set(metrics)
    assert metrics["AR"] == pytest.approx(0.5)  # three of six people found, exactly


def test_results_file_prints_a_table_without_json(tiny_set: dict[str, Any], tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps(perfect_results(tiny_set["coco"])))
    outcome = run(evaluate, ["--ann", tiny_set["ann"], "--results", results])
    assert outcome.exit_code == 0, outcome.output
    assert "AP50" in outcome.output and "1.0000" in outcome.output
    with pytest.raises(json.JSONDecodeError):
        json.loads(outcome.output)


def test_bad_results_file_names_the_record_and_rule(tiny_set: dict[str, Any], tmp_path: Path) -> None:
    records = perfect_results(tiny_set["coco"])
    records[2] = {**records[2], "keypoints": records[2]["keypoints"][:-3]}
    results = tmp_path / "results.json"
    results.write_text(json.dumps(records))
    outcome = run(evaluate, ["--ann", tiny_set["ann"], "--results", results, "--json"])
    assert outcome.exit_code == 1
    assert f"{results}: record 2" in outcome.output and "51 numbers': got 48" in outcome.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "exactly one of --results"),
        (["--checkpoint", "x.pt"], "--checkpoint needs --images"),
    ],
)
def test_usage_errors(tiny_set: dict[str, Any], extra: list[str], message: str) -> None:
    outcome = CliRunner().invoke(evaluate, ["--ann", str(tiny_set["ann"]), *extra])
    assert outcome.exit_code == 2
    assert message in outcome.output


def test_missing_checkpoint_is_a_clear_error(tiny_set: dict[str, Any], tmp_path: Path) -> None:
    args = ["--ann", tiny_set["ann"], "--images", tiny_set["images"], "--json"]
    outcome = run(evaluate, ["--checkpoint", tmp_path / "nope.pt", *args])
    assert outcome.exit_code == 1 and "nope.pt: checkpoint not found" in outcome.output
    outcome = run(evaluate, ["--checkpoint", tmp_path, *args])
    assert outcome.exit_code == 1 and "no checkpoint in this location" in outcome.output


def test_checkpoint_results_agree_with_scoring_the_written_file(tiny_set: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "predicted.json"
    args = ["--checkpoint", tiny_set["checkpoint"], "--ann", tiny_set["ann"], "--images", tiny_set["images"]]
    outcome = run(evaluate, [*args, "--out", out, "--json", "--device", "cpu"])
    assert outcome.exit_code == 0, outcome.output
    metrics = json.loads(outcome.output)
    assert list(metrics) == list(METRIC_NAMES)
    assert all(0.0 <= value <= 1.0 for value in metrics.values())
    written = json.loads(out.read_text())
    assert sorted(r["image_id"] for r in written) == sorted(a["image_id"] for a in tiny_set["coco"]["annotations"])
    rescored = json.loads(run(evaluate, ["--ann", tiny_set["ann"], "--results", out, "--json"]).output)
    assert rescored == pytest.approx(metrics, abs=1e-6)


def test_breakdown_joins_the_json_for_files_and_for_checkpoints(tiny_set: dict[str, Any], tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps(perfect_results(tiny_set["coco"])))
    scored = json.loads(run(evaluate, ["--ann", tiny_set["ann"], "--results", results, "--json", "--breakdown"]).output)
    assert scored["breakdown"]["good"] == 1.0 and scored["breakdown"]["unmatched_people"] == 0
    args = ["--checkpoint", tiny_set["checkpoint"], "--ann", tiny_set["ann"], "--images", tiny_set["images"]]
    outcome = run(evaluate, [*args, "--json", "--device", "cpu", "--breakdown"])
    assert outcome.exit_code == 0, outcome.output
    errors = json.loads(outcome.output)["breakdown"]
    bins = ("good", "jitter", "inversion", "swap", "miss")
    assert errors["people"] == len(tiny_set["coco"]["annotations"])
    assert errors["keypoints"] > 0 and sum(errors[name] for name in bins) == pytest.approx(1.0)


def test_checkpoint_with_detections_and_flip_test(tiny_set: dict[str, Any], tmp_path: Path) -> None:
    detections = tmp_path / "detections.json"
    boxes = [
        {"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 0.5}
        for a in tiny_set["coco"]["annotations"]
    ]
    duplicates = [{**box, "score": 0.4} for box in boxes[:2]]  # a detector boxing two people twice
    detections.write_text(json.dumps(boxes[:4] + duplicates))
    out = tmp_path / "predicted.json"
    args = ["--checkpoint", tiny_set["checkpoint"], "--ann", tiny_set["ann"], "--images", tiny_set["images"]]
    outcome = run(
        evaluate, [*args, "--detections", detections, "--flip-test", "--decoder", "dark", "--out", out, "--json"]
    )
    assert outcome.exit_code == 0, outcome.output
    written = json.loads(out.read_text())
    assert len(written) == 4, "OKS NMS keeps one pose per person"
    assert all(r["score"] <= 0.5 for r in written)  # detector score x keypoint confidence


def test_predict_writes_keypoints_and_a_drawn_image(tiny_set: dict[str, Any], tmp_path: Path) -> None:
    annotation = tiny_set["coco"]["annotations"][0]
    image = tiny_set["images"] / tiny_set["coco"]["images"][0]["file_name"]
    out_json, out_image = tmp_path / "pose.json", tmp_path / "pose.png"
    boxes = json.dumps([annotation["bbox"], [1, 1, 20, 30]])
    outcome = run(
        predict,
        [
            "--checkpoint",
            tiny_set["root"] / "checkpoints",
            "--image",
            image,
            "--boxes",
            boxes,
            "--out-json",
            out_json,
            "--out-image",
            out_image,
            "--threshold",
            "0",
        ],
    )
    assert outcome.exit_code == 0, outcome.output
    document = json.loads(out_json.read_text())
    assert len(document["people"]) == 2 and len(document["keypoint_names"]) == 17
    assert all(len(person["keypoints"]) == 17 and len(person["keypoints"][0]) == 3 for person in document["people"])
    drawn, original = cv2.imread(str(out_image)), cv2.imread(str(image))
    assert drawn.shape == original.shape
    assert (drawn != original).any()


def test_single_image_prediction_matches_the_dataset_path(tiny_set: dict[str, Any]) -> None:
    """`predict` crops by itself; it must see exactly what evaluation sees for the same box."""
    import numpy as np

    from components.data.datasets import EvalPoseDataset
    from components.engine.checkpoint import load_student
    from components.evaluation.inference import predict_boxes, predict_dataset

    model, cfg = load_student(tiny_set["checkpoint"])
    cfg.eval.num_workers = 0
    from_dataset = predict_dataset(model, EvalPoseDataset(tiny_set["ann"], tiny_set["images"], cfg), cfg)
    first = tiny_set["coco"]["annotations"][0]
    image = cv2.cvtColor(
        cv2.imread(str(tiny_set["images"] / tiny_set["coco"]["images"][0]["file_name"])), cv2.COLOR_BGR2RGB
    )
    keypoints, scores = predict_boxes(model, image, [first["bbox"]], cfg)
    expected = next(r for r in from_dataset if r["image_id"] == first["image_id"])
    np.testing.assert_allclose(keypoints[0].ravel(), expected["keypoints"], atol=2e-3)
    assert scores[0] == pytest.approx(expected["score"], abs=1e-6)


def test_drawing_skips_unconfident_keypoints_and_colours_sides() -> None:
    import numpy as np

    from components.evaluation.drawing import LEFT_COLOUR, RIGHT_COLOUR, draw_poses

    image = np.zeros((60, 80, 3), np.uint8)
    pose = np.zeros((1, 17, 3))
    pose[0, :, :2] = [40, 30]
    pose[0, 9] = [10, 10, 0.9]  # left wrist, confident
    pose[0, 10] = [70, 50, 0.9]  # right wrist, confident
    pose[0, 0] = [40, 30, 0.1]  # nose, below the threshold
    drawn = draw_poses(image, pose, threshold=0.2)
    assert tuple(drawn[10, 10]) == LEFT_COLOUR and tuple(drawn[50, 70]) == RIGHT_COLOUR
    assert not drawn[25:36, 35:46].any(), "an unconfident keypoint is not drawn"
    assert not image.any(), "the input image is left untouched"


def test_predict_refuses_malformed_boxes(tiny_set: dict[str, Any]) -> None:
    image = tiny_set["images"] / tiny_set["coco"]["images"][0]["file_name"]
    outcome = CliRunner().invoke(
        predict, ["--checkpoint", str(tiny_set["checkpoint"]), "--image", str(image), "--boxes", "[[1, 2, 0, 5]]"]
    )
    assert outcome.exit_code == 2
    assert "box 0" in outcome.output and "positive w and h" in outcome.output


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_checkpoint_loaded_on_the_cpu_evaluates_on_cuda_like_on_the_cpu(tiny_set: dict[str, Any]) -> None:
    """Checkpoints load on the CPU; asking for CUDA moves the model there instead of failing."""
    import numpy as np

    from components.data.datasets import EvalPoseDataset
    from components.engine.checkpoint import load_student
    from components.evaluation.inference import predict_dataset

    model, cfg = load_student(tiny_set["checkpoint"])
    cfg.eval.num_workers = 0
    dataset = EvalPoseDataset(tiny_set["ann"], tiny_set["images"], cfg)
    on_cpu = predict_dataset(model, dataset, cfg, device="cpu")
    on_cuda = predict_dataset(model, dataset, cfg, device="cuda")
    assert next(model.parameters()).device.type == "cuda"
    # scores are smooth in the heatmaps' peaks; an untrained net's flat maps can move argmaxes a pixel
    np.testing.assert_allclose([r["score"] for r in on_cuda], [r["score"] for r in on_cpu], atol=2e-3)
    assert [r["image_id"] for r in on_cuda] == [r["image_id"] for r in on_cpu]
