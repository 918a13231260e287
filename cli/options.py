"""Options shared by the commands that take an experiment config."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from cli.errors import CONFIG_ERROR_EXIT, UserError
from components.config import ConfigError, ExperimentConfig, load_config


def config_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """`--config FILE` and repeatable `--set section.field=value` overrides."""
    function = click.option(
        "--set",
        "overrides",
        multiple=True,
        metavar="KEY=VALUE",
        help="Override a config field, e.g. --set train.iterations=200 (repeatable; values are YAML).",
    )(function)
    return click.option(
        "--config",
        "config_path",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        help="Experiment YAML (see configs/). Defaults apply where it is silent.",
    )(function)


def resolve_config(config_path: str | None, overrides: tuple[str, ...]) -> ExperimentConfig:
    try:
        return load_config(config_path, list(overrides))
    except ConfigError as exc:
        raise UserError(str(exc), CONFIG_ERROR_EXIT) from exc
