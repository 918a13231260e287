"""The GPU data path's loader side: a person's JPEG file bytes and its annotation, nothing decoded.

With `train.data_path: gpu` loader workers only read files; decoding, cropping, augmentation and
targets happen on the device in whole batches (`components.data.device_pipeline`). The records
are read with the same rules as the CPU datasets (`records.load_person_records`), so item `i` is the
same person on both paths and the stream samplers pick the same people at every step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from components.keypoints import KeypointSet
from components.data.records import PersonRecord, RecordError, load_person_records

JpegItem = dict[str, Any]


class JpegBytesDataset(Dataset[JpegItem]):
    """Items of file bytes (uint8 [N]), keypoints [K, 3], box (x, y, w, h) and ids of one person each."""

    def __init__(self, records: list[PersonRecord], source: str | Path) -> None:
        if not records:
            raise RecordError(source, "<annotations>", f"no usable person for {type(self).__name__}")
        self.records = records

    @classmethod
    def from_annotations(
        cls,
        ann_file: str | Path | list[tuple[Path, Path]],
        image_dir: str | Path | None,
        min_keypoints: int,
        keypoints: KeypointSet | None = None,
    ) -> JpegBytesDataset:
        """The people of one (annotation file, image folder), or of several concatenated."""
        sources = ann_file if isinstance(ann_file, list) else [(Path(ann_file), Path(image_dir or "."))]
        records = [
            record
            for ann, images in sources
            for record in load_person_records(ann, images, min_keypoints=min_keypoints, keypoints=keypoints)
        ]
        return cls(records, sources[0][0])

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> JpegItem:
        record = self.records[index]
        try:
            data = record.image_path.read_bytes()
        except OSError as exc:
            raise RecordError(
                record.image_path,
                f"image_id {record.image_id} (annotation {record.ann_id})",
                f"the image cannot be read ({exc.strerror or exc})",
            ) from exc
        return {
            "jpeg": torch.frombuffer(bytearray(data), dtype=torch.uint8),
            "path": str(record.image_path),
            "keypoints": torch.from_numpy(record.keypoints.astype("float32")),
            "bbox": torch.from_numpy(record.bbox.astype("float64")),
            "image_id": torch.tensor(record.image_id, dtype=torch.int64),
            "ann_id": torch.tensor(record.ann_id, dtype=torch.int64),
        }


def collate_jpegs(items: list[JpegItem]) -> JpegItem:
    """A batch: the byte strings and paths as lists (their lengths differ), everything else stacked."""
    batch: JpegItem = {"jpeg": [item["jpeg"] for item in items], "path": [item["path"] for item in items]}
    for key in ("keypoints", "bbox", "image_id", "ann_id"):
        batch[key] = torch.stack([item[key] for item in items])
    return batch
