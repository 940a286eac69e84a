"""Resumable runs: an epoch checkpoint in the run folder, restored when an interrupted run is relaunched.

A run folder is named by the config hash, so a relaunch of the same command lands in the same folder
and finds ``resume.pt`` there. It holds everything the loop needs to continue exactly where it stopped:

* the trainable parameters (frozen backbone weights are rebuilt from the seeded init / the weights
  file) and every buffer;
* the optimizer state (AdamW moments, step counters);
* the schedule position (the global step; the learning rate is a pure function of it);
* the RNG states: Python, NumPy, torch CPU (and CUDA), and the data loader's shuffling generator;
* the loop's bookkeeping (epochs done, per-epoch times, periodic evaluations).

Training from epoch k on CPU therefore ends with the same weights and accuracy as an uninterrupted
run. (Exactly so with ``data.num_workers=0``, the default: with worker processes, the
resumed loader draws its workers' base seed once more, so the later shuffling order differs.) ``resume.json`` beside it names the saved epoch (readable without loading the tensors). Both are
deleted when the run finishes (success or divergence) unless ``resume.keep=true``: the trained tensors
are then in ``task.safetensors``, and the checkpoint (for full fine-tuning, weights plus two AdamW
moments) would only cost disk.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from peftbench.atomic import atomic_path, write_text_atomic
from peftbench.errors import ConfigError

RESUME_FILE = "resume.pt"
RESUME_META = "resume.json"
FORMAT_VERSION = 1


@dataclasses.dataclass
class ResumeConfig:
    """The ``resume:`` block (left out of the config hash: it changes how a run is kept, not what it computes)."""

    enabled: bool = True  # save epoch checkpoints and resume from them on relaunch
    every: int = 1  # save every N epochs
    keep: bool = False  # keep resume.pt / resume.json after the run finished
    # Failure injection for tests and drills: stop the run like an interruption (status `failed`,
    # checkpoint kept) right after epoch N is saved. 0 = never.
    stop_after_epochs: int = 0

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ConfigError(f"resume.every must be >= 1 (epochs between checkpoints), got {self.every}")
        if self.stop_after_epochs < 0:
            raise ConfigError(f"resume.stop_after_epochs must be >= 0 (0 = never), got {self.stop_after_epochs}")
        if self.stop_after_epochs and not self.enabled:
            raise ConfigError("resume.stop_after_epochs needs resume.enabled=true (nothing to resume from otherwise)")


class RunInterrupted(KeyboardInterrupt):
    """Raised by ``resume.stop_after_epochs``: handled like Ctrl-C (recorded as failed, resumable)."""


class EpochCheckpoint:
    """Saves and restores the loop's full state in ``<run_dir>/resume.pt``.

    Args:
        run_dir: the run folder (one per config hash).
        cfg: the ``resume:`` settings.
    """

    def __init__(self, run_dir: Path, cfg: ResumeConfig) -> None:
        self.cfg = cfg
        self.path = Path(run_dir) / RESUME_FILE
        self.meta_path = Path(run_dir) / RESUME_META
        self.resumed_from = 0  # the epoch restored by :meth:`restore` (0: started from scratch)

    def saved_epoch(self) -> int:
        """The epoch recorded in ``resume.json`` (0 when there is none or resuming is off)."""
        if not self.cfg.enabled or not self.path.exists() or not self.meta_path.exists():
            return 0
        try:
            return int(json.loads(self.meta_path.read_text())["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def restore(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator, steps_per_epoch: int
    ) -> dict[str, Any] | None:
        """Load the checkpoint into ``model``, ``optimizer``, ``generator`` and the global RNGs.

        Returns:
            The loop state saved with it (``epoch``, ``step``, ``history``, ``epoch_times``,
            ``loss_value``), or ``None`` when there is nothing (usable) to resume from.
        """
        if not self.saved_epoch():
            return None
        ckpt = torch.load(self.path, map_location="cpu", weights_only=False)
        trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
        problem = None
        if ckpt.get("format") != FORMAT_VERSION:
            problem = f"format {ckpt.get('format')} != {FORMAT_VERSION}"
        elif set(ckpt["params"]) != set(trainable) or any(
            ckpt["params"][n].shape != p.shape for n, p in trainable.items()
        ):
            problem = "its trainable tensors do not match the model"
        elif ckpt["steps_per_epoch"] != steps_per_epoch:
            problem = f"{ckpt['steps_per_epoch']} steps per epoch saved, {steps_per_epoch} now (the data changed)"
        if problem:
            print(f"[peftbench] ignoring {self.path} ({problem}); training from scratch")
            return None
        with torch.no_grad():
            for name, p in trainable.items():
                p.copy_(ckpt["params"][name])
            buffers = dict(model.named_buffers())
            for name, b in ckpt["buffers"].items():
                if name in buffers:
                    buffers[name].copy_(b)
        optimizer.load_state_dict(ckpt["optimizer"])
        rng = ckpt["rng"]
        generator.set_state(rng["loader"])
        torch.set_rng_state(rng["torch"])
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        self.resumed_from = int(ckpt["loop"]["epoch"])
        print(f"[peftbench] resumed from {self.path} after epoch {self.resumed_from}")
        return ckpt["loop"]

    def save(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
        steps_per_epoch: int,
        loop: dict[str, Any],
        last_epoch: bool,
    ) -> None:
        """Save after an epoch (every ``resume.every`` epochs, never after the last one).

        Raises :class:`RunInterrupted` right after saving epoch ``resume.stop_after_epochs``.

        Args:
            loop: the loop state; ``loop["epoch"]`` is the number of epochs completed.
            last_epoch: the epoch just completed was the last (nothing left to resume).
        """
        epoch = int(loop["epoch"])
        if not self.cfg.enabled or last_epoch or epoch % self.cfg.every:
            if self.cfg.stop_after_epochs == epoch and not last_epoch:
                raise RunInterrupted(f"resume.stop_after_epochs={epoch}")
            return
        ckpt = {
            "format": FORMAT_VERSION,
            "steps_per_epoch": steps_per_epoch,
            "params": {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad},
            "buffers": {n: b.detach().cpu().clone() for n, b in model.named_buffers()},
            "optimizer": optimizer.state_dict(),
            "rng": {
                "loader": generator.get_state(),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "python": random.getstate(),
                "numpy": np.random.get_state(),
            },
            "loop": loop,
        }
        with atomic_path(self.path) as tmp:
            torch.save(ckpt, tmp)
        write_text_atomic(self.meta_path, json.dumps({"epoch": epoch}) + "\n")
        if self.cfg.stop_after_epochs == epoch:
            raise RunInterrupted(f"resume.stop_after_epochs={epoch}: stopped after saving {self.path}")

    def finish(self) -> None:
        """The run is over: drop the checkpoint unless ``resume.keep``."""
        if not self.cfg.keep:
            self.discard()

    def discard(self) -> None:
        """Delete the checkpoint (a finished run is being replaced: train it again from scratch)."""
        self.path.unlink(missing_ok=True)
        self.meta_path.unlink(missing_ok=True)
