"""The training pipeline: ingest -> validate -> boxes -> split -> train -> evaluate -> register -> promote."""

from __future__ import annotations

from zenml import pipeline

from steps.detect import find_subject_boxes
from steps.evaluate import evaluate_student
from steps.ingest import ingest_data
from steps.promote import promote_model
from steps.register import register_model
from steps.split import split_data
from steps.train import train_model
from steps.validate import validate_data


@pipeline(enable_cache=True)
def training(config: dict) -> None:
    """`config` is the resolved ExperimentConfig as JSON; every step validates it again."""
    dataset = ingest_data(config)
    validation = validate_data(dataset, config["keypoints"], config["data"])
    boxes, _records = find_subject_boxes(dataset, validation, config["data"])
    split, _manifest = split_data(dataset, validation, boxes, config["data"])
    trained = train_model(split, config)
    metrics = evaluate_student(trained, split, config)
    version = register_model(trained, metrics, split, config)
    promote_model(version, config)
