"""What a training run is at a step, and how it is captured in and restored from a checkpoint.

`TrainingState` holds the student, the EMA teacher, the reviewer, optimiser, schedule, the
Keypoint-Mix generator (which the hard-view ops draw from too) and the history rows; for the dual
method also the second student with its own optimiser and schedule. A dual checkpoint's `student`
is whichever of the two scored better on the held-out labels at that save (`dual.registered` says
which), so everything that loads `student` (evaluation, registration, serving) gets the better one;
`peer` is the other, and resume puts each back in its own role. `CheckpointStore` finds where a
run resumes, refuses a checkpoint of another experiment, and writes a checkpoint of the state plus
every RNG of every rank and the data streams' positions. Resume is exact: what a step draws is either a pure function of
(seed, step) or one of these saved RNGs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from components.config import ExperimentConfig
from components.engine import checkpoint as ckpt
from components.engine.distributed import (
    DistributedContext,
    assert_ranks_agree,
    barrier,
    broadcast_value,
    gather_values,
    unwrap,
)
from components.engine.ema import EMATeacher
from components.engine.reviewer import Reviewer
from components.engine.schedule import build_optimizer, build_scheduler
from components.engine.streams import BatchStreams
from components.engine.warm_start import InitialWeights, load_initial_weights
from components.method import MethodSpec
from components.models import build_model
from components.storage.s3 import is_s3_uri, patient_s3_client

HistoryRow = dict[str, float]
LegacyNumpyState = tuple[str, NDArray[np.uint32], int, int, float]

RESUME_MUST_MATCH = (
    ("keypoints",),
    ("model",),
    ("input",),
    ("train", "method"),
    ("train", "seed"),
    ("train", "batch_size"),
    ("train", "unlabeled_batch_size"),
    ("train", "reviewer", "enabled"),
    ("train", "reviewer", "mode"),
    ("train", "mfl", "enabled"),
    ("train", "mfl", "in_baselines"),
    ("train", "consistency", "hard_views"),
    ("augment", "hard_recipe"),
)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng(generator: torch.Generator) -> dict[str, Any]:
    """Every RNG this process draws from, as tensors and plain values (loadable with weights_only)."""
    kind, keys, pos, has_gauss, cached = cast(LegacyNumpyState, np.random.get_state(legacy=True))
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


def _at(config: dict[str, Any], path: tuple[str, ...], fallback: Any = None) -> Any:
    """The value at `path`, or `fallback` where the config has no such field.

    A checkpoint older than a field ran with what became that field's default, so it reads as the default.
    """
    node: Any = config
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return fallback
        node = node[key]
    return node


def check_resumable(saved: dict[str, Any], cfg: ExperimentConfig, uri: str) -> None:
    """Refuse to continue a checkpoint made by a different experiment (another net, method, seed or batch).

    Budget fields such as `train.iterations` may change: that is how a finished run is extended.
    """
    current = cfg.model_dump(mode="json")
    defaults = ExperimentConfig().model_dump(mode="json")
    differences = []
    for path in RESUME_MUST_MATCH:
        old, new = _at(saved, path, fallback=_at(defaults, path)), _at(current, path)
        if old != new:
            differences.append(f"{'.'.join(path)}: checkpoint {old!r}, config {new!r}")
    if differences:
        raise ckpt.ResumeError(
            f"{uri}: cannot resume, the checkpoint belongs to another experiment ({'; '.join(differences)}); "
            "point train.checkpoint.dir elsewhere for a new run"
        )


class TrainingState:
    """Students, teacher, reviewer, optimisers, schedules, augmentation generator, history: what a checkpoint holds."""

    def __init__(
        self, cfg: ExperimentConfig, spec: MethodSpec, ctx: DistributedContext, init: InitialWeights | None = None
    ) -> None:
        """`init`: trained weights the student (and so the teacher) starts from; else random initialisation."""
        tcfg = cfg.train
        self.ctx = ctx
        memory_format = torch.channels_last if tcfg.channels_last else torch.contiguous_format
        student = build_model(cfg)
        # dual: built right after the first, from the same seed's next draws, so it starts from other weights
        peer = build_model(cfg) if spec.students > 1 else None
        if init is not None:  # a warm start: the student (dual's first) starts from trained weights
            load_initial_weights(student, init)
        self.student: nn.Module = student.to(ctx.device).to(memory_format=memory_format)
        self.peer: nn.Module | None = peer.to(ctx.device).to(memory_format=memory_format) if peer is not None else None
        self.teacher = EMATeacher(self.student, tcfg.ema.momentum, tcfg.ema.warmup_iters) if spec.has_teacher else None
        self.reviewer = (
            Reviewer(tcfg.reviewer, template=self.teacher.module)
            if spec.has_reviewer and self.teacher is not None
            else None
        )
        self.optimizer = build_optimizer(list(self.student.parameters()), tcfg)
        self.scheduler = build_scheduler(self.optimizer, tcfg)
        self.peer_optimizer = build_optimizer(list(self.peer.parameters()), tcfg) if self.peer is not None else None
        self.peer_scheduler = build_scheduler(self.peer_optimizer, tcfg) if self.peer_optimizer is not None else None
        self.registered = 0  # dual: which student (0 first, 1 peer) the checkpoint's `student` holds
        self.holdout_ap: list[float] = []  # dual: both students' held-out AP at the last save
        # per rank: each rank mixes the keypoints of its own slice of the batch
        self.mix_generator = torch.Generator().manual_seed(tcfg.seed * 1000 + ctx.rank)
        self.step = 0
        self.history: list[HistoryRow] = []

    @property
    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    @property
    def students(self) -> list[nn.Module]:
        """The networks trained by backpropagation: the student, and the dual method's peer."""
        return [self.student] if self.peer is None else [self.student, self.peer]

    @property
    def optimizers(self) -> list[tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]]:
        """(optimiser, schedule) of each student, in `students` order."""
        pairs: list[tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]] = [
            (self.optimizer, self.scheduler)
        ]
        if self.peer_optimizer is not None and self.peer_scheduler is not None:
            pairs.append((self.peer_optimizer, self.peer_scheduler))
        return pairs

    def register_better(self, holdout_ap: list[float]) -> None:
        """Dual: the checkpoint's `student` is the one with the higher held-out AP (the first on a tie)."""
        self.holdout_ap = [float(ap) for ap in holdout_ap]
        self.registered = int(self.holdout_ap[1] > self.holdout_ap[0])

    def replicas(self) -> dict[str, nn.Module | None]:
        snapshots = {f"reviewer{i}": s.model for i, s in enumerate(self.reviewer.snapshots)} if self.reviewer else {}
        teacher = self.teacher.module if self.teacher else None
        return {"student": self.student, "peer": self.peer, "teacher": teacher, **snapshots}

    def state_dict(self, rng_per_rank: list[dict[str, Any]]) -> dict[str, Any]:
        weights = [unwrap(network).state_dict() for network in self.students]
        state = {
            "student": weights[self.registered],
            "teacher": self.teacher.state_dict() if self.teacher is not None else None,
            "reviewer": self.reviewer.state_dict() if self.reviewer is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": {"per_rank": rng_per_rank},
        }
        if self.peer_optimizer is not None and self.peer_scheduler is not None:
            state.update(
                peer=weights[1 - self.registered],
                peer_optimizer=self.peer_optimizer.state_dict(),  # optimisers and schedules stay in their roles
                peer_scheduler=self.peer_scheduler.state_dict(),
                dual={"registered": self.registered, "holdout_ap": list(self.holdout_ap)},
            )
        return state

    def load_state_dict(self, state: dict[str, Any], uri: str) -> None:
        """Weights, optimiser and schedule, then this rank's RNGs as they were at the save (so: last)."""
        per_rank = state["rng"]["per_rank"]
        if len(per_rank) != self.ctx.world_size:
            raise ckpt.ResumeError(f"{uri}: saved by {len(per_rank)} ranks, resumed with {self.ctx.world_size}")
        if self.peer is not None:
            self.registered = int(state["dual"]["registered"])
            self.holdout_ap = [float(ap) for ap in state["dual"]["holdout_ap"]]
            roles = (state["student"], state["peer"]) if self.registered == 0 else (state["peer"], state["student"])
            self.student.load_state_dict(roles[0])
            self.peer.load_state_dict(roles[1])
            if self.peer_optimizer is not None and self.peer_scheduler is not None:
                self.peer_optimizer.load_state_dict(state["peer_optimizer"])
                self.peer_scheduler.load_state_dict(state["peer_scheduler"])
        else:
            self.student.load_state_dict(state["student"])
        if self.teacher is not None and state.get("teacher") is not None:
            self.teacher.load_state_dict(state["teacher"])
        if self.reviewer is not None and state.get("reviewer") is not None:
            self.reviewer.load_state_dict(state["reviewer"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        restore_rng(per_rank[self.ctx.rank], self.mix_generator)


@dataclass
class ResumePoint:
    uri: str
    state: dict[str, Any]

    @property
    def step(self) -> int:
        return int(self.state["step"])

    @property
    def history(self) -> list[HistoryRow]:
        return list(self.state.get("history", []))


class CheckpointStore:
    """`train.checkpoint.dir` (a directory or s3:// prefix) of one run: where it resumes and where it saves."""

    def __init__(self, cfg: ExperimentConfig) -> None:
        self.cfg = cfg
        self.location = cfg.train.checkpoint.dir
        storage = cfg.storage  # S3 calls wait out outages up to the deadline; the state waits in memory
        self.client = (
            patient_s3_client(storage.endpoint_url, storage.region, storage.retry_deadline_s)
            if is_s3_uri(self.location)
            else None
        )

    def resume_point(self) -> ResumePoint | None:
        """The latest checkpoint of this experiment, None for a fresh run; refuses to mix runs."""
        policy = self.cfg.train.checkpoint
        if not policy.resume:
            if ckpt.list_checkpoints(self.location, self.client):
                raise ckpt.ResumeError(
                    f"{self.location}: holds checkpoints of an earlier run and train.checkpoint.resume is false; "
                    "delete them or point train.checkpoint.dir elsewhere (a fresh run would mix with them)"
                )
            return None
        uri = ckpt.latest_checkpoint(self.location, self.client)
        if uri is None:
            return None
        state = ckpt.load_checkpoint(uri, self.client)
        check_resumable(state.get("config", {}), self.cfg, uri)
        return ResumePoint(uri, state)

    def save(self, state: TrainingState, streams: BatchStreams) -> str:
        """Checkpoint `state` at `state.step` (a collective: every rank calls it); returns the URI on every rank."""
        ctx = state.ctx
        assert_ranks_agree(state.replicas(), ctx)
        rng_per_rank = gather_values(capture_rng(state.mix_generator), ctx)
        uri = ""
        if ctx.is_main:
            state_out = {
                "config": self.cfg.model_dump(mode="json"),
                "step": state.step,
                **state.state_dict(rng_per_rank),
                "data_position": streams.positions(state.step),
                "history": state.history,
            }
            uri = ckpt.save_checkpoint(state_out, self.location, state.step, self.client)
            ckpt.prune_checkpoints(self.location, self.cfg.train.checkpoint.keep_last, self.client)
        barrier(ctx)
        return str(broadcast_value(uri, ctx))
