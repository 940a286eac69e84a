"""A local weights file enters the config hash by its contents: a replaced checkpoint is a new run."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

import peftbench
from peftbench.identity import config_hash, weights_sha256


def _cfg(weights: str) -> dict:
    return {"backbone": {"name": "vit_test", "weights": weights}, "method": {"name": "lora"}, "seed": 0}


def _save(path, seed: int) -> None:
    save_file({"w": torch.randn(4, 4, generator=torch.Generator().manual_seed(seed))}, str(path))


def test_replacing_the_file_changes_the_hash_and_the_same_contents_keep_it(tmp_path):
    path = tmp_path / "model.safetensors"
    _save(path, 0)
    first, digest = config_hash(_cfg(str(path))), weights_sha256(str(path))
    assert len(digest) == 64
    _save(path, 1)  # other weights, same path
    assert weights_sha256(str(path)) != digest and config_hash(_cfg(str(path))) != first
    _save(path, 0)  # the original contents again (a new modification time)
    assert weights_sha256(str(path)) == digest and config_hash(_cfg(str(path))) == first


def test_hub_none_and_missing_files_hash_by_the_config_alone(tmp_path):
    assert weights_sha256("hub") is None and weights_sha256("none") is None
    assert weights_sha256(str(tmp_path / "absent.safetensors")) is None
    assert config_hash(_cfg("hub")) != config_hash(_cfg("none"))


def test_the_shipped_micro_weights_are_hashed_through_the_package_path():
    digest = weights_sha256("package:assets/vit_micro_fractal.safetensors")
    log = Path(peftbench.__file__).parent / "assets" / "vit_micro_fractal.log"
    assert digest is not None and f"sha256 {digest}" in log.read_text()  # the log records the file's SHA-256
