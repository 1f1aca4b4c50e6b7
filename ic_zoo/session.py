"""The one data flow, as a library object.

    image --> Edit(mask, inpainter) --> modified image
      |                                   |
      +--> Classifier.predict <-----------+     per model; the original's results are cached
                 |
                 +--> Explainer --> class maps on one shared scale, original vs modified, + difference

``Session`` holds the original image and a stack of edits (applied cumulatively, with undo / redo /
reset) and answers, for any number of classifiers: the top-k of both images, the tracked classes
(the original's top-k) with their probability in both, the change in percentage points, in logit and
in rank, and class maps for any class index. The app, the CLI, notebooks, study logging and the
benchmarks all call this.
"""
from __future__ import annotations

import itertools
import threading
import time
import warnings
from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .errors import ClassIndexError, ExplainerNotSupportedError, IcZooWarning, InputError, MaskError
from .explainers._base import is_blank
from .imageio import as_rgb_array, load_image, mask_from_array, resize_mask

_uid = itertools.count(1)
Progress = Callable[[float, str], None]


def get_classifier(name: str, pretrained: bool = True, device: str | None = None):
    """The process-wide classifier for ``name`` (loaded once, shared by every session)."""
    from .discovery import instance

    return instance("classifier", name, pretrained=pretrained, device=device)


def get_inpainter(name: str, **params):
    """The shared inpainter ``name`` with ``params``; a parameter it does not take, or a value it refuses,
    is an InputError with one sentence (not a TypeError or ValueError from its constructor)."""
    import inspect

    from .discovery import get_spec, instance

    spec = get_spec("inpainter", name)
    try:
        sig = inspect.signature(spec.factory)
    except (TypeError, ValueError):
        sig = None
    if sig is not None and not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        takes = [n for n, p in sig.parameters.items() if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        unknown = [k for k in params if k not in takes]
        if unknown:
            raise InputError(f"The inpainter '{name}' has no parameter {', '.join(repr(k) for k in unknown)}; "
                             f"it takes {', '.join(takes) or 'none'}.")
        for k, v in params.items():  # a number where its default is one (radius="x" was a bare TypeError)
            d = sig.parameters[k].default
            if isinstance(d, (int, float)) and not isinstance(d, bool) and (
                    isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating))):
                raise InputError(f"The inpainter '{name}' takes {k} as a number, not {v!r}.")
    try:
        return instance("inpainter", name, **params)
    except (ValueError, TypeError) as exc:
        raise InputError(f"The inpainter '{name}' cannot use {params}: {exc}.") from None


def _class_index(clf, name: str, c) -> int:
    """A class given as an index (any integer type) or by its label, as an index; one sentence otherwise."""
    if isinstance(c, str):
        if c in clf.labels:
            return clf.labels.index(c)
        if c.strip().lstrip("-").isdigit():
            return int(c)
        raise ClassIndexError(f"{name} has no class called {c!r}; give a class index (0..{clf.num_classes - 1}) "
                              "or a label it has.")
    if isinstance(c, bool) or not isinstance(c, (int, np.integer)):
        raise ClassIndexError(f"A class is an index (0..{clf.num_classes - 1}) or a label, not {c!r}.")
    return int(c)


def small_image_warning(shape) -> str | None:
    """The sentence for an image too small for its answers to mean much (None for one that is not)."""
    h, w = shape[:2]
    if min(h, w) < MIN_SIDE:
        return (f"The image is only {w}x{h} pixels; every model scales it up to its input size, so its answers "
                "say little about the picture.")
    return None


def get_explainer(name: str):
    from .discovery import instance

    return instance("explainer", name)


#: Strokes that can be undone. Each keeps the pixels it changed (its patch: a stroke's area, not an image);
#: the session keeps at most three whole images besides the original (the current one, the one before and
#: the base of the undo depth) and rebuilds any other from the patches when it is needed (exactly: the
#: patch is every pixel that changed). Older strokes keep their record and their mask, bit-packed (1/24 of
#: the image), not their pixels. Reset always works.
MAX_UNDO = 20
#: Images with a shorter side than this are classified with a warning (models see them upsampled).
MIN_SIDE = 16
#: Strokes one image may take (about 55 KB each at 768 x 576 once retired); then Reset or a new image.
MAX_EDITS = 200
#: Where a map is blank: at most this many other interactive explainers are named as giving one, out of at
#: most ``MAX_ALTERNATIVE_TRIES`` tried (each one pass on the image; nothing is tried for a map that is not blank).
MAX_ALTERNATIVES = 3
MAX_ALTERNATIVE_TRIES = 8


class Edit:
    """One stroke: its mask (bit-packed, 1/24 of the image), the inpainter that filled it, and what it
    changed: the pixels that differ from the image before it (``patch``), from which the session rebuilds
    the image after it on demand. ``image`` is that image while the session keeps it (the current image,
    the one before, and the base of the undo depth); a stroke older than the undo depth (``MAX_UNDO``) is
    retired: it keeps its record and mask, not its pixels."""

    def __init__(self, mask: np.ndarray, inpainter: str, params: dict, image: np.ndarray | None, seconds: float,
                 uid: int | None = None, patch: tuple | None = None) -> None:
        self._shape = tuple(mask.shape)
        self._packed = np.packbits(np.asarray(mask, bool).ravel())
        self.inpainter, self.params, self.image, self.seconds = inpainter, params, image, seconds
        self.uid = uid if uid is not None else next(_uid)
        self._area = int(np.count_nonzero(mask))
        self.patch = patch  # (flat pixel indices, their values) where the image differs from the one before
        self.retired = False

    @staticmethod
    def diff(before: np.ndarray, after: np.ndarray) -> tuple:
        """The pixels of ``after`` that differ from ``before``: (flat indices, values), exact for any inpainter."""
        changed = np.flatnonzero((after != before).reshape(-1, after.shape[-1]).any(axis=1)).astype(np.uint32)
        values = after.reshape(-1, after.shape[-1])[changed]
        changed.setflags(write=False)
        values.setflags(write=False)
        return changed, values

    def rebuild(self, before: np.ndarray) -> np.ndarray:
        """The image after this stroke, from the image before it (``patch`` laid over a copy)."""
        out = before.copy()
        idx, values = self.patch
        out.reshape(-1, out.shape[-1])[idx] = values
        out.setflags(write=False)
        return out

    @property
    def mask(self) -> np.ndarray:
        m = np.unpackbits(self._packed, count=self._shape[0] * self._shape[1]).reshape(self._shape).view(bool)
        m.setflags(write=False)
        return m

    def retire(self) -> None:
        """Past the undo depth: drop the pixels, keep the record and the mask."""
        self.image = self.patch = None
        self.retired = True

    def snapshot(self) -> tuple:
        """What a session change can alter in this stroke (references only), for ``restore``."""
        return self.image, self.patch, self.retired

    def restore(self, snap: tuple) -> None:
        self.image, self.patch, self.retired = snap

    @property
    def area(self) -> int:
        return self._area

    @property
    def bbox(self) -> list[int]:
        """[x0, y0, x1, y1) of the mask."""
        ys, xs = np.nonzero(self.mask)
        return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]

    def to_dict(self) -> dict:
        return {"uid": self.uid, "inpainter": self.inpainter, "params": self.params, "mask_pixels": self.area,
                "seconds": round(self.seconds, 4)}

    def summary(self) -> dict:
        """What the app's API and the study log report of a stroke."""
        return {"inpainter": self.inpainter, "params": self.params, "mask_pixels": self.area, "bbox": self.bbox,
                "inpaint_ms": round(1000 * self.seconds, 2)}


@dataclass
class TrackedClass:
    """A class followed from the original to the modified image. Deltas are modified - original;
    ranks are 1-based, so a positive ``delta_rank`` means the class fell in the ranking."""

    index: int
    label: str
    prob_original: float
    prob_modified: float
    logit_original: float
    logit_modified: float
    rank_original: int
    rank_modified: int

    @property
    def delta_pp(self) -> float:
        return 100.0 * (self.prob_modified - self.prob_original)

    @property
    def delta_logit(self) -> float:
        return self.logit_modified - self.logit_original

    @property
    def delta_rank(self) -> int:
        return self.rank_modified - self.rank_original

    def to_dict(self) -> dict:
        return {"index": self.index, "label": self.label, "prob_original": self.prob_original,
                "prob_modified": self.prob_modified, "delta_pp": self.delta_pp,
                "logit_original": self.logit_original, "logit_modified": self.logit_modified,
                "delta_logit": self.delta_logit, "rank_original": self.rank_original,
                "rank_modified": self.rank_modified, "delta_rank": self.delta_rank}


@dataclass
class ClassMaps:
    """Class maps of one class for the original and the modified image, on one shared scale.

    ``raw_*`` are at the model's input resolution in the explainer's own units; ``original`` /
    ``modified`` are divided by the larger of the two maxima (so they compare) and placed in image
    coordinates (zero outside the model's input crop ``box``); ``difference`` = modified - original in
    [-1, 1]. ``*_normalized`` are min-max per map, as pytorch-grad-cam returns them.

    ``blank`` (``blank_original``, ``blank_modified``): a map with no positive evidence, zero everywhere
    (``explainers._base.is_blank``), which is no answer; ``alternatives`` then names the interactive explainers
    whose map of this class is not blank on those images (None: not looked for).
    """

    model: str
    explainer: str
    index: int
    label: str
    raw_original: np.ndarray
    raw_modified: np.ndarray
    original_normalized: np.ndarray
    modified_normalized: np.ndarray
    box: tuple[float, float, float, float]
    image_shape: tuple[int, int]
    alternatives: list[str] | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def scale(self) -> float:
        return float(max(self.raw_original.max(), self.raw_modified.max(), 1e-12))

    @property
    def blank_original(self) -> bool:
        return is_blank(self.raw_original)

    @property
    def blank_modified(self) -> bool:
        return is_blank(self.raw_modified)

    @property
    def blank(self) -> bool:
        """True when the map of either image has no positive evidence."""
        return self.blank_original or self.blank_modified

    def _image(self, which: str) -> np.ndarray:
        if which not in self._cache:
            from .classifiers._base import paste_maps

            raw = self.raw_original if which == "original" else self.raw_modified
            self._cache[which] = paste_maps((raw / self.scale)[None], self.box, self.image_shape)[0]
        return self._cache[which]

    def compact(self) -> "ClassMaps":
        """Let go of the maps at the image's size (rebuilt from the raw maps when next asked: a few ms;
        held, they are 2 x 2.4 MB at 768 x 768); returns self."""
        self._cache.clear()
        return self

    @property
    def original(self) -> np.ndarray:
        return self._image("original")

    @property
    def modified(self) -> np.ndarray:
        return self._image("modified")

    @property
    def difference(self) -> np.ndarray:
        return self.modified - self.original

    def mass_in(self, mask: np.ndarray, which: str = "original") -> float:
        """Fraction of the map's mass inside ``mask`` (image coordinates)."""
        m = self.original if which == "original" else self.modified
        total = float(m.sum(dtype=np.float64))  # float32 sums in two orders put a part above its whole
        return min(1.0, float(m[mask].sum(dtype=np.float64)) / total) if total > 0 else 0.0

    def to_dict(self) -> dict:
        out = {"index": self.index, "label": self.label, "explainer": self.explainer, "scale": self.scale,
               "max_original": float(self.raw_original.max()), "max_modified": float(self.raw_modified.max()),
               "blank": self.blank, "blank_original": self.blank_original, "blank_modified": self.blank_modified}
        if self.blank and self.alternatives is not None:
            out["blank_alternatives"] = list(self.alternatives)
        return out


@dataclass
class ModelResult:
    model: str
    original: list  # list[ClassScore]
    modified: list
    tracked: list[TrackedClass]
    maps: dict[int, ClassMaps]
    box: tuple[float, float, float, float]
    timings: dict[str, float]
    note: str | None = None  # e.g. why no maps (explainer unsupported)
    probs_original: np.ndarray | None = field(default=None, repr=False)  # all classes
    probs_modified: np.ndarray | None = field(default=None, repr=False)

    @property
    def top1_changed(self) -> bool:
        return self.original[0].index != self.modified[0].index

    def to_dict(self, k: int | None = None) -> dict:
        k = k or len(self.original)
        return {
            "original": {"top5": [c.to_dict() for c in self.original[:k]]},
            "modified": {"top5": [c.to_dict() for c in self.modified[:k]]},
            "tracked": [t.to_dict() for t in self.tracked],
            "top1_changed": self.top1_changed,
            "input_box": [round(v, 2) for v in self.box],
            "maps": {str(i): m.to_dict() for i, m in self.maps.items()},
            "timings_ms": {n: round(1000 * v, 2) for n, v in self.timings.items()},
            **({"note": self.note} if self.note else {}),
        }


@dataclass
class EditResult:
    models: dict[str, ModelResult]
    explainer: str | None
    n_edits: int
    seconds: float

    def to_dict(self) -> dict:
        return {"models": {k: v.to_dict() for k, v in self.models.items()}, "explainer": self.explainer,
                "n_edits": self.n_edits, "seconds": round(self.seconds, 4)}


@dataclass
class CachedResult:
    """What a session computed for one model on one image version: the model input, the prediction, the
    explainer's tapped run (if any), the class maps and the trust scores."""

    x: Any
    prediction: Any
    run: Any = None
    run_explainer: str | None = None
    maps: dict = field(default_factory=dict)  # (explainer, class) -> (raw, normalized)
    trust: dict = field(default_factory=dict)  # (explainer, class, inpainter, n_random) -> TrustScore


class ResultCache(Mapping):
    """A session's results per (model, image version) (:class:`CachedResult`), read like a dict.

    Invalidation rules:

    * An image version never changes (a stroke, an undo or a redo makes or returns to another version), so
      an entry is never stale: nothing is invalidated by an edit, only bounded.
    * After every edit, undo, redo and reset (``Session._prune`` calls :meth:`bound`): the entries of
      versions no longer on the edit or redo stacks are dropped whole; the original (version 0) and the
      current version keep everything (input, run, maps, trust); the version before the current one keeps
      its prediction, maps and trust scores (the stroke effect compares them) but not its input and run;
      every other version keeps only its prediction (a few KB per model, for the history plot).
    * What was dropped is recomputed when asked for (the version's image is rebuilt from the patches).
    * An entry's run is the last interactive explainer's: asking for another explainer's maps by its run
      replaces the run, keeping the maps and trust scores already computed.
    * A pickled session (ZeroGPU's worker) arrives with an empty cache.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[str, int], CachedResult] = {}

    def __getitem__(self, key: tuple[str, int]) -> CachedResult:
        return self._entries[key]

    def __iter__(self):
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, name: str, version: int, entry: CachedResult) -> CachedResult:
        self._entries[(name, version)] = entry
        return entry

    def bound(self, live: set[int], current: int, before: int) -> None:
        """Apply the rules above: ``live``, the versions on the stacks; ``current`` and ``before``, the
        current version and the one before it."""
        for key in list(self._entries):
            st = self._entries[key]
            if key[1] not in live:
                del self._entries[key]
            elif key[1] not in (0, current, before) and (st.x is not None or st.maps or st.trust):
                self._entries[key] = CachedResult(None, st.prediction)
            elif key[1] == before and key[1] not in (0, current) and st.x is not None:
                self._entries[key] = CachedResult(None, st.prediction, maps=st.maps, trust=st.trust)


class Session:
    """An original image, a stack of edits, and cached per-model results."""

    def __init__(self, image, *, pretrained: bool = True, device: str | None = None, k: int = 5,
                 max_pixels: int | None = None) -> None:
        #: what the user should know about this image (also issued as IcZooWarning): tiny, NaN pixels
        self.warnings: list[str] = []
        if image is None or isinstance(image, (bool, int, float, dict, list, tuple)):
            raise InputError(f"A Session needs an image (a file path, a PIL image or an H x W x 3 array), not "
                             f"{type(image).__name__}.")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InputError(f"k (how many top classes to show) must be a whole number of at least 1, not {k!r}.")
        if isinstance(image, np.ndarray):
            raw = np.asarray(image)
            if np.issubdtype(raw.dtype, np.floating) and not np.isfinite(raw).all():
                bad = int((~np.isfinite(raw)).any(axis=-1).sum() if raw.ndim == 3 else (~np.isfinite(raw)).sum())
                self.warnings.append(f"{bad} of the image's {raw.shape[0] * raw.shape[1]} pixels are NaN or "
                                     "infinite and were read as black; the models' answers are about that.")
            self.original = as_rgb_array(image, max_pixels)
        else:
            self.original = load_image(image, max_pixels=max_pixels)
        self.original.setflags(write=False)
        small = small_image_warning(self.original.shape)
        if small:
            self.warnings.append(small)
        for msg in self.warnings:
            warnings.warn(msg, IcZooWarning, stacklevel=2)
        self.pretrained = pretrained
        self.device = device
        self.k = k
        self._edits: list[Edit] = []
        self._redo: list[Edit] = []
        self._lock = threading.RLock()
        #: what was computed per (model, image version); its docstring states when entries go
        self.cache = ResultCache()
        self._segments: tuple | None = None  # (key, labels) of the current image's superpixels

    # -- pickling (ZeroGPU runs each model call in a forked worker: the state crosses by pickle) ----
    def __getstate__(self) -> dict:
        """Everything but the lock and the per-model caches (torch tensors, autograd runs): those are
        recomputed on the other side."""
        with self._lock:
            state = dict(self.__dict__)
        state.pop("_lock", None)
        state["cache"] = ResultCache()
        state["_segments"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        global _uid
        self.__dict__.update(state)
        self._lock = threading.RLock()
        uids = [e.uid for e in self._edits + self._redo]
        if uids and next(_uid) <= max(uids):  # edits made in another process: keep uids unique here
            _uid = itertools.count(max(uids) + 1)

    # -- edits ---------------------------------------------------------------------------------
    @property
    def edits(self) -> list[Edit]:
        return list(self._edits)

    @property
    def can_undo(self) -> bool:
        """False with nothing to undo, and past the undo depth (``MAX_UNDO``): the image before the top
        stroke is no longer kept."""
        return len(self._edits) == 1 or (len(self._edits) > 1 and not self._edits[-2].retired)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def modified(self) -> np.ndarray:
        if not self._edits:
            return self.original
        top = self._edits[-1]
        if top.image is None:  # kept by _prune; rebuilt here only for a session changed outside it
            top.image = self._image_of(top.uid)
        return top.image

    @property
    def version(self) -> int:
        """0 for the original; otherwise the uid of the top edit (changes on apply / undo / redo)."""
        return self._edits[-1].uid if self._edits else 0

    @property
    def combined_mask(self) -> np.ndarray:
        m = np.zeros(self.original.shape[:2], bool)
        for e in self._edits:
            m |= e.mask
        return m

    def _as_mask(self, mask) -> np.ndarray:
        if mask is None:
            raise MaskError("no mask was given.")
        if isinstance(mask, (list, tuple)):
            try:
                mask = np.asarray(mask)
            except ValueError:  # ragged rows
                mask = np.asarray([], dtype=object)
            if mask.dtype == object or mask.ndim != 2:
                raise MaskError("a mask given as a list must be a rectangular H x W grid of booleans or 0/1.")
        if not isinstance(mask, np.ndarray):
            from .imageio import load_mask

            return load_mask(mask, self.original.shape[:2])
        m = mask_from_array(mask)
        if m.ndim != 2:
            raise MaskError(f"a mask must be two-dimensional, not {m.shape}.")
        if m.shape != self.original.shape[:2]:
            warnings.warn(f"mask is {m.shape[1]}x{m.shape[0]} but the image is {self.original.shape[1]}x"
                          f"{self.original.shape[0]}; resizing the mask to fit", stacklevel=3)
            m = resize_mask(m, self.original.shape[:2])
        return m

    def apply(self, mask, inpainter: str = "telea", **params) -> Edit | None:
        """Remove the masked region of the current image with ``inpainter``; an empty mask is a no-op
        (returns None). Clears the redo stack."""
        m = self._as_mask(mask)
        if not m.any():
            return None
        if len(self._edits) >= MAX_EDITS:
            raise InputError(f"This image already has {MAX_EDITS} strokes, the most one session keeps; press "
                             "Reset (or load the image again) to go on.")
        filler = get_inpainter(inpainter, **params)
        with self._lock:
            t0 = time.perf_counter()
            before = self.modified
            out = filler.inpaint(before, m)
            seconds = time.perf_counter() - t0
            out.setflags(write=False)
            edit = Edit(m, inpainter, dict(params), out, seconds, patch=Edit.diff(before, out))
            self._edits.append(edit)
            self._redo.clear()
            self._prune()
            return edit

    def undo(self) -> bool:
        with self._lock:
            if not self.can_undo:
                return False
            self._redo.append(self._edits.pop())
            self._prune()
            return True

    def redo(self) -> bool:
        with self._lock:
            if not self._redo:
                return False
            self._edits.append(self._redo.pop())
            self._prune()
            return True

    def reset(self) -> None:
        with self._lock:
            self._edits.clear()
            self._redo.clear()
            self._prune()

    def _chain(self) -> list[Edit]:
        """Every stroke in the order its image was made: the edit stack, then the redo stack from its top."""
        return self._edits + self._redo[::-1]

    def _prune(self) -> None:
        """Bound what the session holds. Strokes past the undo depth are retired (record and mask only);
        whole images are kept for the current version, the one before (the stroke effect compares them)
        and the base of the undo depth, every other image is rebuilt from the patches when needed. Cached
        states of versions no longer on the stacks are dropped; the original and the current image keep
        everything (input, explainer run, maps), the one before its prediction and maps (the stroke effect
        compares them), every other version only its prediction (a few KB per model, for the history
        plot); what was dropped is recomputed if that version becomes current again."""
        n = len(self._edits)
        depth = max(n - MAX_UNDO - 1, 0)  # strokes below this index are retired
        first_live = next((i for i, e in enumerate(self._edits) if not e.retired), n)
        base = max(depth, first_live)  # the lowest stroke that is not retired: it keeps its image
        keep = {id(self._edits[i]) for i in (n - 1, n - 2) if i >= 0}
        if 0 < base < n:
            keep.add(id(self._edits[base]))
        chain = self._chain()
        for e in chain:  # rebuild what is kept before anything it is rebuilt from is dropped
            if id(e) in keep and e.image is None and not e.retired:
                e.image = self._image_of(e.uid)
        for e in self._edits[:depth]:
            if not e.retired:
                e.retire()
        for e in chain:
            if id(e) not in keep and e.image is not None and e.patch is not None:
                e.image = None
        self.cache.bound({0} | {e.uid for e in chain}, self.version, self._before_last()[0])

    def region_at(self, x: int, y: int, n_segments: int = 150, side: int = 224) -> np.ndarray:
        """The superpixel of the current image under pixel (x, y), as a mask in image coordinates: SLIC
        (scikit-image) on the image scaled to the models' resolution (longer side ``side``), so a region
        is about what a model can tell apart. Only the current image's segmentation is kept."""
        import cv2
        from skimage.segmentation import slic

        img = self.modified
        h, w = img.shape[:2]
        if not (0 <= int(x) < w and 0 <= int(y) < h):
            raise MaskError(f"the point ({x}, {y}) is outside the {w}x{h} image.")
        key = (self.version, n_segments, side)
        if self._segments is None or self._segments[0] != key:
            s = min(1.0, side / max(h, w))
            small = img if s >= 1 else cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))),
                                                  interpolation=cv2.INTER_AREA)
            lab = slic(small, n_segments=n_segments, compactness=10, start_label=0)
            rows = np.minimum((np.arange(h) * small.shape[0] / h).astype(int), small.shape[0] - 1)
            cols = np.minimum((np.arange(w) * small.shape[1] / w).astype(int), small.shape[1] - 1)
            self._segments = (key, lab[rows][:, cols])
        labels = self._segments[1]
        return labels == labels[int(y), int(x)]

    def _rebuild_from(self, version: int) -> tuple[list[Edit], int, int] | None:
        """Where ``version``'s image comes from: (the chain, the index of the nearest stroke at or below it
        that keeps its image, -1 for the original, and the version's own index); None past the undo depth
        (a retired stroke in the way) or off the stacks."""
        chain = self._chain()
        j = next((i for i, e in enumerate(chain) if e.uid == version), None)
        if j is None:
            return None
        i = j
        while i >= 0 and chain[i].image is None:
            if chain[i].retired or chain[i].patch is None:
                return None
            i -= 1
        return chain, i, j

    def _image_of(self, version: int) -> np.ndarray | None:
        """The image of a version: the original, a kept image, or one rebuilt from the nearest kept image
        below it by laying the patches above that over it; None past the undo depth or off the stacks."""
        if version == 0:
            return self.original
        found = self._rebuild_from(version)
        if found is None:
            return None
        chain, i, j = found
        img = chain[i].image if i >= 0 else self.original
        for e in chain[i + 1:j + 1]:
            img = e.rebuild(img)
        return img

    def _has_image(self, version: int) -> bool:
        """Whether ``_image_of`` can give that version's image (without building it)."""
        return version == 0 or self._rebuild_from(version) is not None
        chain = self._chain()
        j = next((i for i, e in enumerate(chain) if e.uid == version), None)
        if j is None:
            return False
        for e in chain[j::-1]:
            if e.image is not None:
                return True
            if e.retired or e.patch is None:
                return False
        return True

    # -- models --------------------------------------------------------------------------------
    def classifier(self, name: str):
        return get_classifier(name, pretrained=self.pretrained, device=self.device)

    def _state(self, name: str, version: int, explainer=None, need_x: bool = True) -> CachedResult:
        """Prediction (and, for interactive explainers, the tapped run) of one model on one image
        version, computed once. With an explainer the single forward pass serves both. ``need_x``: the
        caller reads the model input too (a pruned version's is recomputed; its prediction and maps kept)."""
        key = (name, version)
        st = self.cache.get(key)
        clf = self.classifier(name)
        spec = explainer.taps(clf) if explainer is not None and explainer.cost == "interactive" else None
        want = explainer.name if spec is not None else None
        if st is not None and (want is None or st.run_explainer == want) and (st.x is not None or not need_x):
            return st
        if st is None or st.x is None:
            image = self._image_of(version)
            if image is None:
                raise InputError(f"That image is older than the last {MAX_UNDO} strokes, whose images are no "
                                 "longer kept; press Reset to start again from the original.")
            x = clf.preprocess(image)
        else:
            x = st.x
        if spec is not None:
            run = clf.run(x, spec.layers, spec.grad, spec.use_input, during=spec.during)
            pred = clf.prediction(run.logits)
            st_new = CachedResult(x, pred, run, want, st.maps if st is not None else {},
                                 st.trust if st is not None else {})
        elif st is not None:  # the input again, for a version pruned to its prediction and maps
            st_new = CachedResult(x, st.prediction, st.run, st.run_explainer, st.maps, st.trust)
        else:
            st_new = CachedResult(x, clf.predict_tensor(x))
        return self.cache.put(name, version, st_new)

    def predict(self, name: str, which: str = "modified"):
        with self._lock:
            return self._state(name, 0 if which == "original" else self.version, need_x=False).prediction

    def _maps(self, name: str, version: int, explainer, classes: list[int], progress: Progress | None):
        """(raw, normalized) arrays (k, h, w) for ``classes``, cached per class."""
        st = self.cache.get((name, version))
        if st is None or any((explainer.name, c) not in st.maps for c in classes):  # else no pass at all
            st = self._state(name, version, explainer)
        todo = [c for c in classes if (explainer.name, c) not in st.maps]
        if todo:
            clf = self.classifier(name)
            if st.run is not None and st.run_explainer == explainer.name:
                out = explainer.from_run(clf, st.run, st.x, todo)
            else:
                out = explainer.explain(clf, st.x, todo, progress=progress)
            for j, c in enumerate(todo):
                st.maps[(explainer.name, c)] = (out.raw[j], out.normalized[j])
        raw = np.stack([st.maps[(explainer.name, c)][0] for c in classes])
        norm = np.stack([st.maps[(explainer.name, c)][1] for c in classes])
        return raw, norm

    def _side_maps(self, name: str, version: int, explainer, classes: list[int]) -> np.ndarray:
        """Raw maps of ``explainer`` on one image version by its own pass, leaving the version's tapped run
        (the shown explainer's) in place; cached with the version's maps."""
        st = self.cache.get((name, version))
        if st is None or any((explainer.name, c) not in st.maps for c in classes):
            st = self._state(name, version)
        todo = [c for c in classes if (explainer.name, c) not in st.maps]
        if todo:
            out = explainer.explain(self.classifier(name), st.x, todo)
            for j, c in enumerate(todo):
                st.maps[(explainer.name, c)] = (out.raw[j], out.normalized[j])
        return np.stack([st.maps[(explainer.name, c)][0] for c in classes])

    def _alternatives(self, name: str, explainer, blank: dict[int, list[int]]) -> dict[int, list[str]]:
        """For each class whose map by ``explainer`` is blank (``blank``: class -> the image versions where it
        is), the other interactive explainers (those of the same kind first) whose map of that class is not
        blank on those versions; one pass per explainer and version serves every class. Not named: a
        class-agnostic map (the same for every class), a map of evidence against the class, an explainer that
        fails here. Bounded by ``MAX_ALTERNATIVES`` per class and ``MAX_ALTERNATIVE_TRIES`` explainers."""
        from .discovery import list_plugins

        clf = self.classifier(name)
        cands = []
        for spec in list_plugins("explainer"):
            if spec.is_namespace or spec.name == explainer.name or spec.unavailable_reason():
                continue
            try:
                alt = get_explainer(spec.name)
                if alt.cost == "interactive" and alt.positive_evidence and alt.supports(clf) is None:
                    cands.append(alt)
            except Exception:  # an explainer that cannot be built or checked here is not offered
                continue
        cands.sort(key=lambda a: type(a) is not type(explainer))
        classes = list(blank)
        if len(classes) == 1 and clf.num_classes > 1:  # a second class tells a class-agnostic map
            classes.append((classes[0] + 1) % clf.num_classes)
        versions = list(dict.fromkeys(v for vs in blank.values() for v in vs))
        found: dict[int, list[str]] = {c: [] for c in blank}
        for alt in cands[:MAX_ALTERNATIVE_TRIES]:
            try:
                raws = {v: self._side_maps(name, v, alt, classes) for v in versions}
            except Exception:  # one that fails on this model is not named
                continue
            if len(classes) > 1 and all(np.array_equal(r[0], r[j]) for r in raws.values() for j in range(len(r))):
                continue
            for j, c in enumerate(blank):
                if len(found[c]) < MAX_ALTERNATIVES and not any(is_blank(raws[v][j]) for v in blank[c]):
                    found[c].append(alt.name)
            if all(len(f) == MAX_ALTERNATIVES for f in found.values()):
                break
        return found

    def explain(self, name: str, classes: int | Sequence[int], explainer: str = "gradcam",
                progress: Progress | None = None) -> list[ClassMaps] | ClassMaps:
        """Class maps for any class indices, for the original and the current modified image."""
        single = isinstance(classes, (int, np.integer, str))
        ex = get_explainer(explainer)
        with self._lock:
            clf = self.classifier(name)
            cls = [_class_index(clf, name, c) for c in ([classes] if single else classes)]
            reason = ex.supports(clf)
            if reason:
                raise ExplainerNotSupportedError(reason[0].upper() + reason[1:] + ".")
            for c in cls:
                if not 0 <= c < clf.num_classes:
                    raise ClassIndexError(f"Class index {c} is outside 0..{clf.num_classes - 1} for {name}.")
            ro, no = self._maps(name, 0, ex, cls, progress)
            if self.version == 0:
                rm, nm = ro, no
            else:
                rm, nm = self._maps(name, self.version, ex, cls, progress)
            box = clf.input_box(self.original.shape)
            out = [ClassMaps(name, ex.name, c, clf.labels[c], ro[j], rm[j], no[j], nm[j], box,
                             self.original.shape[:2]) for j, c in enumerate(cls)]
            blank = {cm.index: sorted({v for v, b in ((0, cm.blank_original), (self.version, cm.blank_modified)) if b})
                     for cm in out if cm.blank}
            if blank:  # a blank map: which explainers do give one (only then, and bounded)
                found = self._alternatives(name, ex, blank)
                for cm in out:
                    if cm.blank:
                        cm.alternatives = found[cm.index]
        return out[0] if single else out

    def evaluate(self, models: Iterable[str], explainer: str | None = None, *, k: int | None = None,
                 map_classes: Sequence[int] | None = None, progress: Progress | None = None) -> EditResult:
        """Run every model on the original (cached) and the modified image.

        Returns per model the top-k of both, the tracked classes (the original's top-k) with their
        changes and, with ``explainer``, class maps for the tracked classes (or ``map_classes``).
        """
        k = k or self.k
        t_all = time.perf_counter()
        ex = get_explainer(explainer) if explainer else None
        results: dict[str, ModelResult] = {}
        models = [models] if isinstance(models, str) else list(models)  # one name, not its characters
        with self._lock:
            version = self.version
            for i, name in enumerate(models):
                if progress is not None:
                    progress(i / max(len(models), 1), f"{name}")
                t0 = time.perf_counter()
                clf = self.classifier(name)
                note = ex.supports(clf) if ex is not None else None
                use_ex = ex if ex is not None and note is None else None
                st0 = self._state(name, 0, use_ex)
                t1 = time.perf_counter()
                st1 = self._state(name, version, use_ex) if version else st0
                t2 = time.perf_counter()
                p0, p1 = st0.prediction, st1.prediction
                top0 = p0.topk(k)
                tracked = [TrackedClass(c.index, c.label, c.prob, float(p1.probs[c.index]), c.logit,
                                        float(p1.logits[c.index]), p0.rank(c.index), p1.rank(c.index))
                           for c in top0]
                maps: dict[int, ClassMaps] = {}
                if use_ex is not None:
                    cls = list(map_classes) if map_classes is not None else [c.index for c in top0]
                    for cm in (self.explain(name, cls, use_ex.name, progress=None) if cls else []):
                        maps[cm.index] = cm
                t3 = time.perf_counter()
                results[name] = ModelResult(
                    name, top0, p1.topk(k), tracked, maps, clf.input_box(self.original.shape),
                    {"original": t1 - t0, "modified": t2 - t1, "maps": t3 - t2, "total": t3 - t0},
                    note=(note[0].upper() + note[1:] + ".") if note else None,
                    probs_original=p0.probs, probs_modified=p1.probs)
        if progress is not None:
            progress(1.0, "done")
        return EditResult(results, explainer, len(self._edits), time.perf_counter() - t_all)

    # -- what the analyses read (ic_zoo.analyses: history, stroke effect, inpainter check, contrast, trust,
    # sanity: functions of a session, each returning a dataclass with to_dict()) ------------------------
    @property
    def lock(self) -> threading.RLock:
        """The session's lock: an analysis holds it while it reads the stacks and the cache."""
        return self._lock

    def state(self, name: str, version: int, explainer: str | Any = None, need_x: bool = True) -> CachedResult:
        """The cached result of model ``name`` on image ``version`` (0: the original; an edit's uid), computed
        if missing (with ``explainer``: by its tapped run); ``need_x``: the model input is read too."""
        ex = get_explainer(explainer) if isinstance(explainer, str) else explainer
        with self._lock:
            return self._state(name, version, ex, need_x)

    def maps(self, name: str, version: int, explainer, classes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(raw, normalized) maps (k, h, w) of ``classes`` on image ``version``, cached per class."""
        ex = get_explainer(explainer) if isinstance(explainer, str) else explainer
        with self._lock:
            return self._maps(name, version, ex, [int(c) for c in classes], None)

    def before_last(self) -> tuple[int, np.ndarray]:
        """(version, image) before the last edit: the original's when there is one edit or none."""
        with self._lock:
            return self._before_last()

    def can_predict(self, name: str, version: int) -> bool:
        """Whether model ``name``'s prediction on image ``version`` is cached or its image can be had (a
        stroke past the undo depth whose image is gone and that this model never saw: no)."""
        with self._lock:
            return (name, version) in self.cache or self._has_image(version)
    def _before_last(self) -> tuple[int, np.ndarray]:
        if len(self._edits) >= 2:
            e = self._edits[-2]
            return e.uid, e.image if e.image is not None else self._image_of(e.uid)
        return 0, self.original
