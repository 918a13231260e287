"""`trs-pose k8s render` and `trs-pose schedule`: the training workloads as Kubernetes manifests."""

from __future__ import annotations

import click

from cli.options import config_options, resolve_config
from components.config import ExperimentConfig

KINDS = ("job", "trainjob", "pytorchjob", "cronjob", "all")


def check_cron(expression: str) -> str:
    """--cron checked field by field (components/kubernetes/manifests.py) before anything is rendered."""
    from components.config import ConfigError
    from components.kubernetes.manifests import check_cron as checked

    try:
        return checked(expression)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--cron") from exc


def warn_about_data_root(cfg: ExperimentConfig) -> None:
    from components.kubernetes.manifests import data_root_warning

    warning = data_root_warning(cfg)
    if warning:
        click.echo(f"warning: {warning}", err=True)


@click.group()
def k8s() -> None:
    """Render the Kubernetes manifests for training (Job, TrainJob, PyTorchJob, CronJob)."""


@k8s.command("render")
@config_options
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    default=None,
    help="Which workload to print [default: backend.kubernetes.engine, i.e. the one the launcher submits]. "
    "The others: job (batch/v1 Job), trainjob (Kubeflow Trainer v2), pytorchjob (Training Operator v1), "
    "cronjob (scheduled retraining); all prints every one, for reading, not for `kubectl create` "
    "(three trainings would write the same checkpoints).",
)
@click.option("--run-id", default=None, help="Name of the run (Job name and S3 prefix); default: name-time-confighash.")
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Write <kind>.yaml files here (GitOps, or regenerating k8s/base) instead of printing.",
)
def render_command(
    config_path: str | None, overrides: tuple[str, ...], kind: str | None, run_id: str | None, out_dir: str | None
) -> None:
    """Print the training workload as YAML, ready for `kubectl create -f -` (one workload unless --kind all).

    The config travels inside each workload (a pod annotation mounted as /etc/trs-pose/config.yaml);
    checkpoints go to s3://<storage.bucket>/<backend.kubernetes.run_prefix>/<run id>/ with resume on.
    """
    from pathlib import Path

    from components.kubernetes.manifests import render, to_yaml

    cfg = resolve_config(config_path, overrides)
    kind = kind or cfg.backend.kubernetes.engine
    warn_about_data_root(cfg)
    manifests = render(cfg, kind, run_id)  # type: ignore[arg-type]
    if out_dir is None:
        click.echo(to_yaml(manifests), nl=False)
        return
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    words = [
        "trs-pose k8s render",
        f"--kind {kind}",
        f"--run-id {manifests[0]['metadata']['labels'].get('trs-pose.io/run-id', run_id)}",
    ]
    words += [f"--config {config_path}"] if config_path else []
    words += [f"--set '{override}'" for override in overrides]
    source = " ".join(words)
    for manifest in manifests:
        target = Path(out_dir) / f"{manifest['kind'].lower()}.yaml"
        target.write_text(f"# Rendered by `{source}`; regenerate rather than hand-edit.\n" + to_yaml([manifest]))
        click.echo(f"wrote {target}", err=True)


@click.command()
@config_options
@click.option(
    "--cron",
    "cron",
    default=None,
    help="Cron schedule in UTC, e.g. '0 3 * * 0' (Sundays 03:00) [default: backend.kubernetes.schedule].",
)
@click.option(
    "--apply", "apply_", is_flag=True, help="Create or update the CronJob in the cluster of the current kubeconfig."
)
@click.option(
    "--always",
    is_flag=True,
    help="Train on every tick; by default a run whose inputs a registered version already has stops after the split.",
)
def schedule(config_path: str | None, overrides: tuple[str, ...], cron: str | None, apply_: bool, always: bool) -> None:
    """Render the scheduled-retraining CronJob; with --apply, create or update it in the cluster.

    --config is required: it says what is retrained (without it the defaults would retrain on a
    synthetic toy set every week). The CronJob's pod runs the whole pipeline (`trs-pose run`) with
    backend.kind=kubernetes, so its train step submits the GPU Job. It runs `trs-pose run --if-changed`:
    unchanged labels, unlabeled sources and recipe end the run after the split ("nothing new since vN"),
    with nothing registered and no GPU used; --always trains every time. It needs the RBAC in k8s/base
    (ServiceAccount trs-pose-launcher).

    \b
    trs-pose schedule --config configs/coco_1k.yaml --cron "0 3 * * 0"
    """
    from components.kubernetes.manifests import render_cronjob, to_yaml

    if config_path is None:
        raise click.UsageError(
            "--config is required: it names the data and model to retrain (e.g. --config configs/coco_1k.yaml)"
        )
    schedule_text = check_cron(cron) if cron is not None else None
    cfg = resolve_config(config_path, overrides)
    warn_about_data_root(cfg)
    manifest = render_cronjob(cfg, schedule_text, always=always)
    click.echo(to_yaml([manifest]), nl=False)
    if apply_:
        action = apply_cronjob(manifest)
        click.echo(f"# {action} CronJob {manifest['metadata']['namespace']}/{manifest['metadata']['name']}", err=True)


def apply_cronjob(manifest: dict) -> str:
    """Create the CronJob, or replace it when it already exists; a clear error when no cluster answers."""
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException
    from urllib3.exceptions import HTTPError

    try:
        config.load_kube_config()
    except Exception as exc:  # no kubeconfig, no context: nothing to apply to
        raise click.ClickException(f"no cluster reachable: cannot load a kubeconfig ({exc})") from exc
    from components.kubernetes.launcher import API_TIMEOUT

    api = client.BatchV1Api()
    namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    try:
        try:
            api.create_namespaced_cron_job(namespace, manifest, _request_timeout=API_TIMEOUT)
            return "created"
        except ApiException as exc:
            if exc.status != 409:
                raise
            api.replace_namespaced_cron_job(name, namespace, manifest, _request_timeout=API_TIMEOUT)
            return "updated"
    except ApiException as exc:
        raise click.ClickException(
            f"the API server refused the CronJob {namespace}/{name}: {exc.status} {exc.reason}: {exc.body}"
        ) from exc
    except HTTPError as exc:
        host = client.Configuration.get_default_copy().host
        raise click.ClickException(
            f"no cluster reachable at {host}: {exc}; check the current context of your kubeconfig"
        ) from exc
