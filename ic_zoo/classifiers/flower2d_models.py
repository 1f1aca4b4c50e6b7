"""The project's own Flower2D models, shipped as safetensors with their config (labels, input size,
normalisation, accuracy, training command) in ``ic_zoo/flower2d/weights/<variant>/<arch>.{safetensors,json}``.

Keys: ``flower2d/<arch>`` (double-12c), ``flower2d-6c/<arch>`` (single-6c), ``flower2d-hard/<arch>``
(double-12c-hard), for whichever of ``squeezenet``, ``resnet``, ``vit`` are shipped. They need no
network: the offline default zoo.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..flower2d.generator import MODEL_PREFIX
from ..registry import register

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "flower2d" / "weights"


def shipped() -> dict[str, tuple[str, str, Path]]:
    """key -> (variant, arch, config path) for every shipped model."""
    out = {}
    for variant, prefix in MODEL_PREFIX.items():
        for cfg in sorted((WEIGHTS_DIR / variant).glob("*.json")):
            if "." in cfg.stem:  # e.g. resnet.vebi.json: VEBI's relevance file, not a model
                continue
            if cfg.with_suffix(".safetensors").is_file():
                out[f"{prefix}/{cfg.stem}"] = (variant, cfg.stem, cfg)
    return out


def shipped_for(variant: str, models=None, quick: bool = False) -> list[str]:
    """The shipped models of ``variant`` a benchmark runs: those named in ``models`` (keys or architectures:
    squeezenet, resnet, vit), all when None; with ``quick``, the ResNet only (or the first)."""
    names = [k for k, (v, _, _) in shipped().items() if v == variant]
    if models:
        names = [k for k in names if k in models or k.split("/")[-1] in models]
    if quick:
        names = [k for k in names if k.endswith("/resnet")] or names[:1]
    return names


def _build(key: str, variant: str, arch: str, cfg_path: Path, pretrained: bool = True, device=None):
    from ..flower2d.models import Flower2DTransform, build
    from ._base import InputGeometry, TokenGridReshape
    from .backends import Flower2DClassifier

    cfg = json.loads(cfg_path.read_text())
    model = build(arch, cfg["num_classes"])
    if pretrained:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(cfg_path.with_suffix(".safetensors"))))

    if arch == "squeezenet":
        target_layers, reshape = [model.features[-1]], None
    elif arch == "resnet":
        target_layers, reshape = [model.layer3], None
    else:
        target_layers = [model.blocks[-1].norm1]
        reshape = TokenGridReshape(model.patch_embed.grid_size, model.num_prefix_tokens)
    weights = cfg_path.with_suffix(".safetensors")
    return Flower2DClassifier(arch, cfg, variant, model, list(cfg["labels"]),
                              Flower2DTransform(cfg["input_size"], cfg["mean"], cfg["std"]),
                              InputGeometry((cfg["input_size"], cfg["input_size"]), None), target_layers, name=key,
                              reshape_transform=reshape, norm=(tuple(cfg["mean"]), tuple(cfg["std"])),
                              family="vit" if arch == "vit" else "cnn", pretrained=pretrained,
                              weights_source=str(weights.relative_to(WEIGHTS_DIR.parents[1])), device=device)


def _register_all() -> None:
    for key, (variant, arch, cfg_path) in shipped().items():
        try:
            acc = json.loads(cfg_path.read_text()).get("test_accuracy")
        except (OSError, ValueError):
            acc = None
        desc = f"Flower2D {variant} {arch}, trained by this project" + (f" ({100 * acc:.1f}% test accuracy)" if acc else "")
        register("classifier", key,
                 (lambda pretrained=True, device=None, k=key, v=variant, a=arch, c=cfg_path:
                  _build(k, v, a, c, pretrained, device)),
                 requires=("torch", "torchvision", "timm"), description=desc, family="vit" if arch == "vit" else "cnn",
                 variant=variant, offline=True, domain="flower2d")


_register_all()
