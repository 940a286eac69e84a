"""Atomic writing: files go to a temporary name and are renamed, a task folder is built in a staging
folder and renamed into place once its completion marker is written, so an interrupted preparation
never leaves a half-written file or a task that looks finished."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image

MARKER = ".peftbench-prepared"  # written last into a task folder; its presence = task complete


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def save_png_atomic(image: Image.Image, path: Path) -> None:
    """Save ``image`` losslessly as PNG at ``path`` (temporary name + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)


def is_complete(task_dir: Path) -> bool:
    """Whether ``task_dir`` was fully written by ``peftbench-prepare`` (its marker exists)."""
    return (task_dir / MARKER).is_file()


def staging_dir(task_dir: Path) -> Path:
    """The folder a task is built in before it is renamed to ``task_dir`` (kept across interruptions)."""
    return task_dir.with_name(f".{task_dir.name}.partial")


def finish(staging: Path, task_dir: Path, summary: dict[str, Any]) -> None:
    """Write the completion marker last, then move the staging folder to ``task_dir``."""
    write_json_atomic(staging / MARKER, summary)
    os.replace(staging, task_dir)
