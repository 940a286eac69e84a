"""Prefix tuning for vision transformers: learned key/value prefixes in every attention layer.

Papers: Li & Liang (ACL 2021), "Prefix-Tuning: Optimizing Continuous Prompts for Generation"; He, Zhou, Ma,
Berg-Kirkpatrick, Neubig (ICLR 2022), "Towards a Unified View of Parameter-Efficient Transfer Learning"
(prefix tuning as a gated parallel branch of attention); Yu, Chang, Liu, Tian, Chen (2022, arXiv 2210.00788),
"Towards a Unified View on Visual Parameter-Efficient Transfer Learning" (V-PETL; PATT).

Per attention layer, ``l`` key vectors ``P_k`` and value vectors ``P_v`` (each D wide, split over the heads
like timm's keys and values) are put in front of the layer's keys and values; queries and the number of
output tokens are unchanged:  ``softmax(q [P_k; K]^T * scale) [P_v; V]``. Three parameterisations
(``form``), following bruceyo/V-PETL ``models/video_swin_transformer_patt.py`` (``att_prefix_mode``):

* ``direct`` (default): ``P_k``, ``P_v`` are parameters, ``2 l D`` per layer (what is stored after
  training in every form of prefix tuning); Xavier-uniform init as NOAH's prefix branch
  (ZhangYuanhan-AI/NOAH ``model/supernet_vision_transformer_timm.py``).
* ``mlp``: the reparameterisation of Li & Liang, with the generator of V-PETL's ``prefix_*`` modes (``wte`` +
  ``control_trans``, one per layer): an embedding ``E`` (l x D) -> Linear(D, mid) -> tanh -> Linear(mid, 2D)
  gives ``[P_k, P_v]``. (V-PETL's ``prefix_kv`` branch concatenates the generated vectors to q and k along the
  head dimension, a bug; the prefixes here go to the keys and values, as in Li & Liang.)
* ``patt``: V-PETL's Parallel ATTention (``patt_kv``, the form the V-PETL paper proposes): the "prefix" is
  produced from the tokens themselves by a parallel bottleneck, Linear(D, mid) -> tanh -> Linear(mid, 2D)
  (biases as the qkv Linear), added to the keys and values with a factor ``scale``:
  ``K + s * dK(x)``, ``V + s * dV(x)``; no tokens are concatenated. V-PETL's README example uses mid = 128,
  s = 0.8 (video Swin-B; the argparse default is s = 0.2); it publishes no ViT-B/VTAB-1k setting. Default
  PyTorch Linear init, as the repo.

Defaults and count (ViT-B/16, head excluded): ``direct``, l = 10: 12 * 2 * 10 * 768 = 184,320. No VTAB-1k
row of prefix tuning on ViT-B/16 was found. V-PETL Bench's FGVC table prints "Prefix Tuning 0.36M" (its FGVC
counts include the head): 184,320 + the mean FGVC head 769 * 1173 / 5 = 180,407 gives 364,727 = 0.36M,
consistent with l = 10 in the direct form, but the configuration behind that row is not published; l = 10 is
also the smallest prefix length of NOAH's search space. Dropout on the prefixes (NOAH: 0.1) is an option,
off by default (Li & Liang use none).

Wrap, never patch: ``block.attn`` (timm ``Attention`` in ViT, ``WindowAttention`` in Swin) is replaced by
:class:`PrefixAttention`, which keeps the original as ``base_layer`` and uses its ``qkv`` / ``proj`` weights; the
attention itself is computed with ``torch.nn.functional.scaled_dot_product_attention``. On Swin the same
prefixes serve every window; the relative-position bias and the shifted-window mask apply to the token
keys only (prefix keys have no position). Prefix keys skip a q/k normalisation (none on the tables' ViTs).
Eva (EVA-02, DINOv3): queries, keys and values come from the fused ``qkv`` or from EVA-02's separate
``q_proj`` / ``k_proj`` / ``v_proj`` (:func:`~peftbench.methods.layers.blocks.block_sites`); the token queries
and keys get their rotary position exactly as in Eva's attention (timm's ``apply_rot_embed_cat`` on the tokens
after the class and register tokens), the prefix keys get **no rotary position** (as they get no position
bias on Swin), and Eva's inner attention norm (``scale_attn_inner``) and gate run as in the original.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from timm.layers import apply_rot_embed_cat
from torch import nn

from peftbench.errors import ConfigError, MethodNotSupportedError
from peftbench.methods.base import MethodConfig, PeftMethod, PeftModule
from peftbench.methods.layers.blocks import LinearSite, block_sites, replace_module, transformer_blocks

FORMS = ("direct", "mlp", "patt")


@dataclasses.dataclass
class PrefixConfig(MethodConfig):
    """Prefix-tuning options; defaults: direct prefixes of length 10 in every attention layer.

    Attributes:
        form: ``direct`` | ``mlp`` (Li & Liang reparameterisation) | ``patt`` (V-PETL parallel attention).
        length: l, prefix vectors per layer (``direct``, ``mlp``).
        mid_dim: hidden width of the ``mlp`` generator and of the ``patt`` bottleneck.
        scale: factor s on the ``patt`` branch.
        dropout: dropout on the prefixes / the ``patt`` branch output (training only).
    """

    form: str = "direct"
    length: int = 10
    mid_dim: int = 128
    scale: float = 0.8
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.form not in FORMS:
            raise ConfigError(
                f"prefix form {self.form!r} is not one of {', '.join(FORMS)}; e.g. method.form=direct"
            )
        for key in ("length", "mid_dim"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"prefix {key} must be an integer >= 1, got {value!r}; e.g. method.{key}=10"
                )
        if not self.scale > 0:
            raise ConfigError(f"prefix scale must be > 0, got {self.scale!r} (V-PETL's PATT example: 0.8)")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"prefix dropout must be in [0, 1), got {self.dropout!r}")


class PrefixAttention(PeftModule):
    """Multi-head self-attention of ``base_layer`` with learned key/value prefixes (or the PATT branch)."""

    def __init__(self, base_layer: nn.Module, cfg: PrefixConfig, site: LinearSite) -> None:
        super().__init__()
        self.base_layer = base_layer
        # the q|k|v projection: one fused Linear, or three (EVA-02), as paths relative to base_layer
        self.qkv_paths = tuple(p.name.removeprefix(f"{site.block}.attn.") for p in site.parts)
        weight = site.parts[0].layer.weight
        self.form, self.scale = cfg.form, cfg.scale
        self.num_heads = base_layer.num_heads
        self.attn_dim = site.out_features // 3  # H * head_dim
        dim, kw = site.in_features, {"dtype": weight.dtype, "device": weight.device}
        self.dropout = nn.Dropout(cfg.dropout)
        if cfg.form == "direct":
            self.prefix_key = nn.Parameter(
                nn.init.xavier_uniform_(torch.empty(cfg.length, self.attn_dim, **kw))
            )
            self.prefix_value = nn.Parameter(
                nn.init.xavier_uniform_(torch.empty(cfg.length, self.attn_dim, **kw))
            )
        elif cfg.form == "mlp":
            # (l, D), initialised like nn.Embedding
            self.prefix_embedding = nn.Parameter(torch.randn(cfg.length, dim, **kw))
            self.generator = nn.Sequential(
                nn.Linear(dim, cfg.mid_dim, **kw), nn.Tanh(), nn.Linear(cfg.mid_dim, 2 * self.attn_dim, **kw)
            )
        else:  # patt
            bias = any(p.layer.bias is not None for p in site.parts)
            self.branch = nn.Sequential(
                nn.Linear(dim, cfg.mid_dim, bias=bias, **kw),
                nn.Tanh(),
                nn.Linear(cfg.mid_dim, 2 * self.attn_dim, bias=bias, **kw),
            )

    def prefixes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The layer's key and value prefixes, each ``(l, H * head_dim)`` (``direct`` and ``mlp`` forms)."""
        if self.form == "direct":
            return self.prefix_key, self.prefix_value
        kv = self.generator(self.prefix_embedding)  # (l, 2 * H * hd)
        return kv[:, : self.attn_dim], kv[:, self.attn_dim :]

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        return t.unflatten(-1, (self.num_heads, -1)).transpose(-3, -2)  # (..., N, H*hd) -> (..., H, N, hd)

    def _bias(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None, mask: torch.Tensor | None
    ) -> torch.Tensor | None:
        """Additive bias over the token keys: Swin's relative positions + shifted-window mask, or ViT's mask."""
        base, (b, n, _) = self.base_layer, x.shape
        bias = None
        if hasattr(base, "relative_position_bias_table"):  # Swin WindowAttention
            bias = base._get_rel_pos_bias().to(x.dtype)  # (1, H, N, N)
            if mask is not None:
                windows = mask.shape[0]  # mask: (nW, N, N), 0 / -inf
                bias = (bias.unsqueeze(1) + mask.view(1, windows, 1, n, n).to(x.dtype)).expand(
                    b // windows, -1, -1, -1, -1
                )
                bias = bias.reshape(b, self.num_heads, n, n)
        if attn_mask is not None:
            extra = (
                attn_mask
                if attn_mask.dtype != torch.bool
                else torch.zeros_like(attn_mask, dtype=x.dtype).masked_fill(~attn_mask, float("-inf"))
            )
            bias = extra if bias is None else bias + extra
        return bias

    def _project(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """q, k, v of the frozen projection(s), each ``(B, H, N, hd)``."""
        outs = [self.base_layer.get_submodule(path)(x) for path in self.qkv_paths]
        qkv = outs[0].chunk(3, dim=-1) if len(outs) == 1 else outs
        return tuple(self._heads(t) for t in qkv)

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        mask: torch.Tensor | None = None,
        rope: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if is_causal:
            raise MethodNotSupportedError(
                "prefix tuning is defined for bidirectional attention, not is_causal=True"
            )
        base, (b, n, _) = self.base_layer, x.shape
        q, k, v = self._project(x)  # each (B, H, N, hd)
        if getattr(base, "q_norm", None) is not None:
            q, k = base.q_norm(q), base.k_norm(k)
        if rope is not None:  # Eva: rotate the patch tokens' queries and keys, as its own attention does
            npt, half = int(base.num_prefix_tokens), bool(getattr(base, "rotate_half", False))
            q = torch.cat((q[:, :, :npt], apply_rot_embed_cat(q[:, :, npt:], rope, half=half)), dim=2).type_as(v)
            k = torch.cat((k[:, :, :npt], apply_rot_embed_cat(k[:, :, npt:], rope, half=half)), dim=2).type_as(v)
        bias = self._bias(x, attn_mask, mask)  # (B|1, H, N, N) or None
        if self.form == "patt":
            delta = self.dropout(self.branch(x))  # (B, N, 2 * H * hd)
            dk, dv = (self._heads(t) for t in delta.chunk(2, dim=-1))  # (B, H, N, hd) each
            k, v = k + self.scale * dk, v + self.scale * dv
        else:
            # (B, H, l, hd) each, shared by the batch
            pk, pv = (self._heads(self.dropout(t)).expand(b, -1, -1, -1) for t in self.prefixes())
            k, v = torch.cat((pk, k), dim=2), torch.cat((pv, v), dim=2)  # (B, H, l + N, hd)
            if bias is not None:  # prefix keys get no position bias and are never masked
                bias = F.pad(bias, (pk.shape[2], 0))  # (B|1, H, N, l + N)
        drop = base.attn_drop.p if self.training else 0.0
        # (B, H, N, hd)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=drop, scale=base.scale)
        out = out.transpose(1, 2).reshape(b, n, self.attn_dim)  # (B, N, H * hd)
        if getattr(base, "norm", None) is not None:
            out = base.norm(out)
        if getattr(base, "gate", None) is not None:
            out = out * base.gate(x).sigmoid()
        return base.proj_drop(base.proj(out))  # (B, N, D)


class PrefixTuning(PeftMethod[PrefixConfig]):
    """Learned key/value prefixes (or V-PETL's PATT branch) in the attention of every block."""

    name = "prefix"
    family = "addition"
    subfamily = "prefix"
    config_cls = PrefixConfig
    backbones = ("vit", "eva", "swin")
    refusals = {"convnext": "a ConvNeXt block has no attention whose keys and values could take prefixes"}
    notes = {
        "rope": "token queries/keys rotated as in Eva's attention; prefix keys get no rotary position",
        "qkv_separate": "keys and values from k_proj / v_proj",
    }

    def apply(self, model: nn.Module) -> nn.Module:
        self.check_backbone(model)
        blocks = transformer_blocks(model)
        for site, (name, block) in zip(block_sites(model, "qkv", blocks), blocks, strict=True):
            if not site.parts[0].name.startswith(f"{name}.attn.") or not hasattr(block.attn, "num_heads"):
                raise MethodNotSupportedError(
                    f"method 'prefix' needs timm's attention module at {name}.attn with its q|k|v projection; "
                    f"found {type(block.attn).__name__}"
                )
            replace_module(model, f"{name}.attn", PrefixAttention(block.attn, self.config, site))
        return model
