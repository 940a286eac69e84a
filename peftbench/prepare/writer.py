"""Atomic preparation: files are written by the package's atomic writer (:mod:`peftbench.atomic`), a task folder
is built in a staging folder and renamed into place once its completion marker is written, so an interrupted
preparation never leaves a half-written file or a task that looks finished."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from PIL import Image

from peftbench.atomic import atomic_path, write_json_atomic, write_text_atomic

__all__ = ["MARKER", "finish", "is_complete", "save_png_atomic", "staging_dir", "write_json_atomic",
           "write_text_atomic"]

MARKER = ".peftbench-prepared"  # written last into a task folder; its presence = task complete


def save_png_atomic(image: Image.Image, path: Path) -> None:
    """Save ``image`` losslessly as PNG at ``path`` (temporary name + rename)."""
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


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
