"""Where keypoint errors come from: good, jitter, inversion, swap and miss.

AP says how much is wrong; this says what kind of wrong, after Ronchi and Perona ("Benchmarking
and Error Diagnosis in Multi-Instance Pose Estimation", ICCV 2017). Each prediction is matched to
the free ground-truth person of its image with the highest OKS (greedily, by score; below OKS 0.1
it is a background false positive and matches nobody), and each of that
person's labeled keypoints is put in one bin by its keypoint similarity
ks = exp(-d^2 / (2 * area * (2 * sigma)^2)), COCO's per-keypoint term of OKS:

    good       ks >= 0.85 to its own ground truth
    jitter     0.5 <= ks < 0.85 to its own ground truth
    inversion  ks >= 0.5 to another labeled keypoint of the same person (a wrist called an elbow,
               a left knee called the right one): what Keypoint-Mix is meant to teach away
    swap       ks >= 0.5 to a labeled keypoint of another person in the image
    miss       none of these

The bins are checked in that order and the fractions are over every labeled keypoint of every
matched person; `inversion_left_right` is the part of `inversion` whose nearest other joint is the
mirror twin (left knee for right knee). Ground-truth people that no prediction matched are
counted, not binned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pycocotools.coco import COCO

from components.evaluation.coco_eval import (
    check_keypoint_set,
    checked_results,
    ground_truth_keypoints,
    load_ground_truth,
)
from components.keypoints import KeypointSet

BINS: tuple[str, ...] = ("good", "jitter", "inversion", "swap", "miss")
GOOD_KS, JITTER_KS = 0.85, 0.5
MIN_MATCH_OKS = 0.1


def keypoint_similarity(
    predicted: NDArray[np.float64], truth: NDArray[np.float64], areas: NDArray[np.float64], sigmas: NDArray[np.float64]
) -> NDArray[np.float64]:
    """ks of every predicted keypoint to every ground-truth keypoint: `[P,K,2]` x `[G,K,2]` -> `[P,G,K,K]`.

    Entry [p, g, i, j] compares predicted keypoint i of person p with true keypoint j of person g,
    with keypoint j's sigma and person g's area (COCO's scale).
    """
    squared = ((predicted[:, None, :, None, :] - truth[None, :, None, :, :]) ** 2).sum(-1)
    variances = (2 * sigmas) ** 2
    return np.exp(-squared / (2 * (areas[None, :, None, None] + np.spacing(1)) * variances[None, None, None, :]))


def _match(ks: NDArray[np.float64], labeled: NDArray[np.bool_], scores: NDArray[np.float64]) -> list[tuple[int, int]]:
    """(prediction, person) pairs: by descending score, each prediction takes the free person of highest OKS."""
    own = np.diagonal(ks, axis1=2, axis2=3)  # [P,G,K]
    counts = labeled.sum(1)
    oks = np.where(labeled[None], own, 0.0).sum(-1) / np.maximum(counts, 1)[None]
    oks[:, counts == 0] = -1.0
    pairs, taken = [], np.zeros(ks.shape[1], dtype=bool)
    for p in np.argsort(-scores, kind="stable"):
        candidates = np.where(taken, -1.0, oks[p])
        best = int(np.argmax(candidates))
        if candidates[best] >= MIN_MATCH_OKS:
            taken[best] = True
            pairs.append((int(p), best))
    return pairs


def _bins_of_pair(
    ks: NDArray[np.float64], labeled: NDArray[np.bool_], p: int, g: int, flip_index: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """Bin index (into BINS) of each of the K keypoints of person g as predicted by p, and whether
    each one's nearest other joint of the person is its mirror twin (through the set's flip pairs)."""
    num_keypoints = len(flip_index)
    own = np.diagonal(ks[p, g])
    to_other_parts = np.where(labeled[g][None, :] & ~np.eye(num_keypoints, dtype=bool), ks[p, g], 0.0)
    other_part = to_other_parts.max(1)
    nearest_is_mirror = (to_other_parts.argmax(1) == flip_index) & (np.arange(num_keypoints) != flip_index)
    others = np.delete(ks[p], g, axis=0)  # [G-1,K,K]
    other_labeled = np.delete(labeled, g, axis=0)
    other_person = (
        np.where(other_labeled[:, None, :], others, 0.0).max(axis=(0, 2)) if len(others) else np.zeros(num_keypoints)
    )
    bins = np.select(
        [own >= GOOD_KS, own >= JITTER_KS, other_part >= JITTER_KS, other_person >= JITTER_KS],
        [0, 1, 2, 3],
        default=4,
    )
    return bins, nearest_is_mirror


@dataclass(frozen=True)
class PersonMatch:
    """A ground-truth person with labeled keypoints and the prediction matched to it, if any."""

    ann_id: int
    image_id: int
    oks: float  # over its labeled keypoints; 0 when no prediction matched it
    prediction: Mapping[str, Any] | None


@dataclass(frozen=True)
class KeypointOutcomes:
    """Every labeled keypoint of every matched person: its joint, bin and similarity to its truth."""

    joint: NDArray[np.int64]
    bin: NDArray[np.int64]
    similarity: NDArray[np.float64]
    left_right: NDArray[np.bool_]  # an inversion onto the mirror twin
    people: list[PersonMatch]
    keypoints: KeypointSet

    def counts_per_joint(self) -> NDArray[np.int64]:
        """`[K, len(BINS)]` keypoint counts."""
        k = self.keypoints.num_keypoints
        flat = np.bincount(self.joint * len(BINS) + self.bin, minlength=k * len(BINS))
        return flat.reshape(k, len(BINS))


def keypoint_outcomes(
    ann: str | Path | Mapping[str, Any] | COCO,
    results: str | Path | Sequence[Mapping[str, Any]],
    keypoints: KeypointSet | None = None,
) -> KeypointOutcomes:
    """Match predictions to people (see the module doc) and bin each labeled keypoint of a matched person.

    Similarities use the sigmas of `keypoints` (default: the ground truth's set), inversions its flip pairs."""
    gt = load_ground_truth(ann)
    if keypoints is None:
        keypoints = ground_truth_keypoints(gt)
    else:
        check_keypoint_set(gt, keypoints)
    k, sigmas, flip_index = keypoints.num_keypoints, keypoints.oks_sigmas, keypoints.flip_index
    by_image: dict[int, list[Mapping[str, Any]]] = {}
    for record in checked_results(results, gt, k):
        by_image.setdefault(int(record["image_id"]), []).append(record)
    joints, bins, similarities, left_right = [], [], [], []
    people: list[PersonMatch] = []
    for image_id in gt.getImgIds():
        anns = [a for a in gt.loadAnns(gt.getAnnIds(imgIds=image_id, iscrowd=False)) if a.get("num_keypoints", 0) > 0]
        if not anns:
            continue
        truth = np.asarray([a["keypoints"] for a in anns], dtype=np.float64).reshape(len(anns), k, 3)
        labeled = truth[..., 2] > 0
        areas = np.asarray([a["area"] for a in anns], dtype=np.float64)
        predictions = by_image.get(image_id, [])
        matched: dict[int, tuple[int, float]] = {}
        if predictions:
            predicted = np.asarray([r["keypoints"] for r in predictions], dtype=np.float64).reshape(
                len(predictions), k, 3
            )
            ks = keypoint_similarity(predicted[..., :2], truth[..., :2], areas, sigmas)
            for p, g in _match(ks, labeled, np.asarray([r["score"] for r in predictions], dtype=np.float64)):
                pair_bins, nearest_is_mirror = _bins_of_pair(ks, labeled, p, g, flip_index)
                own = np.diagonal(ks[p, g])
                keep = labeled[g]
                joints.append(np.flatnonzero(keep))
                bins.append(pair_bins[keep])
                similarities.append(own[keep])
                left_right.append(((pair_bins == BINS.index("inversion")) & nearest_is_mirror)[keep])
                matched[g] = (p, float(own[keep].mean()))
        for g, record in enumerate(anns):
            p, oks = matched.get(g, (-1, 0.0))
            people.append(PersonMatch(int(record["id"]), image_id, oks, predictions[p] if p >= 0 else None))

    def joined(parts: list[NDArray[Any]], dtype: type) -> NDArray[Any]:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    return KeypointOutcomes(
        joined(joints, np.int64),
        joined(bins, np.int64),
        joined(similarities, np.float64),
        joined(left_right, np.bool_),
        people,
        keypoints,
    )


def error_breakdown(
    ann: str | Path | Mapping[str, Any] | COCO,
    results: str | Path | Sequence[Mapping[str, Any]],
    keypoints: KeypointSet | None = None,
) -> dict[str, float | int]:
    """Fractions of labeled keypoints in each bin of BINS and `inversion_left_right`, plus the
    counts `keypoints`, `people` and `unmatched_people`."""
    outcomes = keypoint_outcomes(ann, results, keypoints)
    counts = np.bincount(outcomes.bin, minlength=len(BINS))
    total = int(counts.sum())
    fractions = {name: (float(c) / total if total else 0.0) for name, c in zip(BINS, counts)}
    fractions["inversion_left_right"] = int(outcomes.left_right.sum()) / total if total else 0.0
    people = len(outcomes.people)
    unmatched = sum(person.prediction is None for person in outcomes.people)
    return {**fractions, "keypoints": total, "people": people, "unmatched_people": unmatched}
