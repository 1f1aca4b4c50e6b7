"""Explainers that read a vision transformer's attention.

Gradient CAMs on a ViT weigh one block's token features; the attention matrices say how the class token
gathers the patches, layer by layer. Three methods, for timm ViTs (the Flower2D ViT is one) and
transformers ViTs:

* ``rollout``, attention rollout (Abnar & Zuidema, "Quantifying Attention Flow in Transformers", ACL
  2020, Eq. 1-2): per block the head-averaged attention A_l, with the residual connection as
  Â_l = 0.5 A_l + 0.5 I, rows renormalised; the rollout is Â_L ... Â_1, and the map is the class token's
  row over the patch tokens. Class-agnostic.
* ``chefer``, gradient-weighted relevance propagation (Chefer, Gur & Wolf, "Generic Attention-model
  Explainability for Interpreting Bi-Modal and Encoder-Decoder Transformers", ICCV 2021, Eq. 5-6, the
  self-attention rule): R = I, and for each block Ā_l = E_h[(∇A_l ⊙ A_l)⁺], R ← R + Ā_l R, where ∇A_l is
  the gradient of the class logit with respect to the attention; the map is R's class-token row over the
  patches. It is the gradient-weighted successor of their CVPR 2021 "Transformer Interpretability Beyond
  Attention Visualization", which weighted by LRP relevances: here the attention gradient takes their
  place, with no layer-wise relevance rules to write for every module. Class-specific.

* ``legrad``, LeGrad (Bousselham et al. 2024): each block's attention gradient of the score that block's
  own tokens give through the final norm and head; averaged over blocks. Class-specific.

All come from one tapped forward pass: the attention of every block is captured where timm computes it
(the attention-dropout module, with the fused kernel switched off for the pass, since the fused kernel
never forms the matrix), and the gradients of all requested classes flow back to all blocks in one sweep.
A transformers ViT hands its attention weights out in eager mode: one pass with eager attention (restored
after) and hooks of that call on its attention modules and layers. A model with no attention to capture (a
CNN) is refused with one sentence.
"""
from __future__ import annotations

import contextlib
from typing import Sequence

import numpy as np

from ..registry import register
from ._base import ExplainOutput, Explainer, input_size_wh, normalize_like_library, resize_maps


def attention_modules(clf) -> list:
    """The attention modules of a timm ViT, in order (each has ``attn_drop`` and ``fused_attn``)."""
    return [m for m in clf.model.modules()
            if hasattr(m, "attn_drop") and hasattr(m, "fused_attn") and hasattr(m, "qkv")]


@contextlib.contextmanager
def unfused(mods):
    """The explicit attention path for one pass, so the attention matrix exists (and is restored after)."""
    before = [m.fused_attn for m in mods]
    try:
        for m in mods:
            m.fused_attn = False
        yield
    finally:
        for m, b in zip(mods, before):
            m.fused_attn = b


def _prefix(clf) -> int:
    return int(getattr(clf.reshape_transform, "num_prefix_tokens", 1))


def _grid(clf) -> tuple[int, int]:
    return tuple(getattr(clf.reshape_transform, "grid"))


ROLLOUT = ("attention rollout (Abnar & Zuidema 2020): the head-averaged attention with its residual, multiplied "
           "over the blocks; the class token's row; class-agnostic; timm and Hugging Face ViTs")
LEGRAD = ("LeGrad (Bousselham et al. 2024): per block, the class score read from that block's tokens through the "
          "final norm and head, its gradient at the block's attention (ReLU, mean over heads and queries), "
          "averaged over blocks; timm and Hugging Face ViTs; one partial backward per block")
CHEFER = ("gradient-weighted attention relevance (Chefer, Gur & Wolf, ICCV 2021; successor of their CVPR 2021 "
          "LRP method): R += mean over heads of ReLU(grad x attention) R, block by block; timm and Hugging Face ViTs")


class AttentionExplainer(Explainer):
    uses_gradients = False  # (interactive, the Explainer default: both read the edit's one tapped pass)
    needs_tokens = False  # the blocks' token outputs too (LeGrad)
    reads_class_token = True  # the map is the class token's row (rollout, Chefer); LeGrad reads every token

    def supports(self, clf) -> str | None:
        if clf.family != "vit" and attention_modules(clf):  # Swin, MaxViT, Hiera...: attention in windows or stages
            return (f"{self.name} follows attention over one global grid of patch tokens through every block, and "
                    f"{clf.name}'s attention is windowed or hierarchical (no published rollout applies); use Grad-CAM")
        if not hasattr(clf.reshape_transform, "grid") or clf.family != "vit" or not (
                attention_modules(clf) or _hf_attention(clf)):
            return (f"{self.name} reads a vision transformer's attention (timm or Hugging Face ViTs), and {clf.name} "
                    "has none it can capture; use Grad-CAM")
        if self.reads_class_token and (_prefix(clf) < 1 or (not _hf_attention(clf)
                                                            and getattr(clf.model, "cls_token", None) is None)):
            return (f"{self.name} reads the class token's attention, and {clf.name} has no class token"
                    + (" (its prefix tokens are registers)" if _prefix(clf) >= 1 else ""))
        return None

    def taps(self, clf):
        from ._base import TapSpec

        if _hf_attention(clf):
            return None  # transformers hands the attention out itself (explain)
        mods = attention_modules(clf)
        drops = [m.attn_drop for m in mods]
        n = len(drops)
        layers, grad = drops + (_blocks(clf) if self.needs_tokens else []), [self.uses_gradients] * n
        return TapSpec(layers, grad + [False] * (len(layers) - n), [False] * len(layers), during=lambda: unfused(mods))

    def explain(self, clf, x, classes: Sequence[int], progress=None) -> ExplainOutput:
        if not _hf_attention(clf):
            return super().explain(clf, x, classes, progress)
        with clf.lock:
            return self.from_run(clf, _hf_run(clf, x, self.uses_gradients, self.needs_tokens), x, classes)

    def from_run(self, clf, run, x, classes: Sequence[int]) -> ExplainOutput:
        classes = [int(c) for c in classes]
        with clf.lock:
            maps = self.token_maps(clf, run, classes)  # (k, N) over all tokens
        gh, gw = _grid(clf)
        p = _prefix(clf)
        grid = maps[:, p:p + gh * gw].reshape(len(classes), gh, gw).astype(np.float32)
        grid = np.maximum(grid, 0)
        size = input_size_wh(x)
        return ExplainOutput(resize_maps(grid, size), normalize_like_library([grid], size))

    def token_maps(self, clf, run, classes: list[int]) -> np.ndarray:
        raise NotImplementedError


class Rollout(AttentionExplainer):
    description = ROLLOUT

    def token_maps(self, clf, run, classes):
        import torch

        with torch.no_grad():
            n = run.acts[0].shape[-1]
            eye = torch.eye(n, dtype=torch.float64)
            r = eye.clone()
            for a in run.acts:  # (1, heads, N, N), block by block
                a = a.detach().double()[0].mean(0).cpu()
                a = 0.5 * a + 0.5 * eye
                a = a / a.sum(-1, keepdim=True)
                r = a @ r
        row = r[0].numpy()  # the class token's row
        return np.broadcast_to(row, (len(classes), n)).copy()


class Chefer(AttentionExplainer):
    description = CHEFER
    uses_gradients = True

    def supports(self, clf) -> str | None:
        why = super().supports(clf)
        if why is None and (not _hf_head(clf)[1] if _hf_attention(clf)
                            else getattr(clf.model, "global_pool", "token") != "token"):
            why = (f"chefer propagates relevance to the class token, which the head of {clf.name} does not read "
                   "(or is not known to read); use LeGrad or Grad-CAM")
        return why

    def token_maps(self, clf, run, classes):
        import torch

        grads = run.grads(classes, list(range(len(run.acts))))  # per block (k, heads, N, N)
        with torch.no_grad():
            n = run.acts[0].shape[-1]
            k = len(classes)
            r = torch.eye(n, dtype=torch.float64).expand(k, n, n).clone()
            for a, g in zip(run.acts, grads):
                cam = (g.detach().double() * a.detach().double()).clamp(min=0).mean(1).cpu()  # (k, N, N)
                r = r + torch.bmm(cam, r)
        return r[:, 0].numpy()


class LeGrad(AttentionExplainer):
    """LeGrad (Bousselham, Boggust, Chaybouti, Strobelt & Kuehne, "LeGrad: An Explainability Method for
    Vision Transformers via Feature Formation Sensitivity", 2024, Eq. 3-6). For every block l the class
    token after that block, z_l, is read as the model reads its last one, s_l = head(norm(z_l)) (the
    "logit lens"); the map of block l is Ê_l = mean over heads and query tokens of ReLU(∂s_l[c] / ∂A_l),
    A_l that block's attention; the explanation is the mean of Ê_l over the blocks, restricted to the
    patch tokens. All blocks' attention and outputs are tapped in the edit's one pass; each block costs a
    partial backward from its own score to its own attention, all classes at once."""

    description = LEGRAD
    uses_gradients = True
    needs_tokens = True
    reads_class_token = False

    def supports(self, clf) -> str | None:
        why = super().supports(clf)
        if why is None and _head_of_tokens(clf) is None:
            why = f"LeGrad reads every block's tokens through the final norm and head, which {clf.name} does not expose"
        return why

    def token_maps(self, clf, run, classes):
        n = len(run.acts) // 2
        head = _head_of_tokens(clf)
        total = None
        for block in range(n):
            # s_l, the scores of this block's tokens, differentiated at this block's attention: (k, heads, N, N)
            g = run.grads(classes, [block], output=head(run.acts[n + block]))[0]
            e = g.detach().double().clamp(min=0).mean(1).mean(1).cpu()  # (k, N): per key token
            total = e if total is None else total + e
        return (total / n).numpy()


def _head_of_tokens(clf):
    """tokens (1, N, D) after any block -> the logits the model would give were they its last: the final
    norm and head (timm's ``forward_head(norm(.))``; a transformers ViT's ``classifier(layernorm(.)[:, 0])``)."""
    m = clf.model
    if _hf_attention(clf):
        return _hf_head(clf)[0]
    if hasattr(m, "forward_head") and hasattr(m, "norm") and len(_blocks(clf)) == len(attention_modules(clf)):
        return lambda z: m.forward_head(m.norm(z))
    return None


def _hf_layers(clf) -> tuple[list, list]:
    """A transformers ViT's attention modules (``attention``: ViT, DeiT, BEiT, DINOv2; ``self_attn``: the CLIP
    vision tower; each returns its output and, in eager mode, its attention weights) and its encoder
    layers, in order; empty lists for anything else."""
    import re

    m = clf.model
    if clf.family != "vit" or not hasattr(m, "set_attn_implementation"):
        return [], []
    named = list(m.named_modules())
    att = [mod for n, mod in named if re.search(r"(?:^|\.)layers?\.\d+\.(?:attention|self_attn)$", n)]
    layers = [mod for n, mod in named if re.search(r"(?:^|\.)layers?\.\d+$", n)]
    return (att, layers) if att and len(att) == len(layers) else ([], [])


def _hf_attention(clf) -> bool:
    """A transformers ViT, whose eager attention hands out its weights."""
    return bool(_hf_layers(clf)[0])


def _hf_head(clf):
    """(tokens (1, N, D) after any layer -> the logits the model's own head gives from them, whether that head
    reads the class token), for the transformers classes whose head is known (their forward in
    transformers 5); (None, False) for others. A classifier's model may give its own ``head_of_tokens``
    (the zero-shot CLIP classifier does)."""
    import torch

    m, p = clf.model, _prefix(clf)
    if callable(getattr(m, "head_of_tokens", None)):
        return m.head_of_tokens, True
    base, kind = m.base_model, type(m).__name__
    if kind in ("ViTForImageClassification", "DeiTForImageClassification"):
        return (lambda z: m.classifier(base.layernorm(z)[:, 0])), True
    if kind == "DeiTForImageClassificationWithTeacher":  # the mean of the class and distillation heads
        def teacher(z):
            h = base.layernorm(z)
            return (m.cls_classifier(h[:, 0]) + m.distillation_classifier(h[:, 1])) / 2
        return teacher, True
    if kind in ("Dinov2ForImageClassification", "Dinov2WithRegistersForImageClassification"):
        def dino(z):  # the class token beside the mean of the patch tokens (registers left out)
            h = base.layernorm(z)
            return m.classifier(torch.cat([h[:, 0], h[:, p:].mean(1)], dim=1))
        return dino, True
    if kind == "BeitForImageClassification":  # mean-pooled patches (use_mean_pooling) or the class token
        pooled = getattr(base.pooler, "layernorm", None) is not None
        return (lambda z: m.classifier(base.pooler(base.layernorm(z)))), not pooled
    if kind == "CLIPForImageClassification":  # the mean of the tokens after the class token, no final norm
        return (lambda z: m.classifier(z[:, 1:].mean(1))), False
    return None, False


def _hf_run(clf, x, grads: bool, tokens: bool):
    """One transformers forward, eager attention for this pass only (restored after), every layer's
    attention weights and, with ``tokens``, every layer's output captured by hooks of this call (always
    removed), as a Run: the attentions first (with gradients when ``grads``: the input is made a leaf so
    the frozen model records the graph), then the tokens."""
    import torch

    from ..classifiers._base import Run

    m = clf.model
    att_mods, layer_mods = _hf_layers(clf)
    atts, outs, handles = [], [], []
    before = m.config._attn_implementation
    try:
        m.set_attn_implementation("eager")
        handles = [mod.register_forward_hook(lambda mod, i, o: atts.append(o[1])) for mod in att_mods]
        if tokens:
            handles += [mod.register_forward_hook(lambda mod, i, o: outs.append(o[0] if isinstance(o, tuple) else o))
                        for mod in layer_mods]
        with torch.enable_grad() if grads or tokens else torch.no_grad():
            logits = clf.forward(x.detach().clone().requires_grad_(grads or tokens))
    finally:
        for h in handles:
            h.remove()
        m.set_attn_implementation(before)
    return Run(logits, atts + outs, [grads] * len(atts) + [False] * len(outs))


def _blocks(clf) -> list:
    """The transformer blocks holding the attention modules, in order."""
    mods = attention_modules(clf)
    return [b for b in clf.model.modules() if getattr(b, "attn", None) is not None and any(b.attn is m for m in mods)]


register("explainer", "rollout", Rollout)  # description and cost: the class's
register("explainer", "chefer", Chefer)
register("explainer", "legrad", LeGrad)
