"""How Hugging Face PEFT's tuners plug into the peftbench method contract.

* **Optional dependency, imported lazily.** The ``hf_*`` methods are registered without PEFT installed;
  :meth:`HFPeftMethod.apply` imports it and, when missing, raises
  :class:`~peftbench.errors.MethodNotSupportedError` telling to ``pip install -e ".[peft]"``.
* **Targets are chosen structurally.** A preset (``qkv``, ``qkv_proj``, ``mlp``, ``all_linear``,
  ``qkv_fc2``) names logical maps of every block (:func:`~peftbench.methods.layers.blocks.block_sites`); they
  are resolved to their ``nn.Linear`` s and handed to PEFT as the exact list of qualified module names, so
  PEFT's own name matching cannot pick anything else. PEFT adapts whole ``nn.Linear`` modules and shares no
  factor across modules: on EVA-02's separate q / k / v projections (and its SwiGLU's two input Linears) the
  ``qkv`` (``mlp``) target adapts the same outputs as on a fused layer, with one tuner per projection (a LoRA
  pair each, not one pair split over them: ``lora`` shares A as the fused layer does). ConvNeXt blocks have
  no attention: only ``targets: mlp`` (their channels-last ``fc1`` / ``fc2``) is defined there.
* **Injection** instantiates PEFT's tuner class for the config (what ``peft.inject_adapter_in_model`` does),
  which replaces each target in place by a PEFT tuner layer keeping the original as ``base_layer``. The tuner
  object itself is dropped; tuners with shared state (VeRA's frozen projections) keep it referenced from
  every layer, so nothing is lost.
* **Trainability and counting**: the method's parameters are those of PEFT tuner layers (instances of
  ``peft.tuners.tuners_utils.BaseTunerLayer``), skipping anything under their ``base_layer``; frozen PEFT
  state (VeRA projections, BOFT permutations) are buffers and never count.
* **Merge** calls each tuner layer's own ``merge(safe_merge=True)`` (PEFT's merge) and puts its base layer
  back, as PEFT's ``merge_and_unload`` does, then removes the ``peft_config`` attribute PEFT leaves on the
  model: the result is the plain timm model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from types import ModuleType
from typing import Any, ClassVar

from torch import nn

from peftbench.errors import ConfigError, MethodNotSupportedError
from peftbench.methods.base import C, MethodConfig, PeftMethod, method_owned_parameters
from peftbench.methods.layers.blocks import backbone_family, block_sites, replace_module

ADAPTER = "default"  # PEFT adapter name used for the single task adapter
INSTALL_HINT = 'pip install -e ".[peft]"'

# preset -> logical maps of every block (see peftbench.methods.layers.blocks.SITES)
TARGETS: dict[str, tuple[str, ...]] = {
    "qkv": ("qkv",),
    "qkv_proj": ("qkv", "proj"),
    "mlp": ("mlp_in", "mlp_out"),
    "all_linear": ("qkv", "proj", "mlp_in", "mlp_out"),
    "qkv_fc2": ("qkv", "mlp_out"),
}
ATTENTION_SITES = ("qkv", "proj")


def import_peft(method: str) -> ModuleType:
    """Import Hugging Face PEFT or explain how to install it.

    Args:
        method: the peftbench method that needs it (for the message).

    Returns:
        The ``peft`` module.
    """
    try:
        import peft
    except ImportError as exc:
        raise MethodNotSupportedError(
            f"method {method!r} runs Hugging Face PEFT's tuner, but the optional package 'peft' is not "
            f"installed ({exc}). Install the extra with: {INSTALL_HINT}"
        ) from None
    return peft


@dataclasses.dataclass
class HFTargetsConfig(MethodConfig):
    """Options shared by every bridge method.

    Attributes:
        targets: which block Linears PEFT adapts (see :data:`TARGETS`); ``qkv`` = timm's fused qkv.
    """

    targets: str = "qkv"

    def __post_init__(self) -> None:
        if self.targets not in TARGETS:
            raise ConfigError(
                f"PEFT-bridge targets {self.targets!r} is not one of {', '.join(sorted(TARGETS))}; "
                "e.g. method.targets=qkv"
            )

    def _check_positive(self, **values: float) -> None:
        for key, value in values.items():
            if not value > 0:
                raise ConfigError(f"PEFT-bridge option {key} must be > 0, got {value!r}")

    def _check_count(self, **values: int) -> None:
        for key, value in values.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"PEFT-bridge option {key} must be an integer >= 1, got {value!r}")

    def _check_probability(self, **values: float) -> None:
        for key, value in values.items():
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"PEFT-bridge option {key} must be in [0, 1), got {value!r}")


def target_names(model: nn.Module, targets: str, only: tuple[str, ...] | None = None) -> list[str]:
    """Qualified names of the Linears a preset selects, map by map.

    Args:
        model: timm ViT, Eva, Swin or ConvNeXt (``mlp`` targets only).
        targets: a key of :data:`TARGETS`.
        only: keep only these logical maps (e.g. IA3's feed-forward ``mlp_out``).

    Returns:
        Module names as ``model.named_modules()`` spells them.
    """
    sites = [site for site in TARGETS[targets] if only is None or site in only]
    if backbone_family(model) == "convnext" and any(site in ATTENTION_SITES for site in sites):
        raise MethodNotSupportedError(
            f"PEFT-bridge targets={targets!r} adapts attention, which ConvNeXt blocks do not have; set "
            "method.targets=mlp (every block's mlp.fc1 and mlp.fc2)"
        )
    return [part.name for site in sites for s in block_sites(model, site) for part in s.parts]


class HFPeftMethod(PeftMethod[C]):
    """A PEFT tuner behind the peftbench contract; subclasses name the PEFT config and map the options.

    Attributes:
        peft_config_name: class name of the PEFT config (``LoraConfig``, ...).
        feedforward_paths: logical maps (of the targets) that scale their input instead of their output (IA3).
    """

    family = "partial"
    subfamily = "hf_peft"
    mergeable = True
    backbones = ("vit", "eva", "swin", "convnext")
    notes = {
        "qkv_separate": "one PEFT tuner per projection (PEFT shares nothing across modules)",
        "swiglu": "one PEFT tuner per SwiGLU input Linear",
        "convnext": "only targets=mlp (fc1, fc2 of every block)",
    }
    peft_config_name: ClassVar[str]
    feedforward_paths: ClassVar[tuple[str, ...]] = ()

    def peft_options(self) -> dict[str, Any]:
        """Keyword arguments of the PEFT config besides the targets."""
        raise NotImplementedError

    def build_peft_config(self, model: nn.Module) -> Any:
        """The PEFT config object for ``model`` (targets resolved to qualified names)."""
        peft = import_peft(self.name)
        options = dict(self.peft_options(), target_modules=target_names(model, self.config.targets))
        if self.feedforward_paths:
            options["feedforward_modules"] = target_names(model, self.config.targets, self.feedforward_paths)
        return getattr(peft, self.peft_config_name)(**options)

    def apply(self, model: nn.Module) -> nn.Module:
        config = self.build_peft_config(model)
        from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING

        try:
            PEFT_TYPE_TO_TUNER_MAPPING[config.peft_type](model, config, adapter_name=ADAPTER)
        except ValueError as exc:  # PEFT checks its options against each layer's shape (e.g. FourierFT)
            raise ConfigError(
                f"method {self.name!r}: PEFT refuses these options on this backbone's layers: {exc}. Change the "
                f"method's options (method.<key>=...) or its targets (method.targets=...)"
            ) from None
        return model

    def trainable_parameters(self, model: nn.Module) -> Iterator[nn.Parameter]:
        yield from tuner_layer_parameters(model, self.name)

    def peft_adapter(self, model: nn.Module, plain: nn.Module) -> tuple[Any, dict[str, Any]]:
        """The PEFT config this method injected (built again on ``plain``); its tensors already have PEFT's names."""
        return self.build_peft_config(plain), {}

    def merge(self, model: nn.Module) -> nn.Module:
        base_tuner_layer = import_peft(self.name).tuners.tuners_utils.BaseTunerLayer
        for name, layer in list(_outer_tuner_layers(model, base_tuner_layer)):
            layer.merge(safe_merge=True, adapter_names=[ADAPTER])
            replace_module(model, name, layer.get_base_layer())
        if hasattr(model, "peft_config"):
            del model.peft_config
        return model


def _outer_tuner_layers(model: nn.Module, base_tuner_layer: type) -> Iterator[tuple[str, nn.Module]]:
    """``(name, layer)`` of PEFT tuner layers that are not inside another tuner layer."""

    def walk(module: nn.Module, prefix: str) -> Iterator[tuple[str, nn.Module]]:
        for child_name, child in module.named_children():
            name = f"{prefix}{child_name}"
            if isinstance(child, base_tuner_layer):
                yield name, child
            else:
                yield from walk(child, name + ".")

    yield from walk(model, "")


def tuner_layer_parameters(model: nn.Module, method: str = "hf_peft") -> Iterator[nn.Parameter]:
    """Parameters owned by PEFT tuner layers, skipping their wrapped ``base_layer``.

    Args:
        model: a backbone with PEFT tuner layers injected.
        method: the method name, for the install hint.

    Returns:
        An iterator over distinct parameters, in module order.
    """
    base_tuner_layer = import_peft(method).tuners.tuners_utils.BaseTunerLayer
    yield from method_owned_parameters(model, (base_tuner_layer,))
