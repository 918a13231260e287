"""The one training loop: supervised, mean-teacher, TRS and dual are configurations of it.

The student is trained by backpropagation; the teacher (when the method spec has one) is its EMA;
the reviewer keeps the best historical teacher by held-out AP. The dual method trains two students
side by side (each with its own optimiser, schedule and gradient clipping) and, at every
checkpoint, scores both on the held-out labels: the better one is the checkpoint's `student`, the
choice a history row (`dual/student_ap`, `dual/peer_ap`, `dual/registered`). The loss terms come
from `objective.compute_losses` (`dual.compute_dual_losses`); the data from `streams`; what a
checkpoint holds and how a run resumes from `training_state`. This module owns the order of things
in a step: forward and loss, backward, optimiser and schedule, the teacher's update, the reviewer's
check, history rows and checkpoints.

Resume is exact: every source of randomness is either a pure function of (seed, step) (data order,
per-item augmentation) or saved in the checkpoint (torch/numpy/python RNGs and the Keypoint-Mix
generator, per rank), so a run killed after any step and resumed from its last checkpoint finishes
with bitwise the same weights on the CPU as one that never stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from components.config import ConfigError, ExperimentConfig
from components.data.keypoint_category import with_keypoints_of
from components.data.split import SplitFiles
from components.engine.compile import InferenceRunners, student_runner
from components.engine.device_streams import build_streams
from components.engine.distributed import average_buffers_, broadcast_value, init_distributed, wrap_data_parallel
from components.engine.dual import compute_dual_losses
from components.engine.objective import compute_losses
from components.engine.reviewer import HoldoutScorer
from components.engine.training_state import CheckpointStore, HistoryRow, TrainingState, seed_everything
from components.engine.warm_start import InitialWeights, WarmStartError, check_compatible, warm_start_schedule
from components.method import method_spec
from components.metric_logger import MetricLogger, NullLogger

StepHook = Callable[[int], None]


@dataclass
class TrainResult:
    checkpoint_uri: str
    step: int
    history: list[HistoryRow] = field(default_factory=list)


def _set_train_mode(model: nn.Module, freeze_bn: bool) -> None:
    model.train()
    if freeze_bn:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def _raise_if_not_finite(losses: dict[str, torch.Tensor], step: int) -> None:
    if not torch.isfinite(losses["total"]):
        terms = {name: float(value) for name, value in losses.items()}
        raise FloatingPointError(f"step {step}: the loss is not finite {terms}; lower train.lr or check the data")


def _record(state: TrainingState, logger: MetricLogger, row: HistoryRow) -> None:
    """The one place a history row is kept (in the checkpoint and the result) and logged; `row["step"]` is its step."""
    state.history.append(row)
    logger.log_metrics({k: v for k, v in row.items() if k != "step"}, step=int(row["step"]))


def train(
    cfg: ExperimentConfig,
    split: SplitFiles,
    logger: MetricLogger | None = None,
    *,
    init: InitialWeights | None = None,
    on_step: StepHook | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train per `cfg` on `split`, resuming from the latest checkpoint when allowed; see the module doc.

    `init` holds the weights `train.init` names (resolved by the caller: a registry or checkpoint
    read); a warm start trains on train.warm_start's schedule. `on_step(step)` runs after every
    completed step (after any checkpoint); raising from it stops the run the way a crash would,
    which is how resume is tested.
    """
    cfg = with_keypoints_of(cfg, split.labeled_ann)  # the set the labels define: checkpoints carry it
    if cfg.train.warm and init is None:
        raise WarmStartError(f"train.init={cfg.train.init}: the weights were not resolved (components/serving)")
    if init is not None:
        check_compatible(init, cfg)
        cfg = warm_start_schedule(cfg)
    tcfg = cfg.train
    spec = method_spec(cfg)
    if spec.uses_unlabeled and tcfg.unlabeled_batch_size == 0:
        raise ConfigError(f"train.method={spec.name} needs train.unlabeled_batch_size > 0")
    if spec.students > 1 and cfg.data.holdout_labeled == 0:
        raise ConfigError(
            f"train.method={spec.name} registers the better student on held-out labels: set data.holdout_labeled > 0"
        )
    ctx = init_distributed(tcfg.device)
    logger = logger if (logger is not None and ctx.is_main) else NullLogger()
    seed_everything(tcfg.seed)  # identical initial weights on every rank
    state = TrainingState(cfg, spec, ctx, init)
    student, teacher, reviewer, peer = state.student, state.teacher, state.reviewer, state.peer
    scores_needed = reviewer is not None and reviewer.needs_score
    scorer_needed = scores_needed or peer is not None
    score_holdout = HoldoutScorer(split, cfg, ctx.device) if scorer_needed and ctx.is_main else None

    store = CheckpointStore(cfg)
    resume = store.resume_point()
    if resume is not None:
        state.step, state.history = resume.step, resume.history
    streams = build_streams(cfg, spec, split, ctx, state.step)  # train.data_path: cpu or gpu
    if resume is not None:
        streams.check_resumes_at(resume.state.get("data_position", {}), state.step, resume.uri)
        state.load_state_dict(resume.state, resume.uri)  # last: restores the RNGs as they were at the save
    start_step = state.step

    network = student_runner(wrap_data_parallel(student, ctx, tcfg.sync_bn), tcfg.compile)
    peer_network = (
        student_runner(wrap_data_parallel(peer, ctx, tcfg.sync_bn), tcfg.compile) if peer is not None else None
    )
    runners = InferenceRunners(tcfg.compile)  # the teacher's and reviewer snapshots' forwards
    if reviewer is not None:
        reviewer.runner = runners
    teacher_forward = runners(teacher.module) if teacher is not None else None
    use_amp = tcfg.amp and ctx.device.type == "cuda"
    last_uri = resume.uri if resume is not None else ""
    interval_images, interval_start = 0, time.perf_counter()
    bar = tqdm(
        total=tcfg.iterations, initial=start_step, desc=f"train {spec.name}", disable=not (progress and ctx.is_main)
    )
    try:
        for step in range(start_step, tcfg.iterations):
            step_done = step + 1
            log_now = step_done % tcfg.log_every == 0 or step_done == tcfg.iterations
            save_now = step_done % tcfg.checkpoint.every == 0 or step_done == tcfg.iterations

            # forward, loss, backward, optimiser: the student (the dual method's two)
            for trained in state.students:
                _set_train_mode(trained, tcfg.freeze_bn)
            labeled, unlabeled = streams.next(step)
            with torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else nullcontext():
                if peer_network is not None:
                    pair = (network, peer_network)
                    losses = compute_dual_losses(spec, pair, labeled, unlabeled, cfg, step, state.mix_generator)
                else:
                    losses = compute_losses(
                        spec,
                        network,
                        teacher_forward,
                        reviewer,
                        labeled,
                        unlabeled,
                        cfg,
                        step,
                        state.mix_generator,
                    )
            for optimizer, _ in state.optimizers:
                optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            if tcfg.grad_clip is not None:
                for trained in state.students:
                    torch.nn.utils.clip_grad_norm_(trained.parameters(), tcfg.grad_clip)
            for optimizer, scheduler in state.optimizers:
                optimizer.step()
                scheduler.step()
            for trained in state.students:
                average_buffers_(trained, ctx)
            state.step = step_done

            # the teacher follows the student; the reviewer checks the teacher
            momentum = teacher.update(student, step) if teacher is not None else None
            if log_now or save_now:  # a host sync, so not every step; no non-finite weights reach a checkpoint
                _raise_if_not_finite(losses, step)
            if reviewer is not None and teacher is not None and reviewer.due(step_done):
                score = None
                if scores_needed:
                    score = broadcast_value(score_holdout(teacher.module) if score_holdout is not None else None, ctx)
                reviewer.maybe_update(teacher.module, score, step_done)
                if score is not None and reviewer.best_score is not None:
                    check = {
                        "teacher/holdout_ap": float(score),
                        "reviewer/best_ap": float(reviewer.best_score),
                        "reviewer/snapshot_step": float(reviewer.snapshots[0].step),
                    }
                    _record(state, logger, {"step": float(step_done), **check})

            # history, progress, checkpoint
            crops = labeled["image"].shape[0] + (unlabeled["easy"].shape[0] if unlabeled is not None else 0)
            interval_images += crops * ctx.world_size
            if log_now:
                elapsed = max(time.perf_counter() - interval_start, 1e-9)
                row = {f"loss/{name}": float(value.detach()) for name, value in losses.items()}
                row.update(step=float(step_done), lr=state.lr, images_per_s=interval_images / elapsed)
                if momentum is not None:
                    row["ema_momentum"] = momentum
                _record(state, logger, row)
                bar.set_postfix(loss=f"{row['loss/total']:.4g}", lr=f"{row['lr']:.2e}")
                interval_images, interval_start = 0, time.perf_counter()
            bar.update(1)
            if save_now:
                if peer is not None:  # the checkpoint's `student` is the better of the two on the held-out labels
                    scores = [score_holdout(trained) for trained in state.students] if score_holdout else None
                    state.register_better(broadcast_value(scores, ctx))
                    choice = {"dual/student_ap": state.holdout_ap[0], "dual/peer_ap": state.holdout_ap[1]}
                    _record(
                        state, logger, {"step": float(step_done), **choice, "dual/registered": float(state.registered)}
                    )
                last_uri = store.save(state, streams)
            if on_step is not None:
                on_step(step_done)
    finally:
        bar.close()
    return TrainResult(checkpoint_uri=last_uri, step=max(start_step, tcfg.iterations), history=state.history)
