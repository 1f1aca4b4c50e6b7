"""Hugging Face transformers image classifiers: ``hf-hub:<repo id>``.

``from_pretrained`` loads the model and its image processor; labels come from ``config.id2label``.
ViT-style models are explained on the last encoder block's ``layernorm_before`` with a reshape from
their patch grid; CNN-style models on their last spatial feature map.
"""
from __future__ import annotations

import re

from ..registry import register


def _geometry(processor):
    from ._base import InputGeometry

    size = getattr(processor, "size", None) or {}
    size = dict(size) if not isinstance(size, dict) else size
    crop = None
    if getattr(processor, "do_center_crop", False) and getattr(processor, "crop_size", None):
        cs = dict(processor.crop_size)
        crop = (int(cs.get("height", cs.get("shortest_edge", 0))), int(cs.get("width", cs.get("shortest_edge", 0))))
    resize = None
    if getattr(processor, "do_resize", True):
        if "height" in size and "width" in size:
            resize = (int(size["height"]), int(size["width"]))
        elif "shortest_edge" in size:
            se = int(size["shortest_edge"])
            crop_pct = getattr(processor, "crop_pct", None)
            if "ConvNext" in type(processor).__name__ and crop_pct and se < 384:
                resize, crop = int(se / crop_pct), (se, se)
            else:
                resize = se
    return InputGeometry(resize, crop)


def _build(repo: str, pretrained: bool = True, device=None):
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification

    from ..errors import WeightsUnavailableError
    from ..weights import hf_cache_dir, require_hf_weights
    from ._base import TokenGridReshape
    from ._layers import last_spatial_layer
    from .backends import HFClassifier

    key = f"hf-hub:{repo}"
    files = ("model.safetensors", "pytorch_model.bin") if pretrained else ("config.json",)
    local = require_hf_weights(key, repo, files) is not None  # the hub cannot be used: the cache only
    try:
        if pretrained:
            model = AutoModelForImageClassification.from_pretrained(repo, local_files_only=local)
        else:
            model = AutoModelForImageClassification.from_config(AutoConfig.from_pretrained(repo, local_files_only=local))
        processor = AutoImageProcessor.from_pretrained(repo, local_files_only=local)
    except OSError as exc:
        raise WeightsUnavailableError(
            f"'{key}' could not be loaded from the Hugging Face hub or its cache {hf_cache_dir()} "
            f"({str(exc).splitlines()[0]}); check the repo id and the connection.") from None

    def transform(pil):
        return processor(images=pil, return_tensors="pt")["pixel_values"]

    cfg = model.config
    labels = [str(cfg.id2label.get(i, f"class {i}")) for i in range(cfg.num_labels)]
    norm = None
    if getattr(processor, "do_normalize", True) and getattr(processor, "image_mean", None) is not None:
        norm = (tuple(processor.image_mean), tuple(processor.image_std))
    geometry = _geometry(processor)
    names = [n for n, _ in model.named_modules() if re.search(r"(?:^|\.)layers?\.\d+\.layernorm_before$", n)]
    reshape = None
    if names and getattr(cfg, "patch_size", None):
        target_layers = [model.get_submodule(names[-1])]
        h, w = geometry.input_size
        ps = cfg.patch_size if isinstance(cfg.patch_size, int) else cfg.patch_size[0]
        reshape = TokenGridReshape((h // ps, w // ps), 1)
    else:
        target_layers = [last_spatial_layer(model, geometry.input_size, call=lambda m, x: m(pixel_values=x))]
    return HFClassifier(model, labels, transform, geometry, target_layers, name=key, reshape_transform=reshape,
                        norm=norm or ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)), family="vit" if reshape else "cnn",
                        pretrained=pretrained, weights_source=repo, device=device)


_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


def validate(repo: str, pretrained: bool = True) -> None:
    """Check ``hf-hub:<repo id>`` before loading it: the id's form, its config (cached, or a small
    download), that the config is an image classifier's, and that the weights can be had."""
    import json

    from ..errors import UnknownPluginError, WeightsUnavailableError
    from ..weights import hf_cache_dir, hf_cached_file, hf_endpoint, hf_weights_reason, hub_offline, weights_error

    if not _REPO_ID.match(repo or "") or ".." in repo:
        raise UnknownPluginError(f"'{repo}' is not a Hugging Face repo id; write it as owner/name, "
                                 "such as hf-hub:google/vit-base-patch16-224.")
    path = hf_cached_file(repo, ("config.json",))
    if path is None:
        if hub_offline():
            raise WeightsUnavailableError(
                f"'hf-hub:{repo}' is not in the cache folder {hf_cache_dir()} and {hf_endpoint().split('//')[-1]} "
                "cannot be reached; connect once so it downloads, or copy it into that folder.")
        from huggingface_hub import hf_hub_download

        try:
            path = hf_hub_download(repo, "config.json")
        except Exception as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise UnknownPluginError(f"'hf-hub:{repo}' has no model config on the Hugging Face hub ({first}); "
                                     "check the repo id.") from None
    try:
        cfg = json.loads(open(path, encoding="utf-8").read())
    except (OSError, ValueError):
        raise UnknownPluginError(f"The config.json of 'hf-hub:{repo}' cannot be read; check the repo.") from None
    archs = [a for a in cfg.get("architectures") or [] if isinstance(a, str)]
    model_type = str(cfg.get("model_type", "?"))
    if not any(a.endswith("ForImageClassification") for a in archs):
        from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES

        if archs or model_type not in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES:
            what = ", ".join(archs) or f"'{model_type}'"
            raise UnknownPluginError(f"'hf-hub:{repo}' is a {what} model, not an image classifier "
                                     "(it needs an ...ForImageClassification head).")
    reason = hf_weights_reason(repo, ("model.safetensors", "pytorch_model.bin")) if pretrained else None
    if reason:
        raise weights_error(f"hf-hub:{repo}", reason)


@register("classifier", "hf-hub:", requires=("transformers",), validate=validate,
          description="any Hugging Face transformers image classifier, e.g. hf-hub:google/vit-base-patch16-224")
def hf_hub(repo: str, pretrained: bool = True, device=None):
    return _build(repo, pretrained, device)
