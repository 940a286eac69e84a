"""Preprocessing of the two suites, with every choice explicit and recorded.

VTAB-1k (and the embedded tasks): resize straight to ``image_size`` x ``image_size`` (no crop), no
augmentation, normalise (VPT's VTAB pipeline). FGVC: train = resize the shorter side to
``image_size * 256 / 224``, random crop ``image_size``, horizontal flip; eval = the same resize and a
center crop (VPT's FGVC pipeline). ``data.augment=randaugment`` adds timm's RandAugment and a random
horizontal flip to the training split (V-PETL Bench's re-runs); evaluation is never augmented.
"""

from __future__ import annotations

from typing import Any

from torchvision import transforms as T

from peftbench.data.config import DataConfig

NORM_STATS = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}
_INTERP = {
    "bicubic": T.InterpolationMode.BICUBIC,
    "bilinear": T.InterpolationMode.BILINEAR,
    "nearest": T.InterpolationMode.NEAREST,
}


def normalization(
    data: DataConfig, backbone_mean: tuple[float, ...], backbone_std: tuple[float, ...]
) -> dict[str, Any]:
    """The normalisation actually applied, as recorded in the result JSON.

    Args:
        data: the ``data:`` block (``normalize``, ``interpolation``, ``image_size``).
        backbone_mean: the backbone's pretrained mean, used for ``normalize=backbone``.
        backbone_std: likewise, the standard deviation.

    Returns:
        ``{"mode", "mean", "std", "interpolation", "image_size"}``.
    """
    if data.normalize == "backbone":
        mean, std = tuple(backbone_mean), tuple(backbone_std)
    else:
        mean, std = NORM_STATS[data.normalize]
    return {
        "mode": data.normalize,
        "mean": list(mean),
        "std": list(std),
        "interpolation": data.interpolation,
        "image_size": data.image_size,
    }


def randaugment(config: str, norm: dict[str, Any]) -> Any:
    """timm's RandAugment for a config string (``rand-m9-mstd0.5-inc1``), filling with the dataset mean as timm's
    ``create_transform`` does."""
    from timm.data.auto_augment import rand_augment_transform

    mean = norm["mean"] if norm["mode"] != "none" else (0.5, 0.5, 0.5)
    size = norm["image_size"]
    hparams = {"translate_const": int(size * 0.45), "img_mean": tuple(round(255 * m) for m in mean)}
    return rand_augment_transform(config, hparams)


def build_transforms(suite: str, norm: dict[str, Any], augment: str = "none",
                     randaugment_config: str = "rand-m9-mstd0.5-inc1") -> tuple[T.Compose, T.Compose]:
    """(train, eval) transforms for a suite, from the recorded normalisation.

    Args:
        suite: ``vtab``, ``embedded`` (plain square resize) or ``fgvc`` (resize, crop, flip).
        norm: the output of :func:`normalization`.
        augment: ``none`` or ``randaugment`` (the training split only).
        randaugment_config: timm's RandAugment string for ``augment=randaugment``.

    Returns:
        Two PIL -> ``(3, S, S)`` float tensor transforms.
    """
    size, interp = norm["image_size"], _INTERP[norm["interpolation"]]
    tail = [T.ToTensor()]
    if norm["mode"] != "none":
        tail.append(T.Normalize(norm["mean"], norm["std"]))
    if suite == "fgvc":
        resize = round(size * 256 / 224)
        crop_flip = [T.Resize(resize, interpolation=interp), T.RandomCrop(size), T.RandomHorizontalFlip()]
        extra = [randaugment(randaugment_config, norm)] if augment == "randaugment" else []
        train = T.Compose([*crop_flip, *extra, *tail])
        evaluate = T.Compose([T.Resize(resize, interpolation=interp), T.CenterCrop(size), *tail])
        return train, evaluate
    resize = T.Resize((size, size), interpolation=interp)
    plain = T.Compose([resize, *tail])
    if augment == "randaugment":
        extra = [T.RandomHorizontalFlip(), randaugment(randaugment_config, norm)]
        return T.Compose([resize, *extra, *tail]), plain
    return plain, plain
