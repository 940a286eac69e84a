"""Contract rows of the addition family's adapter methods (Adapter, Houlsby, AdaptFormer, Convpass, AIM, Adapter+,
Mona)."""

from __future__ import annotations

from tests.method_rows import TOKEN_VITS, TRANSFORMERS, D, L, Row

R = 8  # bottleneck width of the VTAB-1k adapter rows
ADAPTER = D * R + R + R * D + D  # one bottleneck D -> r -> D with biases: 13,064 on ViT-B/16
LAYERNORMS = (2 * L + 1) * 2 * D  # gamma and beta of norm1, norm2 in every block + the final norm
CONV = R * R * 9 + R  # Convpass's 3x3 conv h -> h with bias
AIM_HIDDEN = D // 4  # AIM's mlp_ratio 0.25
MONA_C = 64  # Mona's convolved width
# one Mona: LN (2D) + gamma, gammax (2D) + down (Dc + c) + three depth-wise convs (c(9 + 25 + 49) + 3c)
# + 1x1 projector (c^2 + c) + up (cD + D)
MONA = 2 * D + 2 * D + D * MONA_C + MONA_C + MONA_C * (9 + 25 + 49) + 3 * MONA_C + MONA_C**2 + MONA_C + MONA_C * D + D

ROWS = [
    Row(
        "adapter",
        options={"dim": 4},
        vit_b16_params=156_768,
        vit_b16_formula=lambda: L * ADAPTER,
        source="V-PETL Bench README VTAB-1k table 'Adapter' 0.16M (NOAH's Adapter-8: one 768->8->768 adapter "
        "with biases per block); not zero-init (NOAH's effective init is N(0, 0.02^2))",
    ),
    Row(
        "adapter_houlsby",
        options={"dim": 4},
        vit_b16_params=351_936,
        vit_b16_formula=lambda: 2 * L * ADAPTER + LAYERNORMS,
        source="analytic: Houlsby's two r = 8 adapters per block + every LayerNorm (2L(2Dr + r + D) + 25 x 2D); "
        "no VTAB-1k table prints this configuration",
        refused={"convnext": "self-attention"},
    ),
    Row(
        "adaptformer",
        options={"dim": 4},
        zero_params=("up.weight", "up.bias"),
        vit_b16_params=156_768,
        vit_b16_formula=lambda: L * ADAPTER,
        source="V-PETL Bench README VTAB-1k table 'AdaptFormer' 0.16M (r = 8, topN=8 in run_vit_adaptformer.sh; "
        "no LayerNorm in the branch)",
        backbones=TRANSFORMERS,
    ),
    Row(
        "convpass",
        options={"dim": 4},
        zero_params=("up.weight", "up.bias"),
        vit_b16_params=327_552,
        vit_b16_formula=lambda: 2 * L * ((2 * R + 1) * D + CONV + R),
        source="Convpass (Jie & Deng 2022) Table 1 'Convpass' 0.33M = 2L((2h+1)d + 9h^2 + 2h), h = 8",
        backbones=TOKEN_VITS,
    ),
    Row(
        "aim",
        options={"mlp_ratio": 0.125},
        zero_params=("up.weight", "up.bias"),
        vit_b16_params=7_100_928,
        vit_b16_formula=lambda: 2 * L * (D * AIM_HIDDEN + AIM_HIDDEN + AIM_HIDDEN * D + D),
        source="analytic: AIM's spatial + MLP adapters (D -> D/4 -> D) per block; no image-classification count "
        "published (README: 11M on ViT-B/16 with the third, temporal adapter, the temporal embedding and head)",
        backbones=TRANSFORMERS,
    ),
    Row(
        "adapter_plus",
        options={"dim": 4},
        vit_b16_params=165_984,
        vit_b16_formula=lambda: L * (ADAPTER + D),
        source="Adapters Strike Back (Steitz & Roth, CVPR 2024) Fig. 1 (visinf/adapter_plus assets/params_accuracy.png): "
        "Adapter+ r = 8 at 0.20M, counted with the head averaged over the 19 VTAB-1k tasks (linear probing at "
        "0.04M): 165,984 + 940 x 769 / 19 = 204,029; an r = 8 adapter + channel-wise scaling (D) per block; not "
        "zero-init (Houlsby init, std 0.01)",
    ),
    Row(
        "mona",
        options={"dim": 8},
        vit_b16_params=2_684_928,
        vit_b16_formula=lambda: 2 * L * MONA,
        source="analytic: two Monas (hidden 64) per block; Mona's paper evaluates Swin only, so no ViT-B/16 count "
        "is published (on Swin-B this code gives 3,667,456; V-PETL Bench's COCO table prints 4.16M); not zero-init",
        backbones=TRANSFORMERS,
    ),
]
