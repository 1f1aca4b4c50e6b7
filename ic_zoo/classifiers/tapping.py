"""Where the CAM family taps a timm model, and how that layer's output becomes a (B, C, h, w) map.

A CAM is only right if the tapped tensor is read in its true layout. timm models come in three: NCHW
stages (CNNs, ConvNeXt, MaxViT, ...), channels-last NHWC stages (Swin, SwinV2: ``output_fmt ==
'NHWC'``) and token sequences (ViTs, with ``num_prefix_tokens`` class / distillation / register tokens
before an h x w grid; LeViT, EfficientFormer and Hiera stages, with none). Reading NHWC as NCHW, or
tokens with the wrong prefix count, gives a map that is finite, non-constant and wrong.

So the layer and its layout are derived from what the model says about itself (``feature_info``'s last
stage with its channel count and reduction, ``patch_embed``'s grid, ``num_prefix_tokens``,
``output_fmt``) and then *checked on a probe input at build time* against the model's own feature map:
timm's ``forward_intermediates(..., output_fmt='NCHW')``, which every family implements with its own
reshape. The layout whose reshape of the tapped tensor equals that map is the one used; when none does,
or the layout cannot be determined, the CAM family is refused for the model with one sentence
(``Tap.refusal``), never drawn wrong.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ._base import TokenGridReshape


class ChannelsLast:
    """(B, h, w, C) -> (B, C, h, w): Swin's stages."""

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        return t.permute(0, 3, 1, 2) if t.ndim == 4 else t

    def __repr__(self) -> str:
        return "ChannelsLast()"


@dataclass
class Tap:
    """The derived target layer, its reshape (None: already NCHW) and a one-line description; or, when
    no layout could be verified, ``refusal``: one sentence saying why the CAM family is not offered."""

    layer: torch.nn.Module | None
    reshape: Callable | None
    layout: str
    refusal: str | None = None
    verified: bool = False  # checked against the model's own forward_intermediates


def _probe(model, x, module, want_input: bool = False):
    got = {}

    def hook(mod, inp, out):  # a module returning a tuple cannot be tapped by every CAM (pytorch-grad-cam's
        got.setdefault("in", inp[0] if inp else None)  # hooks take one tensor): it counts as no map
        got.setdefault("out", out)

    h = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            model(x)
    finally:
        h.remove()
    return got.get("in" if want_input else "out")


def _reference(model, x, index):
    """The model's own NCHW feature map at ``index`` (a feature_info stage or a block), or None."""
    fi = getattr(model, "forward_intermediates", None)
    if fi is None:
        return None
    try:
        with torch.no_grad():
            out = fi(x, indices=[index], intermediates_only=True, output_fmt="NCHW")
    except Exception:  # noqa: BLE001 - a family without the NCHW form, or an index it does not take
        try:
            with torch.no_grad():
                out = fi(x, indices=[index], intermediates_only=True)
        except Exception:  # noqa: BLE001
            return None
    t = out[0] if isinstance(out, (list, tuple)) and out else out
    return t if torch.is_tensor(t) and t.ndim == 4 else None


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape:
        return False
    scale = float(b.abs().max()) or 1.0
    return float((a.float() - b.float()).abs().max()) <= 1e-4 * scale


def _grid_candidates(n_tokens: int, size_hw, reduction: int, max_prefix: int = 16):
    h, w = size_hw
    out = []
    for gh in {h // reduction, math.ceil(h / reduction)}:
        for gw in {w // reduction, math.ceil(w / reduction)}:
            p = n_tokens - gh * gw
            if gh > 0 and gw > 0 and 0 <= p <= max_prefix:
                out.append(((gh, gw), p))
    return sorted(out, key=lambda c: c[1])


def _vit_tap(model, name: str, x, size_hw) -> Tap | None:
    """ViT-style models (blocks of global attention over prefix + patch tokens): the last block's pre-
    attention norm, as pytorch-grad-cam's documentation taps a ViT (the class token reads the patches
    there; after the last block the patch tokens no longer reach a class-token head)."""
    blocks = getattr(model, "blocks", None)
    pe = getattr(model, "patch_embed", None)
    if not isinstance(blocks, (torch.nn.Sequential, torch.nn.ModuleList)) or len(blocks) == 0 or pe is None:
        return None
    if not hasattr(model, "num_prefix_tokens") or not hasattr(pe, "grid_size"):
        return None
    last = blocks[-1]
    layer = getattr(last, "norm1", None)
    if not isinstance(layer, torch.nn.Module):
        return None
    prefix = int(model.num_prefix_tokens)
    if hasattr(pe, "dynamic_feat_size"):  # the grid at this input size (timm's own rule, padding included)
        grid = tuple(int(g) for g in pe.dynamic_feat_size(size_hw))
    else:
        grid = tuple(int(g) for g in pe.grid_size)
    t_in = _probe(model, x, layer, want_input=True)
    if not torch.is_tensor(t_in) or t_in.ndim != 3:
        return Tap(None, None, "", f"{name}'s last block does not take a token sequence, so its layout is unknown")
    if t_in.shape[1] != prefix + grid[0] * grid[1]:
        return Tap(None, None, "", f"{name}'s last block takes {t_in.shape[1]} tokens, not its {prefix} prefix "
                   f"token(s) + a {grid[0]} x {grid[1]} patch grid, so its layout is unknown")
    reshape = TokenGridReshape(grid, prefix)
    layout = f"tokens: {prefix} prefix + {grid[0]} x {grid[1]} grid ({type(model).__name__}.blocks[-1].norm1)"
    verified = False
    if len(blocks) >= 2:  # the last block's input is the previous block's output: the model's own map there
        ref = _reference(model, x, len(blocks) - 2)
        if ref is not None:
            if not _close(reshape(t_in), ref):
                return Tap(None, None, "", f"{name}'s tokens do not match its own feature map as a {prefix} prefix + "
                           f"{grid[0]} x {grid[1]} grid, so its layout is unknown")
            verified = True
    return Tap(layer, reshape, layout, verified=verified)


def _candidates(t: torch.Tensor, chans: int, size_hw, reduction: int):
    """(layout, reshape) ways to read ``t`` as a map of ``chans`` channels, the model's own format first."""
    out: list[tuple[str, Callable | None]] = []
    if t.ndim == 4:
        if t.shape[1] == chans:
            out.append(("NCHW", None))
        if t.shape[3] == chans:
            out.append(("NHWC", ChannelsLast()))
    elif t.ndim == 3 and t.shape[2] == chans:
        for grid, p in _grid_candidates(t.shape[1], size_hw, reduction):
            out.append((f"tokens: {p} prefix + {grid[0]} x {grid[1]} grid", TokenGridReshape(grid, p)))
    return out


def _matching(t, ref, cands):
    for fmt, rs in cands:
        if _close(rs(t) if rs is not None else t, ref):
            return fmt, rs
    return None


def _search(model, x, ref, size_hw) -> tuple[str, torch.nn.Module, str, Callable | None] | None:
    """The last module (the outermost of those returning the same tensor) whose output, read in some
    layout, is the model's own map ``ref``: for models whose ``feature_info`` names no module."""
    names = {id(m): n for n, m in model.named_modules()}
    seen: list = []
    hooks = [m.register_forward_hook(lambda mod, i, o: seen.append((mod, o))) for m in model.modules() if m is not model]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    chans, gh = int(ref.shape[1]), int(ref.shape[2])
    reduction = max(1, round(size_hw[0] / gh))
    hits = []
    for mod, t in seen:
        if torch.is_tensor(t) and t.shape[0] == 1 and t.ndim in (3, 4) and t.numel() >= ref.numel():
            m = _matching(t, ref, _candidates(t, chans, size_hw, reduction))
            if m is not None:
                hits.append((names[id(mod)], mod, m[0], m[1], t))
    if not hits:
        return None
    last = hits[-1][4]  # the last tensor produced that is the map; of its producers, the outermost module
    same = [h for h in hits if h[4] is last]
    return min(same, key=lambda h: h[0].count("."))[:4]


def _stage_tap(model, name: str, x, size_hw) -> Tap | None:
    """The last ``feature_info`` stage, read as NCHW, NHWC or a token grid: whichever equals the model's
    own NCHW map of that stage (``forward_intermediates``); where feature_info names no module, the last
    module whose output equals that map."""
    info = getattr(model, "feature_info", None)
    if not info:
        return None
    last = info[-1]
    chans, reduction = int(last.get("num_chs", 0)), int(last.get("reduction", 32))
    ref = _reference(model, x, len(info) - 1)
    try:
        module_name = last["module"]
        layer = model.get_submodule(module_name)
    except Exception:  # noqa: BLE001 - feature_info names no module of the model
        layer = None
    if layer is not None:
        t = _probe(model, x, layer)
        cands = _candidates(t, chans, size_hw, reduction) if torch.is_tensor(t) else []
        if getattr(model, "output_fmt", "NCHW") == "NHWC":
            cands.reverse()
        if ref is None:
            if len(cands) == 1 and t.ndim == 4:
                fmt, rs = cands[0]
                return Tap(layer, rs, f"{fmt} ({module_name})")
            shape = tuple(t.shape) if torch.is_tensor(t) else type(t).__name__
            return Tap(None, None, "", f"{name}'s last stage ({module_name}, {shape}) could not be read as a map with "
                       "certainty and the model gives no feature map to check against, so its layout is unknown")
        m = _matching(t, ref, cands) if cands else None
        if m is not None:
            return Tap(layer, m[1], f"{m[0]} ({module_name})", verified=True)
    if ref is None:
        return None
    found = _search(model, x, ref, size_hw)
    if found is None:
        return Tap(None, None, "", f"no layer of {name} gives its own last feature map {tuple(ref.shape[1:])} under a "
                   "known layout (NCHW, NHWC or a token grid), so its layout is unknown")
    module_name, layer, fmt, rs = found
    return Tap(layer, rs, f"{fmt} ({module_name})", verified=True)


def derive_tap(model: torch.nn.Module, name: str, input_size_hw, fallback: Callable | None = None) -> Tap:
    """The CAM tap of a timm model at input size (h, w), checked on one probe input (see the module doc).

    ``fallback()`` gives a layer for models with neither a ViT layout nor ``feature_info`` (the last
    4-D feature map of a forward pass), taken as NCHW only when its channels are the head's
    (``num_features``)."""
    h, w = int(input_size_hw[0]), int(input_size_hw[1])
    p = next(model.parameters(), None)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, h, w, generator=g).to(p.device if p is not None else "cpu")
    was = model.training
    model.eval()
    try:
        tap = _vit_tap(model, name, x, (h, w))
        if tap is None or tap.refusal:  # not a ViT, or one whose blocks hold no prefix + grid (CaiT)
            tap = _stage_tap(model, name, x, (h, w)) or tap
    finally:
        model.train(was)
    if tap is not None:
        return tap
    if fallback is not None:  # no feature_info and no ViT layout: the last NCHW map, if its channels are the head's
        try:
            layer = fallback()
        except ValueError:
            layer = None
        t = _probe(model, x, layer) if layer is not None else None
        if torch.is_tensor(t) and t.ndim == 4 and t.shape[1] == getattr(model, "num_features", -1):
            return Tap(layer, None, "NCHW (the last spatial feature map, with the head's channel count)")
    return Tap(None, None, "", f"{name} has no spatial feature map whose layout could be determined")
