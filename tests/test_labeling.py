"""The labeling loop: uncertainty scores, N images without near-duplicates, a task Label Studio and CVAT
import, and the labels merged back into a new file; the inputs' fingerprint."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from components.config import DataConfig, load_config
from components.data.records import PersonRecord
from components.data.split import make_split
from components.inputs_fingerprint import inputs_fingerprint
from components.labeling.label_merge import MergeError, merge_labels
from components.labeling.suggestions import dhash, hamming, pick_images
from components.labeling.uncertainty import FLIP_AND_CONFIDENCE, PersonScore, pose_oks
from tests.tiny_coco import tiny_config, write_coco


def test_pose_oks_is_one_for_the_same_pose_and_falls_with_distance() -> None:
    pose = np.random.default_rng(0).uniform(0, 100, size=(2, 17, 2))
    areas = np.array([4000.0, 4000.0])
    sigmas = np.full(17, 0.05)
    assert pose_oks(pose, pose, areas, sigmas) == pytest.approx([1.0, 1.0])
    near, far = pose_oks(pose, pose + 2.0, areas, sigmas), pose_oks(pose, pose + 10.0, areas, sigmas)
    assert np.all(far < near) and np.all(near < 1.0)


def _image(path: Path, seed: int, frame: int = 0) -> Path:
    """A smooth random scene; `frame` > 0 adds the sensor noise of another frame of the same shot."""
    base = cv2.GaussianBlur(np.random.default_rng(seed).integers(0, 255, (60, 80, 3), dtype=np.uint8), (0, 0), 8)
    base = cv2.normalize(base, None, 0, 255, cv2.NORM_MINMAX).astype(np.int16)
    noise = np.random.default_rng(1000 + frame).integers(-3, 4, base.shape) if frame else 0
    cv2.imwrite(str(path), np.clip(base + noise, 0, 255).astype(np.uint8))
    return path


def _scored(path: Path, score: float) -> PersonScore:
    record = PersonRecord(path, 1, -1, np.array([5.0, 5.0, 40.0, 40.0]), np.zeros((17, 3), np.float32), 1.0, 1600.0)
    return PersonScore(record, score, {}, np.zeros((17, 3)))


def test_the_most_unsure_images_come_first_and_a_scene_is_suggested_once(tmp_path: Path) -> None:
    scene = [_image(tmp_path / f"frame{i}.jpg", 1, frame=i) for i in range(3)]  # one shot, three frames
    others = [_image(tmp_path / f"other{i}.jpg", 10 + i) for i in range(3)]
    assert hamming(dhash(scene[0]), dhash(scene[2])) <= 8 < hamming(dhash(scene[0]), dhash(others[0]))
    people = [_scored(scene[0], 0.9), _scored(scene[1], 0.8), _scored(scene[2], 0.85), _scored(scene[2], 0.1)]
    people += [_scored(others[0], 0.5), _scored(others[1], 0.7), _scored(others[2], 0.2)]
    picked = pick_images(people, 3, lambda path: (path.name, str(path)))
    assert [p.task_name for p in picked] == ["frame0.jpg", "other1.jpg", "other0.jpg"]
    assert sorted(picked[0].stands_for) == ["frame1.jpg", "frame2.jpg"]
    assert len(pick_images(people, 10, lambda path: (path.name, str(path)))) == 4  # three scenes, one shot


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from components.engine.trainer import train

    root = tmp_path_factory.mktemp("labeling")
    ann = root / "data" / "people.json"
    ann.write_text(json.dumps(write_coco(root / "data", 15, seed=4)))
    images = str(root / "data" / "images")
    data_cfg = DataConfig(root=None, train_ann=str(ann), train_images=images, val_ann=str(ann), val_images=images,
                          num_labeled=4, holdout_labeled=3)  # fmt: skip
    split = make_split(ann, images, ann, images, root / "split", data_cfg)
    cfg = tiny_config(root / "ckpt", "trs", iterations=4)
    result = train(cfg, split, progress=False)
    return {"split": split, "checkpoint": result.checkpoint_uri, "root": root}


def test_a_checkpoint_is_scored_by_disagreement_and_a_student_by_flips(trained: dict[str, Any]) -> None:
    from components.engine.checkpoint import load_checkpoint, load_student
    from components.labeling.suggest import unlabeled_people
    from components.labeling.uncertainty import DISAGREEMENT, ScoringModels, score_people, scoring_models

    student, cfg = load_student(trained["checkpoint"])
    people = unlabeled_people(trained["split"], cfg)
    assert len(people) == 8
    full = scoring_models(load_checkpoint(trained["checkpoint"]), cfg)
    assert full.method == DISAGREEMENT
    by_disagreement = score_people(full, people, cfg)
    alone = score_people(ScoringModels(student), people, cfg)
    assert len(by_disagreement) == len(alone) == 8
    assert all(0.0 <= s.score <= 1.0 for s in by_disagreement + alone)
    assert set(by_disagreement[0].parts) == {"oks_teacher_reviewer"}
    assert set(alone[0].parts) == {"oks_flip", "confidence"} and ScoringModels(student).method == FLIP_AND_CONFIDENCE
    assert by_disagreement[0].keypoints.shape == (17, 3)


def test_suggest_writes_a_task_that_pycocotools_label_studio_and_cvat_read(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    from click.testing import CliRunner
    from pycocotools.coco import COCO

    from cli.main import cli
    from components.data.validation import validate_dataset

    split = trained["split"]
    out = tmp_path / "label-next"
    result = CliRunner().invoke(
        cli,
        [
            "suggest",
            "--checkpoint",
            trained["checkpoint"],
            "--budget",
            "3",
            "--out",
            str(out),
            "--split-dir",
            str(split.manifest.parent),
        ],  # fmt: skip
    )
    assert result.exit_code == 0, result.output
    assert "(teacher_reviewer_disagreement); suggested 3 images" in result.output
    coco = COCO(str(out / "pre_annotations.json"))
    assert len(coco.getImgIds()) == 3 and len(coco.getAnnIds()) >= 3
    labeled_ids = {i["id"] for name in ("labeled", "unlabeled", "holdout") for i in json.loads((split.manifest.parent / f"{name}.json").read_text())["images"]}  # fmt: skip
    assert min(coco.getImgIds()) > max(labeled_ids)
    document = json.loads((out / "pre_annotations.json").read_text())
    assert document["categories"][0]["keypoints"][0] == "nose" and document["categories"][0]["skeleton"]
    for ann in document["annotations"]:  # label-studio-converter reads bbox and keypoints; CVAT the skeleton
        assert "segmentation" not in ann and len(ann["bbox"]) == 4 and len(ann["keypoints"]) == 51
        assert set(ann["keypoints"][2::3]) <= {0, 2} and ann["num_keypoints"] == ann["keypoints"][2::3].count(2)
    assert validate_dataset(out / "pre_annotations.json", out / "images", expectations=False).ok
    assert len((out / "images.txt").read_text().splitlines()) == 3
    rows = list(csv.DictReader((out / "scores.csv").open()))
    assert len(rows) == len(document["annotations"]) and [int(r["rank"]) for r in rows] == sorted(
        int(r["rank"]) for r in rows
    )
    scores = [float(r["image_score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)


def test_labels_come_back_as_a_new_file_and_clashes_are_refused(trained: dict[str, Any], tmp_path: Path) -> None:
    from components.data.validation import validate_dataset

    split = trained["split"]
    task = tmp_path / "task"
    from click.testing import CliRunner

    from cli.main import cli

    made = CliRunner().invoke(cli, ["suggest", "--checkpoint", trained["checkpoint"], "--budget", "2", "--out",
                                    str(task), "--split-dir", str(split.manifest.parent)])  # fmt: skip
    assert made.exit_code == 0, made.output
    returned = json.loads((task / "pre_annotations.json").read_text())
    for ann in returned["annotations"]:  # the annotator places every keypoint
        ann["keypoints"] = [v for _ in range(17) for v in (20.0, 30.0, 2)]
        ann["num_keypoints"] = 17
        ann.pop("score")
    returned_file = tmp_path / "returned.json"
    returned_file.write_text(json.dumps(returned))
    labeled = split.labeled_ann
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (labeled, returned_file)}
    merged = merge_labels(returned_file, labeled, tmp_path / "labeled-v2.json")
    assert merged.images_added == 2 and merged.labeled_people == merged.annotations_added
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (labeled, returned_file)} == before
    new = json.loads((tmp_path / "labeled-v2.json").read_text())
    assert len(new["images"]) == len(json.loads(labeled.read_text())["images"]) + 2
    assert validate_dataset(tmp_path / "labeled-v2.json", ".", check_images=False, expectations=False).ok

    with pytest.raises(MergeError, match=r"is labeled twice: .*labeled-v2.json has it as image"):
        merge_labels(returned_file, tmp_path / "labeled-v2.json", tmp_path / "v3.json")
    clashing = json.loads(returned_file.read_text())
    first_labeled = json.loads(labeled.read_text())["images"][0]
    old_id = clashing["images"][0]["id"]
    clashing["images"][0]["id"] = first_labeled["id"]
    for ann in clashing["annotations"]:
        if ann["image_id"] == old_id:
            ann["image_id"] = first_labeled["id"]
    clash_file = tmp_path / "clash.json"
    clash_file.write_text(json.dumps(clashing))
    with pytest.raises(MergeError, match=rf"image id {first_labeled['id']} .*clashes with .*pass --renumber"):
        merge_labels(clash_file, labeled, tmp_path / "v4.json")
    renumbered = merge_labels(clash_file, labeled, tmp_path / "v4.json", renumber=True)
    assert renumbered.images_added == 2
    with pytest.raises(MergeError, match="is an input"):
        merge_labels(returned_file, labeled, labeled)
    broken = json.loads(returned_file.read_text())
    broken["annotations"][0]["keypoints"][2] = 7
    broken_file = tmp_path / "broken.json"
    broken_file.write_text(json.dumps(broken))
    with pytest.raises(MergeError, match=r"broken.json: annotation \d+: \[keypoints.visibility\]"):
        merge_labels(broken_file, labeled, tmp_path / "v5.json")
    other_set = json.loads(returned_file.read_text())
    other_set["categories"][0]["keypoints"] = [f"k{i}" for i in range(17)]
    other_set["categories"][0]["skeleton"] = []
    other_file = tmp_path / "other.json"
    other_file.write_text(json.dumps(other_set))
    with pytest.raises(MergeError, match="its keypoints are not"):
        merge_labels(other_file, labeled, tmp_path / "v6.json")


def test_the_inputs_fingerprint_is_stable_and_changes_with_every_input() -> None:
    cfg = load_config(None, [])
    labeled = {"train_ann": "a" * 64, "train_images": "b" * 64, "val_ann": "c" * 64, "val_images": "d" * 64}
    unlabeled = {"fingerprint": "e" * 64, "boxes": {"box_source": "whole_image"},
                 "sources": [{"source": "/raw", "kind": "images", "prefix": "images/0", "files": 3, "fingerprint": "f" * 64}]}  # fmt: skip
    base = inputs_fingerprint(labeled, unlabeled, cfg)
    assert inputs_fingerprint(dict(labeled), json.loads(json.dumps(unlabeled)), cfg) == base
    moved = {**unlabeled, "sources": [{**unlabeled["sources"][0], "source": "/elsewhere/raw"}]}
    run_only = load_config(None, ["name=other", "train.checkpoint.dir=s3://x/y", "registry.tracking_uri=http://h",
                                  "train.num_workers=7", "data.root=/moved/data", "storage.bucket=b2"])  # fmt: skip
    assert inputs_fingerprint(labeled, moved, run_only).digest == base.digest  # where, not what
    changed = [
        inputs_fingerprint({**labeled, "train_ann": "0" * 64}, unlabeled, cfg),  # a label edited
        inputs_fingerprint(labeled, {**unlabeled, "fingerprint": "1" * 64}, cfg),  # a raw image added
        inputs_fingerprint(labeled, None, cfg),  # the raw images gone
        inputs_fingerprint(labeled, unlabeled, load_config(None, ["train.iterations=999"])),  # the recipe
        inputs_fingerprint(labeled, unlabeled, load_config(None, ["train.init=champion"])),
    ]
    assert len({c.digest for c in changed} | {base.digest}) == len(changed) + 1
    assert inputs_fingerprint(labeled, unlabeled, load_config(None, ["train.init=champion"])) == changed[-1]
