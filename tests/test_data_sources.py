"""The data users bring: locations checked before anything is written (their folders stay byte-identical),
explicit paths, and raw unlabeled images and videos without annotations: pooled, checked, boxed, split."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from components.config import DataConfig, load_config
from components.data.prepare import UnlabeledDataError, pool_input, prepare_dataset
from components.data.sources import DataSourceError, check_sources, data_sources
from components.data.split import make_split
from components.data.subject_boxes import BoxSourceError, DetectionRun, boxes_from_file, whole_image_boxes
from components.data.synthetic import generate_dataset
from components.data.unlabeled_pool import build_pool, check_pool, read_usable
from components.data.video_frames import extract_frames, frame_slot

REPO_ROOT = Path(__file__).resolve().parents[1]


def folder_digest(root: Path) -> dict[str, str]:
    """Every file under `root` (hidden ones too) with its sha256: equal digests mean a byte-identical folder."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("people") / "synthetic"
    generate_dataset(root, 12, 4, seed=2, image_size=(96, 80), workers=1, style="easy")
    return root


def test_a_run_pointed_at_a_users_folder_with_other_names_stops_and_writes_nothing(
    coco_mini: Path, tmp_path: Path
) -> None:
    """The demo config (synthetic people, splits train/val) at a real COCO folder (train2017/val2017)."""
    users = tmp_path / "coco"
    shutil.copytree(coco_mini, users)
    before = folder_digest(users)
    env = {**os.environ, "TRS_POSE_STATE_DIR": str(tmp_path / "state"), "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "run",
            "--config",
            str(REPO_ROOT / "configs" / "demo.yaml"),
            "--set",
            f"data.root={users}",
            "--set",
            "train.iterations=60",
        ],  # fmt: skip
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "no annotations/person_keypoints_train.json (data.train_split=train)" in lines[0]
    assert "found annotations/person_keypoints_train2017.json" in lines[0]
    assert "set data.train_split=train2017" in lines[0]
    assert folder_digest(users) == before
    assert not (tmp_path / "data").exists()


def test_missing_locations_say_what_was_looked_for_and_what_was_found(people: Path, tmp_path: Path) -> None:
    cfg = DataConfig(root=str(people), synthetic=None, val_split="validation")
    with pytest.raises(
        DataSourceError, match=r"no annotations/person_keypoints_validation.json .*set data.val_split=val$"
    ):
        check_sources(cfg)
    with pytest.raises(DataSourceError, match=r"data.root=.*nowhere does not exist"):
        check_sources(DataConfig(root=str(tmp_path / "nowhere"), synthetic=None))
    explicit = DataConfig(
        root=None,
        train_ann=str(people / "annotations" / "person_keypoints_train.json"),
        train_images=str(people / "train"),
        val_ann=str(people / "annotations" / "person_keypoints_val.json"),
        val_images=str(tmp_path / "missing-images"),
    )
    with pytest.raises(DataSourceError, match=r"^data.val_images: .*missing-images is not a folder$"):
        check_sources(explicit)
    with pytest.raises(ValueError, match="data.root is null, so data.val_ann, data.val_images must be set"):
        DataConfig(root=None, train_ann="a.json", train_images="a/")


def test_explicit_paths_take_any_names_and_synthetic_data_stays_out_of_them(people: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    shutil.copytree(people / "train", mine / "photos")
    shutil.copy(people / "annotations" / "person_keypoints_train.json", mine / "labels.json")
    before = folder_digest(mine)
    cfg = load_config(
        None,
        [
            f"data.train_ann={mine / 'labels.json'}",
            f"data.train_images={mine / 'photos'}",
            f"data.val_ann={mine / 'labels.json'}",
            f"data.val_images={mine / 'photos'}",
            f"data.cache_dir={tmp_path / 'cache'}",
        ],
    )
    assert cfg.data.synthetic is not None and not cfg.data.draws_synthetic  # the default is not drawn beside them
    assert data_sources(cfg.data).train_ann == str(mine / "labels.json")
    data = prepare_dataset(cfg.data)
    assert data.train_ann.read_bytes() == (mine / "labels.json").read_bytes()
    assert data.train_ann != mine / "labels.json" and data.pool is None
    assert folder_digest(mine) == before and not Path(cfg.data.root or "data/synthetic").exists()


def _jpeg(path: Path, seed: int, size: tuple[int, int] = (48, 64)) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)
    cv2.imwrite(str(path), pixels)
    return path.read_bytes()


def _video(path: Path, frames: int, fps: float) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (64, 48))
    assert writer.isOpened()
    for index in range(frames):
        writer.write(np.full((48, 64, 3), (index * 9) % 255, np.uint8))
    writer.release()
    return path


@pytest.fixture
def raw_sources(tmp_path: Path) -> dict[str, Any]:
    """Two folders of raw images (nested, jpg and png, a duplicate, a corrupt and a tiny one, a text file)
    and a 10 fps video of 20 frames."""
    first, second = tmp_path / "raw" / "site-a", tmp_path / "raw" / "site-b"
    original = _jpeg(first / "day1" / "cam0.jpg", 0)
    _jpeg(first / "day1" / "cam1.jpg", 1)
    cv2.imwrite(str(first / "cam2.png"), np.full((50, 70, 3), 90, np.uint8))
    (first / "notes.txt").write_text("not an image")
    (second / "again.jpg").parent.mkdir(parents=True)
    (second / "again.jpg").write_bytes(original)  # the same bytes as site-a's day1/cam0.jpg
    (second / "broken.jpg").write_bytes(original[: len(original) // 2])  # truncated
    _jpeg(second / "tiny.jpg", 3, size=(8, 8))
    video = _video(tmp_path / "walk.mp4", 20, 10.0)
    return {"images": [str(first), str(second)], "video": video, "tmp": tmp_path}


def test_video_frames_are_sampled_at_the_rate_and_cached_by_content(tmp_path: Path, monkeypatch: Any) -> None:
    slots = [frame_slot(i, 10.0, 2.0) for i in range(20)]
    assert [i for i in range(20) if i == 0 or slots[i] != slots[i - 1]] == [0, 5, 10, 15]
    assert [frame_slot(i, 5.0, 8.0) for i in range(4)] == [0, 1, 2, 3]  # a slower video keeps every frame
    video = _video(tmp_path / "clip.mp4", 20, 10.0)
    frames = extract_frames(video, 2.0, tmp_path / "cache")
    assert sorted(p.name for p in frames.glob("*.jpg")) == [f"frame_{i:06d}.jpg" for i in (0, 5, 10, 15)]

    def no_decoding(*args: Any) -> Any:
        raise AssertionError("the cached frames were decoded again")

    monkeypatch.setattr(cv2, "VideoCapture", no_decoding)
    assert extract_frames(video, 2.0, tmp_path / "cache") == frames
    copy = tmp_path / "renamed.mp4"
    shutil.copy(video, copy)
    assert extract_frames(copy, 2.0, tmp_path / "cache") == frames  # the same bytes under another name


def test_raw_images_and_frames_are_pooled_checked_and_skipped_with_a_reason(raw_sources: dict[str, Any]) -> None:
    tmp = raw_sources["tmp"]
    unlabeled = DataConfig(unlabeled={"images": raw_sources["images"], "videos": [str(raw_sources["video"])]}).unlabeled
    before = {folder: folder_digest(Path(folder)) for folder in raw_sources["images"]}
    pool = build_pool(unlabeled, tmp / "cache")
    assert pool is not None
    names = sorted(p.relative_to(pool.root).as_posix() for p in pool.root.rglob("*") if p.suffix in (".jpg", ".png"))
    assert names == [
        "images/0/cam2.png", "images/0/day1/cam0.jpg", "images/0/day1/cam1.jpg", "images/1/again.jpg",
        "images/1/broken.jpg", "images/1/tiny.jpg", *[f"videos/0/frame_{i:06d}.jpg" for i in (0, 5, 10, 15)],
    ]  # fmt: skip
    assert [(s.kind, s.prefix, s.files) for s in pool.sources] == [
        ("images", "images/0", 3), ("images", "images/1", 3), ("video", "videos/0", 4),
    ]  # fmt: skip
    assert build_pool(unlabeled, tmp / "cache") == pool  # the same content, the same entry
    checked = check_pool(pool, unlabeled, tmp / "report")
    skipped = {v.file: v.rule for v in checked.skipped}
    assert skipped == {
        "images/1/again.jpg": "image.duplicate",
        "images/1/broken.jpg": "image.corrupt",
        "images/1/tiny.jpg": "image.too_small",
    }
    assert len(checked.usable) == checked.checked - 3 == 7
    assert read_usable(checked.index) == checked.usable
    assert {folder: folder_digest(Path(folder)) for folder in raw_sources["images"]} == before


def test_boxes_from_the_whole_image_or_a_detections_file(raw_sources: dict[str, Any]) -> None:
    tmp = raw_sources["tmp"]
    unlabeled = DataConfig(unlabeled={"images": raw_sources["images"][:1]}).unlabeled
    pool = build_pool(unlabeled, tmp / "cache")
    assert pool is not None
    usable = check_pool(pool, unlabeled, tmp / "report").usable
    whole = whole_image_boxes(usable)
    assert whole[0] == {"file_name": "images/0/cam2.png", "bbox": [0.0, 0.0, 70.0, 50.0], "score": 1.0}
    detections = tmp / "dets.json"
    detections.write_text(json.dumps([
        {"file_name": "day1/cam0.jpg", "bbox": [1, 2, 30, 40], "score": 0.9},  # as the folder names it
        {"file_name": "images/0/cam2.png", "bbox": [5, 5, 10, 10], "score": 0.2},  # as the pool names it
        {"file_name": "elsewhere.jpg", "bbox": [1, 1, 5, 5], "score": 0.9},  # not in the pool: ignored
    ]))  # fmt: skip
    boxes = boxes_from_file(detections, usable, pool, min_score=0.1)
    assert [(b["file_name"], b["bbox"]) for b in boxes] == [
        ("images/0/day1/cam0.jpg", [1.0, 2.0, 30.0, 40.0]), ("images/0/cam2.png", [5.0, 5.0, 10.0, 10.0]),
    ]  # fmt: skip
    assert len(boxes_from_file(detections, usable, pool, min_score=0.5)) == 1
    detections.write_text(json.dumps([{"file_name": "day1/cam0.jpg", "bbox": [1, 2, 30]}]))
    with pytest.raises(BoxSourceError, match=r"dets.json: record 0: rule 'bbox is \[x, y, w, h\]"):
        boxes_from_file(detections, usable, pool)


def test_a_detector_from_a_weights_file_boxes_in_batches_and_resumes(
    raw_sources: dict[str, Any], monkeypatch: Any
) -> None:
    from components.serving import detector as detector_module
    from components.serving.detector import build_detector

    tmp = raw_sources["tmp"]
    torch.manual_seed(0)
    weights = tmp / "detector.pth"
    torch.save(build_detector("fasterrcnn_mobilenet_v3_large_320_fpn").state_dict(), weights)
    data_cfg = DataConfig(
        cache_dir=str(tmp / "cache"),
        unlabeled={
            "images": raw_sources["images"][:1],
            "videos": [str(raw_sources["video"])],
            "boxes": "detector",
            "detector": {
                "weights": str(weights),
                "arch": "fasterrcnn_mobilenet_v3_large_320_fpn",
                "min_score": 0.0,
                "batch_size": 3,
            },  # fmt: skip
        },
    )
    pool = build_pool(data_cfg.unlabeled, tmp / "cache")
    assert pool is not None
    usable = check_pool(pool, data_cfg.unlabeled, tmp / "report").usable
    assert len(usable) == 7
    calls: list[int] = []
    real = detector_module.detect_batch

    def counting(detector: Any, images: list[Any], label: int, threshold: float) -> Any:
        calls.append(len(images))
        return real(detector, images, label, threshold)

    monkeypatch.setattr(detector_module, "detect_batch", counting)

    def killed_after_the_first_batch(done: int, total: int) -> None:
        raise KeyboardInterrupt("killed")

    run = DetectionRun(data_cfg.unlabeled.detector, pool, usable, tmp / "cache")
    with pytest.raises(KeyboardInterrupt):
        run.run(killed_after_the_first_batch)
    assert calls == [3] and len(run.done()) == 3
    boxes = DetectionRun(data_cfg.unlabeled.detector, pool, usable, tmp / "cache").run()
    assert calls == [3, 3, 1], "the resumed run detected only the images the killed one had not"
    assert {b["file_name"] for b in boxes} <= {image.file_name for image in usable}
    assert all(len(b["bbox"]) == 4 and b["score"] >= 0.0 for b in boxes)
    again = DetectionRun(data_cfg.unlabeled.detector, pool, usable, tmp / "cache").run()
    assert again == boxes and calls == [3, 3, 1]  # nothing new: nothing detected
    assert run.settings["arch"] == "fasterrcnn_mobilenet_v3_large_320_fpn" and len(run.settings["weights_sha256"]) == 64


def test_the_split_takes_the_pool_and_the_datasets_train_on_both_kinds(
    people: Path, raw_sources: dict[str, Any]
) -> None:
    from components.data.datasets import UnlabeledPairDataset

    tmp = raw_sources["tmp"]
    cfg = load_config(
        None,
        [
            f"data.root={people}",
            "data.synthetic=null",
            f"data.cache_dir={tmp / 'cache'}",
            "data.labeled_fraction=0.5",
            "data.holdout_labeled=2",
            f"data.unlabeled.images=[{raw_sources['images'][0]}]",
            f"data.unlabeled.videos=[{raw_sources['video']}]",
            "input.image_size=[64, 48]",
        ],
    )
    data = prepare_dataset(cfg.data)
    pool = pool_input(data, cfg.data, tmp / "unlabeled")
    assert pool is not None and len(pool.images) == 7 and len(pool.boxes) == 7
    split = make_split(data.train_ann, data.train_images, data.val_ann, data.val_images, tmp / "split", cfg.data, pool)
    manifest = json.loads(split.manifest.read_text())
    assert manifest["counts"]["pool"] == {"images": 7, "annotations": 7}
    sources = manifest["unlabeled_sources"]
    assert sources["boxes"] == {"box_source": "whole_image"} and [s["kind"] for s in sources["sources"]] == [
        "images",
        "video",
    ]
    assert manifest["outputs"]["pool_ann"]["sha256"] == hashlib.sha256(split.pool_ann.read_bytes()).hexdigest()
    pool_file = json.loads(split.pool_ann.read_text())
    assert all(len(image["sha256"]) == 64 for image in pool_file["images"])
    assert pool_file["categories"] == json.loads(data.train_ann.read_text())["categories"]
    from components.data.validation import validate_dataset

    assert validate_dataset(split.pool_ann, split.pool_images, expectations=False).ok
    protocol = UnlabeledPairDataset(split.unlabeled_ann, split.train_images, cfg)
    both = UnlabeledPairDataset(split.unlabeled_sources(), None, cfg)
    assert len(both) == len(protocol) + 7
    assert both[len(both) - 1]["hard"].shape == (3, 64, 48)

    refusing = cfg.data.model_copy(update={"unlabeled": cfg.data.unlabeled.model_copy(update={"on_error": "fail"})})
    refusing = refusing.model_copy(
        update={"unlabeled": refusing.unlabeled.model_copy(update={"images": tuple(raw_sources["images"])})}
    )
    with pytest.raises(UnlabeledDataError, match=r"3 of 10 raw unlabeled images are unusable .*on_error=fail"):
        pool_input(prepare_dataset(refusing), refusing, tmp / "refused")
