"""The GPU data path on the CPU: the same crops, targets and affines as the loader path, the same augmentation law."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from components.config import ExperimentConfig
from components.data.datasets import LabeledPoseDataset, UnlabeledPairDataset
from components.data.device_pipeline import Batch, DeviceBatchMaker, PhotometricDraws
from components.data.device_views import ViewBatch
from components.data.jpeg_bytes import JpegBytesDataset, collate_jpegs
from components.data.records import RecordError
from components.data.split import SplitFiles
from components.data.transforms import View, denormalise
from tests.tiny_coco import make_tiny_split, tiny_config

CPU = torch.device("cpu")
NO_PHOTOMETRIC = ["augment.color_jitter=0", "augment.noise_std=0", "augment.blur_prob=0"]


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> SplitFiles:
    return make_tiny_split(tmp_path_factory.mktemp("tiny"), num_labeled=6, num_unlabeled=6)


def _config(extra: list[str] | None = None) -> ExperimentConfig:
    return tiny_config("unused", "trs", extra)


def _batch(dataset: JpegBytesDataset) -> Batch:
    return collate_jpegs([dataset[i] for i in range(len(dataset))])


def _view_batch(views: list[View]) -> ViewBatch:
    return ViewBatch(
        torch.tensor(np.stack([v.center for v in views])),
        torch.tensor(np.stack([v.scale for v in views])),
        torch.tensor([v.rotation for v in views], dtype=torch.float64),
        torch.tensor([v.flip for v in views]),
    )


def _assert_within_a_grey_level(cpu_crop: torch.Tensor, device_crop: torch.Tensor) -> None:
    difference = np.abs(denormalise(cpu_crop).astype(int) - denormalise(device_crop).astype(int))
    assert difference.max() <= 1, difference.max()


def _labeled_geometry_matches(ann: Path, images: Path, cfg: ExperimentConfig, count: int) -> None:
    cpu = LabeledPoseDataset(ann, images, cfg, seed=3)
    raw = collate_jpegs(
        [JpegBytesDataset.from_annotations(ann, images, cfg.data.min_keypoints)[i] for i in range(count)]
    )
    views = [cpu.sample_view(cpu.records[i], cpu.rng(i)) for i in range(count)]
    assert any(v.flip for v in views) and any(v.rotation for v in views)
    maker = DeviceBatchMaker(cfg, CPU)
    out = maker.labeled_from_views(raw, maker.decode(raw), _view_batch(views))
    for i in range(count):
        item = cpu[i]
        _assert_within_a_grey_level(item["image"], out["image"][i])
        for key in ("target", "target_weight", "keypoints", "center", "scale", "image_id", "ann_id"):
            assert item[key].dtype == out[key].dtype, key
            torch.testing.assert_close(out[key][i], item[key], rtol=0, atol=1e-6, msg=key)


def test_labeled_geometry_matches_the_cpu_path(split: SplitFiles) -> None:
    cfg = _config()
    _labeled_geometry_matches(split.labeled_ann, split.train_images, cfg, 6)


@pytest.mark.shared
def test_labeled_geometry_matches_on_coco_jpegs(coco_mini: Path) -> None:
    cfg = _config(["input.image_size=[128, 96]"])
    ann = coco_mini / "annotations" / "person_keypoints_val2017.json"
    _labeled_geometry_matches(ann, coco_mini / "val2017", cfg, 8)


def test_unlabeled_geometry_matches_the_cpu_path(split: SplitFiles) -> None:
    cfg = _config(NO_PHOTOMETRIC)
    cpu = UnlabeledPairDataset(split.unlabeled_ann, split.train_images, cfg, seed=7)
    raw = _batch(JpegBytesDataset.from_annotations(split.unlabeled_ann, split.train_images, 0))
    triples = [cpu.sample_views(cpu.records[i], cpu.rng(i)) for i in range(len(cpu))]
    base, easy, hard = (_view_batch(list(views)) for views in zip(*triples))
    assert hard.flip.any() and not hard.flip.all()
    maker = DeviceBatchMaker(cfg, CPU)
    count = len(cpu)
    none = PhotometricDraws(torch.ones(count, 3), torch.zeros(count), None)
    out = maker.unlabeled_from_views(raw, maker.decode(raw), base, easy, hard, none)
    for i in range(count):
        item = cpu[i]
        _assert_within_a_grey_level(item["easy"], out["easy"][i])
        _assert_within_a_grey_level(item["hard"], out["hard"][i])
        torch.testing.assert_close(out["easy_to_hard"][i], item["easy_to_hard"], rtol=0, atol=1e-5)
        for key in ("flipped", "center", "scale", "image_id", "ann_id"):
            assert torch.equal(out[key][i], item[key]), key


def test_batches_have_the_cpu_path_keys_shapes_and_dtypes(split: SplitFiles) -> None:
    cfg = _config()
    maker = DeviceBatchMaker(cfg, CPU)
    generator = torch.Generator(CPU).manual_seed(0)
    labeled_raw = _batch(JpegBytesDataset.from_annotations(split.labeled_ann, split.train_images, 1))
    unlabeled_raw = _batch(JpegBytesDataset.from_annotations(split.unlabeled_ann, split.train_images, 0))
    cpu_labeled = LabeledPoseDataset(split.labeled_ann, split.train_images, cfg)[0]
    cpu_unlabeled = UnlabeledPairDataset(split.unlabeled_ann, split.train_images, cfg)[0]
    for out, item in (
        (maker.labeled(labeled_raw, generator), cpu_labeled),
        (maker.unlabeled(unlabeled_raw, generator), cpu_unlabeled),
    ):
        assert set(out) == set(item)
        for key, value in item.items():
            assert out[key].dtype == value.dtype and out[key].shape[1:] == value.shape, key
    hard = maker.unlabeled(unlabeled_raw, torch.Generator(CPU).manual_seed(1))["hard"]
    again = maker.unlabeled(unlabeled_raw, torch.Generator(CPU).manual_seed(1))["hard"]
    assert torch.equal(hard, again), "a seeded generator reproduces the batch"


def _mean_tolerance(a: np.ndarray, b: np.ndarray, z: float = 4.5) -> float:
    return z * math.sqrt(a.var() / a.size + b.var() / b.size)


def _std_tolerance(a: np.ndarray, b: np.ndarray, z: float = 4.5) -> float:
    """z standard errors of the difference of two sample standard deviations (delta method on the variance)."""

    def se(x: np.ndarray) -> float:
        centred = x - x.mean()
        var = centred.var()
        return math.sqrt(max((centred**4).mean() - var**2, 1e-300) / x.size) / (2 * math.sqrt(var) + 1e-300)

    return z * math.hypot(se(a), se(b))


def _assert_same_law(name: str, cpu: np.ndarray, device: np.ndarray) -> None:
    cpu, device = cpu.astype(np.float64), device.astype(np.float64)
    gap = abs(cpu.mean() - device.mean())
    assert gap <= _mean_tolerance(cpu, device), f"{name}: mean {cpu.mean():.4f} vs {device.mean():.4f}"
    if cpu.std() > 0 or device.std() > 0:
        gap = abs(cpu.std() - device.std())
        assert gap <= _std_tolerance(cpu, device), f"{name}: std {cpu.std():.4f} vs {device.std():.4f}"


DRAWS = 3000


def test_labeled_augmentation_statistics_match_the_cpu_path(split: SplitFiles) -> None:
    cfg = _config()
    cpu = LabeledPoseDataset(split.labeled_ann, split.train_images, cfg, seed=11)
    raw = _batch(JpegBytesDataset.from_annotations(split.labeled_ann, split.train_images, 1))
    count = len(cpu)
    repeats = DRAWS // count
    cpu_views, cpu_base = [], []
    for epoch in range(repeats):
        cpu.set_epoch(epoch)
        for i in range(count):
            cpu_views.append(cpu.sample_view(cpu.records[i], cpu.rng(i)))
            cpu_base.append(cpu.base_view(cpu.records[i]))
    cpu_half = np.array([not np.allclose(v.center, b.center) for v, b in zip(cpu_views, cpu_base)])
    maker = DeviceBatchMaker(cfg, CPU)
    generator = torch.Generator(CPU).manual_seed(11)
    drawn = [maker.labeled_views(raw, generator) for _ in range(repeats)]
    device_views = ViewBatch(*(torch.cat(parts) for parts in zip(*(views for views, _ in drawn))))
    device_half = torch.cat([half for _, half in drawn]).numpy()
    assert 0.1 < cpu_half.mean() < 0.5, "the half-body branch must be exercised"
    _assert_same_law("half body", cpu_half, device_half)
    _assert_same_law("crop height", np.array([v.scale[1] for v in cpu_views]), device_views.scale[:, 1].numpy())
    _assert_same_law("rotation", np.array([v.rotation for v in cpu_views]), device_views.rotation.numpy())
    _assert_same_law("mirror", np.array([v.flip for v in cpu_views]), device_views.flip.numpy())


def test_unlabeled_augmentation_statistics_match_the_cpu_path(split: SplitFiles) -> None:
    cfg = _config(["augment.hard_rotation=30", "augment.hard_rotation_prob=0.8"])
    cpu = UnlabeledPairDataset(split.unlabeled_ann, split.train_images, cfg, seed=13)
    raw = _batch(JpegBytesDataset.from_annotations(split.unlabeled_ann, split.train_images, 0))
    count = len(cpu)
    repeats = DRAWS // count
    triples = []
    for epoch in range(repeats):
        cpu.set_epoch(epoch)
        triples += [cpu.sample_views(cpu.records[i], cpu.rng(i)) for i in range(count)]
    maker = DeviceBatchMaker(cfg, CPU)
    generator = torch.Generator(CPU).manual_seed(13)
    drawn = [maker.unlabeled_views(raw, generator) for _ in range(repeats)]
    for slot, name in ((1, "easy"), (2, "hard")):
        cpu_views = [t[slot] for t in triples]
        device = ViewBatch(*(torch.cat(parts) for parts in zip(*(d[slot] for d in drawn))))
        _assert_same_law(f"{name} crop height", np.array([v.scale[1] for v in cpu_views]), device.scale[:, 1].numpy())
        _assert_same_law(f"{name} rotation", np.array([v.rotation for v in cpu_views]), device.rotation.numpy())
        _assert_same_law(f"{name} mirror", np.array([v.flip for v in cpu_views]), device.flip.numpy())


def test_a_missing_or_broken_jpeg_names_its_file(split: SplitFiles, tmp_path: Path) -> None:
    dataset = JpegBytesDataset.from_annotations(split.labeled_ann, split.train_images, 1)
    raw = _batch(dataset)
    broken = tmp_path / "broken.jpg"
    raw["jpeg"][2] = torch.frombuffer(bytearray(b"\xff\xd8not a jpeg"), dtype=torch.uint8)
    raw["path"][2] = str(broken)
    with pytest.raises(RecordError, match="broken.jpg.*cannot be decoded"):
        DeviceBatchMaker(_config(), CPU).decode(raw)
    records = list(dataset.records)
    records[0] = type(records[0])(**{**records[0].__dict__, "image_path": tmp_path / "gone.jpg"})
    with pytest.raises(RecordError, match="gone.jpg.*cannot be read"):
        JpegBytesDataset(records, split.labeled_ann)[0]


def test_the_trainer_builds_the_data_path_it_is_asked_for(split: SplitFiles) -> None:
    from components.engine.device_streams import DeviceStreams, build_streams
    from components.engine.distributed import DistributedContext
    from components.engine.streams import Streams
    from components.method import method_spec

    ctx = DistributedContext(rank=0, world_size=1, local_rank=0, device=CPU)
    for path, kind in (("cpu", Streams), ("gpu", DeviceStreams)):
        cfg = _config([f"train.data_path={path}"])
        streams = build_streams(cfg, method_spec(cfg), split, ctx, 0)
        assert type(streams) is kind
        labeled, unlabeled = streams.next(0)
        assert labeled["image"].shape == (2, 3, 64, 48) and unlabeled is not None
        assert labeled["image"].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.slow
def test_a_gpu_data_path_run_resumes_bitwise_on_the_cpu(split: SplitFiles, tmp_path: Path) -> None:
    from components.engine.checkpoint import latest_checkpoint, load_checkpoint
    from components.engine.trainer import train
    from tests.test_resume import Killed, _assert_same, _kill_after

    extra = ["train.data_path=gpu", "train.iterations=4", "train.reviewer.enabled=false"]  # no holdout scoring: faster
    whole = load_checkpoint(train(tiny_config(tmp_path / "whole", "trs", extra), split, progress=False).checkpoint_uri)
    killed_cfg = tiny_config(tmp_path / "killed", "trs", extra)
    with pytest.raises(Killed):
        train(killed_cfg, split, on_step=_kill_after(3), progress=False)
    assert str(latest_checkpoint(killed_cfg.train.checkpoint.dir)).endswith("2.pt")  # step 3 is redone
    resumed = load_checkpoint(train(killed_cfg, split, progress=False).checkpoint_uri)
    assert whole["config"]["train"]["data_path"] == "gpu"
    assert _assert_same(resumed["student"], whole["student"], "student") > 10
    for key in ("teacher", "optimizer", "data_position", "rng"):
        _assert_same(resumed[key], whole[key], key)


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@needs_cuda
def test_cuda_batches_match_the_cpu_batches(split: SplitFiles) -> None:
    """nvJPEG decoding and the CUDA kernels against the CPU path, for the same views."""
    cfg = _config()
    cuda = torch.device("cuda")
    raw = _batch(JpegBytesDataset.from_annotations(split.labeled_ann, split.train_images, 1))
    cpu_maker, cuda_maker = DeviceBatchMaker(cfg, CPU), DeviceBatchMaker(cfg, cuda)
    views, _ = cpu_maker.labeled_views(raw, torch.Generator(CPU).manual_seed(0))
    cpu_images, cuda_images = cpu_maker.decode(raw), cuda_maker.decode(raw)
    assert cuda_images.device.type == "cuda" and cuda_images.shape == cpu_images.shape
    decode_gap = (cuda_images.cpu().int() - cpu_images.int()).abs().float()
    assert decode_gap.mean() < 1.0, f"nvJPEG vs libjpeg: mean {decode_gap.mean():.2f}, max {decode_gap.max():.0f}"
    cuda_views = ViewBatch(*(t.to(cuda) for t in views))
    cpu_out = cpu_maker.labeled_from_views(raw, cpu_images, views)
    same_pixels = cuda_maker.labeled_from_views(raw, cpu_images.to(cuda), cuda_views)
    for i in range(len(raw["path"])):
        _assert_within_a_grey_level(cpu_out["image"][i], same_pixels["image"][i].cpu())
    for key in ("target", "target_weight", "keypoints", "center", "scale"):
        torch.testing.assert_close(same_pixels[key].cpu(), cpu_out[key], rtol=1e-5, atol=1e-5, msg=key)
    generator = torch.Generator(cuda).manual_seed(4)
    unlabeled_raw = _batch(JpegBytesDataset.from_annotations(split.unlabeled_ann, split.train_images, 0))
    pairs = [cuda_maker.unlabeled(unlabeled_raw, generator.manual_seed(4)) for _ in range(2)]
    assert pairs[0]["hard"].device.type == "cuda" and torch.equal(pairs[0]["hard"], pairs[1]["hard"])


@needs_cuda
def test_gpu_data_path_trains_on_cuda(split: SplitFiles, tmp_path: Path) -> None:
    from components.engine.trainer import train

    cfg = tiny_config(tmp_path / "ckpt", "trs", ["train.data_path=gpu"], device="cuda", iterations=3)
    result = train(cfg, split, progress=False)
    assert result.step == 3 and all(math.isfinite(row["loss/total"]) for row in result.history if "loss/total" in row)
