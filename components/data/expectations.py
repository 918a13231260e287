"""The statistical layer of validation: a Great Expectations 1.x suite over a per-annotation table.

Structural checks prove each record is well formed; this suite asks whether the set as a whole
looks like person-keypoint data (box sizes and shapes of people, labels present, a plausible
visibility mix). It runs in an ephemeral GX context on a pandas frame, so nothing is persisted
except the result JSON and a readable summary written to the report directory.

Bounds are deliberately loose, so real COCO and the synthetic people pass and only broken sets
(swapped axes, normalised coordinates, visibility flags inverted, no labels at all) fail.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SUITE_NAME = "coco_person_keypoints"


@dataclass(frozen=True)
class ExpectationFailure:
    record: str
    rule: str
    message: str


@dataclass(frozen=True)
class ExpectationOutcome:
    success: bool
    failures: list[ExpectationFailure]
    summary: dict[str, Any]  # suite name, statistics and per-expectation verdicts, JSON-ready
    result_path: Path | None


def _suite(gx: Any) -> Any:
    """The expectations, one line each with the reason its bounds are what they are."""
    E = gx.expectations
    shares = ("labeled_fraction", "occluded_share", "visible_share")  # NaN (no labels) rows are skipped
    expectations = [
        E.ExpectTableRowCountToBeBetween(min_value=1),  # a set with no people trains nothing
        *(E.ExpectColumnValuesToNotBeNull(column=c) for c in ("box_width", "box_height", "aspect_ratio", "relative_size")),
        *(E.ExpectColumnValuesToBeBetween(column=c, min_value=0.0, max_value=1.0) for c in shares),
        # sub-pixel people are annotation noise; a few are tolerated, many mean normalised coords
        E.ExpectColumnValuesToBeBetween(column="box_width", min_value=1.0, mostly=0.95),
        E.ExpectColumnValuesToBeBetween(column="box_height", min_value=1.0, mostly=0.95),
        # people are rarely wider than 10x their height or thinner than 1/20th
        E.ExpectColumnValuesToBeBetween(column="aspect_ratio", min_value=0.05, max_value=10.0, mostly=0.99),
        E.ExpectColumnValuesToBeBetween(column="relative_size", min_value=0.0, max_value=1.01, strict_min=True),
        # some people must carry labels, else this is not a keypoint set
        E.ExpectColumnMeanToBeBetween(column="labeled_fraction", min_value=0.01, max_value=1.0),
        # in COCO about 1 labeled keypoint in 8 is occluded (v=1); mostly-occluded means flags mixed up
        E.ExpectColumnMeanToBeBetween(column="occluded_share", min_value=0.0, max_value=0.5),
    ]
    suite = gx.ExpectationSuite(name=SUITE_NAME)
    for expectation in expectations:
        suite.add_expectation(expectation)
    return suite


def run_expectations(columns: dict[str, np.ndarray], report_dir: str | Path | None = None) -> ExpectationOutcome:
    """Validate the per-annotation table; writes expectations.json and expectations.md to report_dir."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    import pandas as pd

    frame = pd.DataFrame({name: np.asarray(values, dtype=np.float64) for name, values in columns.items()})
    context = gx.get_context(mode="ephemeral")
    _quiet(context)
    batch = context.data_sources.add_pandas("annotations").add_dataframe_asset("table").add_batch_definition_whole_dataframe("all")
    suite = context.suites.add(_suite(gx))
    definition = context.validation_definitions.add(gx.ValidationDefinition(name=SUITE_NAME, data=batch, suite=suite))
    result = definition.run(batch_parameters={"dataframe": frame}, result_format="SUMMARY")
    raw = result.to_json_dict()

    verdicts, failures = [], []
    for item in raw["results"]:
        config = item["expectation_config"]
        kwargs = {k: v for k, v in config["kwargs"].items() if k != "batch_id"}
        outcome = item.get("result", {})
        verdicts.append({"type": config["type"], "kwargs": kwargs, "success": item["success"], "result": _brief(outcome)})
        if not item["success"]:
            column = kwargs.get("column")
            failures.append(
                ExpectationFailure(
                    record=f"expectation {config['type']}" + (f" on {column}" if column else ""),
                    rule=f"expectation.{config['type'].removeprefix('expect_')}",
                    message=_describe(kwargs, outcome, item.get("exception_info") or {}),
                )
            )
    summary = {"suite": SUITE_NAME, "success": bool(raw["success"]), "rows": len(frame), "statistics": raw.get("statistics", {}), "expectations": verdicts}
    result_path = None
    if report_dir is not None:
        report_dir = Path(report_dir)
        report_dir.mkdir(parents=True, exist_ok=True)
        result_path = report_dir / "expectations.json"
        result_path.write_text(json.dumps(raw, indent=2, default=str))
        (report_dir / "expectations.md").write_text(_markdown(summary, frame))
    return ExpectationOutcome(bool(raw["success"]), failures, summary, result_path)


def _quiet(context: Any) -> None:
    """Progress bars from GX would interleave with ours; turn them off where the API allows."""
    try:
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context.variables.progress_bars = ProgressBarsConfig(globally=False)
    except (ImportError, AttributeError):
        pass


def _brief(outcome: dict[str, Any]) -> dict[str, Any]:
    keys = ("observed_value", "element_count", "unexpected_count", "unexpected_percent")
    return {k: outcome[k] for k in keys if k in outcome}


def _describe(kwargs: dict[str, Any], outcome: dict[str, Any], exception: dict[str, Any]) -> str:
    if exception.get("raised_exception"):
        return f"the expectation could not run: {exception.get('exception_message')}"
    bounds = ", ".join(f"{k}={v}" for k, v in kwargs.items() if k != "column")
    if "observed_value" in outcome:
        return f"observed {outcome['observed_value']!r}, expected {bounds}"
    unexpected = outcome.get("partial_unexpected_list", [])[:5]
    return (
        f"{outcome.get('unexpected_count', '?')} of {outcome.get('element_count', '?')} rows "
        f"({outcome.get('unexpected_percent', 0.0):.2f}%) break {bounds}; e.g. {unexpected}"
    )


def _markdown(summary: dict[str, Any], frame: Any) -> str:
    lines = [
        f"# Data expectations: {'PASSED' if summary['success'] else 'FAILED'}",
        "",
        f"Suite `{summary['suite']}` over {summary['rows']} non-crowd person annotations.",
        "",
        "| expectation | arguments | result | verdict |",
        "|---|---|---|---|",
    ]
    for verdict in summary["expectations"]:
        args = ", ".join(f"{k}={v}" for k, v in verdict["kwargs"].items())
        lines.append(f"| {verdict['type']} | {args} | {verdict['result']} | {'pass' if verdict['success'] else 'FAIL'} |")
    if len(frame):
        lines += ["", "## Column summary", "", "```", frame.describe().T.round(4).to_string(), "```"]
    return "\n".join(lines) + "\n"
