"""One MLflow run per pipeline run: opened by training, reused by evaluation and registration."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from components.config import ExperimentConfig
from components.registry.mlflow_logger import MLflowMetricLogger
from components.registry.registry import flatten_params, redact, registry_client, resolve_tracking_uri


@contextmanager
def tracked_run(cfg: ExperimentConfig, run_name: str) -> Iterator[MLflowMetricLogger]:
    """Open a run in `cfg.registry.experiment`, log the resolved config, and yield its metric logger.

    The run ends FINISHED when the block completes and FAILED when it raises, so a failed training
    can never be registered later (registration refuses failed runs).
    """
    import yaml

    client = registry_client(resolve_tracking_uri(cfg.registry))
    experiment = client.get_experiment_by_name(cfg.registry.experiment)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(cfg.registry.experiment)
    run = client.create_run(experiment_id, run_name=run_name, tags={"trs_pose.method": cfg.train.method})
    run_id = run.info.run_id
    try:
        tree = redact(cfg.model_dump(mode="json"))
        for key, value in flatten_params(tree).items():
            client.log_param(run_id, key, value)
        client.log_text(run_id, yaml.safe_dump(tree, sort_keys=False), "config/resolved.yaml")
        yield MLflowMetricLogger(run_id, client=client)
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
