"""Keypoint sets other than COCO's 17: derived flips and sigmas, the config section, validation, datasets,
evaluation with pycocotools, a model refusing another set, and training, evaluation and export at K = 13."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from components.config import ConfigError, KeypointsConfig, load_config
from components.data.keypoint_category import with_keypoints_of
from components.data.records import RecordError
from components.data.synthetic import generate_dataset
from components.data.validation import validate_dataset
from components.keypoints import (
    COCO_NAMES,
    COCO_PERSON,
    DEFAULT_SIGMA,
    KeypointSetError,
    build_keypoint_set,
    derive_flip_pairs,
    keypoint_category,
    mirror_name,
)
from tests.keypoint_sets import HEAD13, head13, remap_file, remap_keypoints


@pytest.mark.parametrize(
    "name, mirror",
    [
        ("left_wrist", "right_wrist"),
        ("r_eye", "l_eye"),
        ("LeftPaw", "RightPaw"),
        ("wing_left", "wing_right"),
        ("LEye", "REye"),
        ("L_EAR", "R_EAR"),
        ("tail_base", None),
        ("nose", None),
        ("lip", None),
    ],
)
def test_mirror_names_swap_the_side_token_only(name: str, mirror: str | None) -> None:
    assert mirror_name(name) == mirror


def test_flip_pairs_are_derived_from_names_and_a_lone_side_is_named() -> None:
    names = ("nose", "l_eye", "r_eye", "tail", "RightFoot", "LeftFoot")
    assert derive_flip_pairs(names) == ((1, 2), (4, 5))
    assert COCO_PERSON.flip_pairs == tuple((i, i + 1) for i in range(1, 17, 2))
    with pytest.raises(KeypointSetError, match=r"'left_ear' has a side but its mirror 'right_ear' is not in the set"):
        derive_flip_pairs(("nose", "left_ear", "left_eye", "right_eye"))


def test_coco_keeps_its_sigmas_and_another_set_gets_them_by_name_or_the_default() -> None:
    assert COCO_PERSON.sigma_source == "coco" and COCO_PERSON.sigmas[0] == pytest.approx(0.026)
    assert COCO_PERSON.upper_body == tuple(range(11))
    names = tuple(HEAD13)
    worker = build_keypoint_set(names, category="worker")
    assert worker.sigma_source == "default" and worker.upper_body == ()  # half-body off without upper_body
    assert worker.sigmas[0] == DEFAULT_SIGMA  # "head" is no COCO keypoint
    assert worker.sigmas[1] == DEFAULT_SIGMA  # "l_shoulder" neither, by name
    renamed = build_keypoint_set(("nose", "left_knee", "right_knee"))
    assert renamed.sigmas == pytest.approx((0.026, 0.087, 0.087))
    given = build_keypoint_set(names, sigmas=(0.05,) * 13, upper_body=("head", "l_shoulder", "r_shoulder"))
    assert given.sigma_source == "config" and given.upper_body == (0, 1, 2) and given.lower_body == tuple(range(3, 13))
    with pytest.raises(KeypointSetError, match="keypoints.sigmas has 3 values for 13 keypoints"):
        build_keypoint_set(names, sigmas=(0.05, 0.05, 0.05))
    with pytest.raises(KeypointSetError, match="keypoints.upper_body names 'neck'"):
        build_keypoint_set(names, upper_body=("neck",))
    with pytest.raises(KeypointSetError, match="keypoints.flip_pairs names 'wing'"):
        build_keypoint_set(names, flip_pairs=(("wing", "head"),))
    assert build_keypoint_set(names, flip_pairs=()).flip_pairs == ()


def test_exactly_one_category_carries_keypoints() -> None:
    person = COCO_PERSON.coco_category()
    assert keypoint_category([{"id": 3, "name": "car"}, person], "f.json") is person
    with pytest.raises(KeypointSetError, match=r"f.json: no category lists keypoints.*car \(id 3\)"):
        keypoint_category([{"id": 3, "name": "car"}], "f.json")
    with pytest.raises(KeypointSetError, match=r"2 categories list keypoints \(person \(id 1\), hand \(id 2\)\)"):
        keypoint_category([person, {**person, "id": 2, "name": "hand"}], "f.json")


def test_the_config_section_is_validated_once_names_are_known() -> None:
    cfg = load_config(None, ["keypoints.sigmas=[0.05, 0.06]"])  # the data's names are not read yet: accepted
    assert load_config(None, []).keypoints.keypoint_set().names == COCO_NAMES  # unresolved means COCO's 17
    with pytest.raises(KeypointSetError, match="2 values for 17 keypoints"):  # used before the data said otherwise
        cfg.keypoints.keypoint_set()
    with pytest.raises(ConfigError, match="keypoints: .*sigmas has 2 values for 3 keypoints"):
        load_config(None, ["keypoints.names=[a, b, c]", "keypoints.sigmas=[0.05, 0.06]"])
    with pytest.raises(ConfigError, match="'left_a' has a side"):
        load_config(None, ["keypoints.names=[left_a, b]"])
    with pytest.raises(ValueError, match="must all be positive"):
        KeypointsConfig.model_validate({"sigmas": [0.1, -0.1]})


@pytest.fixture(scope="module")
def worker_set(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Synthetic people as the 13-keypoint worker set (face reduced to a head point)."""
    root = tmp_path_factory.mktemp("people")
    generate_dataset(root / "synthetic", 16, 6, seed=5, image_size=(96, 80), workers=1, style="easy")
    files = {}
    for split in ("train", "val"):
        source = root / "synthetic" / "annotations" / f"person_keypoints_{split}.json"
        files[f"{split}_ann"] = head13(source, root / "workers" / f"{split}.json")
        files[f"{split}_images"] = root / "synthetic" / split
    return files


def test_a_13_keypoint_set_validates_and_reads_its_names(worker_set: dict[str, Path], tmp_path: Path) -> None:
    report = validate_dataset(worker_set["train_ann"], worker_set["train_images"], tmp_path / "report")
    assert report.ok, [str(v) for v in report.violations]
    assert report.keypoints is not None and report.keypoints.names == tuple(HEAD13)
    assert report.keypoints.category == "worker" and report.keypoints.flip_pairs == ((1, 2), (3, 4), (5, 6), (7, 8),
                                                                                    (9, 10), (11, 12))  # fmt: skip
    assert json.loads((tmp_path / "report" / "report.json").read_text())["keypoints"]["names"][0] == "head"
    broken = json.loads(worker_set["train_ann"].read_text())
    broken["annotations"][0]["keypoints"] = broken["annotations"][0]["keypoints"][:36]
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    violations = validate_dataset(path, worker_set["train_images"], check_images=False, expectations=False).violations
    shape = [v for v in violations if v.rule == "keypoints.shape"]
    assert len(shape) == 1 and {v.rule for v in violations} <= {"keypoints.shape", "num_keypoints.mismatch"}
    assert "13x3 = 39 numbers (the keypoint category lists 13), got 36" in shape[0].message


def test_datasets_targets_and_flips_follow_the_set(worker_set: dict[str, Path]) -> None:
    from components.data.datasets import LabeledPoseDataset
    from components.data.geometry import apply_affine

    cfg = with_keypoints_of(_tiny_cfg(["augment.flip=true", "augment.rotation_prob=0.0"]), worker_set["train_ann"])
    dataset = LabeledPoseDataset(worker_set["train_ann"], worker_set["train_images"], cfg, seed=0)
    item = dataset[0]
    assert item["target"].shape[0] == 13 and item["keypoints"].shape == (13, 3)
    assert dataset.keypoints.flip_index.tolist() == [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11]
    record = dataset.records[0]
    mirrored = 0
    for seed in range(12):  # about half of these crops are mirrored: the l_/r_ channels swap
        dataset.seed = seed
        view = dataset.sample_view(record, dataset.rng(0))
        points = apply_affine(record.keypoints[:, :2].astype(np.float64), view.affine(cfg.input.image_size))
        if view.flip:
            points, mirrored = points[dataset.keypoints.flip_index], mirrored + 1
        got = dataset[0]
        kept = got["target_weight"].numpy() > 0
        np.testing.assert_allclose(got["keypoints"].numpy()[kept, :2], points[kept], atol=1e-3)
    assert mirrored, "no mirrored crop in 12 draws"
    coco_cfg = _tiny_cfg([])  # unresolved: COCO's 17
    with pytest.raises(RecordError, match=r"the keypoints are not the run's 17 keypoints .*13 keypoints"):
        LabeledPoseDataset(worker_set["train_ann"], worker_set["train_images"], coco_cfg)


def _tiny_cfg(extra: list[str]) -> Any:
    from tests.tiny_coco import tiny_overrides

    return load_config(None, [*tiny_overrides("trs"), "input.image_size=[64, 48]", *extra])


def _coco_eval_reference(gt: dict[str, Any], results: list[dict[str, Any]], sigmas: np.ndarray) -> list[float]:
    """pycocotools' COCOeval with nothing of ours in between."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = copy.deepcopy(gt)
        truth.createIndex()
        evaluator = COCOeval(truth, truth.loadRes(copy.deepcopy(results)), iouType="keypoints")
        evaluator.params.kpt_oks_sigmas = sigmas
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return [max(0.0, float(v)) for v in evaluator.stats]


def test_keypoint_ap_matches_cocoeval_with_the_sets_own_sigmas(coco_mini: Path, tmp_path: Path, caplog: Any) -> None:
    from components.evaluation.coco_eval import (
        METRIC_NAMES,
        coco_keypoint_eval,
        ground_truth_keypoints,
        load_ground_truth,
    )

    reduced = remap_file(coco_mini / "annotations" / "person_keypoints_val2017.json", tmp_path / "val13.json", HEAD13)
    gt = json.loads(reduced.read_text())
    rng = np.random.default_rng(0)
    results = []
    for ann in gt["annotations"]:
        if ann.get("num_keypoints", 0) == 0 or ann.get("iscrowd", 0):
            continue
        points = np.asarray(ann["keypoints"], dtype=np.float64).reshape(13, 3)
        points[:, :2] += rng.normal(0.0, 6.0, size=(13, 2))
        points[:, 2] = 1.0
        results.append({"image_id": ann["image_id"], "category_id": 1, "keypoints": points.ravel().tolist(),
                        "score": float(rng.uniform(0.3, 1.0))})  # fmt: skip
    sigmas = np.linspace(0.03, 0.1, 13)
    options = KeypointsConfig(sigmas=tuple(sigmas))
    keypoints = ground_truth_keypoints(load_ground_truth(reduced), options)
    ours = coco_keypoint_eval(reduced, results, keypoints=keypoints)
    reference = _coco_eval_reference(gt, results, sigmas)
    assert [ours[name] for name in METRIC_NAMES] == pytest.approx(reference, abs=1e-6)
    assert 0.05 < ours["AP"] < 0.95  # the noise makes it a real test
    with_defaults = coco_keypoint_eval(reduced, results)
    assert with_defaults["AP"] != pytest.approx(ours["AP"], abs=1e-4)  # AP depends on the sigmas
    with caplog.at_level(logging.WARNING, logger="trs_pose.evaluation"):
        coco_keypoint_eval(reduced, results)
    assert any("AP depends on them" in record.message for record in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="trs_pose.evaluation"):
        coco_keypoint_eval(reduced, results, warn_default_sigmas=False)  # the reviewer's ranking, every 50 steps
    assert not any("AP depends on them" in record.message for record in caplog.records)


def test_evaluate_results_reads_the_set_from_ann_and_the_sigmas_from_set(coco_mini: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cli.main import cli
    from components.evaluation.coco_eval import coco_keypoint_eval, ground_truth_keypoints, load_ground_truth

    reduced = remap_file(coco_mini / "annotations" / "person_keypoints_val2017.json", tmp_path / "val13.json", HEAD13)
    gt = json.loads(reduced.read_text())
    results = [
        {"image_id": a["image_id"], "category_id": 1, "score": 0.9,
         "keypoints": (np.asarray(a["keypoints"], dtype=np.float64) + np.tile([4.0, -3.0, 0.0], 13)).tolist()}
        for a in gt["annotations"] if a.get("num_keypoints", 0) > 0
    ]  # fmt: skip
    results_file = tmp_path / "results.json"
    results_file.write_text(json.dumps(results))
    sigmas = [round(float(v), 3) for v in np.linspace(0.03, 0.1, 13)]
    runner = CliRunner()
    given = runner.invoke(
        cli,
        [
            "evaluate",
            "--ann",
            str(reduced),
            "--results",
            str(results_file),
            "--json",
            "--set",
            f"keypoints.sigmas={sigmas}",
        ],  # fmt: skip
    )
    assert given.exit_code == 0, given.output
    expected = coco_keypoint_eval(
        reduced,
        results,
        keypoints=ground_truth_keypoints(load_ground_truth(reduced), KeypointsConfig(sigmas=tuple(sigmas))),
    )
    assert json.loads(given.stdout.strip().splitlines()[-1])["AP"] == pytest.approx(expected["AP"], abs=1e-9)
    defaulted = runner.invoke(cli, ["evaluate", "--ann", str(reduced), "--results", str(results_file), "--json"])
    assert defaulted.exit_code == 0 and json.loads(defaulted.stdout.strip().splitlines()[-1])["AP"] != expected["AP"]
    wrong = runner.invoke(cli, ["evaluate", "--ann", str(reduced), "--results", str(results_file),
                                "--set", "keypoints.sigmas=[0.05, 0.05]"])  # fmt: skip
    assert wrong.exit_code == 1 and "keypoints.sigmas has 2 values for 13 keypoints" in wrong.output
    not_keypoints = runner.invoke(cli, ["evaluate", "--ann", str(reduced), "--results", str(results_file),
                                        "--set", "train.iterations=5"])  # fmt: skip
    assert not_keypoints.exit_code == 2 and "keypoints.* fields only" in not_keypoints.output


def test_inversions_are_found_through_the_sets_flip_pairs(worker_set: dict[str, Path]) -> None:
    from components.evaluation.error_breakdown import error_breakdown

    category = json.loads(worker_set["val_ann"].read_text())["categories"]
    points = np.array([[40.0 * (i % 4) + 20.0, 60.0 * (i // 4) + 20.0, 2.0] for i in range(13)])  # far apart
    person = {"id": 1, "image_id": 1, "category_id": 1, "keypoints": points.ravel().tolist(), "num_keypoints": 13,
              "area": 40_000.0, "bbox": [0.0, 0.0, 200.0, 200.0], "iscrowd": 0}  # fmt: skip
    gt = {"images": [{"id": 1, "file_name": "a.jpg", "width": 400, "height": 400}], "annotations": [person],
          "categories": category}  # fmt: skip
    swapped = points.copy()
    swapped[[3, 4]] = points[[4, 3]]  # l_elbow <-> r_elbow: inversions onto the mirror twin
    swapped[[0, 5]] = points[[5, 0]]  # head <-> l_wrist: inversions, not onto a mirror twin
    results = [{"image_id": 1, "category_id": 1, "keypoints": swapped.ravel().tolist(), "score": 1.0}]
    got = error_breakdown(gt, results)
    assert got["inversion"] == pytest.approx(4 / 13) and got["inversion_left_right"] == pytest.approx(2 / 13)


def test_training_evaluation_and_export_at_k_13(worker_set: dict[str, Path], tmp_path: Path) -> None:
    """A run on the worker set: the model, its checkpoint, AP, flip test, ONNX [N, 13, 3], and its refusal
    of COCO annotations."""
    import onnxruntime as ort

    from components.data.split import make_split
    from components.engine.checkpoint import load_student
    from components.engine.trainer import train
    from components.evaluation.evaluate import evaluate_model
    from components.serving.onnx_export import export_onnx

    cfg = load_config(
        None,
        [
            "input.image_size=[64, 48]",
            "model.deconv_channels=32",
            "model.mfl_channels=8",
            "train.iterations=4",
            "train.batch_size=2",
            "train.unlabeled_batch_size=2",
            "train.num_workers=0",
            "train.reviewer.check_every=2",
            "train.consistency.confidence_threshold=0.0",
            "train.checkpoint.every=2",
            f"train.checkpoint.dir={tmp_path / 'ckpt'}",
            "data.labeled_fraction=0.5",
            "data.holdout_labeled=2",
            "eval.num_workers=0",
            "eval.flip_test=true",
            "keypoints.upper_body=[head, l_shoulder, r_shoulder, l_elbow, r_elbow, l_wrist, r_wrist]",
            "augment.half_body_prob=1.0",
        ],
    )
    split = make_split(
        worker_set["train_ann"],
        worker_set["train_images"],
        worker_set["val_ann"],
        worker_set["val_images"],
        tmp_path / "split",
        cfg.data,
    )
    result = train(cfg, split, progress=False)
    model, trained = load_student(result.checkpoint_uri)
    assert trained.keypoints.names == tuple(HEAD13) and trained.keypoints.category == "worker"
    assert model(torch.zeros(1, 3, 64, 48)).heatmaps.shape[1] == 13
    metrics = evaluate_model(model, worker_set["val_ann"], worker_set["val_images"], trained, num_workers=0)
    assert 0.0 <= metrics["AP"] <= 1.0
    path = export_onnx(model, trained, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    image = np.full((90, 70, 3), 120, np.uint8)
    out = session.run(None, {"image": image, "boxes": np.array([[5, 5, 40, 60], [10, 2, 30, 80]], np.float32)})[0]
    assert out.shape == (2, 13, 3)
    meta = {p.key: p.value for p in __import__("onnx").load(str(path)).metadata_props}
    assert json.loads(meta["trs_pose.keypoints"])["names"] == list(HEAD13)
    coco_val = worker_set["val_images"].parent / "annotations" / "person_keypoints_val.json"
    with pytest.raises(RecordError, match="the keypoints are not the run's 13 keypoints"):
        evaluate_model(model, coco_val, worker_set["val_images"], trained, num_workers=0)


def test_drawing_uses_the_sets_skeleton_and_sides() -> None:
    from components.evaluation.drawing import LEFT_COLOUR, RIGHT_COLOUR, draw_poses

    names = ("l_hand", "r_hand", "chin")
    keypoint_set = build_keypoint_set(names, ((1, 3), (2, 3)))
    assert keypoint_set.sides == ("left", "right", "centre")
    image = np.zeros((60, 60, 3), np.uint8)
    people = np.array([[[10, 10, 1.0], [50, 10, 1.0], [30, 50, 1.0]]])
    drawn = draw_poses(image, people, threshold=0.1, keypoint_set=keypoint_set)
    assert tuple(drawn[10, 10]) == LEFT_COLOUR and tuple(drawn[10, 50]) == RIGHT_COLOUR
    assert drawn[30, 20].any() and not drawn[10, 30].any()  # a limb to the chin, none between the hands


def test_renamed_and_reordered_coco_mini_validates(coco_mini: Path, tmp_path: Path) -> None:
    order = {name: [name] for name in reversed(COCO_NAMES)}  # the same 17 in reverse order
    path = remap_file(coco_mini / "annotations" / "person_keypoints_val2017.json", tmp_path / "rev.json", order)
    report = validate_dataset(path, coco_mini / "val2017", check_images=False)
    assert report.ok and report.keypoints is not None
    assert report.keypoints.names == tuple(reversed(COCO_NAMES)) and report.keypoints.sigma_source == "default"
    assert report.keypoints.sigmas[0] == pytest.approx(0.089)  # right_ankle's sigma, found by name
    twin = report.keypoints.flip_index
    assert all(report.keypoints.names[twin[i]] == (mirror_name(n) or n) for i, n in enumerate(report.keypoints.names))
    assert remap_keypoints({"annotations": [], "categories": []}, order)["categories"] == []
