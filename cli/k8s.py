"""`trs-pose k8s render` and `trs-pose schedule`: the training workloads as Kubernetes manifests."""

from __future__ import annotations

import re

import click

from cli.options import config_options, resolve_config

KINDS = ("job", "trainjob", "pytorchjob", "cronjob", "all")
CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,\-?]+$")


def check_cron(expression: str) -> str:
    """Five fields or a macro; the API server has the final word, this catches typos before it."""
    text = expression.strip()
    if text in CRON_MACROS:
        return text
    fields = text.split()
    if len(fields) != 5 or not all(CRON_FIELD.match(f) for f in fields):
        raise click.BadParameter(
            f"{expression!r} is not a cron schedule: use 5 fields 'minute hour day month weekday' (e.g. '0 3 * * 0') or "
            + ", ".join(sorted(CRON_MACROS)),
            param_hint="--cron",
        )
    return text


@click.group()
def k8s() -> None:
    """Render the Kubernetes manifests for training (Job, TrainJob, PyTorchJob, CronJob)."""


@k8s.command("render")
@config_options
@click.option("--kind", type=click.Choice(KINDS), default="all", show_default=True, help="Which workload to print.")
@click.option("--run-id", default=None, help="Name of the run (Job name and S3 prefix); default: name-time-confighash.")
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Write <kind>.yaml files here (GitOps, or regenerating k8s/base) instead of printing.",
)
def render_command(
    config_path: str | None, overrides: tuple[str, ...], kind: str, run_id: str | None, out_dir: str | None
) -> None:
    """Print the rendered manifests as YAML, ready for `kubectl create -f -`.

    The config travels inside each workload (a pod annotation mounted as /etc/trs-pose/config.yaml);
    checkpoints go to s3://<storage.bucket>/<backend.kubernetes.run_prefix>/<run id>/ with resume on.
    """
    from pathlib import Path

    from components.kubernetes.manifests import render, to_yaml

    cfg = resolve_config(config_path, overrides)
    manifests = render(cfg, kind, run_id)  # type: ignore[arg-type]
    if out_dir is None:
        click.echo(to_yaml(manifests), nl=False)
        return
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    words = ["trs-pose k8s render", f"--kind {kind}", f"--run-id {manifests[0]['metadata']['labels'].get('trs-pose.io/run-id', run_id)}"]
    words += [f"--config {config_path}"] if config_path else []
    words += [f"--set '{override}'" for override in overrides]
    source = " ".join(words)
    for manifest in manifests:
        target = Path(out_dir) / f"{manifest['kind'].lower()}.yaml"
        target.write_text(f"# Rendered by `{source}`; regenerate rather than hand-edit.\n" + to_yaml([manifest]))
        click.echo(f"wrote {target}", err=True)


@click.command()
@config_options
@click.option("--cron", "cron", required=True, help="Cron schedule in UTC, e.g. '0 3 * * 0' (Sundays 03:00).")
@click.option("--apply", "apply_", is_flag=True, help="Create or update the CronJob in the cluster of the current kubeconfig.")
def schedule(config_path: str | None, overrides: tuple[str, ...], cron: str, apply_: bool) -> None:
    """Render the scheduled-retraining CronJob; with --apply, create or update it in the cluster.

    The CronJob's pod runs the whole pipeline (`trs-pose run`) with backend.kind=kubernetes, so its
    train step submits the GPU Job. It needs the RBAC in k8s/base (ServiceAccount trs-pose-launcher).
    """
    from components.kubernetes.manifests import render_cronjob, to_yaml

    cfg = resolve_config(config_path, overrides)
    manifest = render_cronjob(cfg, check_cron(cron))
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
    api = client.BatchV1Api()
    namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    try:
        try:
            api.create_namespaced_cron_job(namespace, manifest)
            return "created"
        except ApiException as exc:
            if exc.status != 409:
                raise
            api.replace_namespaced_cron_job(name, namespace, manifest)
            return "updated"
    except ApiException as exc:
        raise click.ClickException(f"the API server refused the CronJob {namespace}/{name}: {exc.status} {exc.reason}: {exc.body}") from exc
    except HTTPError as exc:
        raise click.ClickException(f"no cluster reachable: {exc}") from exc
