"""Explainers that read a vision transformer's attention.

Gradient CAMs on a ViT weigh one block's token features; the attention matrices say how the class token
gathers the patches, layer by layer. Three methods, for timm ViTs (the Flower2D ViT is one):

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
A model whose attention cannot be captured this way (a Hugging Face ViT, a CNN) is refused with one
sentence.
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
           "over the blocks; the class token's row; class-agnostic; timm ViTs")
LEGRAD = ("LeGrad (Bousselham et al. 2024): per block, the class score read from that block's tokens through the "
          "final norm and head, its gradient at the block's attention (ReLU, mean over heads and queries), "
          "averaged over blocks; timm ViTs; one partial backward per block")
CHEFER = ("gradient-weighted attention relevance (Chefer, Gur & Wolf, ICCV 2021; successor of their CVPR 2021 "
          "LRP method): R += mean over heads of ReLU(grad x attention) R, block by block; timm ViTs")


class AttentionExplainer(Explainer):
    uses_gradients = False  # (interactive, the Explainer default: both read the edit's one tapped pass)

    def supports(self, clf) -> str | None:
        if clf.family != "vit" or not attention_modules(clf) or not hasattr(clf.reshape_transform, "grid"):
            return (f"{self.name} reads a timm vision transformer's attention, and {clf.name} has none it can "
                    "capture; use Grad-CAM")
        if _prefix(clf) < 1:
            return f"{self.name} reads the class token's attention, and {clf.name} has no class token"
        return None

    def taps(self, clf):
        from ._base import TapSpec

        mods = attention_modules(clf)
        drops = [m.attn_drop for m in mods]
        return TapSpec(drops, [self.uses_gradients] * len(drops), [False] * len(drops), during=lambda: unfused(mods))

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
    name, description = "rollout", ROLLOUT

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
    name, description = "chefer", CHEFER
    uses_gradients = True

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

    name, description = "legrad", LEGRAD
    uses_gradients = True

    def supports(self, clf) -> str | None:
        why = super().supports(clf)
        if why is None and not (hasattr(clf.model, "forward_head") and hasattr(clf.model, "norm")
                                and len(_blocks(clf)) == len(attention_modules(clf))):
            why = f"LeGrad reads every block's tokens through the final norm and head, which {clf.name} does not expose"
        return why

    def taps(self, clf):
        from ._base import TapSpec

        mods = attention_modules(clf)
        n = len(mods)
        return TapSpec([m.attn_drop for m in mods] + _blocks(clf), [True] * n + [False] * n, [False] * (2 * n),
                       during=lambda: unfused(mods))

    def token_maps(self, clf, run, classes):
        import torch

        n = len(run.acts) // 2
        model = clf.model
        k = len(classes)
        total = None
        for block in range(n):
            scores = model.forward_head(model.norm(run.acts[n + block]))[0]  # s_l: (C,)
            v = torch.zeros((k, scores.shape[-1]), dtype=scores.dtype, device=scores.device)
            v[torch.arange(k), torch.as_tensor(classes)] = 1
            try:
                g = torch.autograd.grad(scores, run.acts[block], grad_outputs=v, is_grads_batched=True,
                                        retain_graph=True)[0][:, 0]  # (k, heads, N, N)
            except RuntimeError:  # no batched gradients here: one class at a time
                g = torch.stack([torch.autograd.grad(scores, run.acts[block], grad_outputs=v[j], retain_graph=True)[0][0]
                                 for j in range(k)])
            e = g.detach().double().clamp(min=0).mean(1).mean(1).cpu()  # (k, N): per key token
            total = e if total is None else total + e
        return (total / n).numpy()


def _blocks(clf) -> list:
    """The transformer blocks holding the attention modules, in order."""
    mods = attention_modules(clf)
    return [b for b in clf.model.modules() if getattr(b, "attn", None) is not None and any(b.attn is m for m in mods)]


register("explainer", "rollout", Rollout)  # name, description and cost: the class's
register("explainer", "chefer", Chefer)
register("explainer", "legrad", LeGrad)
