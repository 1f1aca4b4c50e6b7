"""Hugging Face transformers image classifiers: ``hf-hub:<repo id>``.

``from_pretrained`` loads the model and its image processor; labels come from ``config.id2label``.
ViT-style models (ViT, DeiT, BEiT, DINOv2, the CLIP vision tower) are explained on the last encoder
block's pre-attention norm with a reshape from their patch grid and their prefix tokens (class,
distillation, registers), read off the model and checked on one probe pass; CNN-style models, and any
model whose token layout that check does not confirm, on their last spatial feature map.
``clip_models`` reuses its config check, geometry and token layout for zero-shot CLIP.
"""
from __future__ import annotations

import re
from pathlib import Path

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


_PRE_ATTN_NORM = re.compile(r"(?:^|\.)layers?\.\d+\.(?:layernorm_before|norm1|layer_norm1)$")


def token_layout(model, input_size, call, key):
    """(target layer, TokenGridReshape) of a transformers ViT: the last block's pre-attention norm
    (``layernorm_before``, ``norm1``, ``layer_norm1``), the prefix tokens its embeddings add (class token,
    DeiT's distillation token, DINOv2's registers) and the patch grid of ``input_size`` (h, w); checked on
    one probe pass (the norm's token count must be prefix + grid cells). (None, None) when any part is
    missing or the check fails: the caller then explains a spatial layer instead, never a shifted map."""
    import torch

    from ..errors import PluginUnavailableError
    from ._base import TokenGridReshape

    names = [n for n, _ in model.named_modules() if _PRE_ATTN_NORM.search(n) and not n.startswith("text_model")]
    emb = next((m for n, m in model.named_modules() if n.endswith("embeddings")
                and (hasattr(m, "cls_token") or hasattr(m, "class_embedding"))), None)
    ps = getattr(getattr(model.config, "vision_config", None) or model.config, "patch_size", None)
    if not names or emb is None or not ps:
        return None, None
    prefix = 1 + sum(int(getattr(emb, t).shape[1]) for t in ("distillation_token", "register_tokens")
                     if getattr(emb, t, None) is not None)
    ph, pw = (ps, ps) if isinstance(ps, int) else (int(ps[0]), int(ps[-1]))
    grid = (input_size[0] // ph, input_size[1] // pw)
    layer, seen = model.get_submodule(names[-1]), []
    handle = layer.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    try:
        with torch.no_grad():
            call(model, torch.zeros(1, 3, *input_size, device=next(model.parameters()).device))
    except Exception as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise PluginUnavailableError(f"'{key}' does not run on its own {input_size[0]} x {input_size[1]} input "
                                     f"({first}).") from None
    finally:
        handle.remove()
    if len(seen) != 1 or len(seen[0]) != 3 or seen[0][1] != prefix + grid[0] * grid[1]:
        return None, None
    return layer, TokenGridReshape(grid, prefix)


def layout_of(model, layer, reshape) -> str:
    """How ``layer`` of ``model`` is read, in one line (``Classifier.tap_layout``): "tokens: p prefix + h x w
    grid (<module>)" with a token reshape, else "NCHW (<module>)" (the spatial fallback)."""
    name = next((n for n, m in model.named_modules() if m is layer), type(layer).__name__)
    if reshape is not None:
        gh, gw = reshape.grid
        return f"tokens: {reshape.num_prefix_tokens} prefix + {gh} x {gw} grid ({name})"
    return f"NCHW ({name})"


def _build(repo: str, pretrained: bool = True, device=None):
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification

    from ..errors import WeightsUnavailableError
    from ..weights import hf_cache_dir, require_hf_weights
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
    target, reshape = token_layout(model, geometry.input_size, lambda m, x: m(pixel_values=x), key)
    if target is not None:
        target_layers = [target]
    else:
        target_layers = [last_spatial_layer(model, geometry.input_size, call=lambda m, x: m(pixel_values=x))]
    clf = HFClassifier(model, labels, transform, geometry, target_layers, name=key, reshape_transform=reshape,
                       norm=norm or ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)), family="vit" if reshape else "cnn",
                       pretrained=pretrained, weights_source=repo, device=device)
    clf.tap_layout = layout_of(clf.model, target_layers[0], reshape)
    return clf


_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


def hub_config(key: str, repo: str, example: str = "hf-hub:google/vit-base-patch16-224") -> dict:
    """The config.json of ``repo`` (cached, or a small download) as a dict; one sentence for an id that is
    not a repo id, a config that cannot be had or read. ``key`` is the name the user typed."""
    import json

    from ..errors import UnknownPluginError, WeightsUnavailableError
    from ..weights import hf_cache_dir, hf_cached_file, hf_endpoint, hub_offline

    if not _REPO_ID.match(repo or "") or ".." in repo:
        raise UnknownPluginError(f"'{repo}' is not a Hugging Face repo id; write it as owner/name, such as {example}.")
    path = hf_cached_file(repo, ("config.json",))
    if path is None:
        if hub_offline():
            raise WeightsUnavailableError(
                f"'{key}' is not in the cache folder {hf_cache_dir()} and {hf_endpoint().split('//')[-1]} "
                "cannot be reached; connect once so it downloads, or copy it into that folder.")
        from huggingface_hub import hf_hub_download

        try:
            path = hf_hub_download(repo, "config.json")
        except Exception as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise UnknownPluginError(f"'{key}' has no model config on the Hugging Face hub ({first}); "
                                     "check the repo id.") from None
    try:
        cfg = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UnknownPluginError(f"The config.json of '{key}' cannot be read; check the repo.") from None
    if not isinstance(cfg, dict):
        raise UnknownPluginError(f"The config.json of '{key}' is not a model config; check the repo.")
    return cfg


def validate(repo: str, pretrained: bool = True) -> None:
    """Check ``hf-hub:<repo id>`` before loading it: the id's form, its config (cached, or a small
    download), that the config is an image classifier's, and that the weights can be had."""
    from ..errors import UnknownPluginError
    from ..weights import hf_weights_reason, weights_error

    cfg = hub_config(f"hf-hub:{repo}", repo)
    archs = [a for a in cfg.get("architectures") or [] if isinstance(a, str)]
    model_type = str(cfg.get("model_type", "?"))
    if not any("ForImageClassification" in a for a in archs):  # DeiT's ...ForImageClassificationWithTeacher too
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
