"""Bounded-memory reading and writing of COCO JSON files.

A full COCO keypoint file (250k annotations) takes gigabytes as a `json.load` tree. The reader
here walks the top-level object itself and decodes the elements of the big arrays (`images`,
`annotations`) one at a time from a sliding text buffer, so memory is one record plus the buffer.
It also notes the non-standard constants (NaN, Infinity) Python's json silently accepts, so the
validator can name the record that carries them.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from components.atomic_files import replaced_atomically
from components.errors import TrsPoseError

STREAMED_KEYS: frozenset[str] = frozenset({"images", "annotations"})
_WHITESPACE = re.compile(r"[ \t\n\r]*")


def _skip_whitespace(text: str, pos: int) -> int:
    """The first position at or after `pos` that is not JSON whitespace (the pattern always matches)."""
    match = _WHITESPACE.match(text, pos)
    assert match is not None
    return match.end()
_CHUNK_CHARS = 1 << 20
_ESCAPE_SLACK = 8  # a buffer cut inside "\\u00e9" fails a few chars before its end


class CocoJsonError(TrsPoseError, ValueError):
    """The file is not valid JSON (or not a JSON object); says where, by line, column and char."""

    def __init__(self, file: str | Path, message: str, position: int | None = None) -> None:
        self.file = str(file)
        self.position = position
        self.line: int | None = None
        self.column: int | None = None
        if position is not None:
            self.line, self.column = _line_column(file, position)
        where = f" at line {self.line} column {self.column} (char {position})" if position is not None else ""
        self.reason = message
        super().__init__(f"{file}: not valid JSON{where}: {message}")


def _line_column(file: str | Path, position: int) -> tuple[int, int]:
    """1-based line and column of a character offset, counted by re-reading only up to it."""
    line, last_newline, seen = 1, -1, 0
    with open(file, encoding="utf-8", errors="replace") as handle:
        while seen < position:
            chunk = handle.read(min(_CHUNK_CHARS, position - seen))
            if not chunk:
                break
            newlines = chunk.count("\n")
            if newlines:
                line += newlines
                last_newline = seen + chunk.rindex("\n")
            seen += len(chunk)
    return line, position - last_newline


@dataclass(frozen=True)
class Entry:
    """One top-level value, or one element of a streamed top-level array (`index` set)."""

    key: str
    value: Any
    index: int | None = None
    nonstandard: tuple[str, ...] = ()  # NaN / Infinity / -Infinity constants met inside `value`


class _Cursor:
    """A sliding window over a text file that decodes one JSON value at a time."""

    def __init__(self, handle: TextIO, file: str | Path, chunk_chars: int) -> None:
        self.handle, self.file, self.chunk_chars = handle, file, chunk_chars
        self.text, self.pos, self.offset, self.eof = "", 0, 0, False
        self.constants: list[str] = []
        self.decoder = json.JSONDecoder(parse_constant=self._constant)

    def _constant(self, name: str) -> float:
        self.constants.append(name)
        return float(name)

    def _fill(self) -> bool:
        """Append more text, keeping the unread tail; reads at least as much as is buffered."""
        if self.eof:
            return False
        chunk = self.handle.read(max(self.chunk_chars, len(self.text) - self.pos))
        if not chunk:
            self.eof = True
            return False
        self.offset += self.pos
        self.text = self.text[self.pos :] + chunk
        self.pos = 0
        return True

    def peek(self) -> str | None:
        """The next non-whitespace character, without consuming it; None at end of file."""
        while True:
            self.pos = _skip_whitespace(self.text, self.pos)
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self._fill():
                return None

    def expect(self, allowed: str, context: str) -> str:
        char = self.peek()
        if char is None or char not in allowed:
            found = "end of file (the file looks truncated)" if char is None else repr(char)
            wanted = " or ".join(repr(c) for c in allowed)
            raise CocoJsonError(self.file, f"expected {wanted} {context}, found {found}", self.offset + self.pos)
        self.pos += 1
        return char

    def decode(self) -> tuple[Any, tuple[str, ...]]:
        """Decode the next value; a value that touches the buffer's end is retried with more text."""
        self.peek()
        while True:
            self.constants = []
            try:
                value, end = self.decoder.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as exc:
                # Only an error at the buffer's end may be cured by more text; one earlier is real,
                # and failing there keeps a broken 250 MB file from being read whole into memory.
                at_end = exc.pos >= len(self.text) - _ESCAPE_SLACK or exc.msg.startswith("Unterminated string")
                if at_end and self._fill():
                    continue
                hint = " (the file ends inside this value: truncated?)" if at_end else ""
                raise CocoJsonError(self.file, f"{exc.msg}{hint}", self.offset + exc.pos) from None
            if end >= len(self.text) and self._fill():
                continue
            self.pos = end
            return value, tuple(self.constants)


def iter_coco(
    path: str | Path, streamed: frozenset[str] = STREAMED_KEYS, chunk_chars: int = _CHUNK_CHARS
) -> Iterator[Entry]:
    """Yield the top-level entries of a COCO file in file order, big arrays element by element.

    A streamed key whose value is not an array is yielded whole, so the caller can report its type.
    Raises CocoJsonError (with position) on malformed JSON, possibly after yielding some entries.
    """
    with open(path, encoding="utf-8") as handle:
        cursor = _Cursor(handle, path, chunk_chars)
        try:
            yield from _walk(cursor, streamed)
        except UnicodeDecodeError as exc:
            raise CocoJsonError(path, f"not UTF-8 text ({exc.reason})") from None


def _walk(cursor: _Cursor, streamed: frozenset[str]) -> Iterator[Entry]:
    if cursor.peek() is None:
        raise CocoJsonError(cursor.file, "the file is empty", 0)
    cursor.expect("{", "at the start (a COCO file is a JSON object)")
    if cursor.peek() == "}":
        cursor.pos += 1
    else:
        while True:
            key, _ = cursor.decode()
            if not isinstance(key, str):
                raise CocoJsonError(cursor.file, "object keys must be strings", cursor.offset + cursor.pos)
            cursor.expect(":", f"after key {key!r}")
            if key in streamed and cursor.peek() == "[":
                cursor.pos += 1
                yield from _walk_array(cursor, key)
            else:
                value, constants = cursor.decode()
                yield Entry(key, value, None, constants)
            if cursor.expect(",}", f"after the value of {key!r}") == "}":
                break
    if cursor.peek() is not None:
        raise CocoJsonError(cursor.file, "extra data after the top-level object", cursor.offset + cursor.pos)


def _walk_array(cursor: _Cursor, key: str) -> Iterator[Entry]:
    if cursor.peek() == "]":  # an empty array is yielded whole, so the caller sees the key
        cursor.pos += 1
        yield Entry(key, [], None)
        return
    index = 0
    while True:
        value, constants = cursor.decode()
        yield Entry(key, value, index, constants)
        index += 1
        if cursor.expect(",]", f"after {key}[{index - 1}]") == "]":
            return


class CocoWriter:
    """Write a COCO file record by record; arrays are spooled to temporary files, then assembled.

    Records may arrive in any order across keys; the output lists the small top-level values first,
    then `images`, then `annotations`. The file appears atomically (written aside, then renamed).
    """

    def __init__(self, path: str | Path, header: dict[str, Any]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.header = header
        self._spool_dir = Path(tempfile.mkdtemp(prefix=".coco-", dir=self.path.parent))
        self._spools: dict[str, TextIO] = {}
        self.counts: dict[str, int] = {}

    def add(self, key: str, record: Any) -> None:
        if key not in self._spools:
            self._spools[key] = open(self._spool_dir / key, "w", encoding="utf-8")
            self.counts[key] = 0
        spool = self._spools[key]
        if self.counts[key]:
            spool.write(",\n")
        spool.write(json.dumps(record, separators=(",", ":"), allow_nan=False))
        self.counts[key] += 1

    def close(self) -> Path:
        for spool in self._spools.values():
            spool.close()
        try:
            with replaced_atomically(self.path) as partial, open(partial, "w", encoding="utf-8") as out:
                out.write("{")
                first = True
                for key, value in self.header.items():
                    if key in STREAMED_KEYS:
                        continue
                    out.write(("" if first else ",\n") + json.dumps(key) + ":" + json.dumps(value, allow_nan=False))
                    first = False
                for key in ("images", "annotations"):
                    out.write(("" if first else ",\n") + json.dumps(key) + ":[\n")
                    first = False
                    if key in self._spools:
                        with open(self._spool_dir / key, encoding="utf-8") as spool:
                            shutil.copyfileobj(spool, out)
                    out.write("\n]")
                out.write("}\n")
        finally:
            shutil.rmtree(self._spool_dir, ignore_errors=True)
        return self.path

    def __enter__(self) -> CocoWriter:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            for spool in self._spools.values():
                spool.close()
            shutil.rmtree(self._spool_dir, ignore_errors=True)


def count_records(path: str | Path) -> dict[str, int] | None:
    """How many images and people (annotations) a COCO file lists, read in bounded memory; None when
    it cannot be read (validation then names the problem)."""
    counts = {"images": 0, "people": 0}
    key_of = {"images": "images", "annotations": "people"}
    try:
        for entry in iter_coco(path):
            if entry.key in key_of:
                counts[key_of[entry.key]] += 1 if entry.index is not None else len(entry.value or [])
    except (OSError, CocoJsonError, TypeError):
        return None
    return counts
