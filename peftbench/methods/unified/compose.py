"""Composition: several registered addition / partial methods applied together as one method, declared in YAML.

The unified-based family of the survey (Xin et al., 2024) combines existing tuners in one backbone: He et al.
(ICLR 2022) mix prefix tuning with a parallel FFN adapter (MAM adapter), V-PETL (Yu et al., 2022) a parallel
attention with a parallel FFN adapter, U-Tuning (Jiang et al., 2023) parallel tuners on several frozen
operations, NOAH (Zhang et al., 2022) VPT + LoRA + adapter. ``compose`` expresses any such combination without
new code::

    name: compose
    components:
      - {method: lora, options: {rank: 8}}
      - {method: adaptformer, options: {}}
      - {method: vpt_deep, options: {length: 10}}

Semantics:

* each component is built from its registered name and options exactly as ``method=<name>`` would build it
  (its own validation, its own defaults for options left out) and applied to the backbone **in the listed
  order**;
* trainable parameters are the union of the components' (a specification component such as ``bitfit`` or
  ``ln_tune`` contributes the backbone parameters it selects); they are distinct, so the count is the sum of
  the components' counts;
* ``merge`` folds the components back only when every one of them is a reparameterisation (LoRA, SSF, FacT,
  RepAdapter, ...); otherwise it refuses and names the components that are not. A partial merge would leave
  method modules in the backbone, which is not the "plain backbone, no extra inference cost" merge promises;

Valid components: registered methods of the ``addition`` and ``partial`` families (baselines and unified
methods are refused: ``full`` already trains everything, ``linear`` adds nothing, and composed methods do not
nest: list their components instead). Two components on the *same* module work when the second can wrap the
first's wrapper (e.g. ``adaptformer`` then ``adapter`` on the MLP; ``prefix`` then ``parallel_adapter`` with
``sites: [attn]``); components that need the original timm layer (LoRA / FacT / SSF need an ``nn.Linear``,
``prefix`` needs timm's attention with its ``qkv``, the adapters and VPT-deep need timm's blocks) cannot be
applied after one that wrapped it: ``apply`` then raises and says which component, after which, and how to
reorder. ``lora`` with ``prefix`` (both need ``attn.qkv``) cannot be combined in either order. Components that find
their layers by type (``ssf`` wraps every ``nn.Linear`` in the blocks, ``bitfit`` every bias) also see the
modules earlier components added; list them first to restrict them to the backbone's own layers.

Default (the preset ``configs/method/compose.yaml``): NOAH's three tuner types, each at its registered default:
LoRA-8 on the fused qkv (294,912) + AdaptFormer r = 8 (156,768) + VPT-deep p = 50 (460,800) = 912,480 on
ViT-B/16 without head; no paper prints this combination (analytic count). More presets are YAML files in
``configs/method/`` whose ``name:`` is ``compose`` and whose ``label:`` is their file name (what results and
leaderboards call them); ``method=<file name>`` selects them. On the command line a
component is addressed by its index: ``method.components.0.method=lora_qv``,
``+method.components.2.options.length=10`` (``+`` adds an option the YAML does not list).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

from torch import nn

from peftbench.errors import ConfigError, MethodNotSupportedError
from peftbench.methods.base import C, MethodConfig, PeftMethod
from peftbench.methods.layers.blocks import FAMILIES

COMPONENT_FAMILIES = ("addition", "partial")
COMPONENT_KEYS = ("method", "options")
FAMILY_ORDER = FAMILIES


def check_components(components: Any, owner: str = "compose") -> list[tuple[str, dict[str, Any]]]:
    """Check a component list's structure and return ``(method name, options)`` pairs (options copied).

    Whether each name is a valid component is checked where the components are built
    (:func:`peftbench.methods.registry.build_method`), which knows the registry.

    Args:
        components: a list of mappings ``{method: <registered name>, options: {...}}``.
        owner: the composed method's name, for messages.

    Returns:
        The pairs, in order.
    """
    example = (
        "e.g. method.components=[{method: lora, options: {rank: 8}}, {method: adaptformer, options: {}}]"
    )
    if not isinstance(components, (list, tuple)) or not components:
        raise ConfigError(f"{owner} components must be a non-empty list, got {components!r}; {example}")
    specs = []
    for i, comp in enumerate(components):
        if not isinstance(comp, Mapping) or not isinstance(comp.get("method"), str):
            raise ConfigError(
                f"{owner} component #{i} must be a mapping with a 'method' name and optional 'options', got {comp!r}; "
                f"{example}"
            )
        extra = sorted(set(comp) - set(COMPONENT_KEYS))
        if extra:
            raise ConfigError(
                f"{owner} component #{i} has unknown key(s) {', '.join(extra)}; valid keys: {', '.join(COMPONENT_KEYS)}"
            )
        name, options = comp["method"], comp.get("options") or {}
        if not isinstance(options, Mapping):
            raise ConfigError(f"{owner} component #{i} ({name}) options must be a mapping, got {options!r}")
        specs.append((name, copy.deepcopy(dict(options))))
    return specs


def _default_components() -> list[dict[str, Any]]:
    return [
        {"method": "lora", "options": {}},
        {"method": "adaptformer", "options": {}},
        {"method": "vpt_deep", "options": {}},
    ]


@dataclasses.dataclass
class ComposeConfig(MethodConfig):
    """A list of components applied in order; default LoRA-8 (qkv) + AdaptFormer-8 + VPT-deep (p = 50).

    Attributes:
        components: ``[{method: <registered addition/partial name>, options: {...}}, ...]``; options left
            out take that method's own defaults.
    """

    components: list[dict[str, Any]] = dataclasses.field(default_factory=_default_components)

    def __post_init__(self) -> None:
        check_components(self.components)

    def component_specs(self) -> list[tuple[str, dict[str, Any]]]:
        """``(method name, options)`` of every component, in application order."""
        return check_components(self.components)


class ComposedMethod(PeftMethod[C]):
    """Base of the composed methods; the registry builds the components from ``config.component_specs()``.

    ``mergeable`` and ``backbones`` are set per instance from the components: mergeable when all are, defined
    for the backbone families every component supports.
    """

    family = "unified"
    subfamily = "composed"

    def __init__(self, config: C, components: list[PeftMethod]) -> None:
        super().__init__(config)
        self.components = components
        self.mergeable = all(c.mergeable for c in self.components)  # type: ignore[misc]
        supported = [set(c.backbones) for c in self.components if c.backbones]
        common = set.intersection(*supported) if supported else set()
        self.backbones = tuple(f for f in FAMILY_ORDER if f in common) if supported else ()  # type: ignore[misc]
        features = {f for c in self.components for f in c.notes}
        self.notes = {  # type: ignore[misc]
            f: "; ".join(f"{c.name}: {c.notes[f]}" for c in self.components if f in c.notes) for f in features
        }

    def refusal_reason(self, family: str) -> str:
        """The reason of the first component not defined for ``family``."""
        for comp in self.components:
            if comp.backbones and family not in comp.backbones:
                return f"its component {comp.name!r} is not: {comp.refusal_reason(family)}"
        return super().refusal_reason(family)

    def apply(self, model: nn.Module) -> nn.Module:
        for i, comp in enumerate(self.components):
            try:
                comp.check_backbone(model)
                comp.apply(model)
            except MethodNotSupportedError as exc:
                if i == 0:
                    raise
                before = ", ".join(c.name for c in self.components[:i])
                raise MethodNotSupportedError(
                    f"method {self.name!r}: component #{i} ({comp.name}) cannot be applied after {before}: "
                    f"{str(exc).rstrip('.')}. "
                    "Components are applied in order and each needs the original timm module it adapts; put the "
                    "component that needs the plain layer first (e.g. vpt_deep and block-level tuners last), or "
                    "drop one of two components that both need the same layer (e.g. lora and prefix on attn.qkv)"
                ) from exc
        return model

    def trainable_parameters(self, model: nn.Module) -> Iterator[nn.Parameter]:
        seen: set[int] = set()
        for comp in self.components:
            for p in comp.trainable_parameters(model):
                if id(p) not in seen:
                    seen.add(id(p))
                    yield p

    def merge(self, model: nn.Module) -> nn.Module:
        """Merge every component (last applied first); refuse unless all are reparameterisations."""
        fixed = [c.name for c in self.components if not c.mergeable]
        if fixed:
            raise MethodNotSupportedError(
                f"method {self.name!r} cannot be merged into the backbone: its component(s) {', '.join(fixed)} "
                "are not reparameterisations (merging only the others would leave method modules in the model). "
                "Set trainer.merge=false, or compose only mergeable components (e.g. lora, ssf, fact_tt, repadapter)."
            )
        for comp in reversed(self.components):
            model = comp.merge(model)
        return model


class Compose(ComposedMethod[ComposeConfig]):
    """Any list of registered addition / partial methods, applied in order as one method."""

    name = "compose"
    config_cls = ComposeConfig
