"""Which models the app and the CLI use when none are named."""
from __future__ import annotations

#: SqueezeNet 1.1 (the seed's model), a ResNet and a CPU-sized ViT.
IMAGENET_DEFAULT = ("squeezenet1_1", "resnet50.a1_in1k", "vit_small_patch16_224.augreg_in21k_ft_in1k")


def default_models(pretrained: bool = True) -> list[str]:
    return list(IMAGENET_DEFAULT)
