"""Contract rows of the composed unified methods (compose, vpetl_unified, u_tuning) and their parallel adapter."""

from __future__ import annotations

from tests.method_rows import TOKEN_VITS, TRANSFORMERS, D, L, Row


def bottleneck(r: int) -> int:
    """One D -> r -> D bottleneck with biases."""
    return D * r + r + r * D + D


LORA_QKV = L * (D * 8 + 8 * 3 * D)  # NOAH's LoRA-8 on the fused qkv
ADAPTFORMER = L * bottleneck(8)
VPT_DEEP = L * 50 * D
PATT = L * ((D * 128 + 128) + (128 * 2 * D + 2 * D))  # Linear(D, 128) -> tanh -> Linear(128, 2D), biases

ROWS = [
    Row(
        "compose",
        options={
            "components": [
                {"method": "lora", "options": {"rank": 2}},
                {"method": "adaptformer", "options": {"dim": 4}},
                {"method": "vpt_deep", "options": {"length": 3}},
            ]
        },
        vit_b16_params=912_480,
        vit_b16_formula=lambda: LORA_QKV + ADAPTFORMER + VPT_DEEP,
        source="analytic: sum of the components' table counts (LoRA-8 qkv 0.29M, NOAH Table 1; AdaptFormer r = 8 "
        "0.16M and VPT-deep p = 50, V-PETL Bench / VPT demo); no paper prints this combination",
        backbones=TOKEN_VITS,  # VPT-deep is defined for ViT and Eva only, so the composition is
    ),
    Row(
        "parallel_adapter",
        options={"dim": 4, "sites": ["attn", "mlp", "block"]},
        zero_params=("up.weight", "up.bias"),
        vit_b16_params=1_189_632,
        vit_b16_formula=lambda: L * bottleneck(64),
        source="analytic: V-PETL's FFN adapter r = 64 (bruceyo/V-PETL main.py ffn_num) in 12 blocks; "
        "no table prints it on its own",
        arch_options={"convnext": {"sites": ["mlp"]}},
    ),
    Row(
        "vpetl_unified",
        options={"patt_dim": 4, "adapter_dim": 4},
        vit_b16_params=4_748_544,
        vit_b16_formula=lambda: PATT + L * bottleneck(64),
        source="analytic: PATT m = 128 + parallel FFN adapter r = 64 (bruceyo/V-PETL README command); the paper "
        "gives no ViT-B/16 VTAB-1k count that could be retrieved (its published settings are video Swin-B)",
        backbones=TRANSFORMERS,
    ),
    Row(
        "u_tuning",
        options={"prefix_length": 2, "ffn_dim": 4, "block_dim": 4},
        vit_b16_params=341_088,
        vit_b16_formula=lambda: L * 2 * 10 * D + L * bottleneck(8),
        source="analytic: parallel prefix l = 10 + parallel FFN adapter r = 8 (defaults chosen here); the paper's "
        "ViT-B/16 counts could not be retrieved, so no published count is matched",
        backbones=TRANSFORMERS,
    ),
]
