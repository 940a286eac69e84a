"""The registered Hugging Face PEFT tuners (``hf_*``), each with a typed config mapped to PEFT's config.

Library: Hugging Face PEFT (Mangrulkar et al., 2022, github.com/huggingface/peft, ``src/peft/tuners/*``),
tested with 0.21. Defaults are PEFT's own config defaults, on timm's fused ``attn.qkv`` of every block
(the layer NOAH's VTAB-1k LoRA adapts), except ``hf_lora`` / ``hf_dora``, which take NOAH's LoRA-8 settings
(rank 8, scaling 1, dropout 0.1) so that ``hf_lora`` and the native ``lora`` are the same method by default.
Parameter counts on ViT-B/16 with the defaults (PEFT's own count, without head; ``tests/rows_reparam.py``
holds the formulas):

======================  ==========================================================  ============
method                  paper                                                        params
======================  ==========================================================  ============
``hf_lora``             Hu et al. 2021, LoRA                                          294,912
``hf_dora``             Liu et al. 2024, DoRA (LoRA + per-row magnitude)              322,560
``hf_loha``             Hyeon-Woo et al. 2022, FedPara / LoHa (Hadamard of two LoRA)  589,824
``hf_lokr``             LyCORIS LoKr (Kronecker, as KronA / Edalati et al. 2022)       21,504
``hf_oft``              Qiu et al. 2023, OFT (block-diagonal orthogonal, block 32)    142,848
``hf_boft``             Liu et al. 2024, BOFT (butterfly orthogonal, block 4)          64,512
``hf_vera``             Kopiczko et al. 2024, VeRA (r = 256 shared random matrices)    30,720
``hf_fourierft``        Gao et al. 2024, FourierFT (1000 spectral coefficients)        12,000
``hf_ia3``              Liu et al. 2022, (IA)^3 (scales qkv output and fc2 input)      64,512
======================  ==========================================================  ============

Deviations forced by timm's fused qkv: PEFT adapts whole ``nn.Linear`` modules, so "q and v only" cannot be
expressed (use the native ``lora_qv``), and (IA)^3 scales q as well as k and v. On EVA-02's separate q / k / v
projections each gets its own tuner (see :mod:`~peftbench.methods.partial.hf_peft.bridge`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from peftbench.methods.partial.hf_peft.bridge import HFPeftMethod, HFTargetsConfig


@dataclasses.dataclass
class HFLoRAConfig(HFTargetsConfig):
    """LoRA: rank, alpha (scaling alpha / rank) and dropout on the branch input."""

    rank: int = 8
    alpha: float = 8.0
    dropout: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_count(rank=self.rank)
        self._check_positive(alpha=self.alpha)
        self._check_probability(dropout=self.dropout)


@dataclasses.dataclass
class HFLoHaConfig(HFTargetsConfig):
    """LoHa / LoKr: rank, alpha, dropout of rank components and of the whole module."""

    rank: int = 8
    alpha: float = 8.0
    rank_dropout: float = 0.0
    module_dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_count(rank=self.rank)
        self._check_positive(alpha=self.alpha)
        self._check_probability(rank_dropout=self.rank_dropout, module_dropout=self.module_dropout)


@dataclasses.dataclass
class HFLoKrConfig(HFLoHaConfig):
    """LoKr: also the Kronecker factorisation (-1 = as square as possible)."""

    decompose_factor: int = -1


@dataclasses.dataclass
class HFOFTConfig(HFTargetsConfig):
    """OFT: orthogonal block size (must divide the input width), COFT constraint, module dropout."""

    block_size: int = 32
    coft: bool = False
    eps: float = 6e-5
    module_dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_count(block_size=self.block_size)
        self._check_positive(eps=self.eps)
        self._check_probability(module_dropout=self.module_dropout)


@dataclasses.dataclass
class HFBOFTConfig(HFTargetsConfig):
    """BOFT: butterfly block size, number of butterfly factors, dropout."""

    block_size: int = 4
    butterfly_factor: int = 1
    dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_count(block_size=self.block_size, butterfly_factor=self.butterfly_factor)
        self._check_probability(dropout=self.dropout)


@dataclasses.dataclass
class HFVeRAConfig(HFTargetsConfig):
    """VeRA: rank of the shared frozen random matrices, initial value of d, dropout, projection seed."""

    rank: int = 256
    d_initial: float = 0.1
    dropout: float = 0.0
    prng_key: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_count(rank=self.rank)
        self._check_probability(dropout=self.dropout)


@dataclasses.dataclass
class HFFourierFTConfig(HFTargetsConfig):
    """FourierFT: learned spectral entries per layer, their scaling, and the seed of their locations."""

    n_frequency: int = 1000
    scaling: float = 150.0
    random_loc_seed: int = 777

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_count(n_frequency=self.n_frequency)
        self._check_positive(scaling=self.scaling)


@dataclasses.dataclass
class HFIA3Config(HFTargetsConfig):
    """(IA)^3: learned scaling vectors; ``mlp.fc2`` targets scale their input (the FFN activation)."""

    targets: str = "qkv_fc2"


class HFLoRA(HFPeftMethod[HFLoRAConfig]):
    """PEFT's LoRA."""

    name = "hf_lora"
    config_cls = HFLoRAConfig
    peft_config_name = "LoraConfig"

    def peft_options(self) -> dict[str, Any]:
        c = self.config
        return {"r": c.rank, "lora_alpha": c.alpha, "lora_dropout": c.dropout}


class HFDoRA(HFLoRA):
    """PEFT's DoRA: LoRA on the direction plus a trainable magnitude per output row."""

    name = "hf_dora"

    def peft_options(self) -> dict[str, Any]:
        return dict(super().peft_options(), use_dora=True)


class HFLoHa(HFPeftMethod[HFLoHaConfig]):
    """PEFT's LoHa: Hadamard product of two low-rank matrices."""

    name = "hf_loha"
    config_cls = HFLoHaConfig
    peft_config_name = "LoHaConfig"

    def peft_options(self) -> dict[str, Any]:
        c = self.config
        return {
            "r": c.rank,
            "alpha": c.alpha,
            "rank_dropout": c.rank_dropout,
            "module_dropout": c.module_dropout,
        }


class HFLoKr(HFLoHa):
    """PEFT's LoKr: Kronecker product of a small full matrix and a low-rank matrix."""

    name = "hf_lokr"
    config_cls = HFLoKrConfig
    peft_config_name = "LoKrConfig"

    def peft_options(self) -> dict[str, Any]:
        return dict(super().peft_options(), decompose_factor=self.config.decompose_factor)


class HFOFT(HFPeftMethod[HFOFTConfig]):
    """PEFT's OFT: block-diagonal orthogonal rotation of the weight."""

    name = "hf_oft"
    config_cls = HFOFTConfig
    peft_config_name = "OFTConfig"
    backbones = ("vit", "eva", "swin")
    refusals = {
        "convnext": "PEFT's OFT layer takes any 4-D input for a convolution's feature map and unfolds it, and "
        "ConvNeXt's MLP Linears read (B, H, W, C) maps"
    }

    def peft_options(self) -> dict[str, Any]:
        c = self.config
        return {
            "r": 0,
            "oft_block_size": c.block_size,
            "coft": c.coft,
            "eps": c.eps,
            "module_dropout": c.module_dropout,
        }


class HFBOFT(HFPeftMethod[HFBOFTConfig]):
    """PEFT's BOFT: butterfly-factorised orthogonal rotation plus an output scaling."""

    name = "hf_boft"
    config_cls = HFBOFTConfig
    peft_config_name = "BOFTConfig"

    def peft_options(self) -> dict[str, Any]:
        c = self.config
        return {
            "boft_block_size": c.block_size,
            "boft_block_num": 0,
            "boft_n_butterfly_factor": c.butterfly_factor,
            "boft_dropout": c.dropout,
        }


class HFVeRA(HFPeftMethod[HFVeRAConfig]):
    """PEFT's VeRA: frozen shared random low-rank matrices, trainable scaling vectors per layer."""

    name = "hf_vera"
    config_cls = HFVeRAConfig
    peft_config_name = "VeraConfig"

    def peft_options(self) -> dict[str, Any]:
        c = self.config
        return {
            "r": c.rank,
            "d_initial": c.d_initial,
            "vera_dropout": c.dropout,
            "projection_prng_key": c.prng_key,
        }


class HFFourierFT(HFPeftMethod[HFFourierFTConfig]):
    """PEFT's FourierFT: a few learned entries of the update's 2-D Fourier spectrum."""

    name = "hf_fourierft"
    config_cls = HFFourierFTConfig
    peft_config_name = "FourierFTConfig"

    def peft_options(self) -> dict[str, Any]:
        c = self.config
        return {"n_frequency": c.n_frequency, "scaling": c.scaling, "random_loc_seed": c.random_loc_seed}


class HFIA3(HFPeftMethod[HFIA3Config]):
    """PEFT's (IA)^3: learned vectors scaling the qkv output and the fc2 input."""

    name = "hf_ia3"
    config_cls = HFIA3Config
    peft_config_name = "IA3Config"
    feedforward_paths = ("mlp_out",)

    def peft_options(self) -> dict[str, Any]:
        return {}
