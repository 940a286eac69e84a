"""timm backbones: build by config, load weights from the hub, a local file, or none.

Weights (``backbone.weights``):
  * ``hub``: timm's pretrained weights for ``timm_name``. Without network access this fails within
    seconds (the hub is probed once with a short timeout) and says how to use a local file.
  * a path: ``.safetensors``, ``.pth`` / ``.pt`` / ``.bin`` (a state dict, possibly under ``model``,
    ``state_dict`` or ``module``), or the original Google ``.npz`` (ViT; read by timm's npz loader).
    State dicts go through the timm model's own ``checkpoint_filter_fn``, as timm's hub loader does: original
    releases (Meta's DINOv2 / DINOv3 ``.pth``, OpenAI's CLIP, EVA-02, Meta's ConvNeXt, MAE, DeiT-III) are
    converted to timm's layout and position embeddings resampled to ``img_size``. The pretrained classifier
    (``get_classifier()``: ViT ``head``, ConvNeXt / Swin ``head.fc``; and ViT pre-logits) is dropped: the task
    head is always fresh. A file that does not fit names the mismatching keys and the configs it does fit.
  * ``none``: random init.
  * ``package:<path>``: a local file shipped inside the installed peftbench package (e.g.
    ``package:assets/vit_micro_fractal.safetensors``), found wherever peftbench is installed.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from peftbench.config import build_config
from peftbench.errors import CheckpointError, ConfigError
from peftbench.paths import config_dir, group_options, weights_path

LOCAL_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".npz")
HUB_HOST = "huggingface.co"
# timm modules whose models are fully convolutional: they take no img_size argument
CONVOLUTIONAL_MODULES = ("convnext",)


@dataclasses.dataclass
class BackboneConfig:
    """A backbone: a timm model name plus where its weights come from."""

    name: str
    timm_name: str
    weights: str = "hub"  # hub | none | /path/to/file.{safetensors,pth,pt,bin,npz}
    img_size: int = 224
    drop_path_rate: float = 0.0
    model_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    source: str = ""  # where the hub weights come from (the original file), for messages

    def __post_init__(self) -> None:
        if self.img_size < 1:
            raise ConfigError(f"backbone.img_size must be >= 1, got {self.img_size}")


def make_backbone_config(mapping: Mapping[str, Any]) -> BackboneConfig:
    """Typed backbone config from the ``backbone:`` block (unknown keys are rejected)."""
    return build_config(BackboneConfig, mapping, "backbone")


def _create(cfg: BackboneConfig, num_classes: int, pretrained: bool) -> nn.Module:
    kwargs = dict(cfg.model_kwargs)
    if not timm.models.is_model_in_modules(timm.models.get_arch_name(cfg.timm_name), CONVOLUTIONAL_MODULES):
        kwargs.setdefault("img_size", cfg.img_size)
    try:
        return timm.create_model(
            cfg.timm_name, pretrained=pretrained, num_classes=num_classes, drop_path_rate=cfg.drop_path_rate, **kwargs
        )
    except RuntimeError as exc:
        if "Unknown model" in str(exc) or "Invalid pretrained tag" in str(exc):
            raise ConfigError(f"backbone.timm_name={cfg.timm_name!r} is not a timm model: {exc}") from None
        raise


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def build_backbone(cfg: BackboneConfig, num_classes: int) -> nn.Module:
    """Create the timm model with a fresh ``num_classes`` head and load its weights.

    Args:
        cfg: the backbone config.
        num_classes: size of the task head.

    Returns:
        The model (on CPU, train mode as timm returns it).
    """
    weights = cfg.weights
    if weights == "none":
        return _create(cfg, num_classes, pretrained=False)
    if weights == "hub":
        if not _hub_reachable():
            raise CheckpointError(
                f"cannot fetch pretrained weights for backbone {cfg.name!r} (timm {cfg.timm_name}): the model hub "
                "is not reachable (offline or HF_HUB_OFFLINE=1). Download the weights elsewhere"
                + (f" ({cfg.source})" if cfg.source else "")
                + " and pass backbone.weights=/path/to/model.{safetensors,pth,npz}, or backbone.weights=none "
                "for random init."
            )
        try:
            return _create(cfg, num_classes, pretrained=True)
        except (OSError, RuntimeError) as exc:
            raise CheckpointError(
                f"fetching weights for {cfg.timm_name} failed ({exc}); pass backbone.weights=/path/to/file instead"
            ) from None
    return load_local(cfg, num_classes, weights_path(weights))


def load_local(cfg: BackboneConfig, num_classes: int, path: Path) -> nn.Module:
    """Build the model and load a local checkpoint file into it (head excluded)."""
    if not path.is_file():
        raise CheckpointError(f"backbone.weights={path} does not exist; give an existing file, 'hub' or 'none'")
    suffix = path.suffix.lower()
    if suffix not in LOCAL_SUFFIXES:
        raise CheckpointError(
            f"backbone.weights={path}: unsupported file type {suffix!r}; supported: {', '.join(LOCAL_SUFFIXES)}"
        )
    model = _create(cfg, num_classes, pretrained=False)
    if suffix == ".npz":
        _load_npz(model, path, cfg)
        return model
    state = _read_state_dict(path)
    _load_state(model, _timm_filtered(model, state), path, cfg)
    return model


def _torchscript_hint(path: Path) -> str:
    """How to turn a TorchScript archive (OpenAI's CLIP ``ViT-B-16.pt``) into a state dict, when ``path`` is one."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return ""
    with zipfile.ZipFile(path) as archive:
        if not any(name.endswith("constants.pkl") for name in archive.namelist()):
            return ""
    return (
        ". It is a TorchScript archive (as OpenAI's CLIP releases are), which is not read here: save its state "
        "dict first, python -c \"import torch; torch.save(torch.jit.load('" + path.name + "', map_location='cpu')"
        ".state_dict(), 'state_dict.pth')\", and pass that file"
    )


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign files raise many different types
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}{_torchscript_hint(path)}") from None
    for key in ("model", "state_dict", "module", "model_ema"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"checkpoint {path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _timm_filter(model: nn.Module) -> Callable[[dict[str, torch.Tensor], nn.Module], dict[str, torch.Tensor]] | None:
    """The ``checkpoint_filter_fn`` of the timm module that defines ``model``'s class (None if it has none)."""
    return getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)


def _timm_filtered(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` converted by the model's timm filter (original layouts, position-embedding resampling).

    A file of another architecture can trip the conversion; it is then compared as it is, so the mismatch
    message names its keys.
    """
    fn = _timm_filter(model)
    if fn is None:
        return state
    try:
        out = fn(dict(state), model)
    except Exception:  # noqa: BLE001 - a foreign layout: report its keys below instead
        return state
    return {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}


def _classifier_prefix(model: nn.Module) -> str:
    """``'head.'`` (ViT, Eva) or ``'head.fc.'`` (Swin, ConvNeXt): the qualified prefix of ``get_classifier()``."""
    head = model.get_classifier()
    for name, module in model.named_modules():
        if module is head:
            return name + "."
    return "\0"


def _mismatch(model: nn.Module, state: dict[str, torch.Tensor]) -> tuple[list[str], list[str], list[str]]:
    """Missing keys, unexpected keys and shape mismatches of ``state`` against ``model`` (classifier excluded)."""
    prefix = _classifier_prefix(model)
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith(prefix)}
    # The checkpoint's classifier (any shape) and ViT pre-logits are dropped: the task head is fresh.
    state = {k: v for k, v in state.items() if not k.startswith((prefix, "pre_logits."))}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(state) & set(expected)
        if state[k].shape != expected[k].shape
    )
    return missing, unexpected, shapes


# key prefix of a checkpoint -> the timm modules whose models it may fit (a cheap first filter)
_KEY_MODULES: dict[str, tuple[str, ...]] = {
    "stages.": ("convnext",),
    "layers.": ("swin_transformer",),
    "blocks.": ("vision_transformer", "eva"),
    "visual.": ("vision_transformer",),  # OpenAI CLIP
}


def _candidate_modules(state: Mapping[str, torch.Tensor]) -> tuple[str, ...]:
    found: tuple[str, ...] = ()
    for prefix, modules in _KEY_MODULES.items():
        if any(k.removeprefix("module.").startswith(prefix) for k in state):
            found += modules
    return found


def fitting_backbones(state: dict[str, torch.Tensor], exclude: str = "") -> list[str]:
    """Names of the configs in ``configs/backbone/`` whose architecture ``state`` fits exactly.

    The configs of the timm modules the file's keys point to (ViT / Eva, Swin, ConvNeXt) are built on the meta
    device (no memory, no weights), the file goes through that model's timm filter, and keys and shapes are
    compared, classifier excluded.

    Args:
        state: a checkpoint's state dict.
        exclude: a config name to skip (the one that did not fit).

    Returns:
        Sorted config names.
    """
    from omegaconf import OmegaConf

    fits: list[str] = []
    modules = _candidate_modules(state)
    for name in group_options("backbone"):
        if name == exclude or not modules:
            continue
        raw = OmegaConf.to_container(OmegaConf.load(config_dir() / "backbone" / f"{name}.yaml"))
        try:
            cfg = make_backbone_config(raw)  # type: ignore[arg-type]
            if not timm.models.is_model_in_modules(timm.models.get_arch_name(cfg.timm_name), modules):
                continue
            with torch.device("meta"):
                model = _create(cfg, 2, pretrained=False)
        except (ConfigError, RuntimeError, TypeError, ValueError):
            continue
        if not any(_mismatch(model, _timm_filtered(model, state))):
            fits.append(name)
    return fits


def _load_state(model: nn.Module, state: dict[str, torch.Tensor], path: Path, cfg: BackboneConfig) -> None:
    missing, unexpected, shapes = _mismatch(model, state)
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {missing[:10]}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {unexpected[:10]}")
        if shapes:
            parts.append(f"shape mismatches ({len(shapes)}): {shapes[:10]}")
        fits = fitting_backbones(state, exclude=cfg.name)
        hint = (
            f"It fits backbone={' / backbone='.join(fits)}: pass that with this file"
            if fits
            else "No config in configs/backbone/ fits it: check that the file is for this architecture"
        )
        raise CheckpointError(
            f"checkpoint {path} does not fit backbone {cfg.name!r} (timm {cfg.timm_name}): " + "; ".join(parts)
            + f". {hint}, or choose the matching backbone=..."
        )
    prefix = _classifier_prefix(model)
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith(prefix)}, strict=False)


def _load_npz(model: nn.Module, path: Path, cfg: BackboneConfig) -> None:
    if not hasattr(model, "load_pretrained"):
        raise CheckpointError(
            f"backbone.weights={path}: .npz files are read for timm ViTs only, not {type(model).__name__}; "
            "convert it to .safetensors or .pth"
        )
    head = model.get_classifier()
    saved = {k: v.clone() for k, v in head.state_dict().items()}
    try:
        model.load_pretrained(str(path))
    except (KeyError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"checkpoint {path} does not fit backbone {cfg.name!r} (timm {cfg.timm_name}): {type(exc).__name__}: {exc}"
        ) from None
    head.load_state_dict(saved)  # timm's npz loader may copy a matching head; the task head stays fresh


def backbone_data_config(model: nn.Module) -> dict[str, Any]:
    """Mean, std, interpolation and input size from the model's timm pretrained config."""
    pc = getattr(model, "pretrained_cfg", None) or {}
    return {
        "mean": tuple(pc.get("mean", (0.485, 0.456, 0.406))),
        "std": tuple(pc.get("std", (0.229, 0.224, 0.225))),
        "interpolation": pc.get("interpolation", "bicubic"),
        "input_size": tuple(pc.get("input_size", (3, 224, 224))),
    }
