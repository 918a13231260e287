"""Frames of a video, sampled at a rate and cached by the video's content hash.

A rerun with the same video bytes and rate finds the folder complete and decodes nothing. Frames are
named by their index in the video (`frame_000123.jpg`), so a different rate never aliases another's
folder, and a frame's name says where it came from. The folder appears whole or not at all (built
aside, renamed into place), like an ingest entry.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from components.data.ingest import sha256_of
from components.errors import TrsPoseError

RECORD_NAME = ".frames.json"
FRAME_JPEG_QUALITY = 95


class VideoError(TrsPoseError, ValueError):
    """A video that cannot be decoded; the message names the file."""


def frames_folder(video: Path, fps: float, cache_dir: Path) -> Path:
    """Where the frames of `video` at `fps` are cached (named by the video's sha256 and the rate)."""
    return cache_dir / "frames" / f"{sha256_of(video)[:24]}-{fps:g}fps"


def frame_slot(index: int, video_fps: float, fps: float) -> int:
    """The 1/fps time slot of frame `index`; the first frame of each slot is kept. Every frame is its
    own slot when the video is slower than the rate, or does not say its own rate."""
    if video_fps <= 0 or fps >= video_fps:
        return index
    return int(index / video_fps * fps + 1e-9)


def extract_frames(video: str | Path, fps: float, cache_dir: str | Path) -> Path:
    """The folder of `video`'s frames at `fps` (decoded once; later calls return the cached folder)."""
    import cv2

    video = Path(video)
    target = frames_folder(video, fps, Path(cache_dir))
    if (target / RECORD_NAME).is_file():
        return target
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise VideoError(f"{video}: cannot be opened as a video (OpenCV's FFmpeg reader)")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".partial-{target.name}-", dir=target.parent))
    try:
        video_fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        written, index = 0, 0
        slot_of_last = -1
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            slot = frame_slot(index, video_fps, fps)
            if slot > slot_of_last:
                cv2.imwrite(str(staging / f"frame_{index:06d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, FRAME_JPEG_QUALITY])
                written += 1
                slot_of_last = slot
            index += 1
        if written == 0:
            raise VideoError(f"{video}: no frame could be decoded")
        record = {"video": str(video), "fps": fps, "video_fps": video_fps, "frames_decoded": index, "frames": written}
        (staging / RECORD_NAME).write_text(json.dumps(record, indent=1))
        try:
            staging.rename(target)
        except OSError:
            if not (target / RECORD_NAME).is_file():
                raise
        return target
    finally:
        capture.release()
        shutil.rmtree(staging, ignore_errors=True)
