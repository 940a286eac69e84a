"""Contract rows of the addition family's prompt, prefix and side-tuning methods (VPT, prefix, LST)."""

from __future__ import annotations

from tests.method_rows import MLP, TOKEN_VITS, TRANSFORMERS, D, L, Row

SIDE = D // 8  # LST side width on ViT-B/16 (reduction factor 8)


def _lst_count() -> int:
    block = 2 * SIDE + (SIDE * 3 * SIDE + 3 * SIDE) + (SIDE * SIDE + SIDE) + 2 * SIDE  # norms, qkv, proj
    block += (SIDE * (MLP // 8) + MLP // 8) + (MLP // 8 * SIDE + SIDE)  # fc1, fc2 (MLP ratio 4 kept)
    ladders = (L + 1) * (D * SIDE + SIDE)  # first downsample + one per block, with bias
    return L * block + ladders + (SIDE * D + D) + 2 * SIDE + L  # + upsample, final LayerNorm, gates


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
]
