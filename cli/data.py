"""`trs-pose data ...`: synthetic data, ingestion, validation and splits."""

from __future__ import annotations

import click


@click.group()
def data() -> None:
    """Make, ingest, validate and split COCO-format keypoint data."""
