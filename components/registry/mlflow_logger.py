"""A MetricLogger that sends training metrics to one MLflow run, batched per step."""

from __future__ import annotations

import math
import re
import time
from typing import Any

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")


def metric_key(name: str) -> str:
    """MLflow accepts letters, digits and `_-. /` in keys; anything else becomes `_`."""
    return _UNSAFE.sub("_", name)


def _as_float(value: Any) -> float | None:
    """Python and numpy numbers and 0-d tensors; None for anything else (strings, lists)."""
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        return None


class MLflowMetricLogger:
    """`log_metrics(metrics, step)` -> one `log_batch` call on `run_id`; non-finite values are skipped
    (MLflow's UI cannot chart them), everything else is cast to float."""

    def __init__(self, run_id: str, client: Any | None = None, prefix: str = "") -> None:
        if client is None:
            from mlflow.tracking import MlflowClient

            client = MlflowClient()
        self.client = client
        self.run_id = run_id
        self.prefix = prefix

    @classmethod
    def for_active_run(cls, prefix: str = "") -> MLflowMetricLogger:
        import mlflow

        run = mlflow.active_run()
        if run is None:
            raise RuntimeError("MLflowMetricLogger.for_active_run needs an active MLflow run (mlflow.start_run())")
        return cls(run.info.run_id, prefix=prefix)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        batch = []
        for name, value in metrics.items():
            number = _as_float(value)
            if number is not None and math.isfinite(number):
                batch.append(Metric(metric_key(self.prefix + name), number, timestamp, int(step)))
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)
