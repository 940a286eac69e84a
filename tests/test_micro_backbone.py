"""The shipped micro ViT: small, loads through the local-file weight path, is not random init, and the
pretraining script that made it is deterministic."""

from __future__ import annotations

import hashlib
import importlib.util
import re
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from peftbench.errors import CheckpointError
from peftbench.models import build_backbone, make_backbone_config
from peftbench.paths import weights_path

ROOT = Path(__file__).resolve().parent.parent
YAML = ROOT / "configs" / "backbone" / "vit_micro.yaml"
ASSET = ROOT / "peftbench" / "assets" / "vit_micro_fractal.safetensors"


def _cfg(**override):
    raw = OmegaConf.to_container(OmegaConf.load(YAML))
    return make_backbone_config({**raw, **override})


def _script():
    spec = importlib.util.spec_from_file_location("pretrain_micro_vit", ROOT / "scripts" / "pretrain_micro_vit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_shipped_weights_are_small_and_logged():
    assert weights_path(_cfg().weights) == ASSET.resolve()
    assert ASSET.is_file() and ASSET.stat().st_size <= 8 * 1024 * 1024
    log = ASSET.with_suffix(".log").read_text()
    assert "command: python scripts/pretrain_micro_vit.py" in log
    digest = re.search(r"sha256 ([0-9a-f]{64})", log).group(1)
    assert digest == hashlib.sha256(ASSET.read_bytes()).hexdigest()  # the log belongs to this file
    final = float(re.search(r"final held-out accuracy: ([0-9.]+)%", log).group(1))
    assert final > 5.0  # five times chance (1% for 100 classes)


def test_the_micro_vit_loads_its_weights_and_differs_from_random_init():
    torch.manual_seed(0)
    pretrained = build_backbone(_cfg(), 7)
    torch.manual_seed(0)
    scratch = build_backbone(_cfg(weights="none"), 7)
    shipped = load_file(str(ASSET))
    state = pretrained.state_dict()
    assert set(shipped) == {k for k in state if not k.startswith("head.")}
    for key, tensor in shipped.items():
        assert torch.equal(state[key], tensor), key
    differing = [k for k in shipped if not torch.equal(scratch.state_dict()[k], shipped[k])]
    assert len(differing) > 0.9 * len(shipped)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert pretrained(x).shape == (2, 7)
        assert not torch.allclose(pretrained.forward_features(x), scratch.forward_features(x))


def test_a_missing_packaged_file_is_a_clear_error():
    with pytest.raises(CheckpointError, match="does not exist"):
        build_backbone(_cfg(weights="package:assets/absent.safetensors"), 3)


def test_pretraining_is_deterministic_given_its_seed(tmp_path):
    script = _script()
    tiny = ["--classes", "3", "--per-class", "4", "--val-per-class", "2", "--epochs", "1",
            "--batch-size", "4", "--warmup-steps", "1", "--threads", "1"]
    outs = []
    for run in ("a", "b"):
        out = tmp_path / run / "w.safetensors"
        assert script.main([*tiny, "--out", str(out)]) == 0
        outs.append(out)
    first, second = (load_file(str(o)) for o in outs)  # tensors, not bytes: the header's metadata order varies
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    log = outs[0].with_suffix(".log").read_text()
    assert "--classes 3" in log and "final held-out accuracy" in log
    third = tmp_path / "c" / "w.safetensors"
    script.main([*tiny, "--seed", "1", "--out", str(third)])
    other = load_file(str(third))
    assert not all(torch.equal(other[k], first[k]) for k in first)
