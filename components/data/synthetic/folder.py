"""The one kind of folder trs-pose writes data into: its own folder of synthetic people.

A folder becomes trs-pose's when synthetic people are first drawn into it: `claim` writes the mark
`SYNTHETIC_MARK` (with the settings of the draw) before any image. Only a missing folder, an empty
one or a marked one is ever drawn into; every other folder is a user's and stays byte-identical.
Folders drawn before the mark existed are recognised by their layout (annotations/, train/, val/
and nothing else) and the synthetic `info` block of both annotation files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from components.atomic_files import write_atomically
from components.errors import TrsPoseError

SYNTHETIC_MARK = ".trs-pose-synthetic.json"
SYNTHETIC_DESCRIPTION = "trs-pose synthetic people"
LEGACY_ENTRIES = {"annotations", "train", "val"}
INFO_KEY = '"info":'
INFO_HEAD_CHARS = 1 << 16


class NotOurFolderError(TrsPoseError, PermissionError):
    """Synthetic data was asked for in a folder that holds someone's data; nothing was written."""


def read_mark(folder: str | Path) -> dict[str, Any] | None:
    """The settings a marked folder was drawn with; None for any other folder."""
    try:
        mark = json.loads((Path(folder) / SYNTHETIC_MARK).read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None
    return mark if isinstance(mark, dict) else None


def annotation_info(ann_file: Path) -> dict[str, Any] | None:
    """The `info` block of an annotation file we drew; None for any other file.

    The writer puts `info` first, so only the head of the file is read: a user's 250 MB COCO file
    costs nothing here.
    """
    try:
        with ann_file.open(encoding="utf-8", errors="replace") as handle:
            head = handle.read(INFO_HEAD_CHARS)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    start = head.find(INFO_KEY)
    if start < 0:
        return None
    try:
        info, _ = json.JSONDecoder().raw_decode(head, start + len(INFO_KEY))
    except ValueError:
        return None
    return info if isinstance(info, dict) and info.get("description") == SYNTHETIC_DESCRIPTION else None


def _legacy_synthetic(folder: Path) -> bool:
    """A folder drawn before the mark existed: only our layout, both annotation files ours."""
    names = {entry.name for entry in folder.iterdir()}
    if not names or not names <= LEGACY_ENTRIES:
        return False
    return all(annotation_info(folder / "annotations" / f"person_keypoints_{s}.json") for s in ("train", "val"))


def is_ours(folder: str | Path) -> bool:
    path = Path(folder)
    return path.is_dir() and (read_mark(path) is not None or _legacy_synthetic(path))


def drawable(folder: str | Path) -> bool:
    """Synthetic people may be drawn here: the folder is missing, empty, or trs-pose's own."""
    path = Path(folder)
    if not path.exists():
        return True
    if not path.is_dir():
        return False
    return not any(path.iterdir()) or is_ours(path)


def claim(folder: str | Path, settings: dict[str, Any]) -> Path:
    """Make `folder` trs-pose's (marked with `settings`) before anything is drawn into it, or refuse."""
    path = Path(folder)
    if not drawable(path):
        raise NotOurFolderError(
            f"{path}: not empty and not a folder trs-pose drew synthetic people into (no {SYNTHETIC_MARK}); "
            "it is never written to: choose a new or empty folder"
        )
    path.mkdir(parents=True, exist_ok=True)
    write_atomically(path / SYNTHETIC_MARK, json.dumps({"description": SYNTHETIC_DESCRIPTION, **settings}, indent=1))
    return path
