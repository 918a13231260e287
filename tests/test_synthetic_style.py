"""Scene styles: `easy` poses a smaller problem than `standard`, and a stale synthetic set is redrawn."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from components.config import load_config
from components.data.prepare import synthesise_if_missing
from components.data.synthetic import STYLES, generate_dataset, render_scene
from components.data.synthetic.background import OCCLUDER_LABEL
from components.data.synthetic.folder import NotOurFolderError
from components.data.synthetic.person import face_facing
from components.data.synthetic.scene import sample_layers

HEIGHT, WIDTH = 256, 320


def _scenes(style: str, count: int = 40) -> list:
    return [render_scene(np.random.default_rng([3, i]), HEIGHT, WIDTH, STYLES[style]) for i in range(count)]


def test_easy_scenes_hold_one_or_two_large_unoccluded_people():
    easy, standard = _scenes("easy"), _scenes("standard")
    assert all(1 <= len(scene.people) <= 2 for scene in easy)
    assert max(len(scene.people) for scene in standard) > 2
    assert not any((scene.labels == OCCLUDER_LABEL).any() for scene in easy)
    assert any((scene.labels == OCCLUDER_LABEL).any() for scene in standard)

    def median_height(scenes: list) -> float:
        return float(np.median([p.bbox[3] for s in scenes for p in s.people if p.annotated]))

    assert median_height(easy) > 1.5 * median_height(standard)


def test_most_easy_people_face_the_camera_and_standard_people_face_any_way():
    def nose_facing_share(style: str) -> float:
        layers = [
            layer
            for i in range(100)
            for layer in sample_layers(np.random.default_rng([5, i]), HEIGHT, WIDTH, STYLES[style])
            if layer.painter is not None
        ]
        return float(np.mean([face_facing(layer.painter.body)[0] for layer in layers]))

    assert nose_facing_share("easy") > 0.75  # the body within +-75 degrees, the head turns on top
    assert 0.35 < nose_facing_share("standard") < 0.65


def test_easy_people_stand_inside_the_frame():
    def outside_share(style: str) -> float:
        visibility = np.concatenate([p.keypoints[:, 2] for scene in _scenes(style) for p in scene.people])
        return float((visibility == 0).mean())

    assert outside_share("easy") < 0.02
    assert outside_share("standard") > 0.08


def test_the_style_is_recorded_and_an_unknown_style_is_refused(tmp_path):
    summary = generate_dataset(tmp_path, 3, 1, seed=2, image_size=(96, 128), workers=1, style="easy")
    info = json.loads(summary.annotation_files["train"].read_text())["info"]
    assert info["style"] == "easy" and info["seed"] == 2 and info["images"] == 3 and info["image_size"] == [96, 128]
    with pytest.raises(ValueError, match="unknown synthetic style 'hard'"):
        generate_dataset(tmp_path / "other", 3, 1, style="hard")


def _data_cfg(root, style: str, images: int = 3):
    return load_config(
        None,
        [
            f"data.root={root}",
            f"data.synthetic.num_train_images={images}",
            "data.synthetic.num_val_images=1",
            "data.synthetic.image_size=[96, 128]",
            f"data.synthetic.style={style}",
        ],
    ).data


def test_a_synthetic_set_drawn_with_other_settings_is_redrawn_and_a_matching_one_kept(tmp_path):
    root = tmp_path / "synthetic"
    assert synthesise_if_missing(_data_cfg(root, "standard")) is True
    assert synthesise_if_missing(_data_cfg(root, "standard")) is False
    assert synthesise_if_missing(_data_cfg(root, "easy")) is True
    train = json.loads((root / "annotations/person_keypoints_train.json").read_text())
    assert train["info"]["style"] == "easy"
    assert synthesise_if_missing(_data_cfg(root, "easy", images=4)) is True
    assert len(list((root / "train").glob("*.jpg"))) == 4


def test_a_users_own_data_is_never_overwritten(tmp_path):
    drawn = tmp_path / "drawn"
    generate_dataset(drawn, 2, 1, seed=0, image_size=(96, 128), workers=1)
    root = tmp_path / "mine"  # the same layout and files, but not a folder trs-pose drew into
    shutil.copytree(drawn, root, ignore=shutil.ignore_patterns(".trs-pose-synthetic.json"))
    for split in ("train", "val"):
        path = root / "annotations" / f"person_keypoints_{split}.json"
        coco = json.loads(path.read_text())
        coco["info"] = {"description": "my own labels"}
        path.write_text(json.dumps(coco))
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert synthesise_if_missing(_data_cfg(root, "easy")) is False
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    with pytest.raises(NotOurFolderError, match="never written to"):
        generate_dataset(root, 2, 1, seed=1, workers=1)
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
