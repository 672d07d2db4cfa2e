"""Files written whole or not at all: each is written beside its target under a `.partial` name and renamed
into place once complete, so a reader (or a run killed mid-write) never sees half a file."""

import pathlib


def write_text(path: str | pathlib.Path, text: str, encoding: str = "utf-8") -> None:
    path = pathlib.Path(path)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding=encoding)
    partial.replace(path)
