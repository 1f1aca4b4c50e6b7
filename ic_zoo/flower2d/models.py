"""The Flower2D architectures: small enough to train on two CPU cores in minutes.

* ``squeezenet``: SqueezeNet 1.1 in miniature (the seed demo's architecture): a strided 3x3 conv and
  a max-pool, four Fire modules, then a 1x1-conv class map, ReLU and global average pooling, so true
  CAM applies (16 x 16 class maps at 64 px).
* ``resnet``: a ResNet-8 (strided 3x3 stem, three BasicBlocks of 16 / 32 / 64 channels, GAP + linear).
* ``vit``: a tiny ViT from timm (patch 8, width 96, depth 4, 4 heads, MLP ratio 2).

Input: 64 x 64 RGB, scaled to [-1, 1] (mean 0.5, std 0.5).
"""
from __future__ import annotations

import torch
from torch import nn

ARCHS = ("squeezenet", "resnet", "vit")
from .generator import MODEL_PREFIX  # noqa: E402,F401  (classifier key prefix per variant)
INPUT_SIZE = 64
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)


class SqueezeNetSmall(nn.Module):
    def __init__(self, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        from torchvision.models.squeezenet import Fire

        # as SqueezeNet 1.1 begins: strided conv, max-pool, then Fire modules (here all at 16 x 16)
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, kernel_size=3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2, stride=2),
            Fire(32, 16, 32, 32), Fire(64, 16, 32, 32),
            Fire(64, 32, 64, 64), Fire(128, 32, 64, 64),
        )
        drop = nn.Dropout(p=dropout) if dropout > 0 else nn.Identity()  # synthetic data: none needed
        final = nn.Conv2d(128, num_classes, kernel_size=1)
        self.classifier = nn.Sequential(drop, final, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1)))
        # as torchvision's SqueezeNet: a small positive start keeps the ReLU'd class maps alive
        nn.init.normal_(final.weight, mean=0.0, std=0.01)
        nn.init.constant_(final.bias, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


class ResNetSmall(nn.Module):
    def __init__(self, num_classes: int, widths=(16, 32, 64)) -> None:
        super().__init__()
        from torchvision.models.resnet import BasicBlock

        def down(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2, bias=False), nn.BatchNorm2d(cout))

        w1, w2, w3 = widths
        # strided stem: 32 x 32 after it, 16 x 16 from layer2 on (class maps of 16 x 16 at 64 px)
        self.stem = nn.Sequential(nn.Conv2d(3, w1, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w1),
                                  nn.ReLU(inplace=True))
        self.layer1 = BasicBlock(w1, w1)
        self.layer2 = BasicBlock(w1, w2, stride=2, downsample=down(w1, w2))
        self.layer3 = BasicBlock(w2, w3, downsample=nn.Sequential(nn.Conv2d(w2, w3, 1, bias=False),
                                                                  nn.BatchNorm2d(w3)))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(w3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def tiny_vit(num_classes: int) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=INPUT_SIZE, patch_size=8, num_classes=num_classes, embed_dim=96, depth=4,
                             num_heads=4, mlp_ratio=2.0, global_pool="token")


def build(arch: str, num_classes: int) -> nn.Module:
    if arch == "squeezenet":
        return SqueezeNetSmall(num_classes)
    if arch == "resnet":
        return ResNetSmall(num_classes)
    if arch == "vit":
        return tiny_vit(num_classes)
    raise ValueError(f"unknown Flower2D architecture '{arch}'; choose one of {', '.join(ARCHS)}")


def to_input(images, mean=MEAN, std=STD, size: int = INPUT_SIZE) -> torch.Tensor:
    """uint8 images (N, H, W, 3) or (H, W, 3) -> normalised float batch (N, 3, size, size).

    Larger images are area-averaged down to ``size``: the same resampling the training data went
    through, so a flower drawn at 256 px looks to the model like one drawn at 64."""
    import cv2
    import numpy as np

    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.shape[1] != size or arr.shape[2] != size:
        arr = np.stack([cv2.resize(a, (size, size), interpolation=cv2.INTER_AREA if a.shape[0] >= size
                                   else cv2.INTER_LINEAR) for a in arr])
    arr = np.ascontiguousarray(arr)
    if not arr.flags.writeable:  # session images are read-only; torch wants to own writable memory
        arr = arr.copy()
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (x - m) / s


class Flower2DTransform:
    """PIL image -> (3, 64, 64) tensor, exactly as the training data were prepared."""

    def __init__(self, size: int = INPUT_SIZE, mean=MEAN, std=STD) -> None:
        self.size, self.mean, self.std = size, tuple(mean), tuple(std)

    def __call__(self, pil) -> torch.Tensor:
        import numpy as np

        return to_input(np.asarray(pil.convert("RGB")), self.mean, self.std, self.size)[0]

    def __repr__(self) -> str:
        return f"Flower2DTransform(size={self.size}, area-average resize, mean={self.mean}, std={self.std})"
