"""The Classifier subclass of each backend, at module level: what a backend adds to the base class
(true CAM's head, a forward for models that return objects, the Flower2D config), and zero-shot CLIP's
image tower with its fixed text head. The ``*_models`` modules register the backends and build these;
this module imports torch, they do not.
"""
from __future__ import annotations

import torch

from ._base import CamHead, Classifier


def _linear_cam(fc: torch.nn.Linear):
    w = fc.weight

    def to_maps(a, classes):  # Zhou et al.: sum_k w_ck f_k(x, y), bias left out
        return torch.einsum("kc,bchw->bkhw", w[list(classes)], a)

    return to_maps


def _relu_maps(a, classes):  # a 1x1-conv head's ReLU output is the stack of class maps (SqueezeNet)
    return a[:, list(classes)]


class TimmClassifier(Classifier):
    """A timm model: preprocessing from its pretrained config, true CAM on GAP + linear CNN heads."""

    def cam_head(self):
        pool = getattr(self.model, "global_pool", None)
        fc = self.model.get_classifier() if hasattr(self.model, "get_classifier") else None
        if self.family != "cnn" or self.reshape_transform is not None or pool is None or not isinstance(
                fc, torch.nn.Linear):  # (the pool's input is read as NCHW: not for NHWC or token stages)
            return None
        if getattr(pool, "pool_type", None) != "avg":
            return None
        if not isinstance(getattr(self.model, "head_drop", torch.nn.Identity()), (torch.nn.Dropout, torch.nn.Identity)):
            return None
        head = CamHead(pool, _linear_cam(fc), use_input=True)
        return head if self.cached("cam head holds", lambda: _cam_identity(self, head, fc)) else None


def _cam_identity(clf, head: CamHead, fc: torch.nn.Linear) -> bool:
    """Whether the class maps' spatial means plus the bias are the logits, on one probe input: true CAM's
    definition, checked once (a pool followed by more layers, as in MobileNetV3's conv head, fails it)."""
    x = torch.randn((1, 3) + tuple(clf.input_size), generator=torch.Generator().manual_seed(0)).to(clf.device)
    with clf.lock:
        run = clf.run(x, [head.layer], False, [head.use_input])
    feats = run.acts[0]
    if not torch.is_tensor(feats) or feats.ndim != 4 or feats.shape[1] != fc.in_features:
        return False
    with torch.no_grad():
        maps = head.to_maps(feats, range(clf.num_classes))
        logits = maps.mean((-2, -1)) + (fc.bias if fc.bias is not None else 0)
    ref = run.logits.detach()
    return bool(torch.allclose(logits, ref, rtol=1e-3, atol=1e-4 * float(ref.abs().max().clamp(min=1))))


class TorchvisionClassifier(Classifier):
    """A torchvision model (weights enum preprocessing); true CAM on SqueezeNet and GAP + fc heads."""

    def __init__(self, arch: str, *args, **kwargs) -> None:
        self.arch = arch
        super().__init__(*args, **kwargs)

    def cam_head(self):
        head = getattr(self.model, "classifier", None)
        if self.arch.startswith("squeezenet"):
            # Dropout -> Conv1x1(512 -> C) -> ReLU -> global average pool: the ReLU output is the
            # stack of class maps, and its spatial mean is the logit (the seed's CAM).
            return CamHead(head[2], _relu_maps)
        fc = getattr(self.model, "fc", None)
        pool = getattr(self.model, "avgpool", None)
        if isinstance(fc, torch.nn.Linear) and isinstance(pool, torch.nn.AdaptiveAvgPool2d):
            return CamHead(pool, _linear_cam(fc), use_input=True)
        return None


class HFClassifier(Classifier):
    """A transformers ``...ForImageClassification`` model: its output object's logits."""

    def forward(self, x):
        return self.model(pixel_values=x).logits


class Flower2DClassifier(Classifier):
    """One of the project's Flower2D models, with its training config (labels, variant, accuracy)."""

    def __init__(self, arch: str, config: dict, variant: str, *args, **kwargs) -> None:
        self.arch, self.config, self.variant = arch, config, variant
        super().__init__(*args, **kwargs)

    def cam_head(self):
        if self.arch == "squeezenet":
            return CamHead(self.model.classifier[2], _relu_maps)
        if self.arch == "resnet":
            return CamHead(self.model.avgpool, _linear_cam(self.model.fc), use_input=True)
        return None


class ZeroShotCLIP(torch.nn.Module):
    """CLIP's image tower and projection against fixed, normalised class text embeddings: ``forward`` gives
    ``CLIPModel``'s ``logits_per_image`` for those texts."""

    def __init__(self, clip, text_embeds: torch.Tensor) -> None:
        super().__init__()
        self.vision_model = clip.vision_model
        self.visual_projection = clip.visual_projection
        self.config = clip.vision_model.config  # its attention implementation is the one switched
        self.register_buffer("text_embeds", text_embeds / text_embeds.norm(dim=-1, keepdim=True))
        self.register_buffer("logit_scale", clip.logit_scale.detach().exp())

    def set_attn_implementation(self, impl: str) -> None:
        self.vision_model.set_attn_implementation(impl)

    def head_of_tokens(self, z: torch.Tensor) -> torch.Tensor:
        """Tokens (B, N, D) after any layer -> the logits, read as from the last: post_layernorm of the
        class token, projected, normalised, against the class texts, times the logit scale."""
        e = self.visual_projection(self.vision_model.post_layernorm(z[:, 0]))
        return self.logit_scale * (e / e.norm(dim=-1, keepdim=True)) @ self.text_embeds.t()

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.head_of_tokens(self.vision_model(pixel_values=pixel_values).last_hidden_state)
