"""Keypoint AP/AR with pycocotools, the way the field reports it: OKS with the keypoint set's sigmas.

The set comes from the caller (a model's) or from the ground truth's keypoint category; COCO's 17
person keypoints keep COCO's sigmas. A set whose sigmas were defaulted (components/keypoints.py)
gets a warning at every evaluation: its AP depends on them. Results are checked before pycocotools
sees them: it fails on a bad record with an unhelpful `KeyError` or a numpy broadcast error, or
silently scores it as a miss.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from components.config import KeypointsConfig
from components.errors import TrsPoseError
from components.keypoints import (
    COCO_PERSON,
    DEFAULT_SIGMA,
    KeypointSet,
    KeypointSetError,
    category_names,
    differences,
    keypoint_category,
)

LOG = logging.getLogger("trs_pose.evaluation")

# The order of COCOeval.stats for iouType="keypoints".
METRIC_NAMES: tuple[str, ...] = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


class ResultsError(TrsPoseError, ValueError):
    """A keypoint results file or list that breaks COCO's results format; names the record and rule."""


class AnnotationsError(TrsPoseError, ValueError):
    """A ground-truth annotation file that cannot be evaluated against."""


def load_ground_truth(ann: str | Path | Mapping[str, Any] | COCO) -> COCO:
    """A pycocotools COCO index from a file path, a parsed COCO dict or an existing index (reused as is)."""
    if isinstance(ann, COCO):
        return ann
    if isinstance(ann, Mapping):
        source, dataset = "<annotation dict>", copy.deepcopy(dict(ann))
    else:
        source = str(ann)
        try:
            dataset = json.loads(Path(ann).read_text())
        except FileNotFoundError as exc:
            raise AnnotationsError(f"{source}: annotation file not found") from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise AnnotationsError(f"{source}: not valid JSON: {exc}") from exc
    if not isinstance(dataset, dict):
        raise AnnotationsError(f"{source}: a COCO file is a JSON object, got {type(dataset).__name__}")
    for key in ("images", "annotations"):
        if not isinstance(dataset.get(key), list):
            raise AnnotationsError(f"{source}: missing the {key!r} list required by COCO's format")
    dataset.setdefault("categories", [COCO_PERSON.coco_category()])
    coco = COCO()
    coco.source = source  # named in keypoint-set errors
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def load_results(path: str | Path) -> list[dict[str, Any]]:
    """A COCO keypoint results JSON file (a list of records)."""
    try:
        results = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise ResultsError(f"{path}: results file not found") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(results, list):
        raise ResultsError(f"{path}: a results file must hold a JSON list of records, got {type(results).__name__}")
    return results


def ground_truth_keypoints(gt: COCO, options: KeypointsConfig | None = None) -> KeypointSet:
    """The keypoint set of the ground truth's keypoint category, completed with `options` (sigmas, ...)."""
    from components.data.keypoint_category import keypoints_from_category

    source = getattr(gt, "source", "the annotations")
    try:
        category = keypoint_category(list(gt.dataset.get("categories", [])), source)
        return keypoints_from_category(options or KeypointsConfig(), category, source).keypoint_set()
    except KeypointSetError as exc:
        raise AnnotationsError(str(exc)) from None


def check_keypoint_set(gt: COCO, keypoints: KeypointSet) -> None:
    """Refuse ground truth of another keypoint set than `keypoints` (a model's), with one line."""
    source = getattr(gt, "source", "the annotations")
    try:
        names = category_names(keypoint_category(list(gt.dataset.get("categories", [])), source), source)
    except KeypointSetError as exc:
        raise AnnotationsError(str(exc)) from None
    problem = differences(keypoints, names)
    if problem is not None:
        raise AnnotationsError(f"{source}: its keypoints are not the model's {keypoints.summary()}: {problem}")


def check_results(
    results: Sequence[Mapping[str, Any]], gt: COCO, source: str = "results", num_keypoints: int | None = None
) -> None:
    """Raise ResultsError on the first record pycocotools would mis-handle."""
    image_ids = set(gt.getImgIds())
    category_ids = set(gt.getCatIds())
    if num_keypoints is None:
        num_keypoints = ground_truth_keypoints(gt).num_keypoints
    expected_values = num_keypoints * 3
    for index, record in enumerate(results):
        where = f"{source}: record {index}"
        if not isinstance(record, Mapping):
            raise ResultsError(f"{where}: rule 'record is an object': got {type(record).__name__}")
        for field in ("image_id", "category_id", "keypoints", "score"):
            if field not in record:
                raise ResultsError(f"{where}: rule 'has field {field}': the field is missing")
        if record["image_id"] not in image_ids:
            raise ResultsError(
                f"{where}: rule 'image_id is in the ground truth': image_id {record['image_id']!r} is not an image "
                "of the annotation file"
            )
        if record["category_id"] not in category_ids:
            raise ResultsError(
                f"{where}: rule 'category_id is in the ground truth': category_id {record['category_id']!r} "
                f"is not one of {sorted(category_ids)}"
            )
        keypoints = record["keypoints"]
        if not isinstance(keypoints, (list, tuple)) or len(keypoints) != expected_values:
            count = len(keypoints) if isinstance(keypoints, (list, tuple)) else type(keypoints).__name__
            raise ResultsError(
                f"{where}: rule 'keypoints holds {num_keypoints} (x, y, v) triples = {expected_values} numbers': "
                f"got {count}"
            )
        if not all(_is_finite_number(value) for value in keypoints):
            raise ResultsError(f"{where}: rule 'keypoints are finite numbers': found a non-number, NaN or inf")
        if not _is_finite_number(record["score"]):
            raise ResultsError(f"{where}: rule 'score is a finite number': got {record['score']!r}")


def checked_results(
    results: Sequence[Mapping[str, Any]] | str | Path, gt: COCO, num_keypoints: int | None = None
) -> list[dict[str, Any]]:
    """The records of a results file (or a list of them), checked against `gt` by `check_results`."""
    if isinstance(results, (str, Path)):
        records = load_results(results)
        check_results(records, gt, str(results), num_keypoints)
        return records
    records = [dict(record) for record in results]
    check_results(records, gt, num_keypoints=num_keypoints)
    return records


def coco_keypoint_eval(
    ann: str | Path | Mapping[str, Any] | COCO,
    results: Sequence[Mapping[str, Any]] | str | Path,
    image_ids: Iterable[int] | None = None,
    verbose: bool = False,
    keypoints: KeypointSet | None = None,
    warn_default_sigmas: bool = True,
) -> dict[str, float]:
    """AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl (floats in [0, 1]) of keypoint results.

    OKS uses the sigmas of `keypoints` (a model's set: ground truth of another set is refused), or of
    the ground truth's own keypoint category. Only that category is scored. `image_ids` restricts
    evaluation to those images (default: every image of the annotations). An empty results list
    scores 0 everywhere. A metric pycocotools leaves undefined (-1, e.g. APm with no medium-sized
    people) is reported as 0.0 so the figures stay in [0, 1]. pycocotools' console output appears
    only with `verbose`. `warn_default_sigmas=False` is for scores no one reads as figures (the
    reviewer's ranking of its snapshots), so a run warns at its evaluations, not every 50 steps.
    """
    gt = load_ground_truth(ann)
    if keypoints is None:
        keypoints = ground_truth_keypoints(gt)
    else:
        check_keypoint_set(gt, keypoints)
    if keypoints.sigma_source == "default" and warn_default_sigmas:
        LOG.warning(
            "the OKS sigmas of these %d keypoints are defaults (COCO's for COCO's names, else %.4f): AP depends "
            "on them; set keypoints.sigmas for figures comparable with other work",
            keypoints.num_keypoints,
            DEFAULT_SIGMA,
        )
    records = checked_results(results, gt, keypoints.num_keypoints)
    if not records:
        return {name: 0.0 for name in METRIC_NAMES}
    # loadRes recomputes area and bbox on the dicts it is given; hand it copies, not the caller's
    records = [dict(record, keypoints=[float(v) for v in record["keypoints"]]) for record in records]
    sink: contextlib.AbstractContextManager = (
        contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    )
    with sink:
        predictions = gt.loadRes(records)
        evaluator = COCOeval(gt, predictions, iouType="keypoints")
        evaluator.params.kpt_oks_sigmas = keypoints.oks_sigmas
        evaluator.params.catIds = [keypoints.category_id]
        if image_ids is not None:
            evaluator.params.imgIds = sorted(set(image_ids))
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: max(0.0, float(value)) for name, value in zip(METRIC_NAMES, evaluator.stats, strict=True)}


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
