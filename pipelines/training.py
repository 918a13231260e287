"""The training pipeline: ingest -> validate -> boxes -> split -> inputs -> train -> evaluate -> register ->
promote -> suggest. With `if_changed`, a run whose inputs a registered version already has stops after
`inputs`: the later steps do nothing and the run is tagged skipped."""

from __future__ import annotations

from zenml import pipeline

from steps.detect import find_subject_boxes
from steps.evaluate import evaluate_student
from steps.ingest import ingest_data
from steps.inputs import check_inputs
from steps.promote import promote_model
from steps.register import register_model
from steps.split import split_data
from steps.suggest import suggest_next_labels
from steps.train import train_model
from steps.validate import validate_data


@pipeline(enable_cache=True)
def training(config: dict, if_changed: bool = False) -> None:
    """`config` is the resolved ExperimentConfig as JSON; every step validates it again."""
    dataset = ingest_data(config)
    validation = validate_data(dataset, config["keypoints"], config["data"])
    boxes, _records = find_subject_boxes(dataset, validation, config["data"])
    split, manifest = split_data(dataset, validation, boxes, config["data"])
    inputs = check_inputs(dataset, manifest, config, if_changed)
    trained = train_model(split, inputs, config)
    metrics = evaluate_student(trained, split, config)
    version = register_model(trained, metrics, split, inputs, config)
    promote_model(version, config)
    suggest_next_labels(trained, split, config, after=["promote_model"])
