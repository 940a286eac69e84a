"""The one atomic writer of the package: a temp file in the target's folder, renamed over it when complete.

A reader never sees a half-written result, checkpoint or table, and a crash mid-write leaves the old file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error, rename it onto ``path``.

    Args:
        path: the file to (re)place; its folder is created.

    Yields:
        Where to write (the caller writes the whole file there, with any writer: JSON, safetensors, torch).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | Path, obj: Mapping[str, Any] | list[Any]) -> None:
    """Write ``obj`` as indented JSON (non-JSON values as ``str``) to ``path`` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
