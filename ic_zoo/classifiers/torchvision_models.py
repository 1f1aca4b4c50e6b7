"""torchvision classifiers: ``squeezenet1_1`` (the seed demo's model) and ``torchvision:<name>``.

Weights, preprocessing and labels come from the torchvision weights enum (``weights.transforms()``,
``weights.meta["categories"]``); the weights load through torchvision's own ``load_state_dict_from_url``
into the torch hub checkpoint folder.
"""
from __future__ import annotations

from ..registry import register
from ..weights import url_weights_reason

_SIZES = {"squeezenet1_1": "5 MB"}


def _weights_enum(arch: str):
    from torchvision.models import get_model_weights

    return get_model_weights(arch).DEFAULT


def _reason(arch: str) -> str | None:
    from ..weights import torch_checkpoint_dir

    try:
        w = _weights_enum(arch)
    except Exception as exc:
        return f"torchvision has no weights for '{arch}' ({exc})"
    return url_weights_reason(w.url, torch_checkpoint_dir(), _SIZES.get(arch, ""))


def _target_layers(arch: str, model):
    if arch.startswith("squeezenet"):
        return [model.features[-1]]  # last Fire module (512 x 13 x 13 at 224 px)
    if hasattr(model, "layer4"):
        return [model.layer4[-1]]
    if hasattr(model, "features"):
        return [model.features[-1]]
    from ._layers import last_spatial_layer

    return [last_spatial_layer(model)]


def _build(arch: str, key: str, pretrained: bool = True, device=None):
    from torchvision.models import get_model

    from ..weights import require_url_weights, torch_checkpoint_dir
    from ._base import InputGeometry
    from .backends import TorchvisionClassifier

    weights = _weights_enum(arch)
    if pretrained:
        require_url_weights(arch, weights.url, torch_checkpoint_dir(), _SIZES.get(arch, ""))
    model = get_model(arch, weights=None)
    if pretrained:  # torchvision's own path: load_state_dict_from_url into the torch hub checkpoint folder
        model.load_state_dict(weights.get_state_dict(progress=False, check_hash=True))
    tf = weights.transforms()

    return TorchvisionClassifier(arch, model, list(weights.meta["categories"]), tf,
                                 InputGeometry(int(tf.resize_size[0]), (int(tf.crop_size[0]), int(tf.crop_size[0]))),
                                 _target_layers(arch, model), name=key, norm=(tuple(tf.mean), tuple(tf.std)),
                                 family="cnn", pretrained=pretrained, weights_source=weights.url, device=device)


@register("classifier", "squeezenet1_1", requires=("torchvision",), check=lambda: _reason("squeezenet1_1"),
          description="SqueezeNet 1.1, ImageNet-1k (torchvision): the seed demo's model, 1.2 M parameters",
          family="cnn", download="5 MB", domain="imagenet")
def squeezenet1_1(pretrained: bool = True, device=None):
    return _build("squeezenet1_1", "squeezenet1_1", pretrained, device)


def validate(arch: str, pretrained: bool = True) -> None:
    """Check ``torchvision:<arch>`` without building it: one sentence if it cannot work here."""
    import difflib

    import torchvision
    from torchvision.models import list_models

    from ..errors import UnknownPluginError
    from ..weights import weights_error

    classifiers = list_models(module=torchvision.models)
    if arch not in classifiers:
        if arch in list_models():
            raise UnknownPluginError(f"torchvision's '{arch}' is a detection, segmentation, optical-flow or video "
                                     "model, not an image classifier.")
        close = difflib.get_close_matches(arch, classifiers, n=3, cutoff=0.75)
        raise UnknownPluginError(f"torchvision has no classification model called '{arch}'"
                                 + (f" (did you mean {', '.join(close)}?)." if close else "."))
    if pretrained:
        reason = _reason(arch)
        if reason:
            raise weights_error(f"torchvision:{arch}", reason)


@register("classifier", "torchvision:", requires=("torchvision",), validate=validate, domain="imagenet",
          description="any torchvision classification model by name, e.g. torchvision:resnet18")
def torchvision_any(arch: str, pretrained: bool = True, device=None):
    validate(arch, pretrained=False)
    return _build(arch, f"torchvision:{arch}", pretrained, device)
