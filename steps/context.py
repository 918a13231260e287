"""What every step needs from its surroundings: the validated config and a per-run work folder."""

from __future__ import annotations

from pathlib import Path

from components.config import ExperimentConfig


def experiment_config(config: dict) -> ExperimentConfig:
    return ExperimentConfig.model_validate(config)


def with_trained_keypoints(cfg: ExperimentConfig, trained: ExperimentConfig) -> ExperimentConfig:
    """The run's config with the keypoint set training read from the labels (the checkpoint's)."""
    return cfg.model_copy(update={"keypoints": trained.keypoints})


def run_name() -> str:
    """The ZenML run's name, or "local" when a step function is called outside a pipeline."""
    try:
        from zenml import get_step_context

        return get_step_context().pipeline_run.name
    except RuntimeError:
        return "local"


def beside_entry(ingested: str | Path, kind: str, settings: str) -> Path:
    """A folder for what a step derives from an ingested file (reports, splits), in the cache beside its
    entry: `<cache>/<kind>/<entry>-<settings>`. The entry itself stays exactly what was ingested."""
    entry = Path(ingested).parent
    return entry.parent / kind / f"{entry.name}-{settings}"


def run_folder(cfg: ExperimentConfig, name: str) -> Path:
    """runs/<config name>/<run name>: the run's config, figures and results on this machine."""
    path = Path("runs") / cfg.name / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_dir(cfg: ExperimentConfig) -> Path:
    return run_folder(cfg, run_name())
