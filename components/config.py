"""Experiment configuration: one validated tree, loaded from YAML and overridden from the CLI.

Every section forbids unknown keys, so a typo in a YAML file or an override fails loudly with the
path of the offending field instead of silently training with a default.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from components.errors import TrsPoseError
from components.hard_recipe import parse_recipe
from components.keypoints import COCO_NAMES, COCO_SKELETON, KeypointSet, build_keypoint_set


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SyntheticDataConfig(Section):
    """Procedurally drawn people (COCO's 17 keypoints), drawn only into a folder trs-pose made for them.

    `data.root` must not exist, be empty, or be a folder trs-pose drew earlier (it carries the mark
    `components.data.sources.SYNTHETIC_MARK`); any other folder is a user's and is never written.
    """

    num_train_images: int = Field(600, ge=1)
    num_val_images: int = Field(100, ge=1)
    seed: int = 0
    image_size: tuple[int, int] = (256, 320)  # (height, width)
    style: Literal["standard", "easy"] = "standard"  # scene difficulty (components/data/synthetic/style.py)


class UnlabeledDetectorConfig(Section):
    """A torchvision detector that boxes the subjects of raw unlabeled images (`data.unlabeled.boxes: detector`)."""

    weights: str | None = None  # a local state-dict file; nothing is downloaded
    arch: str = "fasterrcnn_mobilenet_v3_large_fpn"  # any of components/serving/detector_archs.py
    category: int = Field(1, ge=1)  # the detector's label of the subject: COCO 1 is a person, 18 a dog, ...
    min_score: float = Field(0.5, ge=0.0, le=1.0)
    batch_size: int = Field(8, ge=1)  # images per forward pass; progress is saved after every batch

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, value: str) -> str:
        from components.serving.detector_archs import DETECTOR_ARCHS

        if value not in DETECTOR_ARCHS:
            raise ValueError(f"unknown detector arch {value!r}; expected one of {', '.join(DETECTOR_ARCHS)}")
        return value


class UnlabeledConfig(Section):
    """Raw unlabeled images and videos, beside (or instead of) the unlabeled part of the labeled COCO file.

    They need no annotation file: each image (or sampled frame) gets its subject boxes from `boxes`:
    `whole_image` (one subject filling the image: cropped animals, hands, single-person frames),
    `detector` (the pipeline's detect step, `detector`), or a COCO detection-results JSON whose records
    name the image by `file_name`, its path relative to the source folder (`frames/<video>/<frame>` for video).
    """

    images: tuple[str, ...] = ()  # folders or s3:// prefixes, searched recursively for .jpg, .jpeg and .png
    videos: tuple[str, ...] = ()  # video files, local or s3://, sampled at `fps`
    fps: float = Field(2.0, gt=0.0)
    boxes: str = "whole_image"  # whole_image | detector | a COCO detection-results JSON
    detector: UnlabeledDetectorConfig = Field(default_factory=UnlabeledDetectorConfig)
    on_error: Literal["skip", "fail"] = "skip"  # a corrupt, tiny or duplicate image: skipped (and reported), or refused
    min_side: int = Field(16, ge=1)  # pixels; smaller images are not worth a crop
    max_side: int = Field(20_000, ge=1)

    @model_validator(mode="after")
    def _detector_has_weights(self) -> UnlabeledConfig:
        if self.boxes == "detector" and not self.detector.weights:
            raise ValueError("data.unlabeled.boxes=detector needs data.unlabeled.detector.weights (a local file)")
        if self.min_side > self.max_side:
            raise ValueError("data.unlabeled.min_side is above data.unlabeled.max_side")
        return self

    @property
    def any(self) -> bool:
        return bool(self.images or self.videos)


class DataConfig(Section):
    """Where the labeled COCO-format keypoint set lives, the raw unlabeled data, and how labels are split.

    Short form: `root` in COCO's layout (annotations/person_keypoints_<split>.json and <split>/ for
    `train_split` and `val_split`). Any of `train_ann`, `train_images`, `val_ann` and `val_images`
    (local paths or s3:// URIs, any names) replaces its part of the short form; with all four, `root`
    may be null. Every data source is read-only to trs-pose.
    """

    root: str | None = "data/synthetic"  # local directory or s3://bucket/prefix with COCO's layout
    train_split: str = "train"  # annotations/person_keypoints_<split>.json and images under <split>/
    val_split: str = "val"
    train_ann: str | None = None
    train_images: str | None = None
    val_ann: str | None = None
    val_images: str | None = None
    synthetic: SyntheticDataConfig | None = Field(default_factory=SyntheticDataConfig)  # unused with explicit paths
    unlabeled: UnlabeledConfig = Field(default_factory=UnlabeledConfig)
    cache_dir: str = ".cache/datasets"
    num_labeled: int | None = Field(None, ge=1)  # labeled images (the 1K/5K/10K protocol)
    # used when num_labeled is None; a fraction that leaves too few for the holdout is clamped to what is left
    labeled_fraction: float | None = Field(0.05, gt=0.0, le=1.0)
    holdout_labeled: int = Field(20, ge=0)  # labeled images held out to rank reviewer snapshots
    unlabeled_boxes: str = (
        "ground_truth"  # boxes of the labeled file's unlabeled images: or a COCO detection-results JSON
    )
    unlabeled_min_score: float = Field(0.5, ge=0.0, le=1.0)  # detector boxes kept as unlabeled people
    split_seed: int = 0
    min_keypoints: int = Field(1, ge=0)  # people with fewer labeled keypoints are not trained on

    @model_validator(mode="after")
    def _consistent(self) -> DataConfig:
        if self.num_labeled is None and self.labeled_fraction is None:
            raise ValueError("set data.num_labeled or data.labeled_fraction")
        explicit = {
            "train_ann": self.train_ann,
            "train_images": self.train_images,
            "val_ann": self.val_ann,
            "val_images": self.val_images,
        }
        if self.root is None and None in explicit.values():
            missing = ", ".join(f"data.{name}" for name, value in explicit.items() if value is None)
            raise ValueError(f"data.root is null, so {missing} must be set")
        return self

    @property
    def draws_synthetic(self) -> bool:
        """Synthetic people are drawn only into data.root's layout, never beside explicit locations."""
        explicit = (self.train_ann, self.train_images, self.val_ann, self.val_images)
        return self.synthetic is not None and self.root is not None and not any(explicit)


class KeypointsConfig(Section):
    """The keypoint set. `names`, `skeleton`, `category` and `category_id` are read from the labeled
    annotations' keypoint category when a run starts (None until then means COCO's 17 person keypoints);
    the rest are yours to set. See components/keypoints.py for the defaults."""

    names: tuple[str, ...] | None = None
    skeleton: tuple[tuple[int, int], ...] | None = None  # 1-based limbs, as COCO files write them
    category: str | None = None
    category_id: int | None = None
    sigmas: tuple[float, ...] | None = None  # OKS sigma per keypoint; default: COCO's by name, else 0.0669
    flip_pairs: tuple[tuple[str, str], ...] | None = None  # default: from left/right names; [] for none
    upper_body: tuple[str, ...] | None = None  # half-body augmentation's upper part; default: off (COCO: head and arms)

    @model_validator(mode="after")
    def _usable(self) -> KeypointsConfig:
        if self.sigmas is not None and not all(s > 0 for s in self.sigmas):
            raise ValueError(f"keypoints.sigmas must all be positive, got {list(self.sigmas)}")
        if self.names is not None:
            self.keypoint_set()  # names, skeleton, flip pairs and upper body must fit together
        return self

    def keypoint_set(self) -> KeypointSet:
        """The set these fields describe (COCO's 17 person keypoints while `names` is unresolved)."""
        return _keypoint_set(
            self.names, self.skeleton, self.category, self.category_id, self.sigmas, self.flip_pairs, self.upper_body
        )


@lru_cache(maxsize=64)
def _keypoint_set(
    names: tuple[str, ...] | None,
    skeleton: tuple[tuple[int, int], ...] | None,
    category: str | None,
    category_id: int | None,
    sigmas: tuple[float, ...] | None,
    flip_pairs: tuple[tuple[str, str], ...] | None,
    upper_body: tuple[str, ...] | None,
) -> KeypointSet:
    return build_keypoint_set(
        names if names is not None else COCO_NAMES,
        skeleton if skeleton is not None else (COCO_SKELETON if names is None else ()),
        sigmas=sigmas,
        flip_pairs=flip_pairs,
        upper_body=upper_body,
        category=category or "person",
        category_id=category_id if category_id is not None else 1,
    )


class InputConfig(Section):
    """Top-down crop geometry shared by datasets, model and decoding."""

    image_size: tuple[int, int] = (256, 192)  # (height, width) of the network input
    heatmap_stride: int = Field(4, ge=1)
    sigma: float = Field(2.0, gt=0.0)
    box_padding: float = Field(1.25, ge=1.0)

    @property
    def heatmap_size(self) -> tuple[int, int]:
        return (self.image_size[0] // self.heatmap_stride, self.image_size[1] // self.heatmap_stride)

    @property
    def aspect_ratio(self) -> float:
        return self.image_size[1] / self.image_size[0]


class HardOpsConfig(Section):
    """Parameters of the hard-view batch ops, MultiAugs' (lib/core/config.py, lib/utils/augments.py) by default.

    Lengths are fractions of the crop height: MultiAugs' pixels at its 256-pixel-high input, so the
    ops keep their size relative to the person at other input sizes.
    """

    joint_cutout_joints: int = Field(5, ge=1)  # MASK_JOINT_NUM
    joint_cutmix_joints: int = Field(2, ge=1)  # KP_CutMix_JOINT_NUM
    cutout_holes: int = Field(5, ge=1)  # MASK_HOLES_NUM_CO
    cutmix_holes: int = Field(2, ge=1)  # MASK_HOLES_NUM_CM
    box_half_size: tuple[float, float] = (10 / 256, 20 / 256)  # torch.randint(10, 20) px half sides
    joint_jitter: float = Field(10 / 256, ge=0.0)  # std of the box centre around the keypoint (randn * 10 px)
    mixup_alpha: float = Field(0.2, gt=0.0)  # lam ~ Beta(alpha, alpha)
    mixup_min_keep: float = Field(0.75, ge=0.0, le=1.0)  # the crop keeps 1 - (1 - min_keep) lam of itself
    randaugment_ops: int = Field(2, ge=1)  # N
    randaugment_magnitude: int = Field(20, ge=0, le=30)  # M of 30 (RAND_MAGNITUDE)
    affine_rotation: float = Field(30.0, ge=0.0)  # std in degrees, clipped at twice (ROT_FACTOR)
    affine_rotation_prob: float = Field(0.8, ge=0.0, le=1.0)
    affine_scale: float = Field(0.25, ge=0.0, lt=1.0)  # std of the zoom, clipped at once (SCALE_FACTOR)

    @field_validator("box_half_size")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0.0 < value[0] <= value[1]:
            raise ValueError("box_half_size must be (low, high) with 0 < low <= high")
        return value


class AugmentConfig(Section):
    """Random affine and photometric ranges: labeled crops and hard views, `easy_*` for the teacher's view.

    `hard_*` give the unlabeled hard view its own affine strength (None: the labeled crops'), so a
    recipe can keep labeled augmentation mild and still ask the student for real invariance.
    """

    flip: bool = True
    scale_factor: float = Field(0.35, ge=0.0)
    rotation: float = Field(45.0, ge=0.0)
    rotation_prob: float = Field(0.6, ge=0.0, le=1.0)
    half_body_prob: float = Field(0.3, ge=0.0, le=1.0)
    easy_scale_factor: float = Field(0.1, ge=0.0)
    easy_rotation: float = Field(10.0, ge=0.0)
    color_jitter: float = Field(0.4, ge=0.0)
    noise_std: float = Field(0.05, ge=0.0)
    blur_prob: float = Field(0.3, ge=0.0, le=1.0)  # hard view only
    hard_scale_factor: float | None = Field(None, ge=0.0)
    hard_rotation: float | None = Field(None, ge=0.0)
    hard_rotation_prob: float | None = Field(None, ge=0.0, le=1.0)
    # the batch ops of each hard view (components/hard_recipe.py): "standard" is the crop above alone;
    # MultiAugs' combinations are "joco" and "jccm"; with train.consistency.hard_views > 1 path m takes entry m % len
    hard_recipe: tuple[str, ...] = ("standard",)
    hard_ops: HardOpsConfig = Field(default_factory=HardOpsConfig)

    @field_validator("hard_recipe", mode="before")
    @classmethod
    def _one_recipe_is_a_list(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @field_validator("hard_recipe")
    @classmethod
    def _recipes_parse(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError('give at least one recipe ("standard": the hard crop alone)')
        for recipe in value:
            parse_recipe(recipe)
        return value

    def hard_affine_ranges(self) -> tuple[float, float, float]:
        """(scale_factor, rotation, rotation_prob) of the hard view, falling back to the labeled crops'."""
        return (
            self.scale_factor if self.hard_scale_factor is None else self.hard_scale_factor,
            self.rotation if self.hard_rotation is None else self.hard_rotation,
            self.rotation_prob if self.hard_rotation_prob is None else self.hard_rotation_prob,
        )


class ModelConfig(Section):
    backbone: str = "resnet18"  # any timm model with features_only (resnet18, resnet50, hrnet_w32, ...)
    pretrained: str | None = None  # a local weights file, or a hub name such as "timm/resnet18.a1_in1k"
    head: Literal["deconv", "fpn"] = "deconv"  # fpn: U-Net style skips, far faster to train from scratch
    deconv_layers: int = Field(3, ge=0)
    deconv_channels: int = Field(256, ge=8)  # also the fpn decoder width
    mfl_strides: tuple[int, ...] = (8, 16, 32)  # earlier stages that get auxiliary heatmap heads
    mfl_channels: int = Field(64, ge=8)  # width of each light auxiliary head


class EMAConfig(Section):
    momentum: float = Field(0.999, gt=0.0, lt=1.0)
    warmup_iters: int = Field(100, ge=0)  # momentum ramps from 0 so the teacher tracks early learning


class ReviewerConfig(Section):
    enabled: bool = True
    mode: Literal["best", "topk", "slow_ema"] = "best"
    check_every: int = Field(100, ge=1)
    topk: int = Field(3, ge=1)
    slow_momentum: float = Field(0.9999, gt=0.0, lt=1.0)
    weight: float = Field(0.5, ge=0.0)  # lambda_r
    fuse_by_confidence: bool = False


class ConsistencyConfig(Section):
    weight: float = Field(1.0, ge=0.0)  # lambda_u after ramp-up
    burn_in_iters: int = Field(0, ge=0)  # supervised-only iterations first: a random teacher has nothing to teach
    rampup_iters: int = Field(200, ge=0)  # counted from the end of the burn-in
    confidence_threshold: float = Field(0.3, ge=0.0, le=1.0)  # tau on the pseudo-heatmap peak
    hard_views: int = Field(1, ge=1)  # M hard views of each unlabeled crop, each with its own terms (MultiAugs)


class MFLConfig(Section):
    enabled: bool = True
    weights: tuple[float, ...] = (0.5, 0.25, 0.125)  # one per ModelConfig.mfl_strides entry
    in_baselines: bool = (
        False  # also deep-supervise supervised / mean_teacher / dual: separates MFL's gain from the unlabeled data's
    )


class KeypointMixConfig(Section):
    enabled: bool = True
    prob: float = Field(0.5, ge=0.0, le=1.0)
    num_keypoints: int = Field(3, ge=1)
    patch_size: float = Field(0.12, gt=0.0, le=1.0)  # fraction of the crop height
    start_iter: int = Field(0, ge=0)  # first iteration that mixes, e.g. after the consistency ramp-up
    sources: Literal["batch", "same_person"] = "batch"  # where source patches come from (METHOD.md allows both)


class CheckpointConfig(Section):
    dir: str = "runs/checkpoints"  # local directory or s3://bucket/prefix
    every: int = Field(200, ge=1)
    resume: bool = True
    keep_last: int = Field(2, ge=1)


class CompileConfig(Section):
    """`torch.compile` switches: fewer, fused kernel launches where the host bounds the iteration.

    `student_step` compiles the student network, so its forward and (through AOTAutograd) its
    backward run as compiled graphs; `teacher_forward` compiles the teacher's and the reviewer
    snapshots' inference forwards. `mode="reduce-overhead"` adds CUDA graphs on a GPU.
    """

    student_step: bool = False
    teacher_forward: bool = False
    mode: Literal["default", "reduce-overhead", "max-autotune-no-cudagraphs"] = "default"
    backend: Literal["inductor", "aot_eager"] = "inductor"  # aot_eager: no code generation, for debugging


class WarmStartConfig(Section):
    """The schedule of a run that starts from trained weights (`train.init` not scratch): the teacher is
    already good, so it needs no labels-only burn-in, no long warm-ups and no consistency ramp-up."""

    burn_in_iters: int = Field(0, ge=0)
    warmup_iters: int = Field(20, ge=0)  # learning-rate warm-up
    ema_warmup_iters: int = Field(0, ge=0)
    rampup_iters: int = Field(0, ge=0)
    # the peak learning rate is train.lr times this: trained weights are refined, not relearned (a restart
    # at the first run's peak throws away much of what they know before it is relearned)
    lr_factor: float = Field(0.3, gt=0.0, le=1.0)


INIT_MODEL_URI = re.compile(r"^models:/[^/@]+(?:@[^/@]+|/\d+)$")


class TrainConfig(Section):
    method: Literal["supervised", "mean_teacher", "trs", "dual"] = "trs"
    # where the student's weights start: scratch, champion (the registry's), models:/NAME/VERSION,
    # models:/NAME@ALIAS, or a checkpoint file or folder; optimiser, schedule and reviewer start fresh
    init: str = "scratch"
    warm_start: WarmStartConfig = Field(default_factory=WarmStartConfig)
    iterations: int = Field(1000, ge=1)
    batch_size: int = Field(32, ge=1)  # labeled crops per iteration
    unlabeled_batch_size: int = Field(32, ge=0)
    optimizer: Literal["adam", "adamw", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    schedule: Literal["cosine", "step"] = "cosine"
    warmup_iters: int = Field(50, ge=0)
    step_milestones: tuple[float, ...] = (0.7, 0.9)  # fractions of iterations, for the step schedule
    grad_clip: float | None = Field(5.0, gt=0.0)
    foreground_weight: float = Field(0.0, ge=0.0)  # heatmap error weight 1 + w * target (0: plain MSE)
    amp: bool = True  # bf16 autocast on CUDA; ignored on the CPU
    channels_last: bool = True
    sync_bn: bool = True  # SyncBatchNorm across GPUs under torchrun (no CPU kernel: gloo runs plain BN)
    freeze_bn: bool = False  # BN layers use running statistics while training (tiny per-device batches)
    num_workers: int = Field(2, ge=0)
    # cpu: loader workers decode and augment; gpu: workers read JPEG bytes, the device decodes and augments
    data_path: Literal["cpu", "gpu"] = "cpu"
    compile: CompileConfig = Field(default_factory=CompileConfig)
    device: str = "auto"
    seed: int = 0
    log_every: int = Field(20, ge=1)
    ema: EMAConfig = Field(default_factory=EMAConfig)
    reviewer: ReviewerConfig = Field(default_factory=ReviewerConfig)
    consistency: ConsistencyConfig = Field(default_factory=ConsistencyConfig)
    mfl: MFLConfig = Field(default_factory=MFLConfig)
    keypoint_mix: KeypointMixConfig = Field(default_factory=KeypointMixConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)

    @field_validator("init")
    @classmethod
    def _init_is_known(cls, value: str) -> str:
        if value.startswith("models:") and not INIT_MODEL_URI.match(value):
            raise ValueError(f"{value!r}: a registered model is models:/NAME/VERSION or models:/NAME@ALIAS")
        if not value.strip():
            raise ValueError("scratch, champion, models:/NAME/VERSION, models:/NAME@ALIAS or a checkpoint path")
        return value

    @property
    def warm(self) -> bool:
        return self.init != "scratch"


class EvalConfig(Section):
    flip_test: bool = False
    decoder: Literal["argmax", "dark"] = "argmax"
    boxes: str = "ground_truth"  # or a COCO detection-results JSON
    batch_size: int = Field(64, ge=1)
    keypoint_score_threshold: float = Field(0.2, ge=0.0, le=1.0)  # joints above it score the person
    num_workers: int = Field(2, ge=0)
    oks_nms_threshold: float | None = Field(0.9, gt=0.0, le=1.0)  # detector boxes only; None keeps duplicates


class SuggestConfig(Section):
    """Each pipeline run's "label these next" list (components/labeling): the unlabeled images the method
    is least sure about, logged to MLflow and ZenML with the model's poses as pre-annotations."""

    enabled: bool = True
    budget: int = Field(20, ge=1)  # images, not people
    max_images: int | None = Field(None, ge=1)  # score a random sample of this many (None: every unlabeled image)


class StorageConfig(Section):
    """S3-compatible artifact store. Credentials come from the environment, never from here."""

    endpoint_url: str | None = None  # None means AWS; set for SeaweedFS, MinIO, Ceph...
    bucket: str = "trs-pose"
    region: str = "us-east-1"
    retry_deadline_s: float = Field(180.0, gt=0.0)  # checkpoint and result writes retry this long, then fail
    run_lease_ttl_s: float = Field(60.0, ge=3.0)  # a run whose process died is seen dead this long after


class RegistryConfig(Section):
    tracking_uri: str | None = None  # None: the local services' MLflow server
    experiment: str = "trs-pose"
    model_name: str = "trs-pose"
    promotion_margin: float = Field(0.0, ge=0.0)  # AP the challenger must add over the champion
    lease_timeout_s: float = Field(120.0, gt=0.0)  # a promotion or rollback waits this long for the registry lease
    lease_ttl_s: float = Field(60.0, ge=5.0)  # a crashed holder's lease expires this long after its last renewal
    retry_deadline_s: float = Field(180.0, gt=0.0)  # MLflow logging and registration retry this long, then fail
    # Log model.onnx beside each version (10-20 s of export a registration). Without it `--runtime onnx`
    # exports at load time; false also suits a backbone that the exporter cannot trace.
    onnx: bool = True


class KubernetesConfig(Section):
    namespace: str = "trs-pose"
    image: str = "ghcr.io/trs-pose/trainer:0.1.0"  # pinned tag; prod pins a digest (k8s/overlays/prod)
    gpus: int = Field(1, ge=0)
    nodes: int = Field(1, ge=1)
    processes_per_node: int = Field(1, ge=1)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    s3_secret: str = "trs-pose-s3"
    mlflow_secret: str = "trs-pose-mlflow"
    zenml_secret: str = "trs-pose-zenml"  # ZENML_STORE_URL + ZENML_STORE_API_KEY for the retraining CronJob
    active_deadline_seconds: int = Field(86_400, ge=60)
    backoff_limit: int = Field(3, ge=0)
    ttl_seconds_after_finished: int = Field(86_400, ge=0)
    shm_size: str = "8Gi"
    cpu_request: str = "4"
    cpu_limit: str = "8"
    memory_request: str = "24Gi"
    memory_limit: str = "24Gi"
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] = "IfNotPresent"
    launcher_service_account: str = "trs-pose-launcher"  # the CronJob's pod; training pods get no token
    run_prefix: str = "runs"  # pods write checkpoints and result.json under s3://<bucket>/<run_prefix>/<run id>/
    config_error_exit_code: int = Field(2, ge=1, le=255)  # click's usage-error code: FailJob, never retried
    engine: Literal["job", "trainjob", "pytorchjob"] = "job"  # what the launcher submits: Job, TrainJob, PyTorchJob
    runtime: str = "torch-distributed"  # Kubeflow Trainer ClusterTrainingRuntime for multi-GPU TrainJobs
    schedule: str = "0 3 * * 0"  # retraining CronJob schedule
    unschedulable_timeout_seconds: int = Field(900, ge=0)  # launcher gives up on a pod Unschedulable this long


class BackendConfig(Section):
    kind: Literal["local", "kubernetes"] = "local"
    kubernetes: KubernetesConfig = Field(default_factory=KubernetesConfig)


class ExperimentConfig(Section):
    name: str = "trs-pose"
    data: DataConfig = Field(default_factory=DataConfig)
    keypoints: KeypointsConfig = Field(default_factory=KeypointsConfig)
    input: InputConfig = Field(default_factory=InputConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    suggest: SuggestConfig = Field(default_factory=SuggestConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    backend: BackendConfig = Field(default_factory=BackendConfig)

    @field_validator("name")
    @classmethod
    def _name_is_simple(cls, value: str) -> str:
        if not value or any(ch.isspace() for ch in value):
            raise ValueError("name must be a non-empty string without spaces")
        return value

    @model_validator(mode="after")
    def _mfl_weights_match_strides(self) -> ExperimentConfig:
        if self.train.mfl.enabled and len(self.train.mfl.weights) != len(self.model.mfl_strides):
            raise ValueError(
                f"train.mfl.weights has {len(self.train.mfl.weights)} entries but "
                f"model.mfl_strides has {len(self.model.mfl_strides)}"
            )
        return self

    def to_yaml(self) -> str:
        """The fully resolved config, as logged with every run."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


class ConfigError(TrsPoseError, ValueError):
    """A config file or override that does not validate; the message names the file and field."""


class ConfigLoader(yaml.SafeLoader):
    """YAML as people write numbers: PyYAML follows YAML 1.1, where `1e3` (no dot) is a string; YAML 1.2
    reads it as a float, and so do we (`--set train.iterations=1e3` is 1000)."""


ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=ConfigLoader)  # a SafeLoader: plain data only


def parse_override(override: str) -> tuple[list[str], Any]:
    """`train.iterations=200` -> (["train", "iterations"], 200); the value is parsed as YAML."""
    key, sep, raw = override.partition("=")
    if not sep or not key.strip() or any(not part.strip() for part in key.split(".")):
        raise ConfigError(f"--set {override!r}: not of the form section.field=value")
    try:
        value = parse_yaml(raw)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or "unparsable"
        raise ConfigError(f"--set {override!r}: the value is not valid YAML ({problem}); quote it as a string") from exc
    return [part.strip() for part in key.split(".")], value


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for override in overrides:
        path, value = parse_override(override)
        node = tree
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {override!r}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return tree


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load a YAML config (or the defaults when `path` is None) and apply dotted overrides."""
    tree: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            loaded = parse_yaml(Path(path).read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"{source}: config file not found") from exc
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{source}: not valid YAML: {' '.join(str(exc).split())}") from exc
        except IsADirectoryError as exc:
            raise ConfigError(f"{source}: a directory, not a config file") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{source}: the top level must be a mapping, got {type(loaded).__name__}")
        tree = loaded or {}
    return with_overrides(tree, overrides or [], source)


def with_overrides(tree: dict[str, Any], overrides: list[str], source: str) -> ExperimentConfig:
    """`tree` (from `source`: a file, a checkpoint) with the overrides applied, validated; errors blame their origin."""
    apply_overrides(tree, overrides)
    try:
        return ExperimentConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_blame(exc, source, overrides)) from exc


def _blame(exc: ValidationError, source: str, overrides: list[str]) -> str:
    """Each problem with its origin: the last `--set` that wrote the field (or a section above it), else the file."""
    problems: list[str] = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        where = source
        for override in overrides:
            path = [part.strip() for part in override.partition("=")[0].split(".")]
            if loc[: len(path)] == path or path[: len(loc)] == loc and loc:
                where = f"--set {override!r}"
        hint = _list_hint(loc, err) if err["type"] in {"tuple_type", "list_type"} else ""
        problems.append(f"{where}: {'.'.join(loc) or '<root>'}: {err['msg']}{hint}")
    return "; ".join(problems)


def _list_hint(loc: list[str], err: Any) -> str:
    """How to write a list value: the user's own numbers in brackets (`128x96` -> `[128, 96]`), else the
    field's default."""
    numbers = re.findall(r"-?\d+(?:\.\d+)?", err["input"]) if isinstance(err.get("input"), str) else []
    example = f"[{', '.join(numbers)}]" if len(numbers) > 1 else None
    if example is None:
        default = _default_of(loc)
        if not isinstance(default, tuple | list):
            return ""
        example = json.dumps(list(default))
    return f"; write it as a YAML list, such as {example}"


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _default_of(loc: list[str]) -> Any:
    """The default of the config field at `loc`, or None when `loc` is not a plain field path."""
    model: Any = ExperimentConfig
    for part in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(part)
        sections = [t for t in get_args(field.annotation) or [field.annotation] if _is_section(t)] if field else []
        if not sections:
            return None
        model = sections[0]
    field = getattr(model, "model_fields", {}).get(loc[-1]) if loc else None
    return None if field is None else field.get_default(call_default_factory=True)
