"""Measurements recorded with every run: throughput, device and library versions (memory and FLOPs:
:mod:`peftbench.engine.costs`)."""

from __future__ import annotations

import platform
import subprocess
import time
from pathlib import Path

import torch
from torch import nn


def sync(device: torch.device) -> None:
    """Wait for queued kernels so wall-clock timings are real."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def inference_throughput(
    model: nn.Module,
    batch: torch.Tensor,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
    warmup: int = 2,
    iters: int = 5,
) -> float:
    """Images per second of ``model`` on a fixed batch (model only, no data loading).

    Args:
        model: the model in eval mode.
        batch: one input batch (B, C, H, W); moved to ``device``.
        device: where to run.
        autocast_dtype: bf16 autocast dtype on CUDA, or None.
        warmup: untimed iterations first.
        iters: timed iterations.
    """
    model.eval()
    batch = batch.to(device)
    ctx = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else _nullcontext()
    with ctx:
        for _ in range(warmup):
            model(batch)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(iters):
            model(batch)
        sync(device)
    return batch.shape[0] * iters / (time.perf_counter() - t0)


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False


def device_model(device: torch.device) -> str:
    """The GPU name, or the CPU model string."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return cpu


def device_name(device: torch.device) -> str:
    """A human-readable device name (GPU model, or the CPU model and core count)."""
    if device.type == "cuda":
        return device_model(device)
    return f"{device_model(device)} ({torch.get_num_threads()} threads)"


def device_slug(device: torch.device) -> str:
    """:func:`device_model` as a file name: runs of other characters than letters, digits, ``.``, ``-`` become ``_``."""
    import re

    return re.sub(r"[^A-Za-z0-9.-]+", "_", device_model(device)).strip("_") or device.type


def library_versions() -> dict[str, str]:
    """Versions of the libraries that can change a result."""
    import hydra
    import numpy
    import omegaconf
    import timm
    import torchvision

    import peftbench

    return {
        "python": platform.python_version(),
        "peftbench": peftbench.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "hydra": hydra.__version__,
        "omegaconf": omegaconf.__version__,
        "numpy": numpy.__version__,
        "cuda": str(torch.version.cuda),
    }


def code_version() -> str:
    """``git describe`` of the checkout the package runs from (with ``-dirty``), else the package version."""
    import peftbench

    root = Path(peftbench.__file__).resolve().parents[1]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty", "--tags"],
            capture_output=True, text=True, timeout=5, check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"peftbench {peftbench.__version__} (no git)"
