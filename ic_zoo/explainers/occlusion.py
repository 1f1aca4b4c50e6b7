"""Occlusion by inpainting: the model's own answer to "what do you need?".

The model-input image is split into superpixels (SLIC, which follows colour edges, so parts of an
object become whole segments); each segment is removed by inpainting (not painted black: a black patch
is itself evidence) and the edited images are classified in batches. The map of class c at a pixel is
the drop of p(c) when that pixel's segment is removed, averaged over three segmentations (60, 120 and
200 superpixels) so that no single segmentation's boundaries decide. It is the automatic version of what
a person does with the brush, so it can be set beside human edits and CAMs.

Two explainers, the same map when nothing is pruned:

* ``occlusion-exhaustive``, the reference: every segment of the three segmentations is removed (about
  380 forward passes at 224 px).
* ``occlusion``, coarse to fine, over four levels: 16 coarse regions, then the 60, 120 and 200
  segmentations; each segment's parent is the segment of the level above that covers most of it. The
  coarse regions are all removed. At each finer level, only the children of the regions that matter are
  removed, hottest parent first, in small batches. How much a region matters is how far its removal
  moves the class's log-odds, either way (a saturated p = 0.9999 still ranks its regions, and inpainting
  a large region can raise p while part of it carries the class), relative to the region of its level
  that matters most; at least 0.05% of it is refined (a ViT can be moved more by one small segment than by
  the large region around it, so the bar is low: at 0.2% the single-6c ViT's deletion AUC was 0.06 worse
  than the exhaustive map's, at 0.05% equal, with 54% of its passes). A segment never removed keeps its
  parent's value. It
  stops when nothing is left to refine or when the next batch would go past its budget of forward passes.
  The budget is a number of floating-point operations (``gflop``, 560 GFLOP-equivalents by default),
  divided by what one removed region costs (``pass_cost``: the forward pass's FLOPs, counted once by
  torch's FlopCounterMode on a probe input, plus 60 kFLOP per input pixel for what does not scale with
  them): ResNet-50 at 224 px gets 50 passes (about 2 s on 2 idle CPU cores), EfficientNet-Lite0 148
  (about 2 s), a Flower2D model about 1,900 (never binding). So the map is a function of the image, the model and the
  settings, never of how busy the machine was or how fast it is (the same map on a laptop, a busy server
  or a GPU); the time it took is reported (``last_seconds``), not used. ``gflop=None``: no budget. Passes
  go where the class is decided: on Flower2D the background is skipped (about a quarter of the
  exhaustive passes).

Each segment is inpainted once per image and shared by every model and class that asks for it (a model
that sees the same pixels reuses the inpainted images). On Flower2D the three scales together beat any
single one (top-|M| IoU of the double-12c ResNet: 0.90 with 120 segments alone, 0.95 averaged; see
benchmarks/explain_bench.json).
"""
from __future__ import annotations

import contextlib
import hashlib
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..registry import register
from ._base import ExplainOutput, Explainer, Progress, normalize_like_library, preview_of

SCALES = (60, 120, 200)


def segments(image: np.ndarray, n_segments: int = 60, compactness: float = 10.0) -> np.ndarray:
    from skimage.segmentation import slic

    return slic(image, n_segments=n_segments, compactness=compactness, start_label=0, channel_axis=-1)


class _Cache:
    """Segmentations of model-input images with their inpainted segments, shared by every model that
    sees the same pixels."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self.data: OrderedDict = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key, make):
        with self.lock:
            if key in self.data:
                self.data.move_to_end(key)
                return self.data[key]
        value = make()
        with self.lock:
            value = self.data.setdefault(key, value)
            self._trim()
        return value

    def resize(self, size: int) -> None:
        with self.lock:
            self.size = size
            self._trim()

    def _trim(self) -> None:  # oldest first, the lock held
        while len(self.data) > self.size:
            self.data.popitem(last=False)


_CACHE = _Cache(size=16)


@contextlib.contextmanager
def cache_size(n: int):
    """Keep at least ``n`` segmentations and subset stacks while inside (a benchmark that explains the
    same images with several models reuses their inpaintings); the usual size again after."""
    old = _CACHE.size
    _CACHE.resize(max(old, int(n)))
    try:
        yield
    finally:
        _CACHE.resize(old)


class Segmentation:
    """One SLIC segmentation of one image; each segment inpainted on first request and kept."""

    def __init__(self, image: np.ndarray, n_segments: int, inpainter: str, dilate: int) -> None:
        self.image, self.inpainter, self.dilate = image, inpainter, dilate
        self.seg = segments(image, n_segments)
        self.ids = np.unique(self.seg)
        self._done: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()
        self._fill = None  # the inpainter, looked up on first use

    @property
    def fill(self):
        if self._fill is None:
            from ..session import get_inpainter

            self._fill = get_inpainter(self.inpainter)
        return self._fill

    def remove_many(self, masks, progress: Progress | None = None, what: str = "region") -> list:
        """The image with each mask (dilated by ``dilate`` px) removed by the inpainter, in order, several
        at once on a thread-safe inpainter (``Inpainter.inpaint_many``); a mask the inpainter refuses gives
        its MaskError in its place."""
        import cv2

        masks = list(masks)
        if self.dilate:
            k = np.ones((2 * self.dilate + 1, 2 * self.dilate + 1), np.uint8)
            masks = [cv2.dilate(m.astype(np.uint8), k) > 0 for m in masks]
        step = max(8, len(masks) // 16)
        out: list = []
        for i in range(0, len(masks), step):
            if progress is not None:
                progress(i / max(len(masks), 1), f"inpainting {what} {i + 1}/{len(masks)}")
            out += self.fill.inpaint_many(self.image, masks[i:i + step])
        return out

    def inpainted(self, ids: Sequence[int], progress: Progress | None = None) -> np.ndarray:
        from ..errors import MaskError

        with self._lock:
            todo = [int(s) for s in ids if int(s) not in self._done]
            if todo:
                for s, im in zip(todo, self.remove_many((self.seg == s for s in todo), progress, "superpixel")):
                    if isinstance(im, MaskError):
                        raise im
                    self._done[s] = im
            return np.stack([self._done[int(s)] for s in ids])


def segmentation(image: np.ndarray, n_segments: int, inpainter: str, dilate: int = 1) -> Segmentation:
    key = (hashlib.sha1(image.tobytes()).hexdigest(), image.shape, int(n_segments), inpainter, int(dilate))
    return _CACHE.get(key, lambda: Segmentation(image, int(n_segments), inpainter, int(dilate)))


def occluded_batch(image: np.ndarray, n_segments: int, inpainter: str, dilate: int = 1,
                   progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(segment map, stack of images with one segment inpainted each), cached by image content."""
    s = segmentation(image, n_segments, inpainter, dilate)
    return s.seg, s.inpainted(s.ids, progress)


#: the fast occlusion's budget, in GFLOP-equivalents (pass_cost): calibrated on 2 idle CPU cores, where a
#: pass took 38 ms on ResNet-50 (8.2 GFLOP) and 13 ms on EfficientNet-Lite0 (0.77 GFLOP) at 224 px, i.e.
#: about 3.4 ms per GFLOP plus 10 ms: 60 kFLOP per input pixel
GFLOP_BUDGET = 560.0
PIXEL_FLOP = 60_000.0
_FLOPS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_flops_lock = threading.Lock()


def forward_flops(clf, x) -> float:
    """Floating-point operations of one forward pass of ``clf`` on one input of ``x``'s shape (counted
    once per model and shape by torch's FlopCounterMode, which counts the matrix products and
    convolutions: what a pass costs, whatever the machine)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    shape = tuple(x.shape[1:])
    with _flops_lock:
        known = _FLOPS.setdefault(clf, {})
        if shape in known:
            return known[shape]
    with clf.lock, torch.inference_mode():
        counter = FlopCounterMode(display=False)
        with counter:
            clf.forward(torch.zeros((1,) + shape, dtype=x.dtype, device=x.device))
    flops = float(counter.get_total_flops())
    with _flops_lock:
        _FLOPS.setdefault(clf, {})[shape] = flops
    return flops


def pass_cost(clf, x) -> float:
    """What one removed region costs, in FLOP-equivalents: the forward pass's FLOPs plus a per-pixel term
    for what does not scale with them (inpainting the region, moving the image in and out of the model,
    memory-bound layers): PIXEL_FLOP per input pixel. Both are properties of the model and the input
    size, so the budget in passes is the same on every machine."""
    return forward_flops(clf, x) + PIXEL_FLOP * float(np.prod(x.shape[-2:]))


def _drops(clf, images: np.ndarray, classes: list[int], p0: np.ndarray, batch: int) -> np.ndarray:
    """p0 - p(class) for each image: (len(images), k)."""
    import torch

    probs = []
    with clf.lock, torch.inference_mode():
        for i in range(0, len(images), batch):
            xb = clf.image_to_tensor(images[i:i + batch])
            probs.append(torch.softmax(clf.forward(xb).float(), 1)[:, classes].cpu().numpy())
    return p0[None, :] - np.concatenate(probs, 0)


def _p0(clf, x, classes) -> np.ndarray:
    import torch

    with clf.lock, torch.inference_mode():
        return torch.softmax(clf.forward(x).float(), 1)[0, classes].cpu().numpy()


def _paint(seg: np.ndarray, ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(k, h, w): each segment's value (values[i] for segment ids[i])."""
    lut = np.zeros((int(seg.max()) + 1, values.shape[1]), np.float32)
    lut[ids] = values
    return np.moveaxis(lut[seg], -1, 0)


@register("explainer", "occlusion-exhaustive", requires=("skimage", "cv2"), cost="slow",
          description="occlusion by inpainting, exhaustive (the reference): every superpixel of three SLIC "
                      "scales removed, the drop of p(class); about 380 forward passes")
class ExhaustiveOcclusion(Explainer):
    def __init__(self, n_segments: Sequence[int] = SCALES, inpainter: str = "telea", dilate: int = 1,
                 batch: int = 32) -> None:
        self.n_segments = tuple(int(n) for n in ([n_segments] if isinstance(n_segments, int) else n_segments))
        self.inpainter, self.dilate, self.batch = inpainter, dilate, batch

    def supports(self, clf) -> str | None:
        return None

    def explain(self, clf, x, classes: Sequence[int], progress: Progress | None = None) -> ExplainOutput:
        classes = [int(c) for c in classes]
        image = clf.tensor_to_image(x)
        p0 = _p0(clf, x, classes)
        total = np.zeros((len(classes),) + image.shape[:2], np.float32)
        for s_i, n in enumerate(self.n_segments):
            def sub(f, msg, s_i=s_i):
                if progress is not None:
                    progress((s_i + 0.8 * f) / len(self.n_segments), f"{n} superpixels: {msg}")

            seg, batch = occluded_batch(image, n, self.inpainter, self.dilate, sub)
            drop = _drops(clf, batch, classes, p0, self.batch)
            sub(1.0, "classified the occluded images")
            total += _paint(seg, np.unique(seg), drop)
        if progress is not None:
            progress(1.0, "done")
        raw = np.maximum(total / len(self.n_segments), 0).astype(np.float32)
        return ExplainOutput(raw, normalize_like_library([raw], (x.shape[-1], x.shape[-2])))


@register("explainer", "occlusion", requires=("skimage", "cv2"), cost="slow",
          description="occlusion by inpainting, coarse to fine: superpixels removed only inside the coarse "
                      "regions that move p(class), hottest first, within a budget of forward passes (about "
                      "2.5 s for ResNet-50 on 2 CPU cores; the same map on any machine; occlusion-exhaustive is the "
                      "reference)")
class Occlusion(Explainer):
    """Coarse-to-fine occlusion (see the module docstring). ``coarse``: regions of the first pass;
    ``n_segments``: the segmentations whose average is the map, coarse to fine; ``min_share``: a region
    is refined when it matters at least this much relative to the one of its level that matters most;
    ``gflop``: the budget of forward passes, in GFLOP (None: refine every such region; the coarse pass is
    always made); ``batch``: segments per forward batch while refining."""

    def __init__(self, coarse: int = 16, n_segments: Sequence[int] = SCALES, min_share: float = 0.0005,
                 gflop: float | None = GFLOP_BUDGET, inpainter: str = "telea", dilate: int = 1, batch: int = 8) -> None:
        self.coarse, self.n_segments = int(coarse), tuple(int(n) for n in n_segments)
        self.min_share, self.gflop = float(min_share), gflop
        self.inpainter, self.dilate, self.batch = inpainter, int(dilate), int(batch)
        self.last_passes = 0  # forward passes of the last call, the first pass included (benchmarks read it)
        self.last_budget: int | None = None  # the pass budget of the last call (None: no budget)
        self.last_seconds = 0.0  # how long the last call took: reported, never used to decide

    def supports(self, clf) -> str | None:
        return None

    def explain(self, clf, x, classes: Sequence[int], progress: Progress | None = None) -> ExplainOutput:
        """The map after every level within the budget. A progress with a ``preview`` (``preview_of``) is
        shown the coarse map at once and the map after each finer level as it comes (``refine``)."""
        show = preview_of(progress)
        out = None
        for out in self.refine(clf, x, classes, progress, steps=show is not None):
            if not out.final:
                show(out.image, out.maps.raw)
        return out.maps

    def refine(self, clf, x, classes: Sequence[int], progress: Progress | None = None, steps: bool = True):
        """The map as it is refined: a ``Refined`` after the coarse pass, after each finer level, and last the
        map ``explain`` returns (``final``), the same whatever was done with the earlier ones. A level not yet
        reached takes the values of the one above it (as when the budget stops the refinement). ``steps=False``:
        the final map alone (nobody looks at the others: they are not painted)."""
        t0 = time.perf_counter()
        classes = [int(c) for c in classes]
        image = clf.tensor_to_image(x)
        p0 = _p0(clf, x, classes)
        shown = [0.0]

        def report(f, msg):
            shown[0] = max(shown[0], min(f, 0.99))  # never backwards
            if progress is not None:
                progress(shown[0], msg)

        report(0.0, "segmenting")
        budget = None if self.gflop is None else int(self.gflop * 1e9 // pass_cost(clf, x))
        self.last_budget = budget
        coarse = segmentation(image, self.coarse, self.inpainter, self.dilate)
        scales = [segmentation(image, n, self.inpainter, self.dilate) for n in self.n_segments]
        c_drop = _drops(clf, coarse.inpainted(coarse.ids), classes, p0, 32)  # (n_coarse, k)
        passes = len(coarse.ids)
        # levels, coarse to fine: the coarse regions, then the three segmentations; each segment's parent is
        # the segment of the level above that covers most of it
        levels = [coarse] + scales
        parent = [None]
        for up, s in zip(levels, levels[1:]):
            counts = np.zeros((int(s.seg.max()) + 1, int(up.seg.max()) + 1), np.int64)
            np.add.at(counts, (s.seg.ravel(), up.seg.ravel()), 1)
            col = {int(c): i for i, c in enumerate(up.ids)}
            parent.append(np.array([col[int(c)] for c in counts[s.ids].argmax(1)]))
        values = [c_drop]
        removed = [np.ones(len(coarse.ids), bool)]
        size = (x.shape[-1], x.shape[-2])

        def known(vals, final=False, level="coarse") -> Refined:
            vals = list(vals)
            for rest in range(len(vals), len(levels)):  # the finer levels inherit what is known
                vals.append(vals[-1][parent[rest]])
            total = sum(_paint(s.seg, s.ids, v) for s, v in zip(scales, vals[1:]))
            raw = np.maximum(total / len(scales), 0).astype(np.float32)
            return Refined(ExplainOutput(raw, normalize_like_library([raw], size)), image, level, final)

        if steps:
            yield known(values)
        q0 = np.clip(p0, 1e-7, 1 - 1e-7)[None, :]
        stop = False
        for lv in range(1, len(levels)):
            s, up = levels[lv], values[lv - 1]
            # how much each removed region of the level above matters (see the module docstring)
            pc = np.clip(p0[None, :] - up, 1e-7, 1 - 1e-7)
            lo = np.abs(np.log(q0 / (1 - q0)) - np.log(pc / (1 - pc)))
            lo[~removed[lv - 1]] = 0
            share = (lo / np.maximum(lo.max(0, keepdims=True), 1e-12)).max(1)
            hot = [i for i in np.argsort(-share, kind="stable") if share[i] >= self.min_share and removed[lv - 1][i]]
            val = up[parent[lv]].copy()  # a segment never removed keeps its parent's value
            done = np.zeros(len(s.ids), bool)
            rows = np.concatenate([np.nonzero(parent[lv] == i)[0] for i in hot]) if hot else np.zeros(0, np.int64)
            for i in range(0, len(rows), self.batch):
                chunk = rows[i:i + self.batch]
                if budget is not None and passes + len(chunk) > budget:
                    stop = True  # the next batch would go past the budget
                    break
                val[chunk] = _drops(clf, s.inpainted(s.ids[chunk]), classes, p0, self.batch)
                done[chunk] = True
                passes += len(chunk)
                report((lv - 1 + (i + len(chunk)) / max(len(rows), 1)) / len(scales),
                       f"{passes} superpixels removed")
            values.append(val)
            removed.append(done)
            if stop:
                break
            if steps and lv < len(levels) - 1:
                yield known(values, level=f"{len(s.ids)} superpixels")
        self.last_passes = passes
        self.last_seconds = time.perf_counter() - t0
        final = known(values, final=True, level="final")
        if progress is not None:
            progress(1.0, "done")
        yield final


@dataclass
class Refined:
    """One step of the fast occlusion's refinement: the maps known so far, the model-input image they are of,
    the level just done (``coarse``, ``N superpixels`` or ``final``), and whether they are the final maps."""

    maps: ExplainOutput
    image: np.ndarray
    level: str
    final: bool


class _Coalitions:
    """Random superpixel subsets of one image at one scale, each removed together by inpainting, made on
    first request and kept (every model that sees the same pixels classifies the same images), with each
    model's probabilities of every class on them (a map of another class costs no forward pass)."""

    def __init__(self, s: Segmentation, samples: int, keep: float, seed: int) -> None:
        rng = np.random.default_rng([seed, len(s.ids)])
        self.kept = rng.random((samples, len(s.ids))) < keep  # (samples, segments): True = left in place
        self.s, self._images, self._lock = s, None, threading.Lock()
        self._probs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # classifier -> (n, C) softmax
        self._probs_lock = threading.Lock()

    def probs(self, clf, batch: int, progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(kept rows, softmax over every class of ``clf`` on each subset image): classified once per
        classifier and kept while both live (a copy with a randomised head is another classifier)."""
        import torch

        kept, ims = self.images(progress)
        with self._probs_lock:
            if clf not in self._probs:
                out = []
                with clf.lock, torch.inference_mode():
                    for j in range(0, len(ims), batch):
                        out.append(torch.softmax(clf.forward(clf.image_to_tensor(ims[j:j + batch])).float(), 1)
                                   .cpu().numpy())
                        if progress is not None:
                            done = min(j + batch, len(ims))
                            progress(1.0 + done / len(ims), f"classified {done}/{len(ims)}")
                self._probs[clf] = np.concatenate(out, 0)
            return kept, self._probs[clf]

    def images(self, progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(kept rows, images) of the subsets that leave enough of the image to fill from (a context
        inpainter refuses a near-full mask; those rare subsets are left out)."""
        from ..errors import MaskError

        with self._lock:
            if self._images is None:
                s = self.s
                pos = np.searchsorted(s.ids, s.seg)
                done = s.remove_many((~kept[pos] for kept in self.kept), progress, "subset")
                rows = [i for i, im in enumerate(done) if not isinstance(im, MaskError)]
                self._images = (self.kept[rows], np.stack([done[i] for i in rows]))
            return self._images


def coalitions(image: np.ndarray, n_segments: int, inpainter: str, samples: int, keep: float, seed: int,
               dilate: int = 1) -> _Coalitions:
    s = segmentation(image, n_segments, inpainter, dilate)
    key = ("subsets", hashlib.sha1(image.tobytes()).hexdigest(), image.shape, int(n_segments), inpainter,
           int(dilate), int(samples), float(keep), int(seed))
    return _CACHE.get(key, lambda: _Coalitions(s, int(samples), float(keep), int(seed)))


def ridge(kept: np.ndarray, p: np.ndarray, lam: float) -> np.ndarray:
    """Per segment, the ridge-regression weight of "left in place" on p(class): (segments, k)."""
    X = kept.astype(np.float64)
    X -= X.mean(0)
    y = p.astype(np.float64) - p.mean(0)
    return np.linalg.solve(X.T @ X + lam * np.eye(X.shape[1]), X.T @ y)


@register("explainer", "lime", requires=("skimage", "cv2"), cost="slow",
          description="LIME by inpainting (Ribeiro et al. 2016; removal by inpainting as in Agarwal & Nguyen "
                      "2020): per SLIC scale, 384 random subsets of superpixels (each removed with probability "
                      "0.7) removed together, p(class) fitted by ridge regression; about 1,150 forward passes, "
                      "inpainted once and shared by every model; another class of the same image is free")
class Lime(Explainer):
    """LIME over superpixels with removal by inpainting. For each of the three SLIC scales, ``samples``
    random subsets of the superpixels (each kept with probability ``keep``) are removed together by
    inpainting and classified; each superpixel's weight is its ridge-regression coefficient (penalty
    ``ridge``) of being left in place on p(class), and the map averages the three scales' painted
    weights (positive part). Unlike one-at-a-time occlusion, which underrates evidence repeated across
    parts (remove one of six petals and five still show the colour), every superpixel is judged against
    many backgrounds of others removed. Uniform subsets and no locality kernel: the regression is over
    the whole range of removals, as in KernelSHAP's sampling, not LIME's neighbourhood weighting. The
    subsets are drawn from a fixed seed, inpainted once per image and shared by every model and class;
    each model classifies them once, keeping every class's probability, so a map of another class of the
    same image needs no forward pass. 384 subsets per scale, not 512: the 25% fewer passes kept every
    accuracy target of the Flower2D benchmark (3 x 20 images; 256 did not: single-6c ViT pointing 0.87,
    double-12c ViT top-|M| IoU 0.74)."""

    def __init__(self, n_segments: Sequence[int] = SCALES, samples: int = 384, keep: float = 0.3,
                 ridge: float = 10.0, inpainter: str = "telea", seed: int = 0, dilate: int = 1,
                 batch: int = 32) -> None:
        from ..errors import InputError

        if int(samples) < 16 or not 0.05 <= float(keep) <= 0.95 or float(ridge) < 0:
            raise InputError("lime takes samples >= 16, keep between 0.05 and 0.95 and ridge >= 0.")
        self.n_segments = tuple(int(n) for n in n_segments)
        self.samples, self.keep, self.ridge = int(samples), float(keep), float(ridge)
        self.inpainter, self.seed, self.dilate, self.batch = inpainter, int(seed), int(dilate), int(batch)

    def supports(self, clf) -> str | None:
        return None

    def explain(self, clf, x, classes: Sequence[int], progress: Progress | None = None) -> ExplainOutput:
        classes = [int(c) for c in classes]
        image = clf.tensor_to_image(x)
        total = np.zeros((len(classes),) + image.shape[:2], np.float32)
        n = len(self.n_segments)
        for i, ns in enumerate(self.n_segments):
            def sub(f, msg, i=i, ns=ns, start=0.0, span=0.6):  # inpainting: the first 60% of a scale
                if progress is not None:
                    progress((i + start + span * min(f, 1.0)) / n, f"{ns} superpixels: {msg}")

            def both(f, msg, sub=sub):  # progress of the inpainting in [0, 1], of the forward passes in (1, 2]
                if f <= 1.0:
                    sub(f, msg)
                else:
                    sub(f - 1.0, msg, start=0.6, span=0.4)

            c = coalitions(image, ns, self.inpainter, self.samples, self.keep, self.seed, self.dilate)
            kept, probs = c.probs(clf, self.batch, both)
            w = ridge(kept, probs[:, classes], self.ridge)  # (segments, k)
            total += _paint(c.s.seg, c.s.ids, w.astype(np.float32))
        if progress is not None:
            progress(1.0, "done")
        raw = np.maximum(total / n, 0).astype(np.float32)
        return ExplainOutput(raw, normalize_like_library([raw], (x.shape[-1], x.shape[-2])))
