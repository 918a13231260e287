"""One line a pipeline step, as it ends: what it found or made (pipelines/step_reports.py gathers it)."""

from __future__ import annotations

from typing import Any

from pipelines.step_reports import StepReport

LABELS = {
    "ingest_data": "ingest",
    "validate_data": "validate",
    "find_subject_boxes": "boxes",
    "split_data": "split",
    "check_inputs": "inputs",
    "train_model": "train",
    "evaluate_student": "evaluate",
    "register_model": "register",
    "promote_model": "promote",
    "suggest_next_labels": "suggest",
}


def _plural(count: int, noun: str) -> str:
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {noun}{'es' if noun.endswith(('s', 'x', 'ch', 'sh')) else 's'}"


def _people(count: int) -> str:
    return f"{count} {'person' if count == 1 else 'people'}"


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _ingest(outputs: dict[str, Any]) -> str:
    dataset = outputs["dataset"]
    counts = getattr(dataset, "counts", None) or {}
    parts = [
        f"{split} {_plural(c['images'], 'image')}, {_people(c['people'])}"
        for split, c in counts.items()
        if c is not None
    ]
    pool = getattr(dataset, "pool", None)
    if pool:
        files = sum(int(source["files"]) for source in pool["sources"])
        parts.append(f"raw unlabeled {_plural(files, 'image')} from {_plural(len(pool['sources']), 'source')}")
    return "; ".join(parts) or f"dataset {dataset.train_ann}"


def _validate(outputs: dict[str, Any]) -> str:
    report = outputs["validation_report"]
    images = sum(int(stats.get("images", 0)) for stats in report.stats.values())
    people = sum(int(stats.get("annotations", 0)) for stats in report.stats.values())
    verdict = "valid" if report.ok else "INVALID"
    line = f"{verdict}: {_plural(images, 'image')}, {_people(people)} checked, {_plural(report.num_violations, 'violation')}"
    if getattr(report, "keypoints", None):
        line += f"; {len(report.keypoints['names'])} keypoints ({report.keypoints['category']})"
    if getattr(report, "unlabeled_checked", 0):
        skipped = report.unlabeled_checked - report.unlabeled_usable
        line += f"; raw unlabeled {report.unlabeled_usable} usable, {skipped} skipped"
    return line


def _boxes(outputs: dict[str, Any]) -> str:
    boxes = outputs["subject_boxes"]
    source = boxes.provenance.get("box_source", "none")
    return "no raw unlabeled images" if source == "none" else f"{_plural(boxes.count, 'box')} ({source})"


def _split(outputs: dict[str, Any]) -> str:
    counts = outputs["split_manifest"].get("counts", {})

    def images(subset: str) -> int:
        return int(counts.get(subset, {}).get("images", 0))

    line = (
        f"{images('labeled')} labeled / {images('unlabeled')} unlabeled / {images('holdout')} held out "
        "(training images)"
    )
    return line + (f" + {images('pool')} raw unlabeled" if "pool" in counts else "")


def _inputs(outputs: dict[str, Any]) -> str:
    inputs = outputs["inputs"]
    return inputs.reason if inputs.train else f"skipped: {inputs.reason}"


def _train(outputs: dict[str, Any]) -> str:
    training = outputs["training"]
    if getattr(training, "skipped", None):
        return "skipped"
    seconds = getattr(training, "seconds", None)
    took = f" in {_duration(seconds)}" if seconds is not None else ""
    init = getattr(training, "init", "scratch")
    start = "" if init == "scratch" else f" from {init}"
    return f"{_plural(training.step, 'step')}{start}{took}; checkpoint {training.checkpoint_uri}"


def _evaluate(outputs: dict[str, Any]) -> str:
    metrics = outputs["metrics"]
    if getattr(metrics, "skipped", None):
        return "skipped"
    values = metrics.metrics
    return f"AP {values['AP']:.4f}" + (f", AP50 {values['AP50']:.4f}" if "AP50" in values else "")


def _register(outputs: dict[str, Any]) -> str:
    version = outputs["model_version"]
    if getattr(version, "skipped", None):
        return "skipped: nothing registered"
    return f"{version.name} version {version.version} (alias challenger)"


def _suggest(outputs: dict[str, Any]) -> str:
    found = outputs["label_suggestions"]
    if not found.images:
        return "none" if not found.method else f"none ({found.method})"
    top = found.images[0]
    return f"{_plural(len(found.images), 'image')} to label next ({found.method}); first {top['origin']}"


def _promote(outputs: dict[str, Any]) -> str:
    promotion = outputs["promotion"]
    return f"{promotion.decision}: {promotion.reason}"


FORMATS = {
    "ingest_data": _ingest,
    "validate_data": _validate,
    "find_subject_boxes": _boxes,
    "split_data": _split,
    "check_inputs": _inputs,
    "train_model": _train,
    "evaluate_student": _evaluate,
    "register_model": _register,
    "promote_model": _promote,
    "suggest_next_labels": _suggest,
}


def step_line(report: StepReport) -> str:
    """`train: 700 steps in 9.8 min; checkpoint ...`; a step reused from an earlier attempt says so."""
    label = LABELS.get(report.step, report.step)
    try:
        text = FORMATS[report.step](report.outputs)
    except (KeyError, AttributeError, TypeError):  # a step of another shape, or an older artifact
        text = "done"
    reused = " (reused from the earlier attempt)" if report.reused else ""
    return f"{label}{reused}: {text}"
