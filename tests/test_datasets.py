"""Top-down datasets on tiny COCO files written here, and on coco-mini when it is present."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from components.config import ExperimentConfig
from components.data.datasets import EvalPoseDataset, LabeledPoseDataset, UnlabeledPairDataset, loader_worker_init
from components.data.geometry import apply_affine, box_to_center_scale
from components.data.records import RecordError, load_detection_records, load_person_records
from components.data.transforms import denormalise
from components.keypoints import COCO_NAMES, COCO_PERSON

IMAGE_SHAPE = (240, 320)  # (h, w)
LEFT_WRIST, RIGHT_WRIST = COCO_NAMES.index("left_wrist"), COCO_NAMES.index("right_wrist")


def small_config(**augment: object) -> ExperimentConfig:
    cfg = ExperimentConfig()
    cfg.input.image_size = (128, 96)
    for key, value in augment.items():
        setattr(cfg.augment, key, value)
    return cfg


def blob(shape: tuple[int, int], point: tuple[float, float], sigma: float = 1.5) -> np.ndarray:
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]]
    return np.exp(-((xs - point[0]) ** 2 + (ys - point[1]) ** 2) / (2 * sigma**2))


def write_coco(root: Path, people: list[dict], dot: tuple[float, float] | None = None, images: int = 1) -> Path:
    """A COCO file under root/annotations plus lossless PNGs (black, with one bright dot) under root/img."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(exist_ok=True)
    picture = np.zeros((*IMAGE_SHAPE, 3), dtype=np.uint8)
    if dot is not None:
        picture[...] = np.rint(blob(IMAGE_SHAPE, dot) * 255).astype(np.uint8)[..., None]
    image_table = []
    for image_id in range(1, images + 1):
        cv2.imwrite(str(root / "img" / f"{image_id}.png"), picture)
        height, width = IMAGE_SHAPE
        image_table.append({"id": image_id, "file_name": f"{image_id}.png", "height": height, "width": width})
    annotations = []
    for ann_id, person in enumerate(people, start=1):
        keypoints = np.zeros((17, 3))
        for index, (x, y, v) in person.get("keypoints", {}).items():
            keypoints[index] = (x, y, v)
        annotations.append(
            {
                "id": ann_id,
                "image_id": person.get("image_id", 1),
                "category_id": 1,
                "bbox": person["bbox"],
                "area": person["bbox"][2] * person["bbox"][3],
                "iscrowd": person.get("iscrowd", 0),
                "keypoints": keypoints.ravel().tolist(),
                "num_keypoints": int((keypoints[:, 2] > 0).sum()),
            }
        )
    ann_file = root / "annotations" / "people.json"
    coco = {"images": image_table, "annotations": annotations, "categories": [COCO_PERSON.coco_category()]}
    ann_file.write_text(json.dumps(coco))
    return ann_file


def bright_spot(image: torch.Tensor) -> np.ndarray:
    """Intensity-weighted centroid (x, y) of the bright pixels of a normalised image tensor."""
    pixels = denormalise(image)[..., 0].astype(np.float64)
    weights = np.where(pixels > 0.3 * pixels.max(), pixels, 0.0)
    ys, xs = np.mgrid[0 : pixels.shape[0], 0 : pixels.shape[1]]
    return np.array([(xs * weights).sum(), (ys * weights).sum()]) / weights.sum()


DOT = (165.0, 118.0)
BOX = [120.0, 40.0, 90.0, 160.0]


def test_easy_to_hard_affine_carries_a_point_to_where_the_hard_view_shows_it(tmp_path: Path) -> None:
    ann_file = write_coco(tmp_path, [{"bbox": BOX}], dot=DOT)
    cfg = small_config(color_jitter=0.0, noise_std=0.0, blur_prob=0.0, rotation_prob=1.0)
    dataset = UnlabeledPairDataset(ann_file, tmp_path / "img", cfg, seed=3)
    seen_flips = set()
    for epoch in range(8):
        dataset.set_epoch(epoch)
        item = dataset[0]
        seen_flips.add(bool(item["flipped"]))
        easy_spot, hard_spot = bright_spot(item["easy"]), bright_spot(item["hard"])
        carried = apply_affine(easy_spot, item["easy_to_hard"].double().numpy())
        assert np.linalg.norm(carried - hard_spot) < 1.0, f"epoch {epoch}: {carried} vs {hard_spot}"
    assert seen_flips == {True, False}


def test_hard_view_is_photometrically_perturbed(tmp_path: Path) -> None:
    ann_file = write_coco(tmp_path, [{"bbox": BOX}], dot=DOT)
    cfg = small_config(scale_factor=0.0, rotation=0.0, flip=False, easy_scale_factor=0.0, easy_rotation=0.0)
    item = UnlabeledPairDataset(ann_file, tmp_path / "img", cfg)[0]
    np.testing.assert_allclose(item["easy_to_hard"].numpy(), [[1, 0, 0], [0, 1, 0]], atol=1e-4)
    assert not bool(item["flipped"])
    assert (item["hard"] - item["easy"]).abs().mean() > 0.05


def test_hard_view_affine_can_be_stronger_than_the_labeled_crops(tmp_path: Path) -> None:
    ann_file = write_coco(tmp_path, [{"bbox": BOX, "keypoints": {0: (165, 60, 2), 15: (160, 190, 2)}}], dot=DOT)
    mild = dict(scale_factor=0.0, rotation=0.0, half_body_prob=0.0, easy_scale_factor=0.0, easy_rotation=0.0)
    cfg = small_config(**mild, hard_rotation=30.0, hard_rotation_prob=1.0, hard_scale_factor=0.3)
    labeled = LabeledPoseDataset(ann_file, tmp_path / "img", cfg)
    pairs = UnlabeledPairDataset(ann_file, tmp_path / "img", cfg)
    rng = np.random.default_rng(0)
    hard_views = [pairs.sample_views(pairs.records[0], rng)[2] for _ in range(50)]
    assert max(abs(v.rotation) for v in hard_views) > 20.0 and min(abs(v.rotation) for v in hard_views) > 0.0
    zooms = [v.scale[1] / pairs.base_view(pairs.records[0]).scale[1] for v in hard_views]
    assert max(zooms) > 1.2 and min(zooms) < 0.8
    labeled_views = [labeled.sample_view(labeled.records[0], rng) for _ in range(50)]
    assert all(v.rotation == 0.0 for v in labeled_views)
    assert cfg.augment.hard_affine_ranges() == (0.3, 30.0, 1.0)
    assert small_config(**mild).augment.hard_affine_ranges() == (0.0, 0.0, 0.6)


def test_flip_swaps_left_and_right_channels_with_the_image(tmp_path: Path) -> None:
    ann_file = write_coco(tmp_path, [{"bbox": BOX, "keypoints": {LEFT_WRIST: (*DOT, 2)}}], dot=DOT)
    cfg = small_config(half_body_prob=0.0, flip=True)
    dataset = LabeledPoseDataset(ann_file, tmp_path / "img", cfg, seed=0)
    channels = set()
    for epoch in range(10):
        dataset.set_epoch(epoch)
        item = dataset[0]
        labeled = np.nonzero(item["target_weight"].numpy())[0].tolist()
        assert labeled in ([LEFT_WRIST], [RIGHT_WRIST])
        channel = labeled[0]
        channels.add(channel)
        where = item["keypoints"][channel, :2].numpy()
        assert np.linalg.norm(bright_spot(item["image"]) - where) < 1.0
        target = item["target"][channel]
        peak = np.unravel_index(int(target.argmax()), target.shape)
        assert np.abs(np.array(peak[::-1]) * 4 + 1.5 - where).max() <= 2.0 + 1e-6
        assert torch.all(item["target"][COCO_PERSON.flip_index[channel]] == 0)
    assert channels == {LEFT_WRIST, RIGHT_WRIST}


def test_half_body_crops_one_half_and_min_keypoints_comes_from_the_config(tmp_path: Path) -> None:
    full_body = {k: (130.0 + 4 * k, 50.0 + 9 * k, 2) for k in range(17)}
    sparse = {0: (160.0, 60.0, 2)}
    ann_file = write_coco(tmp_path, [{"bbox": BOX, "keypoints": full_body}, {"bbox": BOX, "keypoints": sparse}])
    cfg = small_config(half_body_prob=1.0, scale_factor=0.0, rotation=0.0, flip=False)
    cfg.data.min_keypoints = 2
    dataset = LabeledPoseDataset(ann_file, tmp_path / "img", cfg)
    assert len(dataset) == 1
    full = box_to_center_scale(BOX, cfg.input.aspect_ratio, cfg.input.box_padding)[1]
    for epoch in range(4):
        dataset.set_epoch(epoch)
        item = dataset[0]
        assert item["scale"][1] < full[1]
        assert 6 <= int(item["target_weight"].sum()) < 17


def test_same_seed_epoch_index_gives_the_same_item_in_any_order(tmp_path: Path) -> None:
    people = [{"bbox": [20 + 30 * i, 30, 60, 120], "keypoints": {0: (50 + 30 * i, 60, 2)}} for i in range(4)]
    ann_file = write_coco(tmp_path, people, dot=DOT)
    cfg = small_config()
    first = LabeledPoseDataset(ann_file, tmp_path / "img", cfg, seed=7)
    second = LabeledPoseDataset(ann_file, tmp_path / "img", cfg, seed=7)
    forward = [first[i] for i in range(4)]
    backward = [second[i] for i in reversed(range(4))][::-1]
    for a, b in zip(forward, backward):
        for key in a:
            assert torch.equal(a[key], b[key]), key
    second.set_epoch(1)
    assert not torch.equal(second[0]["keypoints"], forward[0]["keypoints"])
    other_seed = LabeledPoseDataset(ann_file, tmp_path / "img", cfg, seed=8)
    assert not torch.equal(other_seed[0]["keypoints"], forward[0]["keypoints"])


def test_items_do_not_depend_on_the_worker_count(tmp_path: Path) -> None:
    ann_file = write_coco(tmp_path, [{"bbox": [20 + 30 * i, 30, 60, 120]} for i in range(6)], dot=DOT)
    dataset = UnlabeledPairDataset(ann_file, tmp_path / "img", small_config(), seed=1)
    dataset.set_epoch(2)
    batches = [
        next(iter(DataLoader(dataset, batch_size=6, num_workers=workers, worker_init_fn=loader_worker_init)))
        for workers in (0, 2)
    ]
    for key in batches[0]:
        assert torch.equal(batches[0][key], batches[1][key]), key


def test_target_weight_is_zero_for_unlabeled_and_cropped_out_keypoints(tmp_path: Path) -> None:
    keypoints = {0: (160.0, 60.0, 2), 1: (150.0, 70.0, 1), 2: (10.0, 10.0, 2), 3: (0.0, 0.0, 0)}
    ann_file = write_coco(tmp_path, [{"bbox": BOX, "keypoints": keypoints}])
    dataset = LabeledPoseDataset(ann_file, tmp_path / "img", small_config(), augment=False)
    item = dataset[0]
    weight = item["target_weight"].numpy()
    np.testing.assert_array_equal(weight[:4], [1, 1, 0, 0])
    assert np.all(weight[4:] == 0)
    assert torch.all(item["target"][weight == 0] == 0)
    assert torch.all(item["keypoints"][weight == 0] == 0)
    np.testing.assert_array_equal(item["keypoints"][:2, 2].numpy(), [2, 1])


def test_eval_crop_is_the_padded_box_with_ids_and_scores(tmp_path: Path) -> None:
    people = [{"bbox": BOX, "keypoints": {0: (160.0, 60.0, 2)}}, {"bbox": [10, 10, 50, 50]}]
    ann_file = write_coco(tmp_path, people)
    cfg = small_config()
    dataset = EvalPoseDataset(ann_file, tmp_path / "img", cfg)
    assert len(dataset) == 1
    item = dataset[0]
    center, scale = box_to_center_scale(BOX, cfg.input.aspect_ratio, cfg.input.box_padding)
    np.testing.assert_allclose(item["center"].numpy(), center, rtol=1e-6)
    np.testing.assert_allclose(item["scale"].numpy(), scale, rtol=1e-6)
    assert (int(item["image_id"]), int(item["ann_id"]), float(item["score"])) == (1, 1, 1.0)
    assert float(item["area"]) == pytest.approx(BOX[2] * BOX[3])
    assert len(EvalPoseDataset(ann_file, tmp_path / "img", cfg, min_keypoints=0)) == 2

    detections = tmp_path / "dets.json"
    detections.write_text(
        json.dumps(
            [
                {"image_id": 1, "category_id": 1, "bbox": [30, 40, 50, 100], "score": 0.9},
                {"image_id": 1, "category_id": 1, "bbox": [60, 40, 50, 100], "score": 0.2},
            ]
        )
    )
    from_detections = EvalPoseDataset.from_detections(detections, ann_file, tmp_path / "img", cfg, min_score=0.5)
    assert len(from_detections) == 1
    item = from_detections[0]
    assert int(item["ann_id"]) == -1 and float(item["score"]) == pytest.approx(0.9)


def test_records_skip_crowds_and_sparse_people(tmp_path: Path) -> None:
    people = [
        {"bbox": BOX, "keypoints": {0: (160.0, 60.0, 2), 1: (150.0, 70.0, 2)}},
        {"bbox": BOX, "keypoints": {0: (160.0, 60.0, 2)}},
        {"bbox": BOX, "iscrowd": 1},
        {"bbox": [10, 10, 0, 40]},
    ]
    ann_file = write_coco(tmp_path, people)
    assert [r.ann_id for r in load_person_records(ann_file, tmp_path / "img", min_keypoints=2)] == [1]
    assert [r.ann_id for r in load_person_records(ann_file, tmp_path / "img", min_keypoints=0)] == [1, 2]


def test_bad_input_names_the_file_the_record_and_the_rule(tmp_path: Path) -> None:
    ann_file = write_coco(tmp_path, [{"bbox": BOX, "keypoints": {0: (160.0, 60.0, 2)}}])
    coco = json.loads(ann_file.read_text())
    coco["annotations"][0]["keypoints"] = coco["annotations"][0]["keypoints"][:-3]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(coco))
    with pytest.raises(RecordError, match=r"broken\.json: annotations\[0\] \(id 1\): keypoints must be a list of 51"):
        load_person_records(broken, tmp_path / "img")

    (tmp_path / "img" / "1.png").write_bytes(b"not an image")
    dataset = EvalPoseDataset(ann_file, tmp_path / "img", small_config())
    rule = r"1\.png: image_id 1 \(annotation 1\): the image is missing or cannot be decoded"
    with pytest.raises(RecordError, match=rule):
        dataset[0]


@pytest.mark.parametrize(
    "field,value,rule",
    [
        ("image_id", 99, "image_id 99 is not listed in the images table"),
        ("bbox", [1, 2, float("nan"), 4], "bbox must hold 4 finite numbers"),
        ("bbox", [1, 2, 3], r"bbox must be a list of 4 numbers"),
        ("keypoints", [0.0] * 50 + [3.0], "keypoint visibility must be 0, 1 or 2"),
    ],
)
def test_each_broken_annotation_gets_its_own_rule(tmp_path: Path, field: str, value: object, rule: str) -> None:
    ann_file = write_coco(tmp_path, [{"bbox": BOX}, {"bbox": BOX}])
    coco = json.loads(ann_file.read_text())
    coco["annotations"][1][field] = value
    ann_file.write_text(json.dumps(coco))
    with pytest.raises(RecordError, match=rf"people\.json: annotations\[1\] \(id 2\): {rule}"):
        load_person_records(ann_file, tmp_path / "img")


def test_bad_detection_files_are_reported(tmp_path: Path) -> None:
    ann_file = write_coco(tmp_path, [{"bbox": BOX}])
    detections = tmp_path / "dets.json"
    detections.write_text(json.dumps({"image_id": 1}))
    with pytest.raises(RecordError, match=r"dets\.json: <top level>: detection results are a JSON list"):
        load_detection_records(detections, ann_file, tmp_path / "img")
    detections.write_text(json.dumps([{"image_id": 1, "bbox": BOX}]))
    with pytest.raises(RecordError, match=r"dets\.json: detections\[0\]: a detection needs image_id, bbox and score"):
        load_detection_records(detections, ann_file, tmp_path / "img")
    detections.write_text("[{")
    with pytest.raises(RecordError, match=r"dets\.json: <file>: not valid JSON"):
        load_detection_records(detections, ann_file, tmp_path / "img")


@pytest.mark.shared
def test_coco_mini_loads_every_dataset(coco_mini: Path) -> None:
    ann_file = coco_mini / "annotations" / "person_keypoints_val2017.json"
    images = coco_mini / "val2017"
    coco = json.loads(ann_file.read_text())
    people = [a for a in coco["annotations"] if not a["iscrowd"]]
    labeled = [a for a in people if a["num_keypoints"] >= 1]
    cfg = ExperimentConfig()
    h, w = cfg.input.image_size
    k_h, k_w = cfg.input.heatmap_size
    datasets = {
        "labeled": LabeledPoseDataset(ann_file, images, cfg),
        "unlabeled": UnlabeledPairDataset(ann_file, images, cfg),
        "eval": EvalPoseDataset(ann_file, images, cfg),
    }
    assert len(datasets["labeled"]) == len(datasets["eval"]) == len(labeled)
    assert len(datasets["unlabeled"]) <= len(people) and len(datasets["unlabeled"]) >= len(labeled)
    batches = {name: next(iter(DataLoader(ds, batch_size=4))) for name, ds in datasets.items()}
    assert batches["labeled"]["image"].shape == (4, 3, h, w)
    assert batches["labeled"]["target"].shape == (4, 17, k_h, k_w)
    assert batches["labeled"]["target_weight"].sum() > 0
    assert batches["unlabeled"]["hard"].shape == (4, 3, h, w)
    assert batches["unlabeled"]["easy_to_hard"].shape == (4, 2, 3)
    assert batches["eval"]["image_id"].dtype == torch.int64
    for batch in batches.values():
        for value in batch.values():
            assert torch.isfinite(value.float()).all()
