"""What each step of a pipeline run produced, as it ends: its outputs, read from the run's record.

A thread polls the ZenML server for the run's steps while the pipeline runs, and hands each step
that has just finished (run, or reused from an earlier attempt of a resumed run) to a callback with
its loaded output artifacts. Reading the run's own record, not the step code, means the same
reports come from a fresh run, a resumed one and any orchestrator. `trs-pose run` prints a line each.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

STEP_ORDER = (
    "ingest_data",
    "validate_data",
    "split_data",
    "train_model",
    "evaluate_student",
    "register_model",
    "promote_model",
)
POLL_S = 1.0


@dataclass(frozen=True)
class StepReport:
    step: str  # the step's name in the pipeline
    reused: bool  # its outputs come from an earlier attempt (a resumed run's replay)
    outputs: dict[str, Any]  # output name -> loaded artifact value


def finished_steps(run_name: str, reported: set[str]) -> list[StepReport]:
    """The run's steps that finished successfully and are not in `reported`, in pipeline order."""
    from zenml.client import Client
    from zenml.enums import ExecutionStatus

    client = Client()
    try:
        run = client.get_pipeline_run(run_name, allow_name_prefix_match=False, hydrate=False)
    except KeyError:
        return []  # not created yet
    reports = []
    for step in client.list_run_steps(pipeline_run_id=run.id, size=len(STEP_ORDER) * 2, hydrate=True):
        status = ExecutionStatus(step.status)
        if step.name in reported or not status.is_successful:
            continue
        outputs = {name: artifacts[0].load() for name, artifacts in step.outputs.items() if artifacts}
        reports.append(StepReport(step.name, status != ExecutionStatus.COMPLETED, outputs))
    order = {name: index for index, name in enumerate(STEP_ORDER)}
    return sorted(reports, key=lambda report: order.get(report.step, len(order)))


@contextmanager
def reporting_steps(run_name: str, on_report: Callable[[StepReport], None], poll_s: float = POLL_S) -> Iterator[None]:
    """Call `on_report` once for every step of `run_name` that finishes while the block runs (and,
    after it, for those that finished since the last look)."""
    reported: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def look() -> None:
        with lock:
            for report in finished_steps(run_name, reported):
                reported.add(report.step)
                on_report(report)

    def poll() -> None:
        while not stop.wait(poll_s):
            with suppress(Exception):  # a missed look is made up by the next one
                look()

    poller = threading.Thread(target=poll, name=f"steps of {run_name}", daemon=True)
    poller.start()
    try:
        yield
    finally:
        stop.set()
        poller.join()
        with suppress(Exception):
            look()
