"""Write a file so readers see the old content or the new, never a torn one, even with concurrent writers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replaced_atomically(path: str | Path) -> Iterator[Path]:
    """A fresh temporary path beside `path` for the caller to fill; on success it is `os.replace`d
    onto `path`, on an error it is removed and `path` keeps its old content.

    The name carries the pid and a random suffix, so two writers of the same file never share a
    temporary file; the last replace wins whole. Nothing is created here, so the caller's writer
    creates the file with the usual mode (the umask decides).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_atomically(path: str | Path, data: bytes | str) -> None:
    """Write `data` to `path` through `replaced_atomically`, flushed to disk before the replace."""
    with replaced_atomically(path) as temporary, open(temporary, "xb") as file:
        file.write(data.encode() if isinstance(data, str) else data)
        file.flush()
        os.fsync(file.fileno())
