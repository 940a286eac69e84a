"""Contract rows of the searched unified methods (NOAH, GLoRA) as fixed subnets."""

from __future__ import annotations

from tests.method_rows import BIAS_FREE, MLP, TOKEN_VITS, TRANSFORMERS, D, L, Row

# NOAH's released CIFAR-100 subnet (experiments/NOAH/subnet/VTAB/ViT-B_prompt_cifar100.yaml)
NOAH_CIFAR = {
    "prompt": [10, 5, 10, 1, 5, 1, 10, 1, 10, 5, 1, 10],
    "lora": [10, 1, 5, 5, 1, 10, 1, 1, 1, 10, 1, 1],
    "adapter": [5, 10, 10, 10, 5, 1, 1, 1, 10, 10, 10, 1],
}


def noah_count(arch: dict[str, list[int]]) -> int:
    """Per block p D + r (D + 3D) + (2 a D + a + D) when a > 0."""
    return (
        sum(p * D for p in arch["prompt"])
        + sum(r * (D + 3 * D) for r in arch["lora"])
        + sum(2 * a * D + a + D for a in arch["adapter"] if a)
    )


def glora_largest(r: int = 4) -> int:
    """A, B: LoRA r (r (out + in)); C: LoRA r (in r + r); D, E: vectors (out), over qkv, proj, fc1, fc2."""
    shapes = [(D, 3 * D), (D, D), (D, MLP), (MLP, D)]  # (in, out)
    return L * sum(2 * r * (o + i) + (i * r + r) + 2 * o for i, o in shapes)


ROWS = [
    Row(
        "noah",
        options={"arch": "largest", "values": [1, 3], "init_width": 4},
        vit_b16_options={"task": "cifar"},
        vit_b16_params=320_330,
        vit_b16_formula=lambda: noah_count(NOAH_CIFAR),
        source="NOAH's released CIFAR-100 subnet (ZhangYuanhan-AI/NOAH experiments/NOAH/subnet/VTAB), counted as "
        "what trains; NOAH's own count adds the dead input prompt and its position embedding (see noah.py)",
        backbones=TOKEN_VITS,
        refused={"eva02": "separate"},
    ),
    Row(
        "glora",
        options={"rank": 2},
        zero_params=("A_down", "B_down", "C_down", ".D", ".E"),
        vit_b16_params=1_603_776,
        vit_b16_formula=glora_largest,
        source="analytic: GLoRA's largest subnet at rank 4 (GLoRA/evolution_utils.py get_param formula); the "
        "paper's searched architectures are not released",
        backbones=TRANSFORMERS,
        no_merge=BIAS_FREE,
        mergeable=True,
    ),
]
