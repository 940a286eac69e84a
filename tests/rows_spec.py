"""Contract rows of partial_k, bitfit, ln_tune, difffit, attn_tune (specification), SSF and RepAdapter."""

from __future__ import annotations

from tests.method_rows import BIAS_FREE, MLP, TRANSFORMERS, D, L, Row

N_LN = 2 * L + 1  # LayerNorms of ViT-B/16: two per block + the final norm
BLOCK = (D * 3 * D + 3 * D) + (D * D + D) + (D * MLP + MLP) + (MLP * D + D) + 2 * 2 * D
BIASES = L * (3 * D + D + MLP + D + 2 * D) + D + D  # block biases + patch-embed bias + final-norm beta
POS_EMBED = (224 // 16) ** 2 + 1  # tokens of ViT-B/16 at 224: 196 patches + CLS

ROWS: list[Row] = [
    Row(
        "partial_k",
        vit_b16_params=7_089_408,
        vit_b16_formula=lambda: BLOCK + 2 * D,
        source="VPT (Jia et al. 2022) Partial-1: last block + final norm as KMnP/vpt trains it (7.09M); VPT prints "
        "Partial-1 only relative to the total parameters (head included), so the count is the analytic one",
    ),
    Row(
        "bitfit",
        vit_b16_params=102_912,
        vit_b16_formula=lambda: BIASES,
        source="V-PETL Bench VTAB-1k table 'BitFit 0.10M' (every bias incl. LayerNorm beta, patch embed, final norm)",
    ),
    Row(
        "ln_tune",
        vit_b16_params=38_400,
        vit_b16_formula=lambda: N_LN * 2 * D,
        source="analytic (0.04M): LN-Tune (Basu et al. 2023) has no VTAB-1k ViT-B/16 row",
    ),
    Row(
        "difffit",
        vit_b16_params=131_328,
        vit_b16_formula=lambda: BIASES + N_LN * D + (L // 2) * 2 * D,
        source="analytic (0.13M): DiffFit (Xie et al. 2023) has no VTAB-1k row; biases + LN gammas + gamma_1, "
        "gamma_2 in R^D on the first 6 of 12 blocks",
        backbones=TRANSFORMERS,
    ),
    Row(
        "attn_tune",
        vit_b16_params=28_499_712,
        vit_b16_formula=lambda: L * (D * 3 * D + 3 * D + D * D + D) + POS_EMBED * D,
        source="analytic (28.5M): what deit main.py --attn-only trains (qkv, proj with biases, pos_embed); "
        "Touvron et al. 2022 print no VTAB-1k row",
        backbones=TRANSFORMERS,
    ),
    Row(
        "ssf",
        vit_b16_params=205_824,
        vit_b16_formula=lambda: 2 * (L * (3 * D + D + MLP + D + 2 * D) + D + D),
        source="V-PETL Bench VTAB-1k table 'SSF 0.21M'; SSF's own Table (0.24M) adds the mean VTAB head 38,046",
        no_merge=BIAS_FREE,
        mergeable=True,
    ),
    Row(
        "repadapter",
        options={"hidden_dim": 4},
        zero_params=("up_weight", "up_bias"),
        vit_b16_params=239_808,
        vit_b16_formula=lambda: 2 * L * ((D * 8 + 8) + (D * 8 // 2 + D)),
        source="luogen1996/RepAdapter code count (0.24M); the paper's and V-PETL Bench's 0.22M count the weights "
        "only: 2L (8D + 4D) = 221,184 (the 18,624 biases are left out there)",
        backbones=TRANSFORMERS,
        no_merge=BIAS_FREE,
        mergeable=True,
    ),
]
