"""Which models the app and the CLI use when none are named.

With the ImageNet weights usable (cached, or the hub reachable) the default is the ImageNet trio:
SqueezeNet 1.1 (the seed's model), a ResNet and a CPU-sized ViT. Without them, the project's own
Flower2D trio, which ships with the package and needs no network.
"""
from __future__ import annotations

IMAGENET_DEFAULT = ("squeezenet1_1", "resnet50.a1_in1k", "vit_small_patch16_224.augreg_in21k_ft_in1k")
FLOWER2D_DEFAULT = ("flower2d/squeezenet", "flower2d/resnet", "flower2d/vit")


def imagenet_unavailable() -> dict[str, str]:
    """ImageNet default model -> why it cannot load now (empty when all can)."""
    from .registry import get_spec

    out = {}
    for name in IMAGENET_DEFAULT:
        reason = get_spec("classifier", name).unavailable_reason()
        if reason:
            out[name] = reason
    return out


def offline_zoo() -> list[str]:
    from .registry import REGISTRY, _loaded

    _loaded()
    return [m for m in FLOWER2D_DEFAULT if ("classifier", m) in REGISTRY]


def default_models(pretrained: bool = True) -> list[str]:
    if not pretrained:
        return list(IMAGENET_DEFAULT)
    if not imagenet_unavailable():
        return list(IMAGENET_DEFAULT)
    return offline_zoo() or list(IMAGENET_DEFAULT)
