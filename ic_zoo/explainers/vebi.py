"""VEBI: Visual Explanation by Interpretation (Oramas, Wang & Tuytelaars, ICLR 2019).

1. **Features.** Every channel of a set of layers (block outputs) is a candidate feature. For an image,
   a channel's response is its spatial energy sum(A^2), L1-normalised within its layer; the layers'
   vectors are concatenated (and, at test time, L2-normalised).
2. **Relevance** (fitted once, saved with the model): for each class j, non-negative weights w_j with
   ||w_j||_1 <= mu fitted by least squares to predict 1[predicted class = j] from the features
   (FISTA with projection onto {w >= 0, sum(w) <= mu}). Relevant features of j: w_j > 0.
3. **Explanation**: score each feature by response x weight, keep the top ``k`` (3), and render each as
   an input-space heatmap by guided backpropagation started at that channel, seeded with the channel's
   own activations, with the *stride fix*: a strided convolution's backward first upsamples its incoming
   signal (nearest) to the stride-1 output size, then convolves transposed with stride 1, which removes
   the checkerboard of plain transposed strided convolutions. The explanation is the pixel-wise max of
   the min-max-normalised heatmaps. ViTs: the selected channel's token map, upsampled (the paper's
   deconvnet does not apply to attention).
4. **Interpretation**: per class, the average visualisation of its top features over the images that
   fire them most (stored in the relevance file, browsable in the app).

``python -m ic_zoo vebi fit --model flower2d/resnet`` fits and saves a relevance file; the Flower2D
zoo ships one per model.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..registry import register
from ._base import ExplainOutput, Explainer, Progress, normalize_like_library

DEFAULT_MU = 5.0
TOP_FEATURES = 3


# -- feature taps ------------------------------------------------------------------------------------
def feature_layers(clf) -> list[str]:
    """Names of the modules whose outputs are VEBI's candidate features (block outputs)."""
    names = dict(clf.model.named_modules())
    arch = getattr(clf, "config", {}).get("arch") if hasattr(clf, "config") else None
    if arch == "squeezenet" or ("features" in names and "classifier" in names and "features.3" in names):
        feats = [n for n in names if re.fullmatch(r"features\.\d+", n)]
        keep = [n for n in feats if type(names[n]).__name__ in ("Fire", "ReLU")]
        return keep
    if "layer1" in names:
        out = [n for n in ("stem", "layer1", "layer2", "layer3", "layer4") if n in names]
        return out
    if "blocks" in names:
        return [n for n in names if re.fullmatch(r"blocks\.\d+", n)]
    raise ValueError(f"VEBI does not know which layers of {clf.name} to use")


def _is_vit(clf) -> bool:
    return getattr(clf, "family", "") == "vit"


def layer_energy(act, vit: bool):
    """Per-channel energy of one layer's output, L1-normalised over the layer's channels: (B, C)."""

    if vit:  # tokens (B, N, C): the patch tokens' energy per embedding channel
        a = act[:, 1:, :] if act.shape[1] > 1 else act
        e = (a.float() ** 2).sum(1)
    else:
        e = (act.float() ** 2).flatten(2).sum(2)
    return e / e.sum(1, keepdim=True).clamp(min=1e-12)


def pooled_features(clf, x, layers: list[str]):
    """(B, m) L1-per-layer features, and the list of per-layer activations."""
    import torch

    mods = [clf.model.get_submodule(n) for n in layers]
    with clf.lock:
        run = clf.run(x, mods, grad=False)
    feats = torch.cat([layer_energy(a, _is_vit(clf)) for a in run.acts], 1)
    return feats, run.acts, run.logits


# -- the relevance fit ---------------------------------------------------------------------------------
def project_l1_ball_nonneg(v: np.ndarray, mu: float) -> np.ndarray:
    """Euclidean projection of each column of v onto {w >= 0, sum(w) <= mu} (Duchi et al. 2008)."""
    w = np.maximum(v, 0)
    over = w.sum(0) > mu
    for j in np.nonzero(over)[0]:
        u = np.sort(v[:, j])[::-1]
        css = np.cumsum(u)
        rho = np.nonzero(u * np.arange(1, len(u) + 1) > (css - mu))[0][-1]
        theta = (css[rho] - mu) / (rho + 1.0)
        w[:, j] = np.maximum(v[:, j] - theta, 0)
    return w


def fit_mu_lasso(X: np.ndarray, Y: np.ndarray, mu: float, iters: int = 600, tol: float = 1e-7) -> np.ndarray:
    """argmin_W 0.5 ||X W - Y||^2  s.t.  W >= 0, ||W[:, j]||_1 <= mu, by FISTA with projection."""
    X = X.astype(np.float64)
    Y = Y.astype(np.float64)
    L = np.linalg.norm(X, 2) ** 2 + 1e-12
    W = np.zeros((X.shape[1], Y.shape[1]))
    Z, t = W.copy(), 1.0
    XtY = X.T @ Y
    XtX = X.T @ X
    for _ in range(iters):
        G = XtX @ Z - XtY
        W_new = project_l1_ball_nonneg(Z - G / L, mu)
        t_new = (1 + np.sqrt(1 + 4 * t * t)) / 2
        Z = W_new + ((t - 1) / t_new) * (W_new - W)
        if np.abs(W_new - W).max() < tol:
            W = W_new
            break
        W, t = W_new, t_new
    return W


@dataclass
class Relevance:
    layers: list[str]
    channels: list[int]  # per layer
    W: np.ndarray  # (m, C)
    mu: float
    meta: dict = field(default_factory=dict)
    interp_heat: np.ndarray | None = None  # (C, k, h, w) uint8: average heatmap of each top feature
    interp_image: np.ndarray | None = None  # (C, k, h, w, 3) uint8: average image under it

    @property
    def feature_index(self) -> list[tuple[int, int]]:
        return [(li, c) for li, n in enumerate(self.channels) for c in range(n)]

    def top_features(self, cls: int, k: int = TOP_FEATURES) -> list[int]:
        w = self.W[:, cls]
        return [int(i) for i in np.argsort(-w)[:k] if w[i] > 0]

    def save(self, path: Path) -> None:
        from safetensors.numpy import save_file

        arrays = {"W": self.W.astype(np.float32)}
        if self.interp_heat is not None:
            arrays["interp_heat"] = self.interp_heat
            arrays["interp_image"] = self.interp_image
        save_file(arrays, str(_sibling(path, ".safetensors")))
        _sibling(path, ".json").write_text(json.dumps({"layers": self.layers, "channels": self.channels,
                                                       "mu": self.mu, **self.meta}, indent=2))

    @classmethod
    def load(cls, path: Path) -> "Relevance":
        from safetensors.numpy import load_file

        meta = json.loads(_sibling(path, ".json").read_text())
        arr = load_file(str(_sibling(path, ".safetensors")))
        return cls(meta.pop("layers"), meta.pop("channels"), arr["W"], meta.pop("mu"), meta,
                   arr.get("interp_heat"), arr.get("interp_image"))


def _sibling(path: Path, ext: str) -> Path:
    """``resnet.vebi`` -> ``resnet.vebi.json`` (never ``resnet.json``: that is the model's own config)."""
    return path.parent / (path.name + ext)


def relevance_path(clf) -> Path:
    """Flower2D models keep theirs beside their weights; others in $IC_ZOO_CACHE/vebi/."""
    from ..weights import ic_zoo_cache_dir

    key = getattr(clf, "name", "")
    if key.startswith("flower2d") and hasattr(clf, "config"):
        from ..classifiers.flower2d_models import WEIGHTS_DIR

        return WEIGHTS_DIR / clf.variant / f"{clf.config['arch']}.vebi"
    return ic_zoo_cache_dir() / "vebi" / (re.sub(r"[^A-Za-z0-9._-]+", "_", key) + ".vebi")


def load_relevance(clf) -> Relevance | None:
    p = relevance_path(clf)
    rel = clf.cached("vebi_relevance", lambda: Relevance.load(p) if _sibling(p, ".json").is_file() else None)
    if rel is None:
        clf.forget("vebi_relevance")  # not fitted yet: look again next time
    return rel


# -- guided backprop with the stride fix ---------------------------------------------------------------
def _guided_copy(clf):
    """A copy of the model whose ReLUs backpropagate only positive signal where the input was positive
    (guided backprop) and whose strided convolutions backpropagate with the stride fix."""
    return clf.cached("vebi_guided", lambda: _make_guided_copy(clf))


def _make_guided_copy(clf):
    import copy

    import torch
    from torch import nn
    import torch.nn.functional as F

    class GuidedReLUFn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.clamp(min=0)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g.clamp(min=0) * (x > 0)

    class GuidedReLU(nn.Module):
        def forward(self, x):
            return GuidedReLUFn.apply(x)

    class StrideFixConvFn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
            ctx.save_for_backward(weight)
            ctx.conf = (x.shape, padding, dilation, groups)
            return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

        @staticmethod
        def backward(ctx, g):
            (weight,) = ctx.saved_tensors
            shape, padding, dilation, groups = ctx.conf
            kh, kw = weight.shape[-2:]
            h1 = shape[-2] + 2 * padding[0] - dilation[0] * (kh - 1)
            w1 = shape[-1] + 2 * padding[1] - dilation[1] * (kw - 1)
            g1 = F.interpolate(g, size=(h1, w1), mode="nearest")  # back to the stride-1 grid
            gx = F.conv_transpose2d(g1, weight, None, 1, padding, 0, groups, dilation)
            return gx, None, None, None, None, None, None

    class StrideFixConv2d(nn.Module):
        def __init__(self, conv: nn.Conv2d):
            super().__init__()
            self.conv = conv

        def forward(self, x):
            c = self.conv
            if isinstance(c.padding, str):
                return c(x)
            return StrideFixConvFn.apply(x, c.weight, c.bias, c.stride, c.padding, c.dilation, c.groups)

    model = copy.deepcopy(clf.model).eval()
    for name, mod in list(model.named_modules()):
        for child_name, child in list(mod.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(mod, child_name, GuidedReLU())
            elif isinstance(child, nn.Conv2d) and max(child.stride) > 1:
                setattr(mod, child_name, StrideFixConv2d(child))
    model.requires_grad_(False)
    return model


def _postprocess(g) -> np.ndarray:
    """Input-space signal (B, 3, h, w) -> heatmaps (B, h, w): positive part, L2 over colour, min-max."""
    import torch

    pos = g.clamp(min=0)
    heat = pos.pow(2).sum(1).sqrt()
    heat = torch.where(g.sum(1) == 0, torch.zeros_like(heat), heat)
    lo = heat.flatten(1).min(1)[0].view(-1, 1, 1)
    hi = heat.flatten(1).max(1)[0].view(-1, 1, 1)
    return ((heat - lo) / (hi - lo).clamp(min=1e-12)).cpu().numpy().astype(np.float32)


def feature_heatmaps(clf, x, rel: Relevance, features: Sequence[int], stride_fix: bool = True) -> np.ndarray:
    """Heatmaps (len(features), h, w) for feature indices of ``rel`` on input ``x`` (1, 3, h, w)."""
    import torch
    import torch.nn.functional as F

    if not features:
        return np.zeros((0,) + tuple(x.shape[-2:]), np.float32)
    index = rel.feature_index
    if _is_vit(clf):  # the selected channels' token maps, upsampled
        mods = [clf.model.get_submodule(n) for n in rel.layers]
        with clf.lock:
            run = clf.run(x, mods, grad=False)
        out = []
        for f in features:
            li, c = index[f]
            maps = clf.reshape_transform(run.acts[li].detach())[0, c].clamp(min=0)
            up = F.interpolate(maps[None, None].float(), size=tuple(x.shape[-2:]), mode="bilinear",
                               align_corners=False)[0, 0]
            up = (up - up.min()) / (up.max() - up.min()).clamp(min=1e-12)
            out.append(up.cpu().numpy())
        return np.stack(out).astype(np.float32)
    model = _guided_copy(clf) if stride_fix else _guided_copy_plain(clf)
    k = len(features)
    xb = x.detach().repeat(k, 1, 1, 1).requires_grad_(True)
    layers_used = sorted({index[f][0] for f in features})
    mods = {li: model.get_submodule(rel.layers[li]) for li in layers_used}
    acts: dict[int, torch.Tensor] = {}
    handles = [m.register_forward_hook(lambda mod, i, o, li=li: acts.__setitem__(li, o)) for li, m in mods.items()]
    try:
        with torch.enable_grad():
            model(xb)
    finally:
        for h in handles:
            h.remove()
    seeds = {li: torch.zeros_like(acts[li]) for li in layers_used}
    for row, f in enumerate(features):
        li, c = index[f]
        seeds[li][row, c] = acts[li][row, c].detach()  # the channel's own activation map
    g = torch.autograd.grad([acts[li] for li in layers_used], xb, grad_outputs=[seeds[li] for li in layers_used],
                            allow_unused=True)[0]
    if g is None:
        return np.zeros((k,) + tuple(x.shape[-2:]), np.float32)
    return _postprocess(g.detach())


def _guided_copy_plain(clf):
    """Guided backprop without the stride fix (the ablation the paper's fix is measured against)."""
    import copy

    def make():
        plain = copy.deepcopy(_guided_copy(clf))
        for name, mod in list(plain.named_modules()):
            for child_name, child in list(mod.named_children()):
                if type(child).__name__ == "StrideFixConv2d":
                    setattr(mod, child_name, child.conv)
        return plain

    return clf.cached("vebi_guided_plain", make)


# -- fitting -----------------------------------------------------------------------------------------
def fit_relevance(clf, images: np.ndarray, mu: float = DEFAULT_MU, layers: list[str] | None = None,
                  batch: int = 256, interp_k: int = 16, log=None) -> Relevance:
    """Fit the per-class relevant features of ``clf`` on ``images`` (uint8, N x h x w x 3, any size the
    classifier accepts), with the model's own predictions as labels, and compute the interpretation view."""
    import torch

    say = log or (lambda *_: None)
    layers = layers or feature_layers(clf)
    feats, preds, xs = [], [], []
    for i in range(0, len(images), batch):
        x = torch.cat([clf.preprocess(im) for im in images[i:i + batch]])
        f, _, logits = pooled_features(clf, x, layers)
        feats.append(f.cpu().numpy())
        preds.append(logits.argmax(1).cpu().numpy())
        xs.append(x.cpu())
    X = np.concatenate(feats).astype(np.float64)
    y = np.concatenate(preds)
    C = clf.num_classes
    Y = np.eye(C)[y]
    with torch.no_grad():
        _, acts, _ = pooled_features(clf, xs[0][:1].to(clf.device), layers)
    channels = [int(a.shape[-1] if _is_vit(clf) else a.shape[1]) for a in acts]
    W = fit_mu_lasso(X, Y, mu)
    probe = float((np.argmax(X @ W, 1) == y).mean())
    selected = [int((W[:, j] > 1e-9).sum()) for j in range(C)]
    say(f"mu={mu}: {np.mean(selected):.1f} features per class (min {min(selected)}), probe accuracy {probe:.3f}")
    rel = Relevance(layers, channels, W.astype(np.float32), float(mu),
                    {"model": clf.name, "fit_images": int(len(X)), "probe_accuracy": probe,
                     "features_per_class": selected, "labels": "model predictions",
                     "top_features": TOP_FEATURES})
    # interpretation: per class, its top features averaged over the images (of that class) that fire them most
    Xall = torch.cat(xs)
    h, w = Xall.shape[-2:]
    heat = np.zeros((C, TOP_FEATURES, h, w), np.uint8)
    imgs = np.zeros((C, TOP_FEATURES, h, w, 3), np.uint8)
    for j in range(C):
        idx_j = np.nonzero(y == j)[0]
        for r, f in enumerate(rel.top_features(j)):
            if len(idx_j) == 0:
                continue
            top = idx_j[np.argsort(-X[idx_j, f])[:interp_k]]
            hm = np.mean([feature_heatmaps(clf, Xall[t:t + 1].to(clf.device), rel, [f])[0] for t in top], 0)
            heat[j, r] = np.uint8(np.clip(hm / max(hm.max(), 1e-12), 0, 1) * 255)
            imgs[j, r] = np.mean([clf.tensor_to_image(Xall[t:t + 1]) for t in top], 0).astype(np.uint8)
    rel.interp_heat, rel.interp_image = heat, imgs
    return rel


def describe_feature(rel: Relevance, f: int) -> str:
    li, c = rel.feature_index[f]
    return f"{rel.layers[li]} channel {c}"


# -- the explainer -------------------------------------------------------------------------------------
@register("explainer", "vebi", requires=("torch",), cost="interactive",
          description="VEBI (Oramas et al., ICLR 2019): guided-backprop heatmaps of the class's relevant "
                      "features, with the stride fix; needs a fitted relevance file (Flower2D ships them)")
class Vebi(Explainer):

    def __init__(self, k: int = TOP_FEATURES, stride_fix: bool = True) -> None:
        self.k = k
        self.stride_fix = stride_fix

    def supports(self, clf) -> str | None:
        if load_relevance(clf) is None:
            return (f"VEBI needs the relevant features of {clf.name}, fitted once: python -m ic_zoo vebi fit "
                    f"--model {clf.name}")
        return None

    def features_for(self, clf, x, cls: int) -> list[tuple[int, float]]:
        """The top-k relevant features of ``cls`` in this image: (feature index, score)."""
        rel = load_relevance(clf)
        f, _, _ = pooled_features(clf, x, rel.layers)
        v = f[0].cpu().numpy().astype(np.float64)
        v = v / max(np.linalg.norm(v), 1e-12)
        w = rel.W[:, cls].astype(np.float64)
        score = v * w / max(w.sum(), 1e-12)
        order = [int(i) for i in np.argsort(-score) if score[i] > 0][: self.k]
        return [(i, float(score[i])) for i in order]

    def explain(self, clf, x, classes: Sequence[int], progress: Progress | None = None) -> ExplainOutput:
        rel = load_relevance(clf)
        maps = []
        for c in classes:
            feats = [f for f, _ in self.features_for(clf, x, int(c))]
            hm = feature_heatmaps(clf, x, rel, feats, stride_fix=self.stride_fix)
            maps.append(hm.max(0) if len(hm) else np.zeros(tuple(x.shape[-2:]), np.float32))
        raw = np.stack(maps).astype(np.float32)
        return ExplainOutput(raw, normalize_like_library([raw], (x.shape[-1], x.shape[-2])))


@register("explainer", "vebi-nofix", requires=("torch",), cost="interactive",
          description="VEBI without the stride fix (plain guided backprop through strided convolutions): the ablation")
class VebiNoFix(Vebi):

    def __init__(self) -> None:
        super().__init__(stride_fix=False)
