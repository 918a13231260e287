"""Where training metrics go: a small protocol that MLflow (registry/run_logging.py) and tests satisfy."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class MetricLogger(Protocol):
    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...


class NullLogger:
    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        return None
