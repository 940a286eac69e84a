"""Backbone weights through the path users take: saved random-init checkpoints in every format."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from omegaconf import OmegaConf
from safetensors.torch import save_file

from peftbench.errors import CheckpointError
from peftbench.models import backbone_data_config, build_backbone, make_backbone_config
from peftbench.paths import config_dir

CONFIGS = Path(config_dir()) / "backbone"


def _cfg(name: str, **kw):
    raw = OmegaConf.to_container(OmegaConf.load(CONFIGS / f"{name}.yaml"))
    return dataclasses.replace(make_backbone_config(raw), **kw)


def _source(name: str = "vit_test", seed: int = 7):
    torch.manual_seed(seed)
    return build_backbone(_cfg(name, weights="none"), num_classes=1000)


def _assert_backbone_equal(loaded, source):
    src = source.state_dict()
    for name, tensor in loaded.state_dict().items():
        if name.startswith("head."):  # ViT head / Swin head.fc: the task head is fresh
            continue
        torch.testing.assert_close(tensor, src[name], rtol=0, atol=0, msg=name)


def google_npz(model, path: Path) -> None:
    """Write a timm ViT in the original Google (big_vision/vit_jax) npz key layout, with a 21k-class head."""
    d = model.embed_dim
    heads = model.blocks[0].attn.num_heads
    hd = d // heads
    w = {
        "embedding/kernel": model.patch_embed.proj.weight.permute(2, 3, 1, 0),  # OIHW -> HWIO
        "embedding/bias": model.patch_embed.proj.bias,
        "cls": model.cls_token,
        "Transformer/posembed_input/pos_embedding": model.pos_embed,
        "Transformer/encoder_norm/scale": model.norm.weight,
        "Transformer/encoder_norm/bias": model.norm.bias,
        "head/kernel": torch.randn(d, 21843),
        "head/bias": torch.randn(21843),
    }
    for i, blk in enumerate(model.blocks):
        p = f"Transformer/encoderblock_{i}/"
        mha = p + "MultiHeadDotProductAttention_1/"
        w[p + "LayerNorm_0/scale"], w[p + "LayerNorm_0/bias"] = blk.norm1.weight, blk.norm1.bias
        for j, n in enumerate(("query", "key", "value")):
            rows = slice(j * d, (j + 1) * d)
            w[f"{mha}{n}/kernel"] = blk.attn.qkv.weight[rows].T.reshape(d, heads, hd)
            w[f"{mha}{n}/bias"] = blk.attn.qkv.bias[rows].reshape(heads, hd)
        w[mha + "out/kernel"] = blk.attn.proj.weight.reshape(d, heads, hd).permute(1, 2, 0)
        w[mha + "out/bias"] = blk.attn.proj.bias
        w[p + "LayerNorm_2/scale"], w[p + "LayerNorm_2/bias"] = blk.norm2.weight, blk.norm2.bias
        for r, fc in enumerate((blk.mlp.fc1, blk.mlp.fc2)):
            w[f"{p}MlpBlock_3/Dense_{r}/kernel"] = fc.weight.T
            w[f"{p}MlpBlock_3/Dense_{r}/bias"] = fc.bias
    np.savez(path, **{k: v.detach().numpy() for k, v in w.items()})


@pytest.mark.parametrize("fmt", ["safetensors", "pth", "pth_wrapped", "npz"])
def test_vit_checkpoint_formats_load_through_the_user_path(tmp_path, fmt):
    source = _source()
    if fmt == "safetensors":
        path = tmp_path / "model.safetensors"
        save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    elif fmt == "pth":
        path = tmp_path / "model.pth"
        torch.save(source.state_dict(), path)
    elif fmt == "pth_wrapped":
        path = tmp_path / "checkpoint.pth"
        torch.save({"model": source.state_dict(), "epoch": 3}, path)
    else:
        path = tmp_path / "ViT-test.npz"
        google_npz(source, path)
    torch.manual_seed(123)  # a different init: every backbone tensor must come from the file
    loaded = build_backbone(_cfg("vit_test", weights=str(path)), num_classes=10)
    assert loaded.get_classifier().out_features == 10
    _assert_backbone_equal(loaded, source)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.forward_features(x), source.eval().forward_features(x))


def test_swin_safetensors_loads(tmp_path):
    source = _source("swin_test")
    path = tmp_path / "swin.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    loaded = build_backbone(_cfg("swin_test", weights=str(path)), num_classes=3)
    _assert_backbone_equal(loaded, source)


def test_checkpoint_that_does_not_fit_names_the_keys(tmp_path):
    path = tmp_path / "swin.safetensors"
    swin = _source("swin_test")
    save_file({k: v.contiguous() for k, v in swin.state_dict().items()}, str(path))
    with pytest.raises(CheckpointError, match=r"does not fit backbone 'vit_test'.*missing keys.*blocks\.0"):
        build_backbone(_cfg("vit_test", weights=str(path)), num_classes=10)
    wide = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=4, embed_dim=96, depth=4, num_heads=4)
    path2 = tmp_path / "wide.pth"
    torch.save(wide.state_dict(), path2)
    with pytest.raises(CheckpointError, match=r"shape mismatches \(54\).*blocks.0.attn.qkv.weight: file \(288, 96\) vs model \(192, 64\)"):
        build_backbone(_cfg("vit_test", weights=str(path2)), num_classes=10)


def test_missing_corrupt_and_unsupported_files(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        build_backbone(_cfg("vit_test", weights=str(tmp_path / "nope.pth")), 10)
    bad = tmp_path / "model.ckpt"
    bad.write_text("x")
    with pytest.raises(CheckpointError, match=r"\.safetensors, \.pth"):
        build_backbone(_cfg("vit_test", weights=str(bad)), 10)
    corrupt = tmp_path / "model.safetensors"
    corrupt.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        build_backbone(_cfg("vit_test", weights=str(corrupt)), 10)


def test_hub_weights_fail_fast_offline_and_say_how_to_use_a_file():
    code = (
        "from peftbench.models import build_backbone, make_backbone_config\n"
        "from peftbench.errors import CheckpointError\n"
        "cfg = make_backbone_config({'name': 'vit_b16_in21k', 'timm_name': 'vit_base_patch16_224.orig_in21k'})\n"
        "try:\n    build_backbone(cfg, 10)\nexcept CheckpointError as e:\n    print(e)\n"
    )
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert time.perf_counter() - t0 < 60
    assert "backbone.weights=/path/to/model" in out.stdout, out.stderr[-2000:]


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIGS.glob("*.yaml")))
def test_every_backbone_yaml(name):
    cfg = _cfg(name)
    assert cfg.name == name
    if cfg.weights == "none" or cfg.weights.startswith("package:"):  # random init or a file shipped in the package
        model = build_backbone(cfg, 7)
        assert model(torch.randn(1, 3, cfg.img_size, cfg.img_size)).shape == (1, 7)
    else:
        assert cfg.timm_name in timm.list_models(pretrained=True)


def test_data_config_comes_from_the_timm_pretrained_cfg():
    model = timm.create_model("vit_base_patch16_224.augreg_in21k", pretrained=False, img_size=32, patch_size=16)
    assert backbone_data_config(model)["mean"] == (0.5, 0.5, 0.5)
    swin = build_backbone(_cfg("swin_test"), 3)
    assert backbone_data_config(swin)["std"] == (0.229, 0.224, 0.225)
