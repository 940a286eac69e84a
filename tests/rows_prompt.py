"""Contract rows of the addition family's prompt, prefix and side-tuning methods (VPT, prefix, LST, DTL, HST)."""

from __future__ import annotations

from tests.method_rows import MLP, TOKEN_VITS, TRANSFORMERS, D, L, Row

SIDE = D // 8  # LST side width on ViT-B/16 (reduction factor 8)


def _lst_count() -> int:
    block = 2 * SIDE + (SIDE * 3 * SIDE + 3 * SIDE) + (SIDE * SIDE + SIDE) + 2 * SIDE  # norms, qkv, proj
    block += (SIDE * (MLP // 8) + MLP // 8) + (MLP // 8 * SIDE + SIDE)  # fc1, fc2 (MLP ratio 4 kept)
    ladders = (L + 1) * (D * SIDE + SIDE)  # first downsample + one per block, with bias
    return L * block + ladders + (SIDE * D + D) + 2 * SIDE + L  # + upsample, final LayerNorm, gates


HST_DIMS = (32, 48, 64, 72)  # HST's side stages on ViT-B/16, three side blocks each (one per backbone block)


def _hst_count() -> int:
    def side_block(d: int) -> int:  # 2 LayerNorms, q/k/v/proj with biases, MLP d -> 4d -> d
        return 4 * d + 4 * (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d)

    d0 = HST_DIMS[0]
    stem = 3 * d0 * 9 + 2 * d0 + (d0 * d0 * 4 + d0) + 2 * d0  # conv 3x3 (no bias), BatchNorm, conv 2x2, LayerNorm
    entrances = sum(a * b * 9 + b + 2 * b for a, b in zip(HST_DIMS[:-1], HST_DIMS[1:], strict=True))  # 3x3/2 conv, LN
    stages = sum(3 * side_block(d) + 2 * d for d in HST_DIMS)  # side blocks + each stage's final LayerNorm
    bridges = sum(D * d + d for d in HST_DIMS)
    registers = sum(3 * 2 * d for d in HST_DIMS) + L * D  # the meta registers' LayerNorms, the meta tokens
    return stem + entrances + stages + bridges + registers + L * 2 * 2 * D  # + the backbone blocks' LayerNorms


ROWS = [
    Row(
        "vpt_shallow",
        options={"length": 4},
        vit_b16_params=76_800,
        vit_b16_formula=lambda: 100 * D,
        source="V-PETL Bench VTAB-1k table 'VPT-Shallow' 0.08M with its p = 100 (run_vit_vptshallow.sh topN=100)",
        backbones=TOKEN_VITS,
    ),
    Row(
        "vpt_deep",
        options={"length": 3},
        vit_b16_params=460_800,
        vit_b16_formula=lambda: L * 50 * D,
        source="VPT (Jia et al. 2022) official demo.ipynb length p = 50 in all 12 layers (L p D); published VTAB "
        "counts are means over per-task p (V-PETL Bench 0.56M), not one model's count: see the module docstring",
        backbones=TOKEN_VITS,
    ),
    Row(
        "prefix",
        options={"length": 3},
        vit_b16_params=184_320,
        vit_b16_formula=lambda: L * 2 * 10 * D,
        source="direct prefixes, l = 10 (2 l D per layer); no VTAB-1k ViT-B row published; V-PETL Bench FGVC "
        "'Prefix Tuning' 0.36M incl. head = 184,320 + mean FGVC head 180,407 (paper config unpublished)",
        backbones=TRANSFORMERS,
    ),
    Row(
        "lst",
        options={"reduction_factor": 4},
        vit_b16_params=2_376_492,
        vit_b16_formula=_lst_count,
        source="V-PETL Bench VTAB-1k table 'LST' 2.38M: r = 8 side ViT (d = 96) at all 12 blocks, biased ladders",
        backbones=TOKEN_VITS,
    ),
    Row(
        "dtl",
        vit_b16_params=36_864,
        vit_b16_formula=lambda: L * (D * 2 + 2 * D),
        source="V-PETL Bench VTAB-1k 'DTL' 0.04M: a rank-2 map (no bias) before each of the 12 blocks (heekhero/DTL "
        "train_dtl.sh r=2, lora_before_blocks 0-11); DTL+ (fusion_size=3) adds a 768 x 3 x 3 DWConv",
        backbones=TRANSFORMERS,
    ),
    Row(
        "hst",
        options={"dims": [8, 12], "heads": [2, 2]},  # two side stages: the tiny backbones have 2-3 blocks
        vit_b16_params=764_840,
        vit_b16_formula=_hst_count,
        source="AFeng-x/HST ViT_HSN defaults (764,840 without the head); V-PETL Bench VTAB-1k / FGVC 'HST' 0.78M = "
        "the FGVC convention with head (764,840 + 73 x 234.6 = 781,966), see configs/method/hst.yaml",
        backbones=TOKEN_VITS,
        vit_b16_head=73 * 100,
    ),
]
