"""Atomic file writes: a reader never finds a half-written file (or folder) under its final name.

Everything is written to a `.partial` sibling first and renamed into place once complete. A rename within one
directory is atomic, so a run killed mid-write leaves the previous file as it was (or no file), never a torn
one; a write that fails removes its `.partial`.

`write_text`, `write_bytes` and `write_json` write what they are given; `replacing` yields the temporary path
for writers that take a path (safetensors' `save_file`, a tokenizer's `save`, matplotlib's `savefig`);
`replacing_directory` does the same for a whole folder. Files get ordinary permissions (0666 less the umask),
whatever the writer chose (safetensors' `save_file` makes them 0600). JSON is always valid JSON: a NaN or an
infinity is written as null.
"""

import contextlib
import json
import math
import os
import pathlib
import shutil
from collections.abc import Iterator
from typing import Any

_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _ordinary_permissions(path: pathlib.Path) -> None:
    os.chmod(path, 0o666 & ~_UMASK)


def partial_path(path: pathlib.Path, keep_suffix: bool = False) -> pathlib.Path:
    """`path`'s temporary sibling: `NAME.partial`, or `STEM.partial.SUFFIX` for writers that pick the format
    from the suffix (matplotlib)."""
    if keep_suffix:
        return path.with_name(path.stem + ".partial" + path.suffix)
    return path.with_name(path.name + ".partial")


@contextlib.contextmanager
def replacing(path: str | pathlib.Path, keep_suffix: bool = False) -> Iterator[pathlib.Path]:
    """A temporary path to write `path`'s new contents to: renamed to `path` when the block ends, removed
    (and `path` left as it was) when the block raises."""
    path = pathlib.Path(path)
    partial = partial_path(path, keep_suffix)
    try:
        yield partial
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _ordinary_permissions(partial)
    partial.replace(path)


def write_bytes(path: str | pathlib.Path, data: bytes) -> None:
    with replacing(path) as partial:
        partial.write_bytes(data)


def write_text(path: str | pathlib.Path, text: str, encoding: str = "utf-8") -> None:
    with replacing(path) as partial:
        partial.write_text(text, encoding=encoding)


def _json_ready(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    return value


def json_text(value: Any, indent: int | None = None) -> str:
    """`value` as JSON: NaN and infinities as null (JSON has no such numbers), values JSON has no type for
    (paths, say) as text."""
    return json.dumps(_json_ready(value), indent=indent, default=str, allow_nan=False)


def write_json(path: str | pathlib.Path, value: Any) -> None:
    """`value` as indented JSON (`json_text`) and a newline."""
    write_text(path, json_text(value, indent=2) + "\n")


def decoded_lines(file, path: str | pathlib.Path) -> Iterator[str]:
    """The lines of an open binary `file` (plain or decompressed) as UTF-8 text, line endings kept, decoded
    one by one so that a line that is not UTF-8 (a binary file, or another encoding) is named by its number."""
    for number, raw in enumerate(file, 1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}, line {number}: not UTF-8 text (byte 0x{raw[error.start]:02x} at column "
                             f"{error.start + 1}); convert the file to UTF-8, or check it is the right file.") from None


def text_lines(path: str | pathlib.Path) -> Iterator[str]:
    """`decoded_lines` of the file at `path`, a leading byte-order mark dropped."""
    with open(path, "rb") as file:
        for number, line in enumerate(decoded_lines(file, path), 1):
            yield line.removeprefix("\ufeff") if number == 1 else line


@contextlib.contextmanager
def replacing_directory(path: str | pathlib.Path) -> Iterator[pathlib.Path]:
    """An empty temporary folder to fill in place of `path`: when the block ends it takes `path`'s name (an
    existing `path` is moved aside first and deleted only once the new folder is in place); when the block
    raises it is deleted and `path` is left as it was. Whether an existing `path` may be replaced is the
    caller's to decide, before any work."""
    path = pathlib.Path(path)
    partial = partial_path(path)
    shutil.rmtree(partial, ignore_errors=True)  # the leftover of a run killed mid-write
    partial.mkdir(parents=True)
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    for written in partial.rglob("*"):
        if written.is_file():
            _ordinary_permissions(written)
    previous = path.with_name(path.name + ".previous")
    shutil.rmtree(previous, ignore_errors=True)
    if path.exists():
        path.rename(previous)
    partial.rename(path)
    shutil.rmtree(previous, ignore_errors=True)
