"""Contract rows of the reparameter methods (LoRA, FacT, KAdaptation, Hydra) and the Hugging Face PEFT bridge."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from tests.method_rows import ALL_FAMILIES, MLP, TOKEN_VITS, TRANSFORMERS, D, L, Row

R = 8  # LoRA rank of the VTAB-1k tables
N_KRON, W_KRON = 32, D // 32  # KAdaptation: 32 Kronecker products of (24 x 24) fast weights on ViT-B


def _branch(fan_in: int, fan_out: int, rank: int) -> int:
    """A linear down (fan_in -> rank) / up (rank -> fan_out) pair with biases (Hydra's branches)."""
    return fan_in * rank + rank + rank * fan_out + fan_out

NATIVE_ROWS = [
    Row(
        "lora",
        zero_params=("lora_B",),
        vit_b16_params=294_912,
        vit_b16_formula=lambda: L * (D * R + R * 3 * D),
        source="NOAH (Zhang et al. 2022) Table 1 'LoRA' 0.29M (rank 8 on the fused qkv 768->8->2304); "
        "same numbers reprinted by V-PETL Bench (0.29M) and FacT Table 1 (0.295M)",
        arch_options={"convnext": {"targets": "mlp"}},
        mergeable=True,
    ),
    Row(
        "lora_qv",
        zero_params=("lora_B",),
        vit_b16_params=294_912,
        vit_b16_formula=lambda: L * 2 * (D * R + R * D),
        source="LoRA paper form (W_q, W_v, rank 8): V-PETL Bench's LoRA code, 0.29M like its table",
        arch_options={"convnext": {"targets": "mlp"}},
        mergeable=True,
    ),
    Row(
        "fact_tt",
        options={"rank": 2},
        zero_params=("fact.v",),
        vit_b16_params=8_448,
        vit_b16_formula=lambda: 2 * D * 4 + L * (4 + 2 * MLP // D) * 4**2,
        source="FacT (Jie & Deng 2023) Table 1 'FacT-TT4' 0.008M (r = 4: 2Dr + 12L r^2)",
        backbones=TOKEN_VITS,
        refused={"eva02": "multiple of"},
        mergeable=True,
    ),
    Row(
        "fact_tk",
        options={"rank": 4},
        zero_params=("fact.v",),
        vit_b16_params=13_952,
        vit_b16_formula=lambda: 2 * D * 8 + 8**3 + L * (4 + 2 * MLP // D) * 8,
        source="FacT (Jie & Deng 2023) Table 1 'FacT-TK8' 0.014M (r = 8: 2Dr + r^3 + 12L r)",
        backbones=TOKEN_VITS,
        refused={"eva02": "multiple of"},
        mergeable=True,
    ),
    Row(
        "kadaptation",
        options={"kron_dim": 4, "rank": 2},
        zero_params=("fast_up", "kron_bias"),
        vit_b16_params=50_176,
        vit_b16_formula=lambda: L * (2 * N_KRON * 1 * (W_KRON + W_KRON) + D) + 2 * 2 * N_KRON**2,
        source="KAdaptation official README (eric-ai-lab/PEViT): 79,699 trainable incl. head averaged over "
        "ELEVATER minus the linear-probe head average 29,523 = 50,176 (no VTAB-1k row published)",
        backbones=TRANSFORMERS,
        no_merge={"dinov3": "bias"},
        mergeable=True,
    ),
    Row(
        "hydra",
        zero_params=("up.weight", "up.bias"),
        vit_b16_params=239_712,
        vit_b16_formula=lambda: L * (3 * _branch(D, D, 2) + _branch(MLP, D, 2)),
        source="Hydra (Kim et al. 2023) vtab1k/README.md table and V-PETL Bench README VTAB-1k 'Hydra' 0.28M: both "
        "count the head averaged over the 19 VTAB-1k tasks (their linear probe is 0.04M): 239,712 + 940 x 769 / 19 "
        "= 277,757; r = 2, a parallel and a sequential branch on attn.proj and on mlp.fc2",
        backbones=TRANSFORMERS,
        mergeable=True,
    ),
]


def _hf(
    name: str,
    params: int,
    formula: Callable[[], int],
    zero: tuple[str, ...] | None,
    note: str,
    backbones: tuple[str, ...] = ALL_FAMILIES,
    **options: Any,
) -> Row:
    return Row(
        name,
        options=options,
        backbones=backbones,
        zero_params=zero,
        vit_b16_params=params,
        vit_b16_formula=formula,
        source=f"Hugging Face PEFT's own count on the fused qkv: {note}",
        arch_options={"convnext": {"targets": "mlp"}},
        mergeable=True,
    )


# Bridge rows: PEFT's count with the defaults of peftbench/methods/partial/hf_peft/tuners.py
HF_ROWS = [
    _hf(
        "hf_lora",
        294_912,
        lambda: L * (D * R + R * 3 * D),
        ("lora_B.default.weight",),
        "A (r x D) + B (3D x r)",
    ),
    _hf(
        "hf_dora",
        322_560,
        lambda: L * (D * R + R * 3 * D + 3 * D),
        ("lora_B.default.weight",),
        "LoRA + magnitude (3D)",
    ),
    _hf(
        "hf_loha",
        589_824,
        lambda: L * 2 * R * (3 * D + D),
        ("hada_w2_b.default",),
        "two (3D x r)(r x D) pairs",
    ),
    # LoKr factorises 3D = 2304 = 48 * 48 and D = 768 = 24 * 32:
    # w1 (48 x 24) kron (w2_a (48 x r) @ w2_b (r x 32))
    _hf("hf_lokr", 21_504, lambda: L * (48 * 24 + 48 * R + R * 32), ("lokr_w1.default",), "w1 + low-rank w2"),
    _hf(
        "hf_oft",
        142_848,
        lambda: L * (D // 32) * (32 * 31 // 2),
        ("oft_R.default.weight",),
        "D/32 skew-symmetric 32 x 32 blocks",
        TRANSFORMERS,  # PEFT's OFT unfolds ConvNeXt's 4-D channels-last MLP input as a conv map
        block_size=8,
    ),
    # boft_R is zero at init, but BOFT uses only its skew-symmetric part, which the contract's constant +0.1
    # leaves at zero; identity at init and the role of boft_R are checked in tests/test_hf_peft_bridge.py.
    _hf(
        "hf_boft",
        64_512,
        lambda: L * ((D // 4) * 4 * 4 + 3 * D),
        None,
        "one butterfly factor of D/4 4x4 blocks + output scale (3D)",
    ),
    _hf(
        "hf_vera",
        30_720,
        lambda: L * (3 * D + 256),
        ("vera_lambda_b.default",),
        "lambda_b (3D) + lambda_d (r = 256)",
        rank=16,
    ),
    _hf(
        "hf_fourierft",
        12_000,
        lambda: L * 1000,
        None,
        "1000 spectral entries per layer (random init in PEFT)",
        n_frequency=100,
    ),
    _hf(
        "hf_ia3",
        64_512,
        lambda: L * (3 * D + MLP),
        None,
        "qkv output (3D) + fc2 input (MLP) scales, init ones",
    ),
]

# The bridge rows need the optional 'peft' extra; without it their tests skip (Row.requires).
ROWS: list[Row] = NATIVE_ROWS + [dataclasses.replace(row, requires=("peft",)) for row in HF_ROWS]
