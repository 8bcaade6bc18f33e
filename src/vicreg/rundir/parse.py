"""Reading a run directory's text files so that a damaged one (random bytes, a picture, JSON of another shape)
is a one-line ValueError naming it, never a decoder's exception."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DAMAGED = "damaged, or not the file vicreg wrote there"


def read_text(path: Path | str) -> str:
    """A text file's content; ValueError naming it when it is not UTF-8 text (random bytes, a picture)."""
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not a text file (byte {e.start} is not UTF-8): {DAMAGED}") from None
    if "\0" in text:
        raise ValueError(f"{path} is not a text file (it holds NUL bytes): {DAMAGED}")
    return text


def read_json(path: Path | str, missing: dict | None = None) -> dict:
    """A JSON file holding a mapping; ``missing`` ({} by default) when there is no such file. Empty, not JSON,
    or JSON of something else than a mapping: ValueError naming the file."""
    path = Path(path)
    if not path.is_file():
        return {} if missing is None else missing
    text = read_text(path)
    if not text.strip():
        raise ValueError(f"{path} is empty: {DAMAGED}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}): {DAMAGED}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a JSON {_kind(data)} where a mapping is expected: {DAMAGED}")
    return data


def _kind(value: Any) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(value), "null")
