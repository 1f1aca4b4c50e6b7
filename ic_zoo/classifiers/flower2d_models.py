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


def _build(key: str, variant: str, arch: str, cfg_path: Path, pretrained: bool = True, device=None):
    import torch

    from ..flower2d.models import Flower2DTransform, build
    from ._base import CamHead, Classifier, InputGeometry, TokenGridReshape

    cfg = json.loads(cfg_path.read_text())
    model = build(arch, cfg["num_classes"])
    if pretrained:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(cfg_path.with_suffix(".safetensors"))))

    class Flower2DClassifier(Classifier):
        def cam_head(self):
            if arch == "squeezenet":
                return CamHead(self.model.classifier[2], lambda a, classes: a[:, list(classes)])
            if arch == "resnet":
                w = self.model.fc.weight
                return CamHead(self.model.avgpool, lambda a, classes: torch.einsum("kc,bchw->bkhw", w[list(classes)], a),
                               use_input=True)
            return None

    clf = Flower2DClassifier()
    clf.key = key
    clf.model = model
    clf.labels = list(cfg["labels"])
    clf.transform = Flower2DTransform(cfg["input_size"], cfg["mean"], cfg["std"])
    clf.geometry = InputGeometry((cfg["input_size"], cfg["input_size"]), None)
    clf.norm = (tuple(cfg["mean"]), tuple(cfg["std"]))
    clf.pretrained = pretrained
    clf.weights_source = str(cfg_path.with_suffix(".safetensors").relative_to(WEIGHTS_DIR.parents[1])) \
        if pretrained else "random"
    clf.family = "vit" if arch == "vit" else "cnn"
    clf.config = cfg
    clf.variant = variant
    clf._finish_init(device)
    if arch == "squeezenet":
        clf.target_layers = [clf.model.features[-1]]
    elif arch == "resnet":
        clf.target_layers = [clf.model.layer3]
    else:
        clf.target_layers = [clf.model.blocks[-1].norm1]
        clf.reshape_transform = TokenGridReshape(clf.model.patch_embed.grid_size, clf.model.num_prefix_tokens)
    return clf


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
