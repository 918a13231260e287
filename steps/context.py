"""What every step needs from its surroundings: the validated config and a per-run work folder."""

from __future__ import annotations

from pathlib import Path

from components.config import ExperimentConfig


def experiment_config(config: dict) -> ExperimentConfig:
    return ExperimentConfig.model_validate(config)


def run_name() -> str:
    """The ZenML run's name, or "local" when a step function is called outside a pipeline."""
    try:
        from zenml import get_step_context

        return get_step_context().pipeline_run.name
    except RuntimeError:
        return "local"


def run_folder(cfg: ExperimentConfig, name: str) -> Path:
    """runs/<config name>/<run name>: the run's config, figures and results on this machine."""
    path = Path("runs") / cfg.name / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_dir(cfg: ExperimentConfig) -> Path:
    return run_folder(cfg, run_name())
