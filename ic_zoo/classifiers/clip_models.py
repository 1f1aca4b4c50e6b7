"""Zero-shot CLIP as a classifier: ``clip:<repo id>=<class>,<class>,...``.

The user types the class names; the model ranks them by CLIP's image-text similarity, as ``CLIPModel``
does: logits = logit scale x cosine(image embedding, text embedding of "a photo of a <class>."), the
text embeddings computed once at build. The classifier is CLIP's image tower with that fixed head
(``backends.ZeroShotCLIP``), so every explainer works on it: Grad-CAM on the last block's
``layer_norm1`` with the token reshape (``hf_models.token_layout``), the attention explainers on its
``self_attn`` modules, LeGrad through the head's ``head_of_tokens``.
"""
from __future__ import annotations

from ..registry import register

PROMPT = "a photo of a {}."
EXAMPLE = "clip:openai/clip-vit-base-patch32=cat,dog,bird"
_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def parse(spec: str) -> tuple[str, list[str]]:
    """``<repo id>=<class>,<class>,...`` -> (repo id, class names); one sentence for a bad list."""
    from ..errors import UnknownPluginError

    key = f"clip:{spec}"
    repo, sep, rest = (spec or "").partition("=")
    repo = repo.strip()
    if not sep or not rest.strip():
        raise UnknownPluginError(f"'{key}' names no classes; type them after '=', comma-separated, such as {EXAMPLE}.")
    names = [n.strip() for n in rest.split(",")]
    if any(not n for n in names):
        raise UnknownPluginError(f"'{key}' has an empty class name; separate the names with single commas, "
                                 f"such as {EXAMPLE}.")
    seen: dict[str, str] = {}
    for n in names:
        if n.casefold() in seen:
            raise UnknownPluginError(f"'{key}' names the class '{n}' twice; give each class once.")
        seen[n.casefold()] = n
    if len(names) < 2:
        raise UnknownPluginError(f"'{key}' names one class only; zero-shot CLIP ranks two or more, "
                                 f"such as {EXAMPLE}.")
    return repo, names


def validate(spec: str, pretrained: bool = True) -> None:
    """Check ``clip:<repo id>=<classes>`` before loading: the class list, the repo id, that its config is a
    CLIP model's (image and text towers), and that the weights can be had."""
    from ..errors import UnknownPluginError
    from ..weights import hf_weights_reason, weights_error
    from .hf_models import hub_config

    repo, _ = parse(spec)
    key = f"clip:{repo}"
    cfg = hub_config(key, repo, EXAMPLE)
    archs = [a for a in cfg.get("architectures") or [] if isinstance(a, str)]
    if cfg.get("model_type") != "clip" or (archs and "CLIPModel" not in archs):
        what = ", ".join(archs) or f"'{cfg.get('model_type', '?')}'"
        raise UnknownPluginError(f"'{key}' is a {what} model, not a CLIP model with its image and text towers "
                                 f"(CLIPModel), such as openai/clip-vit-base-patch32.")
    reason = hf_weights_reason(repo, _WEIGHTS) if pretrained else None
    if reason:
        raise weights_error(key, reason)


def build(spec: str, pretrained: bool = True, device=None):
    import torch
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPConfig, CLIPModel

    from ..errors import WeightsUnavailableError
    from ..weights import hf_cache_dir, require_hf_weights
    from ._base import Classifier
    from ._layers import last_spatial_layer
    from .backends import ZeroShotCLIP
    from .hf_models import _geometry, layout_of, token_layout

    validate(spec, pretrained)
    repo, names = parse(spec)
    key = f"clip:{spec}"
    local = require_hf_weights(key, repo, _WEIGHTS if pretrained else ("config.json",)) is not None
    try:
        if pretrained:
            clip = CLIPModel.from_pretrained(repo, local_files_only=local)
        else:
            clip = CLIPModel(CLIPConfig.from_pretrained(repo, local_files_only=local))
        processor = AutoImageProcessor.from_pretrained(repo, local_files_only=local)
        tokenizer = AutoTokenizer.from_pretrained(repo, local_files_only=local)
    except OSError as exc:
        raise WeightsUnavailableError(
            f"'clip:{repo}' could not be loaded from the Hugging Face hub or its cache {hf_cache_dir()} "
            f"({str(exc).splitlines()[0]}); check the repo id and the connection.") from None
    clip.eval()
    with torch.no_grad():
        tok = tokenizer([PROMPT.format(n) for n in names], padding=True, truncation=True, return_tensors="pt")
        text = clip.get_text_features(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"])
        text = text if torch.is_tensor(text) else text.pooler_output
    model = ZeroShotCLIP(clip, text.float())

    def transform(pil):
        return processor(images=pil, return_tensors="pt")["pixel_values"]

    norm = None
    if getattr(processor, "do_normalize", True) and getattr(processor, "image_mean", None) is not None:
        norm = (tuple(processor.image_mean), tuple(processor.image_std))
    geometry = _geometry(processor)
    target, reshape = token_layout(model, geometry.input_size, lambda m, x: m(x), key)
    if target is None:
        target = last_spatial_layer(model, geometry.input_size)
    clf = Classifier(model, names, transform, geometry, [target], name=key, reshape_transform=reshape,
                     norm=norm or ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)), family="vit" if reshape else "cnn",
                     pretrained=pretrained, weights_source=repo, device=device)
    clf.tap_layout = layout_of(clf.model, target, reshape)
    return clf


@register("classifier", "clip:", requires=("transformers",), validate=validate,
          description="zero-shot CLIP on the class names you type: clip:<repo id>=<class>,<class>,..., "
                      "e.g. clip:openai/clip-vit-base-patch32=cat,dog,bird")
def clip(spec: str = "", pretrained: bool = True, device=None):
    return build(spec, pretrained, device)
