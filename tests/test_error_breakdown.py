"""Error breakdown on hand-made people: each planted mistake lands in its own bin."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from components.evaluation.coco_eval import ResultsError
from components.evaluation.error_breakdown import BINS, error_breakdown, keypoint_outcomes
from components.keypoints import COCO_PERSON
from tests.tiny_coco import person_annotation

SPACING, AREA = 60.0, 10_000.0  # joints 60 px apart: ks to a neighbour is ~0 for every sigma


def person(ann_id: int, image_id: int, row: float) -> dict[str, Any]:
    keypoints = [v for i in range(COCO_PERSON.num_keypoints) for v in (SPACING * i, row, 2)]
    return person_annotation(ann_id, image_id, keypoints, [0, row - 50, 1000, 100], AREA)


@pytest.fixture
def ground_truth() -> dict[str, Any]:
    first, second, elsewhere = person(1, 1, 0.0), person(2, 1, 500.0), person(3, 2, 0.0)
    second["keypoints"][2] = 0  # an unlabeled nose is never binned
    second["num_keypoints"] = COCO_PERSON.num_keypoints - 1
    return {
        "images": [{"id": 1, "width": 1100, "height": 600}, {"id": 2, "width": 1100, "height": 600}],
        "annotations": [first, second, elsewhere],
        "categories": [COCO_PERSON.coco_category()],
    }


def prediction(ann: dict[str, Any], score: float) -> dict[str, Any]:
    return {"image_id": ann["image_id"], "category_id": 1, "keypoints": list(ann["keypoints"]), "score": score}


def move(record: dict[str, Any], keypoint: int, x: float, y: float) -> None:
    record["keypoints"][3 * keypoint : 3 * keypoint + 2] = [x, y]


def test_each_planted_error_lands_in_its_bin(ground_truth: dict[str, Any]) -> None:
    first, second, _ = ground_truth["annotations"]
    flawed = prediction(first, 0.9)
    move(flawed, 9, SPACING * 7, 0.0)  # left wrist on the same person's left elbow: inversion
    move(flawed, 14, SPACING * 13, 0.0)  # right knee on the left knee: a left/right inversion
    move(flawed, 10, SPACING * 10, 500.0)  # right wrist on the other person's right wrist: swap
    move(flawed, 11, SPACING * 11 + 18.0, 0.0)  # left hip 18 px off: ks = exp(-324 / 916) = 0.70, jitter
    move(flawed, 12, SPACING * 12, 250.0)  # right hip far from everyone: miss
    exact = prediction(second, 0.8)
    got = error_breakdown(ground_truth, [exact, flawed])
    assert got["keypoints"] == 2 * COCO_PERSON.num_keypoints - 1
    assert got["people"] == 3 and got["unmatched_people"] == 1  # nothing predicted in image 2
    total = got["keypoints"]
    assert got["good"] == pytest.approx((total - 5) / total)
    assert got["inversion"] == pytest.approx(2 / total)
    assert got["inversion_left_right"] == pytest.approx(1 / total)  # the knee; wrist-on-elbow is not
    for name in ("jitter", "swap", "miss"):
        assert got[name] == pytest.approx(1 / total), name


def test_the_higher_score_takes_the_person_and_a_duplicate_matches_nobody(ground_truth: dict[str, Any]) -> None:
    first = ground_truth["annotations"][0]
    wrong = prediction(first, 0.95)
    for k in range(COCO_PERSON.num_keypoints // 2 + 1):  # most joints far off, but still the best match for person 1
        move(wrong, k, SPACING * k, 200.0)
    right = prediction(first, 0.5)
    got = error_breakdown(ground_truth, [wrong, right])
    assert got["miss"] > 0.4  # the wrong one was binned, the exact one found person 1 taken
    assert got["unmatched_people"] == 2  # person 2 (its best match is taken) and image 2's person


def test_a_broken_record_names_its_rule(ground_truth: dict[str, Any]) -> None:
    broken = prediction(ground_truth["annotations"][0], 1.0)
    broken["keypoints"] = broken["keypoints"][:-3]
    with pytest.raises(ResultsError, match="record 0: rule 'keypoints holds 17"):
        error_breakdown(copy.deepcopy(ground_truth), [broken])


def test_outcomes_keep_each_planted_error_on_its_joint_and_each_person_its_oks(ground_truth: dict[str, Any]) -> None:
    first, second, _ = ground_truth["annotations"]
    flawed = prediction(first, 0.9)
    move(flawed, 9, SPACING * 7, 0.0)  # left wrist on the left elbow: inversion
    move(flawed, 12, SPACING * 12, 250.0)  # right hip far from everyone: miss
    outcomes = keypoint_outcomes(ground_truth, [prediction(second, 0.8), flawed])
    counts = outcomes.counts_per_joint()
    assert counts.shape == (COCO_PERSON.num_keypoints, len(BINS)) and counts.sum() == 2 * COCO_PERSON.num_keypoints - 1
    assert counts[9, BINS.index("inversion")] == 1 and counts[12, BINS.index("miss")] == 1
    assert counts[0].sum() == 1  # the second person's nose is unlabeled
    oks = {person.ann_id: person.oks for person in outcomes.people}
    assert oks[2] == pytest.approx(1.0) and oks[3] == 0.0  # exact; nothing predicted in image 2
    assert oks[1] == pytest.approx(outcomes.similarity[: COCO_PERSON.num_keypoints].mean())
    assert [p.prediction is None for p in outcomes.people] == [False, False, True]
