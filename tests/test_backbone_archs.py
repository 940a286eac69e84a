"""The backbones papers use now: configs name real timm tags, fail fast offline, load local files (timm's layout
and the original releases), refuse files of another architecture naming the configs they fit; the tiny test
architectures train; and methods translate registers, rotary embeddings and the pooling heads as documented."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import timm
import torch
from omegaconf import OmegaConf
from safetensors.torch import save_file

from peftbench.errors import CheckpointError
from peftbench.methods.attach import attach_method
from peftbench.methods.layers.tokens import RotaryFreeTokens
from peftbench.methods.registry import build_method
from peftbench.models import backbone_data_config, build_backbone, make_backbone_config
from peftbench.paths import config_dir
from tests.tiny_models import ARCHS

CONFIGS = Path(config_dir()) / "backbone"
HUB = sorted(p.stem for p in CONFIGS.glob("*.yaml") if OmegaConf.load(p).get("weights") == "hub")
NEW = ["vit_b14_dinov2", "vit_b14_dinov2_reg4", "vit_b16_dinov3", "vit_b16_clip_openai", "vit_b16_siglip2",
       "vit_b16_mae", "eva02_b14_mim_in22k", "deit3_b16_in22k", "convnext_b_in22k", "vit_l14_dinov2",
       "vit_l14_clip_openai"]  # fmt: skip


def _cfg(name: str, **kw):
    raw = OmegaConf.to_container(OmegaConf.load(CONFIGS / f"{name}.yaml"))
    return dataclasses.replace(make_backbone_config(raw), **kw)


def _save(model: torch.nn.Module, path: Path, rename=None) -> None:
    head = {id(p) for p in model.get_classifier().parameters()}
    classifier = {k for k, p in model.named_parameters() if id(p) in head}
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k not in classifier}
    save_file(rename(state) if rename else state, str(path))


def test_the_new_backbones_exist_with_timm_tags_and_the_pretrained_config_is_timms():
    assert set(NEW) <= set(HUB)
    for name in NEW:
        cfg = _cfg(name)
        pretrained = timm.models.get_pretrained_cfg(cfg.timm_name)  # raises for a tag timm does not have
        assert pretrained is not None and cfg.source, name
        with torch.device("meta"):
            model = build_backbone(dataclasses.replace(cfg, weights="none"), 10)
        data = backbone_data_config(model)
        assert data["mean"] == tuple(pretrained.mean) and data["interpolation"] == pretrained.interpolation, name


@pytest.mark.parametrize("name", NEW)
def test_hub_weights_fail_fast_offline_naming_the_original_file(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the subprocess test in test_backbone.py times the real thing
    with pytest.raises(CheckpointError) as err:
        build_backbone(_cfg(name), 10)
    assert "backbone.weights=/path/to/model" in str(err.value) and _cfg(name).source in str(err.value)


@pytest.mark.parametrize("arch", ["dinov2", "clip", "siglip", "eva02", "dinov3", "convnext"])
def test_a_local_checkpoint_of_each_tiny_architecture_loads(arch, tmp_path):
    name = f"{arch}_test"
    source = build_backbone(_cfg(name), 21)
    path = tmp_path / "w.safetensors"
    _save(source, path)  # the classifier left out; ConvNeXt's head norm (head.norm) stays in
    loaded = build_backbone(_cfg(name, weights=str(path)), 3)
    src = source.state_dict()
    classifier = "head.fc." if arch == "convnext" else "head."
    for key, tensor in loaded.state_dict().items():
        if not key.startswith(classifier):
            torch.testing.assert_close(tensor, src[key], rtol=0, atol=0, msg=key)


def test_meta_dinov2_layout_with_registers_is_converted_by_timms_filter(tmp_path):
    source = build_backbone(_cfg("dinov2_test"), 5)

    def meta_layout(state):  # Meta's dinov2_vitb14_reg4_pretrain.pth keys: registers, mask token, cls in pos_embed
        out = dict(state)
        out["register_tokens"] = out.pop("reg_token")
        out["pos_embed"] = torch.cat((torch.zeros_like(out["cls_token"]), out["pos_embed"]), dim=1)
        out["mask_token"] = torch.zeros(1, out["cls_token"].shape[-1])
        return out

    path = tmp_path / "dinov2_vits_reg4_pretrain.safetensors"
    _save(source, path, meta_layout)
    loaded = build_backbone(_cfg("dinov2_test", weights=str(path)), 5)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.forward_features(x), source.forward_features(x))


def test_a_checkpoint_of_another_architecture_names_keys_and_the_config_that_fits(tmp_path):
    path = tmp_path / "clip_weights.safetensors"
    _save(build_backbone(_cfg("clip_test"), 5), path)
    with pytest.raises(CheckpointError) as err:
        build_backbone(_cfg("dinov2_test", weights=str(path)), 5)
    msg = str(err.value)
    assert "does not fit backbone 'dinov2_test'" in msg and "unexpected keys" in msg and "norm_pre.weight" in msg
    assert "It fits backbone=clip_test" in msg


def test_prompts_get_no_rotary_position_as_prefix_tokens():
    """RotaryFreeTokens == Eva's own attention with the extra tokens counted as prefix tokens (not rotated)."""
    model = ARCHS["dinov3"].build()
    attn = model.blocks[0].attn
    rope = model.rope.get_embed()
    extra, npt = 3, attn.num_prefix_tokens
    x = torch.randn(2, npt + extra + rope.shape[-2], model.embed_dim)
    reference = copy.deepcopy(attn)
    reference.num_prefix_tokens = npt + extra
    with torch.no_grad():
        torch.testing.assert_close(RotaryFreeTokens(attn, "after_prefix")(x, rope=rope), reference(x, rope=rope))
        plain = torch.cat((x[:, :npt], x[:, npt + extra :]), dim=1)
        out = RotaryFreeTokens(attn, "end")(plain, rope=rope)  # no extra tokens: the attention as it is
        torch.testing.assert_close(out, attn(plain, rope=rope), rtol=0, atol=0)


@pytest.mark.parametrize("arch", ["eva02", "dinov3", "siglip"])
def test_prefix_attention_with_a_zero_branch_is_the_backbones_attention(arch):
    """PATT with its last projection at zero computes q, k, v, the rotary embedding and the output as Eva's own."""
    model = ARCHS[arch].build()
    plain = copy.deepcopy(model)
    attach_method(model, build_method("prefix", {"form": "patt", "mid_dim": 4}))
    with torch.no_grad():
        for block in model.blocks:
            last = block.attn.branch[-1]
            last.weight.zero_()
            if last.bias is not None:
                last.bias.zero_()
        x = torch.randn(2, 3, 32, 32)
        torch.testing.assert_close(model.eval()(x), plain.eval()(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch", ["siglip", "eva02"])
def test_vpt_prompts_never_reach_the_pooling_head(arch):
    model = ARCHS[arch].build()
    plain = copy.deepcopy(model)
    attach_method(model, build_method("vpt_deep", {"length": 3}))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens = model.eval().forward_features(x)
        assert tokens.shape == plain.eval().forward_features(x).shape  # the prompt outputs were dropped
        torch.testing.assert_close(model.forward_head(tokens), plain.forward_head(tokens), rtol=0, atol=0)


def test_lora_on_separate_qkv_is_one_pair_with_a_shared_down_projection():
    model = ARCHS["eva02"].build()
    attach_method(model, build_method("lora", {"rank": 2}))
    attn = model.blocks[0].attn
    q, k, v = attn.q_proj, attn.k_proj, attn.v_proj
    assert q.owner is q and k.owner is q and v.owner is q and not hasattr(k, "lora_A")
    d = model.embed_dim
    assert q.lora_A.shape == (1, 2, d) and sum(w.lora_B.numel() for w in (q, k, v)) == 3 * d * 2
    with torch.no_grad():
        for w in (q, k, v):
            w.lora_B.normal_()
        fused = torch.cat([w.delta_weight() for w in (q, k, v)])  # the fused map's B A
        b = torch.cat([w.lora_B[0] for w in (q, k, v)])
        torch.testing.assert_close(fused, b @ q.lora_A[0])


@pytest.mark.parametrize(("method", "cached_through", "trained_from"),
                         [("linear", "pre_logits", "head"), ("partial_k", "blocks[0]", "blocks[1]")])
def test_prefix_cache_treats_the_attention_pool_as_part_of_the_network(method, cached_through, trained_from):
    """SigLIP: a linear probe caches the pooled features (the frozen attention pool included); Partial-k trains the
    pool with its last block, so the cache stops before that block, and the cached path computes the same."""
    from peftbench.engine.prefix_cache import frozen_prefix

    model = ARCHS["siglip"].build()
    attach_method(model, build_method(method))
    prefix, suffix = frozen_prefix(model.eval())
    assert (prefix[-1].name, suffix[0].name) == (cached_through, trained_from)
    assert any(m is model.attn_pool for unit in (prefix if method == "linear" else suffix) for m in unit.modules)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        h = x
        for unit in prefix + suffix:
            h = unit.fn(h)
        torch.testing.assert_close(h, model(x), rtol=0, atol=1e-6)


def test_merge_that_a_backbone_cannot_absorb_is_refused_before_training():
    from peftbench.assemble import assemble, parse_spec
    from peftbench.config import compose
    from peftbench.errors import ConfigError

    spec = parse_spec(compose(["backbone=eva02_test", "method=ssf", "trainer.merge=true", "trainer.device=cpu"]))
    with pytest.raises(ConfigError, match=r"trainer.merge=true: .*k_proj .*no bias to absorb the shift"):
        assemble(spec, weights=False, data=False)
    ok = parse_spec(compose(["backbone=clip_test", "method=ssf", "trainer.merge=true", "trainer.device=cpu"]))
    assemble(ok, weights=False, data=False)  # CLIP's bias-free patch embedding merges into the position embedding


def test_a_torchscript_archive_says_how_to_get_its_state_dict(tmp_path):
    """OpenAI's CLIP .pt files are TorchScript archives: not executed, the message says how to export them."""
    path = tmp_path / "ViT-B-16.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    with pytest.raises(CheckpointError, match=r"TorchScript archive.*torch\.jit\.load\('ViT-B-16\.pt'"):
        build_backbone(_cfg("clip_test", weights=str(path)), 5)
