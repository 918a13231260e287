"""The run figures, checked by what they hold (artists and data), on synthetic histories and tiny results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from components.config import ExperimentConfig
from components.evaluation.error_breakdown import BINS, keypoint_outcomes
from components.keypoints import COCO_NAMES, COCO_PERSON
from components.reporting.joint_errors import joint_errors_figure, shares_per_joint
from components.reporting.metric_comparison import METRICS, metric_comparison_figure
from components.reporting.per_joint import OKS_THRESHOLDS, accuracy_per_joint, per_joint_figure
from components.reporting.prediction_grid import prediction_grid_figure, worst_and_best
from components.reporting.run_report import EvaluatedModel, draw_run_figures
from components.reporting.training_curves import ScheduleMarks, training_curves_figure
from components.reporting.variant_comparison import paired_differences, variant_comparison_figure
from tests.tiny_coco import person_annotation

BURN_IN, RAMPUP = 40, 20


def artist(figure: Figure, gid: str) -> Any:
    found = [a for a in figure.findobj() if a.get_gid() == gid]
    assert len(found) == 1, f"{len(found)} artists with gid {gid!r}"
    return found[0]


def synthetic_history(iterations: int = 100, check_every: int = 20) -> list[dict[str, float]]:
    """Logged rows every 5 steps (consistency terms after the burn-in) and reviewer checks whose
    teacher AP peaks at step 60, so the reviewer keeps that snapshot to the end."""
    rows: list[dict[str, float]] = []
    teacher_ap = {20: 0.10, 40: 0.25, 60: 0.42, 80: 0.38, 100: 0.40}
    best, best_step = -1.0, 0
    for step in range(5, iterations + 1, 5):
        row = {"step": float(step), "loss/total": 0.05 / step, "loss/sup": 0.04 / step, "lr": 1e-3 * (1 - step / 200)}
        if step >= BURN_IN:
            row.update({"loss/cons_teacher": 0.002, "loss/lambda_u": min(1.0, (step - BURN_IN) / RAMPUP)})
            row["loss/confident_fraction"] = 0.5 + step / 400
        rows.append(row)
        if step % check_every == 0:
            if teacher_ap[step] > best:
                best, best_step = teacher_ap[step], step
            rows.append(
                {
                    "step": float(step),
                    "teacher/holdout_ap": teacher_ap[step],
                    "reviewer/best_ap": best,
                    "reviewer/snapshot_step": float(best_step),
                }
            )
    return rows


def test_training_curves_losses_on_a_log_axis_with_the_phases_marked() -> None:
    figure = training_curves_figure(synthetic_history(), ScheduleMarks(BURN_IN, BURN_IN + RAMPUP))
    losses_axes = artist(figure, "loss/total").axes
    assert losses_axes.get_yscale() == "log"
    assert {"loss/total", "loss/sup", "loss/cons_teacher"} <= {line.get_gid() for line in losses_axes.get_lines()}
    lambda_u, lr = artist(figure, "loss/lambda_u"), artist(figure, "lr")
    assert lambda_u.axes is not losses_axes and lr.axes is not losses_axes  # schedules on their own axes
    assert lambda_u.get_ydata()[0] == 0.0 and lambda_u.get_ydata()[-1] == 1.0  # 0 through the burn-in
    burn_in_lines = [a for a in figure.findobj() if a.get_gid() == "burn_in_end"]
    assert len(burn_in_lines) == 4  # one on each panel: losses, schedules, confidence, reviewer
    assert all(list(line.get_xdata()) == [BURN_IN, BURN_IN] for line in burn_in_lines)
    rampup = [a for a in figure.findobj() if a.get_gid() == "rampup"][0]
    assert (rampup.get_x(), rampup.get_x() + rampup.get_width()) == (BURN_IN, BURN_IN + RAMPUP)
    assert artist(figure, "loss/confident_fraction").get_ydata()[0] == pytest.approx(0.6)


def test_training_curves_mark_the_reviewers_chosen_snapshot() -> None:
    figure = training_curves_figure(synthetic_history(), ScheduleMarks(BURN_IN, BURN_IN + RAMPUP))
    assert list(artist(figure, "teacher/holdout_ap").get_ydata()) == [0.10, 0.25, 0.42, 0.38, 0.40]
    chosen = artist(figure, "chosen_snapshot")
    assert (chosen.get_xdata()[0], chosen.get_ydata()[0]) == (60.0, 0.42)  # the older snapshot, not step 100
    assert list(artist(figure, "taken").get_xdata()) == [20.0, 40.0, 60.0]


def test_a_supervised_history_gets_two_panels_and_no_phase_marks() -> None:
    history = [{"step": float(s), "loss/total": 1.0 / s, "loss/sup": 1.0 / s, "lr": 0.1} for s in range(1, 30)]
    figure = training_curves_figure(history)
    assert len([a for a in figure.axes if a.get_title()]) == 2
    assert not [a for a in figure.findobj() if a.get_gid() in ("burn_in_end", "rampup")]
    with pytest.raises(ValueError, match="no logged losses"):
        training_curves_figure([{"step": 1.0, "teacher/holdout_ap": 0.1}])


def test_schedule_marks_follow_the_config() -> None:
    cfg = ExperimentConfig.model_validate(
        {"train": {"method": "trs", "consistency": {"burn_in_iters": 450, "rampup_iters": 50}}}
    )
    assert ScheduleMarks.from_config(cfg) == ScheduleMarks(450, 500)
    cfg.train.method = "supervised"
    assert ScheduleMarks.from_config(cfg) == ScheduleMarks()


METRICS_A = {"AP": 0.52, "AP50": 0.9, "AP75": 0.5, "APm": 0.4, "APl": 0.6, "AR": 0.58}
METRICS_B = {"AP": 0.48, "AP50": 0.88, "AP75": 0.45, "APm": 0.41, "APl": 0.55, "AR": 0.55}


def test_challenger_vs_champion_with_the_promotion_bar() -> None:
    figure = metric_comparison_figure(METRICS_A, METRICS_B, margin=0.01)
    axes = figure.axes[0]
    assert [t.get_text() for t in axes.get_xticklabels()] == list(METRICS)
    challenger = [p for p in axes.patches if p.get_gid() == "challenger"]
    champion = [p for p in axes.patches if p.get_gid() == "champion"]
    assert [p.get_height() for p in challenger] == [METRICS_A[m] for m in METRICS]
    assert [p.get_height() for p in champion] == [METRICS_B[m] for m in METRICS]
    bar = artist(figure, "promotion_bar")
    ((start, end),) = [segment[:, 1] for segment in bar.get_segments()]
    assert start == end == pytest.approx(0.48 + 0.01)
    assert "clears" in axes.get_title() and "does not" not in axes.get_title()


def test_without_a_champion_the_challenger_metrics_stand_alone() -> None:
    figure = metric_comparison_figure({**METRICS_A, "APl": -1.0})
    axes = figure.axes[0]
    assert len([p for p in axes.patches if p.get_gid() == "challenger"]) == len(METRICS) > 1
    assert not [a for a in figure.findobj() if a.get_gid() == "promotion_bar"]
    assert [p.get_height() for p in axes.patches][METRICS.index("APl")] == 0.0  # pycocotools' -1: no large people


def test_an_older_champion_without_every_metric_shows_them_as_missing() -> None:
    figure = metric_comparison_figure(METRICS_A, {"AP": 0.5}, margin=0.0)
    champion = [p for p in figure.axes[0].patches if p.get_gid() == "champion"]
    assert [p.get_height() for p in champion] == [0.5, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert artist(figure, "promotion_bar").get_segments()[0][0, 1] == pytest.approx(0.5)


# -- per joint, errors and the grid, on hand-made people --

SPACING = 12.0


def person(ann_id: int, image_id: int, x0: float) -> dict[str, Any]:
    keypoints = [v for i in range(COCO_PERSON.num_keypoints) for v in (x0 + SPACING * (i % 4), 20.0 + 8.0 * i, 2)]
    return person_annotation(ann_id, image_id, keypoints, [x0 - 5, 10.0, 50.0, 150.0], 4000.0)


def noisy(ann: dict[str, Any], offset: float, score: float = 0.9) -> dict[str, Any]:
    keypoints = np.asarray(ann["keypoints"], dtype=np.float64).reshape(COCO_PERSON.num_keypoints, 3)
    keypoints[:, 0] += offset
    keypoints[:, 2] = 0.9
    return {"image_id": ann["image_id"], "category_id": 1, "keypoints": keypoints.ravel().tolist(), "score": score}


@pytest.fixture
def tiny_val(tmp_path: Path) -> dict[str, Any]:
    """Six people on three images; prediction i is off by i pixels (person 6 is missed entirely)."""
    annotations = [person(1 + i, 1 + i // 2, 20.0 + 100.0 * (i % 2)) for i in range(6)]
    images = [{"id": i, "file_name": f"{i}.png", "width": 200, "height": 180} for i in (1, 2, 3)]
    for image in images:
        cv2.imwrite(str(tmp_path / image["file_name"]), np.full((180, 200, 3), 60 * image["id"], dtype=np.uint8))
    ann = {"images": images, "annotations": annotations, "categories": [COCO_PERSON.coco_category()]}
    results = [noisy(a, offset=float(2 * i)) for i, a in enumerate(annotations[:5])]
    return {"ann": ann, "results": results, "images": tmp_path}


def test_per_joint_accuracy_has_the_17_joints_in_coco_order(tiny_val: dict[str, Any]) -> None:
    outcomes = keypoint_outcomes(tiny_val["ann"], tiny_val["results"])
    accuracy = accuracy_per_joint(outcomes)
    exact = (outcomes.similarity[outcomes.joint == 0][:, None] >= OKS_THRESHOLDS).mean()
    assert accuracy[0] == pytest.approx(exact) and 0 < accuracy[0] < 1  # the nose: some thresholds missed
    assert accuracy[0] < accuracy[COCO_NAMES.index("left_ankle")]  # same offsets, the nose's sigma is tighter
    figure = per_joint_figure(outcomes, champion=keypoint_outcomes(tiny_val["ann"], tiny_val["results"][:1]))
    axes = figure.axes[0]
    labels = [t.get_text().replace(" ", "_") for t in axes.get_xticklabels()]
    assert labels == list(COCO_NAMES)
    bars = [p for p in axes.patches if p.get_gid() == "accuracy"]
    assert [b.get_height() for b in bars] == pytest.approx(list(accuracy))
    gaps = np.diff([b.get_x() + b.get_width() / 2 for b in bars])
    assert gaps[1::2].max() < gaps[2::2].min()  # each left joint sits closer to its right twin than to the next pair
    champion = artist(figure, "champion").get_offsets()[:, 1]
    assert champion[0] == pytest.approx(1.0)  # the first prediction is exact on the one person it matched


def test_error_breakdown_per_joint_stacks_the_bins_against_the_champion(tiny_val: dict[str, Any]) -> None:
    ann, results = tiny_val["ann"], tiny_val["results"]
    challenger, champion = (
        keypoint_outcomes(ann, results),
        keypoint_outcomes(ann, [noisy(a, 30.0) for a in ann["annotations"]]),
    )
    shares = shares_per_joint(challenger)
    assert shares.shape == (COCO_PERSON.num_keypoints, len(BINS)) and np.allclose(shares.sum(1), 1.0)
    figure = joint_errors_figure(challenger, champion)
    axes = figure.axes[0]
    for name, data in (("challenger", challenger), ("champion", champion)):
        expected = shares_per_joint(data)
        for b, bin_name in enumerate(BINS):
            bars = [p for p in axes.patches if p.get_gid() == f"{name}/{bin_name}"]
            assert [p.get_height() for p in bars] == pytest.approx(list(expected[:, b]))
    assert shares_per_joint(champion)[:, BINS.index("good")].sum() < shares[:, BINS.index("good")].sum()


def test_the_grid_holds_the_worst_and_the_best_people(tiny_val: dict[str, Any]) -> None:
    outcomes = keypoint_outcomes(tiny_val["ann"], tiny_val["results"])
    worst, best = worst_and_best(outcomes.people, count=4)
    assert [p.ann_id for p in worst] == [6, 5]  # missed, then the largest offset
    assert [p.ann_id for p in best] == [1, 2]
    from components.evaluation.coco_eval import load_ground_truth

    figure = prediction_grid_figure(
        outcomes.people, load_ground_truth(tiny_val["ann"]), tiny_val["images"], outcomes.keypoints, count=4, columns=2
    )
    cells = [a for a in figure.axes if a.get_gid()]
    assert [a.get_gid() for a in cells] == ["person:6", "person:5", "person:1", "person:2"]
    assert cells[0].get_title().startswith("worst 1: no prediction")
    assert cells[2].get_title().startswith("best 1: OKS 1.00")
    for cell in cells:
        styles = {c.get_gid(): c for c in cell.collections if isinstance(c, LineCollection)}
        assert (
            styles["truth"].get_linestyle() != styles.get("prediction", styles["truth"]).get_linestyle()
            or cell is cells[0]
        )
    assert "prediction" not in {c.get_gid() for c in cells[0].collections}  # a missed person shows only its truth
    truth = next(c for c in cells[2].collections if c.get_gid() == "truth")
    first_limb = truth.get_segments()[0]
    assert first_limb.shape == (2, 2)
    assert worst_and_best(outcomes.people[:3], count=12) == (
        sorted(outcomes.people[:3], key=lambda p: p.oks)[:1],
        sorted(outcomes.people[:3], key=lambda p: -p.oks)[:2],
    )


def test_a_run_report_writes_every_figure_and_skips_what_it_lacks(tiny_val: dict[str, Any], tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps(tiny_val["results"]))
    written = draw_run_figures(
        tmp_path / "plots",
        EvaluatedModel("v2", METRICS_A, results),
        tiny_val["ann"],
        tiny_val["images"],
        history=synthetic_history(),
        champion=EvaluatedModel("v1", METRICS_B, tiny_val["results"][:2]),
        margin=0.0,
    )
    names = [p.name for p in written]
    assert names == [
        "training_curves.png",
        "challenger_vs_champion.png",
        "per_joint_accuracy.png",
        "joint_errors.png",
        "predictions_vs_truth.png",
    ]
    assert all(p.stat().st_size > 10_000 for p in written)
    only_metrics = draw_run_figures(tmp_path / "bare", EvaluatedModel("v2", METRICS_A), tiny_val["ann"], None)
    assert [p.name for p in only_metrics] == ["challenger_vs_champion.png"]


RUNS = {
    "supervised": {"0": {"AP": 0.40}, "1": {"AP": 0.41}, "2": {"AP": 0.39}},
    "trs": {"0": {"AP": 0.46}, "1": {"AP": 0.45}, "2": {"AP": 0.47}},
    "trs_no_keypoint_mix": {"0": {"AP": 0.47}, "1": {"AP": 0.47}},
}


def test_variant_comparison_shows_seed_spread_and_paired_differences() -> None:
    assert paired_differences(RUNS, "supervised", "trs") == pytest.approx({"0": -6.0, "1": -4.0, "2": -8.0})
    figure = variant_comparison_figure(RUNS)
    ap_axes, diff_axes = figure.axes
    ticks = sorted(zip(ap_axes.get_yticks(), (t.get_text() for t in ap_axes.get_yticklabels())), reverse=True)
    assert [name for _, name in ticks] == list(RUNS)  # the first variant on top
    seed0 = artist(figure, "seed:0").get_offsets()
    assert sorted(seed0[:, 0]) == pytest.approx([40.0, 46.0, 47.0])
    mean = artist(figure, "mean:supervised")
    assert mean.get_xdata()[0] == pytest.approx(40.0)
    spread = artist(figure, "spread:supervised").get_segments()[0][:, 0]
    assert spread == pytest.approx([39.0, 41.0])  # sample std of 40, 41, 39 is 1
    assert sorted(artist(figure, "paired:2").get_offsets()[:, 0]) == pytest.approx(
        [-8.0]
    )  # trs_no_keypoint_mix has no seed 2
    assert artist(figure, "mean_diff:trs_no_keypoint_mix").get_xdata()[0] == pytest.approx(1.5)
    assert not [a for a in figure.findobj() if a.get_gid() == "mean_diff:trs"]


def test_evaluate_plots_draws_a_checkpoints_figures_from_its_history(tmp_path: Path) -> None:
    import torch
    from click.testing import CliRunner

    from cli.evaluate import evaluate
    from components.engine.checkpoint import save_checkpoint
    from components.models import build_model
    from tests.tiny_coco import tiny_config, write_coco

    coco = write_coco(tmp_path, num_images=4, seed=3, size=(96, 72))
    ann = tmp_path / "val.json"
    ann.write_text(json.dumps(coco))
    cfg = tiny_config(tmp_path / "checkpoints", method="trs")
    torch.manual_seed(0)
    state = {
        "config": cfg.model_dump(mode="json"),
        "step": 100,
        "student": build_model(cfg).state_dict(),
        "history": synthetic_history(),
    }
    save_checkpoint(state, tmp_path / "checkpoints", 100)
    common = ["--ann", str(ann), "--images", str(tmp_path / "images"), "--plots", str(tmp_path / "plots")]
    outcome = CliRunner().invoke(
        evaluate, ["--checkpoint", str(tmp_path / "checkpoints"), *common, "--device", "cpu", "--no-progress"]
    )
    assert outcome.exit_code == 0, outcome.output
    drawn = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert drawn == sorted(
        [
            "training_curves.png",
            "challenger_vs_champion.png",
            "per_joint_accuracy.png",
            "joint_errors.png",
            "predictions_vs_truth.png",
        ]
    )
    assert f"figure: {tmp_path / 'plots' / 'training_curves.png'}" in outcome.output
    refused = CliRunner().invoke(evaluate, ["--results", str(ann), "--ann", str(ann), "--plots", str(tmp_path)])
    assert refused.exit_code == 2 and "--plots needs --checkpoint" in refused.output


def test_ssl_gain_draws_its_comparison_from_results_json(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("ssl_gain", Path(__file__).parents[1] / "benchmarks" / "ssl_gain.py")
    assert spec is not None and spec.loader is not None
    ssl_gain = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ssl_gain)
    work = tmp_path / "bench"
    work.mkdir()
    runs = {**RUNS, "supervised_full": {"0": {"AP": 0.6}}}
    (work / "results.json").write_text(json.dumps({"settings": {"iterations": 3000}, "runs": runs}))
    assert ssl_gain.main(["--work-dir", str(work), "--plots", str(tmp_path / "plots"), "--plot-only"]) == ""
    assert (tmp_path / "plots" / "ssl_gain.png").stat().st_size > 10_000
    stored = json.loads((work / "results.json").read_text())
    with pytest.raises(SystemExit):  # no results to draw from
        ssl_gain.main(["--work-dir", str(tmp_path / "empty"), "--plots", str(tmp_path / "plots"), "--plot-only"])
    figure_runs = {v: r for v, r in stored["runs"].items() if v != "supervised_full"}
    assert paired_differences(figure_runs, "trs_no_keypoint_mix", "trs") == pytest.approx({"0": 1.0, "1": 2.0})
