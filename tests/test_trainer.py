"""The training loop: each method runs, the loss falls, checkpoints hold what resume and serving need."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from components.engine.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, load_student
from components.engine.trainer import train
from components.keypoints import COCO_NAMES
from tests.tiny_coco import make_tiny_split, tiny_config, tiny_overrides

STILL_CROPS = ["augment.scale_factor=0", "augment.rotation=0", "augment.flip=false", "augment.half_body_prob=0"]


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory):
    return make_tiny_split(tmp_path_factory.mktemp("tiny"))


def test_supervised_loss_falls_on_fixed_crops(split, tmp_path: Path) -> None:
    cfg = tiny_config(
        tmp_path / "ckpt", "supervised", STILL_CROPS, iterations=16, batch_size=4, lr=0.003, warmup_iters=0
    )
    result = train(cfg, split, progress=False)
    losses = [record["loss/total"] for record in result.history]
    assert len(losses) == 16 and result.step == 16
    assert sum(losses[-3:]) < 0.7 * sum(losses[:3]), losses


class RecordingLogger:
    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, float], int]] = []

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.calls.append((metrics, step))


@pytest.mark.parametrize("method", ["mean_teacher", "trs"])
def test_semi_supervised_methods_checkpoint_every_piece(split, tmp_path: Path, method: str) -> None:
    cfg = tiny_config(tmp_path / "ckpt", method, iterations=4, log_every=2)
    logger = RecordingLogger()
    result = train(cfg, split, logger, progress=False)
    periodic = [(m, step) for m, step in logger.calls if "loss/total" in m]
    assert [step for _, step in periodic] == [2, 4]
    first = periodic[0][0]
    assert {"loss/total", "lr", "ema_momentum", "images_per_s"} <= set(first)
    assert all(torch.isfinite(torch.tensor(m["loss/total"])) for m, _ in periodic)
    assert first["images_per_s"] > 0

    assert latest_checkpoint(cfg.train.checkpoint.dir) == result.checkpoint_uri
    assert [step for step, _ in list_checkpoints(cfg.train.checkpoint.dir)] == [2, 4]
    state = load_checkpoint(result.checkpoint_uri)
    assert state["step"] == 4 and state["config"]["train"]["method"] == method
    assert state["data_position"]["labeled"] == {"epoch": 2, "index": 0}  # 4 steps x 2 crops over 4 images
    assert set(state["teacher"]) == set(state["student"])
    student_tensors = state["student"]
    teacher_differs = any(
        not torch.equal(student_tensors[k], v) for k, v in state["teacher"].items() if v.is_floating_point()
    )
    assert teacher_differs, "after warm-up the teacher averages, it does not copy"
    if method == "trs":
        snapshots = state["reviewer"]["snapshots"]
        assert len(snapshots) == 1 and snapshots[0]["step"] in (2, 4)
        checks = [(m, step) for m, step in logger.calls if "teacher/holdout_ap" in m]
        assert [step for _, step in checks] == [2, 4]
        assert all(0.0 <= m["teacher/holdout_ap"] <= m["reviewer/best_ap"] <= 1.0 for m, _ in checks)
        assert checks[-1][0]["reviewer/snapshot_step"] == snapshots[0]["step"]  # what the training curves mark
    else:
        assert state["reviewer"] is None

    model, loaded_cfg = load_student(result.checkpoint_uri)
    # the checkpoint's config is the run's, with the keypoint set the labels define
    assert not model.training and loaded_cfg == cfg.model_copy(update={"keypoints": loaded_cfg.keypoints})
    assert loaded_cfg.keypoints.names == COCO_NAMES and cfg.keypoints.names is None
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, student_tensors[name]), name


def test_finished_run_resumes_to_nothing(split, tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "ckpt", "supervised", iterations=2)
    first = train(cfg, split, progress=False)
    again = train(cfg, split, progress=False)
    assert again.checkpoint_uri == first.checkpoint_uri and again.step == 2
    assert len(again.history) == len(first.history), "history comes back from the checkpoint"


def test_semi_supervised_needs_unlabeled_batch(split, tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "ckpt", "trs", unlabeled_batch_size=0)
    with pytest.raises(ValueError, match="unlabeled_batch_size"):
        train(cfg, split, progress=False)


def test_train_cli_splits_trains_and_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from click.testing import CliRunner

    from cli.main import cli
    from tests.tiny_coco import write_coco

    (tmp_path / "train.json").write_text(json.dumps(write_coco(tmp_path, 8, seed=1)))
    common = ["--checkpoint-dir", str(tmp_path / "ckpt"), "--json", "--no-progress"]
    common += [item for override in tiny_overrides("mean_teacher", iterations=2) for item in ("--set", override)]
    source = ["--ann", str(tmp_path / "train.json"), "--images", str(tmp_path / "images")]
    split_args = [
        "--split-out",
        str(tmp_path / "split"),
        "--set",
        "data.num_labeled=3",
        "--set",
        "data.holdout_labeled=2",
    ]
    args = ["train", *source, *split_args, "--metrics-file", str(tmp_path / "metrics.jsonl"), *common]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["step"] == 2 and Path(summary["checkpoint"]).is_file()
    assert summary["checkpoint"].startswith(str(tmp_path / "ckpt"))
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2] and "loss/total" in lines[0]

    from components.kubernetes import run_result
    from components.storage.retry import Patient

    published: list[tuple[str, object, object]] = []
    monkeypatch.setattr(
        run_result, "write_run_result", lambda uri, result, client: published.append((uri, result, client))
    )
    monkeypatch.setenv("TRS_POSE_RUN_URI", "s3://bucket/runs/r1")
    again = CliRunner().invoke(cli, ["train", "--split-dir", str(tmp_path / "split"), *common])
    assert again.exit_code == 0, again.output
    assert json.loads(again.output.strip().splitlines()[-1])["checkpoint"] == summary["checkpoint"], (
        "resumed, nothing to do"
    )
    assert len(published) == 1 and published[0][0] == "s3://bucket/runs/r1", "a pod run hands its result over"
    assert published[0][1].checkpoint_uri == summary["checkpoint"] and published[0][1].step == 2
    assert isinstance(published[0][2], Patient), "the pod's last write must be retried like its checkpoints"

    clash = CliRunner().invoke(cli, ["train", "--split-dir", "x", *source])
    assert clash.exit_code == 2 and "not both" in clash.output


class _Squares(torch.utils.data.Dataset):
    """Eight tiny items: an image-like tensor and a scalar, enough to drive `_stream`."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": torch.full((3, 4, 4), float(index)), "index": torch.tensor(index)}


def _stream_batch(device: torch.device) -> dict[str, torch.Tensor]:
    from components.engine.distributed import DistributedContext
    from components.engine.streams import batch_stream

    ctx = DistributedContext(rank=0, world_size=1, local_rank=0, device=device)
    _, batches = batch_stream(_Squares(), 4, tiny_config(Path("unused")), ctx, start_batch=0, stream=0)
    return next(batches)


def test_host_batches_are_unpinned_on_cpu_and_moved_unchanged() -> None:
    from components.engine.streams import to_device

    batch = _stream_batch(torch.device("cpu"))
    assert not batch["image"].is_pinned()
    moved = to_device({**batch, "name": "kept"}, torch.device("cpu"), channels_last=True)
    assert torch.equal(moved["image"], batch["image"]) and moved["name"] == "kept"
    assert moved["image"].is_contiguous(memory_format=torch.channels_last)
    assert moved["index"] is batch["index"]  # a CPU "copy" to the CPU is no copy


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_host_batches_are_pinned_for_cuda_and_copied_asynchronously() -> None:
    from components.engine.streams import to_device

    device = torch.device("cuda", torch.cuda.current_device())
    batch = _stream_batch(device)
    assert batch["image"].is_pinned()  # what lets `non_blocking=True` overlap the copy with compute
    moved = to_device(batch, device, channels_last=False)
    assert moved["image"].device == device
    assert torch.equal(moved["image"].cpu(), batch["image"])
