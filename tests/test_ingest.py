"""Ingest into the content-addressed cache: local directories, a fake S3 client, and real SeaweedFS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from components.data import ingest as ingest_module
from components.data.ingest import IngestError, ingest, read_ingest_record


def _make_set(root: Path, text: str = "{}") -> Path:
    (root / "annotations").mkdir(parents=True)
    (root / "train").mkdir()
    (root / "annotations" / "person_keypoints_train.json").write_text(text)
    (root / "train" / "000001.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / ".DS_Store").write_bytes(b"junk")  # hidden files are not part of the set
    return root


def test_hardlinked_entry_shares_storage(tmp_path: Path) -> None:
    source = _make_set(tmp_path / "src")
    root = ingest(source, tmp_path / "cache", hardlink=True)
    original = source / "train" / "000001.jpg"
    assert (root / "train" / "000001.jpg").stat().st_ino == original.stat().st_ino


def test_local_ingest_is_cached_by_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = _make_set(tmp_path / "src")
    cache = tmp_path / "cache"
    root = ingest(source, cache)
    assert (root / "annotations" / "person_keypoints_train.json").read_text() == "{}"
    assert not (root / ".DS_Store").exists()
    assert read_ingest_record(root)["files"] == 2

    def refuse(*_: Any) -> None:
        raise AssertionError("a cached set was materialised again")

    monkeypatch.setattr(ingest_module.os, "link", refuse)
    monkeypatch.setattr(ingest_module.shutil, "copy2", refuse)
    assert ingest(source, cache) == root
    monkeypatch.undo()

    (source / "annotations" / "person_keypoints_train.json").write_text('{"images": []}')
    changed = ingest(source, cache)
    assert changed != root and (changed / "annotations" / "person_keypoints_train.json").read_text() == '{"images": []}'
    assert (root / "annotations" / "person_keypoints_train.json").read_text() == "{}"  # old entry intact


def test_same_content_elsewhere_shares_the_entry(tmp_path: Path) -> None:
    first = ingest(_make_set(tmp_path / "a"), tmp_path / "cache")
    second = ingest(_make_set(tmp_path / "b"), tmp_path / "cache")
    assert first == second


def test_unchanged_local_files_are_not_hashed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = _make_set(tmp_path / "src")
    ingest(source, tmp_path / "cache")
    hashed: list[Path] = []
    real = ingest_module.sha256_of
    monkeypatch.setattr(ingest_module, "sha256_of", lambda path: hashed.append(path) or real(path))
    ingest(source, tmp_path / "cache")
    assert hashed == []


def test_missing_or_empty_local_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="no such file or directory"):
        ingest(tmp_path / "nope", tmp_path / "cache")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IngestError, match="no files"):
        ingest(tmp_path / "empty", tmp_path / "cache")


class FakeS3:
    """The two client calls ingest makes, over an in-memory bucket; counts downloads."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = dict(objects)
        self.downloads: list[str] = []

    def list_objects_v2(self, Bucket: str, Prefix: str, ContinuationToken: str = "") -> dict[str, Any]:
        """Two keys a page, so that listing has to follow the continuation token."""
        import hashlib

        keys = sorted(k for k in self.objects if k.startswith(Prefix))
        start = int(ContinuationToken or 0)
        contents = [
            {"Key": k, "Size": len(self.objects[k]), "ETag": f'"{hashlib.md5(self.objects[k]).hexdigest()}"'}
            for k in keys[start : start + 2]
        ]
        more = start + 2 < len(keys)
        return {
            "Contents": contents,
            "IsTruncated": more,
            **({"NextContinuationToken": str(start + 2)} if more else {}),
        }

    def head_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        if Key not in self.objects:
            raise ClientError({"Error": {"Code": "404", "Message": "Not Found"}}, "HeadObject")
        return {"ContentLength": len(self.objects[Key]), "ETag": '"etag"'}

    def download_file(self, bucket: str, key: str, filename: str) -> None:
        self.downloads.append(key)
        Path(filename).write_bytes(self.objects[key])


def test_s3_ingest_downloads_once_and_respects_the_prefix(tmp_path: Path) -> None:
    client = FakeS3({
        "sets/coco/annotations/person_keypoints_train.json": b'{"images": []}',
        "sets/coco/train/1.jpg": b"one",
        "sets/coco/train/2.jpg": b"two",
        "sets/coco/": b"",  # a folder marker, not a file
        "sets/coco2/train/9.jpg": b"another set sharing the prefix's letters",
    })  # fmt: skip
    root = ingest("s3://bucket/sets/coco", tmp_path / "cache", client=client)
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != ".ingest.json") == [
        "annotations/person_keypoints_train.json", "train/1.jpg", "train/2.jpg",
    ]  # fmt: skip
    assert len(client.downloads) == 3
    assert ingest("s3://bucket/sets/coco/", tmp_path / "cache", client=client) == root
    assert len(client.downloads) == 3  # nothing fetched the second time

    client.objects["sets/coco/train/2.jpg"] = b"TWO"
    changed = ingest("s3://bucket/sets/coco", tmp_path / "cache", client=client)
    assert changed != root and (changed / "train" / "2.jpg").read_bytes() == b"TWO"


def test_s3_prefix_without_objects_or_escaping_keys_fails(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="no objects"):
        ingest("s3://bucket/absent", tmp_path / "cache", client=FakeS3({"other/x": b"1"}))
    with pytest.raises(IngestError, match="outside the cache entry"):
        ingest("s3://bucket/p", tmp_path / "cache", client=FakeS3({"p/../../etc/x": b"1"}))
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.name.startswith(".partial")] == []


def test_interrupted_download_keeps_the_old_file_and_leaves_no_partial(tmp_path: Path) -> None:
    from components.storage.s3 import S3Uri, download_file

    class DropsMidway:
        def download_file(self, bucket: str, key: str, filename: str) -> None:
            Path(filename).write_bytes(b"half of the new")
            raise ConnectionError("connection reset")

    target = tmp_path / "model.pt"
    target.write_bytes(b"the old file")
    with pytest.raises(ConnectionError):
        download_file(DropsMidway(), S3Uri("bucket", "model.pt"), target)
    assert target.read_bytes() == b"the old file"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]

    download_file(FakeS3({"model.pt": b"the new file"}), S3Uri("bucket", "model.pt"), target)
    assert target.read_bytes() == b"the new file" and [p.name for p in tmp_path.iterdir()] == ["model.pt"]


@pytest.mark.slow
def test_ingest_from_real_seaweedfs_with_env_credentials(
    s3_server: Any, coco_mini: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.service_fixtures import unique_name

    client = s3_server.client()
    prefix = unique_name("ingest")
    files = [
        coco_mini / "annotations" / "person_keypoints_val2017.json",
        *sorted((coco_mini / "val2017").iterdir())[:3],
    ]
    for path in files:
        client.upload_file(str(path), s3_server.bucket, f"{prefix}/{path.relative_to(coco_mini).as_posix()}")
    for name, value in s3_server.environment().items():
        monkeypatch.setenv(name, value)
    source = f"s3://{s3_server.bucket}/{prefix}"
    root = ingest(source, tmp_path / "cache")  # endpoint and keys from the AWS_* variables only
    for path in files:
        assert (root / path.relative_to(coco_mini)).read_bytes() == path.read_bytes()
    assert read_ingest_record(root)["source"] == source

    monkeypatch.setattr(ingest_module, "download_file", lambda *_: pytest.fail("downloaded a cached set again"))
    assert ingest(source, tmp_path / "cache") == root


def test_cli_ingest_prints_the_cached_root(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cli.main import cli

    source = _make_set(tmp_path / "src")
    result = CliRunner().invoke(cli, ["data", "ingest", str(source), "--cache", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    root = Path(result.output.split()[0])
    assert (root / "annotations" / "person_keypoints_train.json").is_file()
    missing = CliRunner().invoke(cli, ["data", "ingest", str(tmp_path / "nope"), "--cache", str(tmp_path / "cache")])
    assert missing.exit_code == 1 and "no such file or directory" in missing.output
