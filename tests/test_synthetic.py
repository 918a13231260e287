"""Synthetic people: deterministic COCO files whose labels describe what was actually drawn."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from pycocotools.coco import COCO

from components.data.synthetic import generate_dataset, render_scene, writer
from components.data.synthetic.background import Occluder
from components.data.synthetic.body import JointAngles, build_body, camera_rotation, sample_proportions
from components.data.synthetic.person import (
    KEYPOINT_PARTS,
    PARTS_PER_PERSON,
    TRUNK_PARTS,
    PersonPainter,
    Placement,
    sample_appearance,
)
from components.data.synthetic.scene import SceneLayer, render_layers
from components.keypoints import COCO_NAMES, COCO_PERSON

SIZE = (96, 128)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, num_train=12, num_val=4, seed=7, image_size=SIZE, workers=1)
    return root


@pytest.fixture(scope="module")
def scenes() -> list:
    return [render_scene(np.random.default_rng([11, i]), 256, 320) for i in range(120)]


def test_same_seed_gives_identical_bytes_with_and_without_worker_processes(tmp_path, dataset, monkeypatch):
    monkeypatch.setattr(writer, "POOL_THRESHOLD", 1)
    generate_dataset(tmp_path, num_train=12, num_val=4, seed=7, image_size=SIZE, workers=2)
    assert _files(tmp_path) == _files(dataset)


def test_a_rerun_with_another_seed_replaces_files_without_touching_hard_links(tmp_path, dataset):
    root = tmp_path / "data"
    generate_dataset(root, num_train=4, num_val=1, seed=8, image_size=SIZE, workers=1)
    first = root / "train/000000000001.jpg"
    cached = tmp_path / "cached.jpg"
    cached.hardlink_to(first)
    before = cached.read_bytes()
    assert before != (dataset / "train/000000000001.jpg").read_bytes()
    generate_dataset(root, num_train=2, num_val=1, seed=9, image_size=SIZE, workers=1)
    assert sorted(p.name for p in (root / "train").iterdir()) == ["000000000001.jpg", "000000000002.jpg"]
    assert first.read_bytes() != before and cached.read_bytes() == before


def test_annotations_are_consistent_coco(dataset):
    for split, count in (("train", 12), ("val", 4)):
        ann_file = dataset / "annotations" / f"person_keypoints_{split}.json"
        coco = COCO(str(ann_file))
        raw = json.loads(ann_file.read_text())
        assert raw["categories"] == [COCO_PERSON.coco_category()]
        assert len(coco.getImgIds()) == count
        ids = [a["id"] for a in raw["annotations"]]
        assert len(ids) == len(set(ids)) and len(ids) > 0
        for image in raw["images"]:
            pixels = cv2.imread(str(dataset / split / image["file_name"]))
            assert pixels.shape == (image["height"], image["width"], 3) == (*SIZE, 3)
        for ann in raw["annotations"]:
            image = coco.imgs[ann["image_id"]]
            kp = np.array(ann["keypoints"], dtype=float).reshape(17, 3)
            labeled = kp[:, 2] > 0
            assert set(np.unique(kp[:, 2])) <= {0, 1, 2}
            assert ann["num_keypoints"] == labeled.sum() >= 1
            assert ann["iscrowd"] == 0 and ann["area"] > 0
            x, y, w, h = ann["bbox"]
            assert x >= 0 and y >= 0 and w > 0 and h > 0
            assert x + w <= image["width"] + 1e-6 and y + h <= image["height"] + 1e-6
            assert np.all(kp[labeled, 0] >= x) and np.all(kp[labeled, 0] <= x + w)
            assert np.all(kp[labeled, 1] >= y) and np.all(kp[labeled, 1] <= y + h)
            assert np.all(kp[labeled, 0] <= image["width"] - 1) and np.all(kp[labeled, 1] <= image["height"] - 1)
            assert np.all(kp[~labeled, :2] == 0)


def test_visibility_matches_the_rendered_label_map(scenes):
    counts = {0: 0, 1: 0, 2: 0}
    covered_by_others = 0
    for scene in scenes:
        height, width = scene.labels.shape
        for person in scene.people:
            for k, (x, y, v) in enumerate(person.keypoints):
                counts[int(v)] += 1
                if v == 0:
                    continue
                assert 0 <= x <= width - 1 and 0 <= y <= height - 1
                under = scene.labels[int(np.rint(y)), int(np.rint(x))]
                owner, part = under // PARTS_PER_PERSON - 1, under % PARTS_PER_PERSON
                if v == 2:
                    assert owner == person.slot and part in KEYPOINT_PARTS[k], (COCO_NAMES[k], owner, part)
                elif owner != person.slot:
                    covered_by_others += 1
                else:  # hidden by its own body: another limb, the back of the head, or the far side of the trunk
                    assert part not in KEYPOINT_PARTS[k] or k < 5 or part in TRUNK_PARTS
    total = sum(counts.values())
    assert counts[2] / total > 0.4 and counts[1] / total > 0.05 and counts[0] > 0
    assert covered_by_others > 0.02 * total


def _posed(yaw_deg: float):
    """A person standing with arms held out from the sides, so no limb hides another."""
    rng = np.random.default_rng(0)
    pair = lambda deg: np.radians([deg, deg])  # noqa: E731
    angles = JointAngles(
        shoulder_flexion=pair(0),
        shoulder_abduction=pair(35),
        elbow_flexion=pair(10),
        elbow_plane=pair(0),
        hip_flexion=pair(0),
        hip_abduction=pair(8),
        knee_flexion=pair(5),
        trunk_pitch=0.0,
        trunk_bend=0.0,
        trunk_twist=0.0,
        head_yaw=0.0,
        head_pitch=0.0,
    )
    body = build_body(sample_proportions(rng), angles).transformed(camera_rotation(np.radians(yaw_deg), 0.0, 0.0))
    return body, sample_appearance(rng)


def test_visibility_follows_facing_occluders_and_image_borders():
    height, width = 200, 160
    plain = np.full((height, width, 3), 128, np.uint8)
    rng = np.random.default_rng(0)
    front, look = _posed(0.0)
    back, _ = _posed(180.0)
    placement = Placement(pixels_per_unit=160.0, hip_x=80.0, hip_y=110.0)

    facing = render_layers(rng, [SceneLayer(0.0, painter=PersonPainter(front, placement, look))], height, width, plain)
    assert np.all(facing.people[0].keypoints[:, 2] == 2)  # everything shows on a frontal, open pose
    behind = render_layers(rng, [SceneLayer(0.0, painter=PersonPainter(back, placement, look))], height, width, plain)
    assert np.all(behind.people[0].keypoints[[0, 1, 2], 2] == 1)  # the back of the head hides them

    painter = PersonPainter(front, placement, look)
    wrist = painter.keypoints_px[10]  # right wrist
    box = Occluder("box", np.stack([wrist - 6, wrist + 6]), (0.0, 0.0, 0.0), 1.0, 0)
    hidden = render_layers(rng, [SceneLayer(0.0, painter=painter), SceneLayer(1.0, occluder=box)], height, width, plain)
    assert hidden.people[0].keypoints[10, 2] == 1
    assert hidden.people[0].keypoints[9, 2] == 2
    below = render_layers(rng, [SceneLayer(-1.0, occluder=box), SceneLayer(0.0, painter=painter)], height, width, plain)
    assert below.people[0].keypoints[10, 2] == 2  # an object behind the person hides nothing

    side = render_layers(
        rng, [SceneLayer(0.0, painter=PersonPainter(_posed(90.0)[0], placement, look))], height, width, plain
    )
    near, far = side.people[0].keypoints[[6, 5], 2]  # facing image-right shows the right side
    assert (near, far) == (2, 1)

    low = Placement(pixels_per_unit=160.0, hip_x=80.0, hip_y=175.0)  # feet below the bottom edge
    cut = render_layers(rng, [SceneLayer(0.0, painter=PersonPainter(front, low, look))], height, width, plain)
    ankles = cut.people[0].keypoints[15:17]
    assert np.all(ankles[:, 2] == 0) and np.all(ankles[:, :2] == 0)


def test_left_and_right_are_not_told_apart_by_colour(scenes):
    """Paired left-minus-right colour around mirrored joints averages to zero over many people."""
    differences = []
    for scene in scenes:
        image = np.pad(scene.image.astype(np.float64), ((1, 1), (1, 1), (0, 0)), mode="edge")
        for person in scene.people:
            if not person.annotated or person.bbox[3] < 40:
                continue
            for left, right in COCO_PERSON.flip_pairs[2:]:  # shoulders to ankles
                (lx, ly, lv), (rx, ry, rv) = person.keypoints[left], person.keypoints[right]
                if lv == 2 and rv == 2:
                    lp = image[int(ly) : int(ly) + 3, int(lx) : int(lx) + 3].reshape(-1, 3).mean(0)
                    rp = image[int(ry) : int(ry) + 3, int(rx) : int(rx) + 3].reshape(-1, 3).mean(0)
                    differences.append(lp - rp)
    d = np.array(differences)
    assert len(d) > 200
    t_statistic = d.mean(0) / (d.std(0, ddof=1) / np.sqrt(len(d)))
    assert np.all(np.abs(t_statistic) < 3.5), t_statistic


def test_people_vary_in_size_and_facing(scenes):
    heights = np.array([p.bbox[3] for s in scenes for p in s.people if p.annotated])
    assert (heights < 40).mean() > 0.1 and (heights > 150).mean() > 0.05
    eyes = np.array([p.keypoints[1:3, 2] for s in scenes for p in s.people if p.annotated])
    assert ((eyes == 2).all(1)).mean() > 0.1 and ((eyes == 1).all(1)).mean() > 0.1  # faces and backs


def test_cli_writes_coco_layout(tmp_path):
    from cli.data import data

    args = [
        "synth",
        "--out",
        str(tmp_path),
        "--num-images",
        "3",
        "--val-images",
        "1",
        "--height",
        "64",
        "--width",
        "80",
    ]
    result = CliRunner().invoke(data, args)
    assert result.exit_code == 0, result.output
    for split, count in (("train", 3), ("val", 1)):
        raw = json.loads((tmp_path / "annotations" / f"person_keypoints_{split}.json").read_text())
        assert sorted(p.name for p in (tmp_path / split).iterdir()) == sorted(i["file_name"] for i in raw["images"])
        assert len(raw["images"]) == count
