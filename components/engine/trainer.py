"""The one training loop: supervised, mean-teacher and TRS are configurations of it.

The student is trained by backpropagation; the teacher (mean_teacher, trs) is its EMA; the reviewer
(trs with `train.reviewer.enabled`) keeps the best historical teacher by held-out AP. The loss
terms come from `objective.compute_losses`; this module owns everything around them: data streams,
optimiser and schedule, mixed precision, checkpoints and resume, data parallelism and logging.

Resume is exact: every source of randomness is either a pure function of (seed, step) (data order,
per-item augmentation) or saved in the checkpoint (torch/numpy/python RNGs and the Keypoint-Mix
generator, per rank), so a run killed after any step and resumed from its last checkpoint finishes
with bitwise the same weights on the CPU as one that never stopped.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from components.config import ExperimentConfig
from components.data.split import SplitFiles
from components.engine import checkpoint as ckpt
from components.engine.distributed import (
    DistributedContext,
    assert_ranks_agree,
    average_buffers_,
    barrier,
    broadcast_value,
    gather_values,
    init_distributed,
    unwrap,
    wrap_data_parallel,
)
from components.engine.sampling import DataPosition, EpochIndexed, StreamBatchSampler, seed_worker
from components.engine.schedule import build_optimizer, build_scheduler
from components.storage.s3 import is_s3_uri, s3_client
from components.tracking import MetricLogger, NullLogger

IMAGE_KEYS = ("image", "easy", "hard")
StepHook = Callable[[int], None]


@dataclass
class TrainResult:
    checkpoint_uri: str
    step: int
    history: list[dict[str, float]] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng(generator: torch.Generator) -> dict[str, Any]:
    """Every RNG this process draws from, as tensors and plain values (loadable with weights_only)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": random.getstate(),
        "keypoint_mix": generator.get_state(),
    }


def restore_rng(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available():
        for index, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    generator.set_state(state["keypoint_mix"])


def _stream(
    dataset: Any, batch_size: int, cfg: ExperimentConfig, ctx: DistributedContext, start_batch: int, stream: int
) -> tuple[StreamBatchSampler, Iterator[dict[str, Any]]]:
    sampler = StreamBatchSampler(
        len(dataset), batch_size, seed=cfg.train.seed, stream=stream, rank=ctx.rank, world_size=ctx.world_size,
        start_batch=start_batch,
    )
    workers = cfg.train.num_workers
    loader = DataLoader(
        EpochIndexed(dataset),
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=ctx.device.type == "cuda",
        worker_init_fn=seed_worker,
        generator=torch.Generator().manual_seed(cfg.train.seed * 1000 + stream),  # worker seeds only
        persistent_workers=workers > 0,
        prefetch_factor=2 if workers > 0 else None,
    )
    return sampler, iter(loader)


def _to_device(batch: dict[str, Any], device: torch.device, channels_last: bool) -> dict[str, Any]:
    moved: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, non_blocking=True)
            if channels_last and key in IMAGE_KEYS and value.ndim == 4:
                value = value.contiguous(memory_format=torch.channels_last)
        moved[key] = value
    return moved


def _set_train_mode(model: nn.Module, freeze_bn: bool) -> None:
    model.train()
    if freeze_bn:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


class HoldoutScorer:
    """AP of a snapshot on the held-out labeled images: the reviewer's ranking signal.

    The crops and the ground truth are built once and reused at every check.
    """

    def __init__(self, split: SplitFiles, cfg: ExperimentConfig, device: torch.device) -> None:
        from components.evaluation.coco_eval import load_ground_truth
        from components.evaluation.evaluate import build_eval_dataset

        self.split, self.cfg, self.device = split, cfg, device
        self.dataset = build_eval_dataset(split.holdout_ann, split.train_images, cfg)
        self.ground_truth = load_ground_truth(split.holdout_ann)

    def __call__(self, model: nn.Module) -> float:
        from components.evaluation import evaluate_model

        metrics = evaluate_model(
            model, self.split.holdout_ann, self.split.train_images, self.cfg,
            dataset=self.dataset, ground_truth=self.ground_truth, device=self.device, num_workers=0,
        )
        return float(metrics["AP"])


RESUME_MUST_MATCH = (
    ("model",), ("input",), ("train", "method"), ("train", "seed"), ("train", "batch_size"),
    ("train", "unlabeled_batch_size"), ("train", "reviewer", "enabled"), ("train", "reviewer", "mode"),
    ("train", "mfl", "enabled"), ("train", "mfl", "in_baselines"),
)


def check_resumable(saved: dict[str, Any], cfg: ExperimentConfig, uri: str) -> None:
    """Refuse to continue a checkpoint made by a different experiment (another net, method, seed or batch).

    Budget fields such as `train.iterations` may change: that is how a finished run is extended.
    """
    current = cfg.model_dump(mode="json")
    differences = []
    for path in RESUME_MUST_MATCH:
        old, new = saved, current
        for key in path:
            old, new = (old or {}).get(key), (new or {}).get(key)
        if old != new:
            differences.append(f"{'.'.join(path)}: checkpoint {old!r}, config {new!r}")
    if differences:
        raise ValueError(
            f"{uri}: cannot resume, the checkpoint belongs to another experiment ({'; '.join(differences)}); "
            "point train.checkpoint.dir elsewhere for a new run"
        )


def _checkpoint_client(location: str, cfg: ExperimentConfig) -> Any:
    return s3_client(cfg.storage.endpoint_url, cfg.storage.region) if is_s3_uri(location) else None


class Streams:
    """The labeled (and, for semi-supervised methods, unlabeled) batch streams of this rank.

    The unlabeled stream advances only after the burn-in: its batch index is the step minus
    `train.consistency.burn_in_iters`, which is what a checkpoint records and a resume checks.
    """

    def __init__(self, cfg: ExperimentConfig, split: SplitFiles, ctx: DistributedContext, start_step: int) -> None:
        from components.data.datasets import LabeledPoseDataset, UnlabeledPairDataset

        tcfg = cfg.train
        self.cfg, self.ctx, self.channels_last = cfg, ctx, tcfg.channels_last
        labeled = LabeledPoseDataset(split.labeled_ann, split.train_images, cfg, tcfg.seed)
        self.labeled_sampler, self.labeled = _stream(labeled, tcfg.batch_size, cfg, ctx, start_step, stream=0)
        self.unlabeled_sampler: StreamBatchSampler | None = None
        self.unlabeled: Iterator[dict[str, Any]] | None = None
        if tcfg.method != "supervised":
            unlabeled = UnlabeledPairDataset(split.unlabeled_ann, split.train_images, cfg, tcfg.seed)
            self.unlabeled_sampler, self.unlabeled = _stream(
                unlabeled, tcfg.unlabeled_batch_size, cfg, ctx, self._unlabeled_batches(start_step), stream=1
            )

    def _unlabeled_batches(self, steps: int) -> int:
        return max(0, steps - self.cfg.train.consistency.burn_in_iters)

    def next(self, step: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The batches of `step`; no unlabeled batch for supervised runs or in the burn-in."""
        from components.engine.objective import in_burn_in

        labeled = _to_device(next(self.labeled), self.ctx.device, self.channels_last)
        if self.unlabeled is None or in_burn_in(self.cfg, step):
            return labeled, None
        return labeled, _to_device(next(self.unlabeled), self.ctx.device, self.channels_last)

    def positions(self, step: int) -> dict[str, dict[str, int]]:
        """Where each stream stands after `step` steps (what a checkpoint records)."""
        positions = {"labeled": self.labeled_sampler.position_after(step).as_dict()}
        if self.unlabeled_sampler is not None:
            positions["unlabeled"] = self.unlabeled_sampler.position_after(self._unlabeled_batches(step)).as_dict()
        return positions

    def check_resumes_at(self, saved: dict[str, dict[str, int]], step: int, uri: str) -> None:
        expected = {"labeled": step, "unlabeled": self._unlabeled_batches(step)}
        for name, sampler in (("labeled", self.labeled_sampler), ("unlabeled", self.unlabeled_sampler)):
            if sampler is None or name not in saved:
                continue
            if sampler.batch_for_position(DataPosition(**saved[name])) != expected[name]:
                raise ValueError(f"{uri}: {name} data position {saved[name]} does not match step {step}")


class Learners:
    """Student, teacher, reviewer, optimiser, schedule and Keypoint-Mix generator: what a checkpoint holds."""

    def __init__(self, cfg: ExperimentConfig, ctx: DistributedContext) -> None:
        from components.engine.ema import make_teacher
        from components.engine.reviewer import Reviewer
        from components.models import build_model

        tcfg = cfg.train
        self.cfg, self.ctx = cfg, ctx
        memory_format = torch.channels_last if tcfg.channels_last else torch.contiguous_format
        self.student: nn.Module = build_model(cfg).to(ctx.device).to(memory_format=memory_format)
        self.teacher = make_teacher(self.student) if tcfg.method in ("mean_teacher", "trs") else None
        self.reviewer = (
            Reviewer(tcfg.reviewer, template=self.teacher) if tcfg.method == "trs" and tcfg.reviewer.enabled else None
        )
        self.optimizer = build_optimizer(list(self.student.parameters()), tcfg)
        self.scheduler = build_scheduler(self.optimizer, tcfg)
        # per rank: each rank mixes the keypoints of its own slice of the batch
        self.mix_generator = torch.Generator().manual_seed(tcfg.seed * 1000 + ctx.rank)

    def replicas(self) -> dict[str, nn.Module | None]:
        snapshots = {f"reviewer{i}": s.model for i, s in enumerate(self.reviewer.snapshots)} if self.reviewer else {}
        return {"student": self.student, "teacher": self.teacher, **snapshots}

    def state_dict(self, rng_per_rank: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "student": unwrap(self.student).state_dict(),
            "teacher": self.teacher.state_dict() if self.teacher is not None else None,
            "reviewer": self.reviewer.state_dict() if self.reviewer is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": {"per_rank": rng_per_rank},
        }

    def load_state_dict(self, state: dict[str, Any], uri: str) -> None:
        per_rank = state["rng"]["per_rank"]
        if len(per_rank) != self.ctx.world_size:
            raise ValueError(f"{uri}: saved by {len(per_rank)} ranks, resumed with {self.ctx.world_size}")
        self.student.load_state_dict(state["student"])
        if self.teacher is not None and state.get("teacher") is not None:
            self.teacher.load_state_dict(state["teacher"])
        if self.reviewer is not None and state.get("reviewer") is not None:
            self.reviewer.load_state_dict(state["reviewer"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        restore_rng(per_rank[self.ctx.rank], self.mix_generator)


def _raise_if_not_finite(losses: dict[str, torch.Tensor], step: int) -> None:
    if not torch.isfinite(losses["total"]):
        terms = {name: float(value) for name, value in losses.items()}
        raise FloatingPointError(f"step {step}: the loss is not finite {terms}; lower train.lr or check the data")


def train(
    cfg: ExperimentConfig,
    split: SplitFiles,
    logger: MetricLogger | None = None,
    *,
    on_step: StepHook | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train per `cfg` on `split`, resuming from the latest checkpoint when allowed; see the module doc.

    `on_step(step)` runs after every completed step (after any checkpoint); raising from it stops
    the run the way a crash would, which is how resume is tested.
    """
    from components.engine.ema import ema_momentum, ema_update_
    from components.engine.objective import compute_losses

    tcfg = cfg.train
    if tcfg.unlabeled_batch_size == 0 and tcfg.method != "supervised":
        raise ValueError(f"train.method={tcfg.method} needs train.unlabeled_batch_size > 0")
    ctx = init_distributed(tcfg.device)
    logger = logger if (logger is not None and ctx.is_main) else NullLogger()
    seed_everything(tcfg.seed)  # identical initial weights on every rank
    learners = Learners(cfg, ctx)
    student, teacher, reviewer = learners.student, learners.teacher, learners.reviewer
    scores_needed = reviewer is not None and reviewer.needs_score
    score_holdout = HoldoutScorer(split, cfg, ctx.device) if scores_needed and ctx.is_main else None

    location = tcfg.checkpoint.dir
    client = _checkpoint_client(location, cfg)
    resumed_from = ckpt.latest_checkpoint(location, client) if tcfg.checkpoint.resume else None
    if not tcfg.checkpoint.resume and ckpt.list_checkpoints(location, client):
        raise ValueError(
            f"{location}: holds checkpoints of an earlier run and train.checkpoint.resume is false; "
            "delete them or point train.checkpoint.dir elsewhere (a fresh run would mix with them)"
        )
    start_step, history, state = 0, [], None
    if resumed_from is not None:
        state = ckpt.load_checkpoint(resumed_from, client)
        check_resumable(state.get("config", {}), cfg, resumed_from)
        start_step, history = int(state["step"]), list(state.get("history", []))
    streams = Streams(cfg, split, ctx, start_step)
    if state is not None:
        streams.check_resumes_at(state.get("data_position", {}), start_step, resumed_from)
        learners.load_state_dict(state, resumed_from)  # last: restores the RNGs as they were at the save

    network = wrap_data_parallel(student, ctx, tcfg.sync_bn)
    use_amp = tcfg.amp and ctx.device.type == "cuda"
    last_uri = resumed_from or ""
    interval_images, interval_start = 0, time.perf_counter()
    bar = tqdm(
        total=tcfg.iterations, initial=start_step, desc=f"train {tcfg.method}", disable=not (progress and ctx.is_main)
    )

    def save(step_done: int) -> str:
        assert_ranks_agree(learners.replicas(), ctx)
        rng_per_rank = gather_values(capture_rng(learners.mix_generator), ctx)
        uri = ""
        if ctx.is_main:
            state_out = {
                "config": cfg.model_dump(mode="json"),
                "step": step_done,
                **learners.state_dict(rng_per_rank),
                "data_position": streams.positions(step_done),
                "history": history,
            }
            uri = ckpt.save_checkpoint(state_out, location, step_done, client)
            ckpt.prune_checkpoints(location, tcfg.checkpoint.keep_last, client)
        barrier(ctx)
        return broadcast_value(uri, ctx)

    try:
        for step in range(start_step, tcfg.iterations):
            step_done = step + 1
            log_now = step_done % tcfg.log_every == 0 or step_done == tcfg.iterations
            save_now = step_done % tcfg.checkpoint.every == 0 or step_done == tcfg.iterations
            _set_train_mode(student, tcfg.freeze_bn)
            labeled, unlabeled = streams.next(step)
            with torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else nullcontext():
                losses = compute_losses(
                    tcfg.method, network, teacher, reviewer, labeled, unlabeled, cfg, step, learners.mix_generator
                )
            learners.optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            if tcfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(student.parameters(), tcfg.grad_clip)
            learners.optimizer.step()
            learners.scheduler.step()
            average_buffers_(student, ctx)
            momentum = None
            if teacher is not None:
                momentum = ema_momentum(step, tcfg.ema.momentum, tcfg.ema.warmup_iters)
                ema_update_(teacher, student, momentum)
            if log_now or save_now:  # a host sync, so not every step; no non-finite weights reach a checkpoint
                _raise_if_not_finite(losses, step)

            if reviewer is not None and reviewer.due(step_done):
                score = None
                if scores_needed:
                    score = broadcast_value(score_holdout(teacher) if score_holdout is not None else None, ctx)
                reviewer.maybe_update(teacher, score, step_done)
                if scores_needed:
                    check = {"teacher/holdout_ap": float(score), "reviewer/best_ap": float(reviewer.best_score)}
                    history.append({"step": float(step_done), **check})
                    logger.log_metrics(check, step=step_done)

            crops = labeled["image"].shape[0] + (unlabeled["easy"].shape[0] if unlabeled is not None else 0)
            interval_images += crops * ctx.world_size
            if log_now:
                elapsed = max(time.perf_counter() - interval_start, 1e-9)
                record = {f"loss/{name}": float(value.detach()) for name, value in losses.items()}
                record.update(
                    step=float(step_done), lr=float(learners.scheduler.get_last_lr()[0]),
                    images_per_s=interval_images / elapsed,
                )
                if momentum is not None:
                    record["ema_momentum"] = momentum
                history.append(record)
                logger.log_metrics({k: v for k, v in record.items() if k != "step"}, step=step_done)
                bar.set_postfix(loss=f"{record['loss/total']:.4g}", lr=f"{record['lr']:.2e}")
                interval_images, interval_start = 0, time.perf_counter()
            bar.update(1)
            if save_now:
                last_uri = save(step_done)
            if on_step is not None:
                on_step(step_done)
    finally:
        bar.close()
    return TrainResult(checkpoint_uri=last_uri, step=max(start_step, tcfg.iterations), history=history)
