"""Pretrain the micro ViT (``configs/backbone/vit_micro.yaml``) on procedurally rendered fractals.

Formula-driven supervised pretraining in the spirit of FractalDB (Kataoka et al., "Pre-training without
Natural Images", ACCV 2020): each class is one iterated function system (IFS) of 2 to 8 random affine
maps (contractive, drawn through their singular values; translations uniform in [-1, 1]), kept only
if its attractor covers enough of the canvas (FractalDB's filling-rate test); the images of a class are renders of its attractor
(chaos game) with the class's coefficients slightly perturbed, a random flip, placement and colour.
No natural image is involved, so nothing overlaps the embedded mini-suite.

The script is deterministic given ``--seed`` and ``--threads`` (the fractals come from one numpy
generator, training from one torch generator, no data-loader workers). It writes the backbone weights
(the classifier dropped) as safetensors and a log holding the exact command, the settings, the per-epoch
loss / accuracy, the held-out accuracy, the wall time and the weights' SHA-256.

Usage (the shipped file was made by exactly the command recorded in its log)::

    python scripts/pretrain_micro_vit.py --out peftbench/assets/vit_micro_fractal.safetensors
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import math
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from safetensors.torch import save_file

from peftbench.models.backbone import build_backbone, make_backbone_config

REPO = Path(__file__).resolve().parent.parent
SIZE = 32  # rendered image size (the backbone's img_size)


def sample_ifs(rng: np.random.Generator) -> np.ndarray:
    """One random IFS: (n_maps, 6) rows ``a b c d e f`` of ``x' = a x + b y + e, y' = c x + d y + f``.

    2 to 8 maps as in FractalDB; each linear part is drawn through its singular value decomposition
    R(theta) diag(s1, s2) R(phi) with singular values in [0.2, 0.75], so every map contracts and the chaos
    game converges (the contractive sampling of Anderson & Farrell, "Improving Fractal Pre-training",
    WACV 2022), and a reflection with probability 1/2; translations are uniform in [-1, 1].
    """
    n = int(rng.integers(2, 9))
    rows = []
    for _ in range(n):
        theta, phi = rng.uniform(0, 2 * math.pi, size=2)
        s1, s2 = rng.uniform(0.2, 0.75, size=2)
        flip = 1.0 if rng.integers(2) else -1.0

        def rot(a: float) -> np.ndarray:
            return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])

        lin = rot(theta) @ np.diag([s1, flip * s2]) @ rot(phi)
        rows.append([lin[0, 0], lin[0, 1], lin[1, 0], lin[1, 1], *rng.uniform(-1.0, 1.0, size=2)])
    return np.asarray(rows)


def chaos_points(ifs: np.ndarray, rng: np.random.Generator, chains: int = 512, burn: int = 24, keep: int = 12):
    """Points of the attractor by the chaos game, ``chains`` chains run in parallel.

    Maps are picked with probability proportional to |det A| as in FractalDB.

    Returns:
        (chains * keep, 2) points, or ``None`` when the system diverges or collapses.
    """
    det = np.abs(ifs[:, 0] * ifs[:, 3] - ifs[:, 1] * ifs[:, 2])
    if det.sum() <= 1e-8:
        return None
    p = det / det.sum()
    pts = rng.uniform(-1.0, 1.0, size=(chains, 2))
    out = []
    for step in range(burn + keep):
        k = rng.choice(len(ifs), size=chains, p=p)
        m = ifs[k]  # (chains, 6)
        x = m[:, 0] * pts[:, 0] + m[:, 1] * pts[:, 1] + m[:, 4]
        y = m[:, 2] * pts[:, 0] + m[:, 3] * pts[:, 1] + m[:, 5]
        pts = np.stack([x, y], axis=1)
        if not np.isfinite(pts).all() or np.abs(pts).max() > 1e6:
            return None
        if step >= burn:
            out.append(pts)
    return np.concatenate(out)


def rasterize(pts: np.ndarray, size: int, scale: float, offset: tuple[float, float], flip: bool) -> np.ndarray:
    """Binary (size, size) mask of the points fitted into ``scale`` of the canvas at ``offset``."""
    lo, hi = np.percentile(pts, 1, axis=0), np.percentile(pts, 99, axis=0)
    extent = float(max(hi[0] - lo[0], hi[1] - lo[1]))
    if extent < 1e-6:
        return np.zeros((size, size), dtype=bool)
    norm = (pts - (lo + hi) / 2) / extent  # centred, longest side 1
    if flip:
        norm[:, 0] = -norm[:, 0]
    px = ((norm * scale + 0.5) * (size - 1) + np.asarray(offset)).round().astype(int)
    ok = (px >= 0).all(axis=1) & (px < size).all(axis=1)
    mask = np.zeros((size, size), dtype=bool)
    mask[px[ok, 1], px[ok, 0]] = True
    return mask


def make_classes(n_classes: int, rng: np.random.Generator, fill: float) -> list[np.ndarray]:
    """``n_classes`` IFS whose attractor fills at least ``fill`` of its bounding square."""
    classes: list[np.ndarray] = []
    while len(classes) < n_classes:
        ifs = sample_ifs(rng)
        pts = chaos_points(ifs, rng)
        if pts is None:
            continue
        if rasterize(pts, SIZE, 1.0, (0.0, 0.0), False).mean() >= fill:
            classes.append(ifs)
    return classes


def render_instance(ifs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One (SIZE, SIZE, 3) uint8 image of the class: perturbed coefficients, flip, place, colour."""
    for _ in range(20):
        jitter = ifs * rng.uniform(0.95, 1.05, size=ifs.shape)  # FractalDB-style intra-class variation
        pts = chaos_points(jitter, rng)
        if pts is not None:
            break
    else:  # the perturbed systems kept diverging: render the class's own system
        pts = chaos_points(ifs, rng)
        assert pts is not None  # the class passed this test when it was made
    scale = rng.uniform(0.6, 0.95)
    room = (1 - scale) * (SIZE - 1) / 2
    mask = rasterize(pts, SIZE, scale, tuple(rng.uniform(-room, room, size=2)), bool(rng.integers(2)))
    colour = rng.uniform(0.4, 1.0, size=3)
    background = rng.uniform(0.0, 0.25, size=3)
    img = np.where(mask[..., None], colour, background)
    return (img * 255).round().astype(np.uint8)


def render_set(classes: list[np.ndarray], per_class: int, rng: np.random.Generator):
    """(N, 3, SIZE, SIZE) uint8 images and (N,) labels, class-major order."""
    images = np.stack([render_instance(ifs, rng) for ifs in classes for _ in range(per_class)])
    labels = np.repeat(np.arange(len(classes)), per_class)
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels)


def to_input(batch: torch.Tensor) -> torch.Tensor:
    """uint8 images to the backbone's normalisation (timm ViT default: mean 0.5, std 0.5)."""
    return (batch.float() / 255 - 0.5) / 0.5


def augment(batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random translation by up to 2 pixels (zero padding), per image."""
    padded = F.pad(batch, (2, 2, 2, 2))
    shifts = torch.randint(0, 5, (len(batch), 2), generator=gen)
    return torch.stack([p[:, dy : dy + SIZE, dx : dx + SIZE] for p, (dy, dx) in zip(padded, shifts.tolist(), strict=True)])


@torch.no_grad()
def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 512) -> float:
    """Top-1 accuracy (%) of ``model`` on the images."""
    model.eval()
    correct = 0
    for i in range(0, len(images), batch):
        correct += (model(to_input(images[i : i + batch])).argmax(1) == labels[i : i + batch]).sum().item()
    return 100.0 * correct / len(images)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "peftbench/assets/vit_micro_fractal.safetensors")
    parser.add_argument("--backbone", type=Path, default=REPO / "configs/backbone/vit_micro.yaml")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--per-class", type=int, default=200, help="training renders per class")
    parser.add_argument("--val-per-class", type=int, default=20, help="held-out renders per class")
    parser.add_argument("--fill", type=float, default=0.2, help="minimum filling rate of a class's attractor")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--warmup-steps", type=int, default=300)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    start = time.time()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    log_path = args.out.with_suffix(".log")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []

    def log(msg: str) -> None:
        lines.append(msg)
        print(msg, flush=True)

    shown = [Path(sys.argv[0]).as_posix() if argv is None else "scripts/pretrain_micro_vit.py"]
    shown += [a.replace(str(REPO) + "/", "") for a in (sys.argv[1:] if argv is None else argv)]
    log("# micro ViT pretraining on procedurally rendered IFS fractals (FractalDB-style)")
    log("command: python " + shlex.join(shown))
    log(f"settings: {vars(args) | {'out': args.out.name, 'backbone': args.backbone.name}}")
    log(f"versions: python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}")

    rng = np.random.default_rng(args.seed)
    classes = make_classes(args.classes, rng, args.fill)
    train_x, train_y = render_set(classes, args.per_class, rng)
    val_x, val_y = render_set(classes, args.val_per_class, rng)
    log(f"data: {args.classes} IFS classes, {len(train_x)} training and {len(val_x)} held-out renders "
        f"({time.time() - start:.0f} s)")

    cfg = make_backbone_config(OmegaConf.to_container(OmegaConf.load(args.backbone), resolve=True))
    model = build_backbone(dataclasses.replace(cfg, weights="none"), args.classes)
    log(f"model: {cfg.timm_name} {cfg.model_kwargs}, img_size {cfg.img_size}, "
        f"{sum(p.numel() for p in model.parameters())} parameters with the {args.classes}-way head")

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(len(train_x) / args.batch_size)
    total = args.epochs * steps_per_epoch

    def lr_at(step: int) -> float:  # linear warmup, cosine decay
        if step < args.warmup_steps:
            return args.lr * (step + 1) / args.warmup_steps
        return 0.5 * args.lr * (1 + math.cos(math.pi * (step - args.warmup_steps) / (total - args.warmup_steps)))

    gen = torch.Generator().manual_seed(args.seed)
    step = 0
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(train_x), generator=gen)
        loss_sum = correct = 0.0
        for i in range(0, len(order), args.batch_size):
            idx = order[i : i + args.batch_size]
            x = to_input(augment(train_x[idx], gen))
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            logits = model(x)
            loss = F.cross_entropy(logits, train_y[idx], label_smoothing=args.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_sum += loss.item() * len(idx)
            correct += (logits.argmax(1) == train_y[idx]).sum().item()
        val = accuracy(model, val_x, val_y)
        log(f"epoch {epoch}/{args.epochs}: train loss {loss_sum / len(train_x):.4f}, "
            f"train acc {100 * correct / len(train_x):.2f}%, held-out acc {val:.2f}% ({time.time() - start:.0f} s)")

    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items() if not k.startswith("head.")}
    save_file(state, str(args.out), metadata={"source": "scripts/pretrain_micro_vit.py", "seed": str(args.seed)})
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    log(f"final held-out accuracy: {accuracy(model, val_x, val_y):.2f}% ({args.classes} classes, chance "
        f"{100 / args.classes:.2f}%)")
    log(f"wrote {args.out.name}: {args.out.stat().st_size} bytes, sha256 {digest}")
    log(f"wall time: {time.time() - start:.0f} s on {args.threads} CPU threads ({platform.machine()})")
    log_path.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
