"""Interactive Classification: ask "what if" questions of image classifiers.

Paint over part of an image, remove it by inpainting, and see how every selected classifier changes
its mind, with class activation maps on one shared scale. ``import ic_zoo`` is light: torch, timm,
OpenCV and friends load on first use.

    import ic_zoo
    s = ic_zoo.Session(ic_zoo.load_image("cat.jpg"))
    s.apply(mask, inpainter="telea")
    result = s.evaluate(["squeezenet1_1", "resnet50.a1_in1k"], explainer="gradcam")
"""
from __future__ import annotations

from .errors import (BadImageError, ClassIndexError, DuplicatePluginError, ExplainerNotSupportedError, IcZooError,
                     IcZooWarning, ImageTooLargeError, InputError, MaskError, NoEditError, PluginContractError,
                     PluginError, PluginUnavailableError, UnknownPluginError, WeightsUnavailableError)
from .discovery import create, get_spec, instance, list_plugins
from .registry import REGISTRY, register

__version__ = "0.1.0"

_LAZY = {
    "Session": ("ic_zoo.session", "Session"),
    "Edit": ("ic_zoo.session", "Edit"),
    "get_classifier": ("ic_zoo.session", "get_classifier"),
    "load_image": ("ic_zoo.imageio", "load_image"),
    "load_mask": ("ic_zoo.imageio", "load_mask"),
    "discover": ("ic_zoo.discovery", "discover"),
    "ensure_loaded": ("ic_zoo.discovery", "ensure_loaded"),
    "Classifier": ("ic_zoo.classifiers._base", "Classifier"),
    "Inpainter": ("ic_zoo.inpainters._base", "Inpainter"),
    "Explainer": ("ic_zoo.explainers._base", "Explainer"),
    "ExplainOutput": ("ic_zoo.explainers._base", "ExplainOutput"),
    "GradientCAM": ("ic_zoo.explainers.cam_base", "GradientCAM"),
    "TapSpec": ("ic_zoo.explainers._base", "TapSpec"),
    "resize_maps": ("ic_zoo.explainers._base", "resize_maps"),
    "normalize_like_library": ("ic_zoo.explainers._base", "normalize_like_library"),
    "Command": ("ic_zoo.command", "Command"),
    "InputGeometry": ("ic_zoo.classifiers._base", "InputGeometry"),
    "TokenGridReshape": ("ic_zoo.classifiers._base", "TokenGridReshape"),
}

__all__ = ["register", "create", "instance", "list_plugins", "get_spec", "REGISTRY", "IcZooError",
           "InputError", "BadImageError", "ImageTooLargeError", "MaskError", "ClassIndexError", "NoEditError", "IcZooWarning",
           "PluginError",
           "UnknownPluginError", "DuplicatePluginError", "PluginUnavailableError", "WeightsUnavailableError",
           "ExplainerNotSupportedError", "PluginContractError", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        value = getattr(importlib.import_module(mod), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ic_zoo' has no attribute {name!r}")
