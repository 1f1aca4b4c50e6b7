"""Helpers shared by the Gradio apps (the main app and study mode): editor values and one-sentence errors.

Imported only by the apps: ``import ic_zoo`` never imports Gradio.
"""
from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os

import gradio as gr
import numpy as np
from gradio.components.base import server

from . import gradio_internals
from .. import imageio
from ..errors import IcZooError
from ..memsize import nbytes
from ..presentation.present import public_text

log = logging.getLogger("ic_zoo.app")
BRUSH = "#ff0000"
BRUSH_SIZE = 12  # the canvas's default brush, as the line under it and the page script say


def guarded(fn):
    """Every failure reaches the user as one sentence; edits already made are kept."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error as exc:  # a sentence for the user, not a failure: no traceback in the server log
            exc.print_exception = False
            raise
        except IcZooError as exc:
            raise gr.Error(public_text(exc), print_exception=False) from None
        except Exception as exc:  # noqa: BLE001
            log.exception("handler %s failed", fn.__name__)
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise gr.Error(f"Something went wrong ({public_text(msg)}); your earlier edits are kept, please try "
                           "again.", print_exception=False) from None

    return wrapper


def _env_number(name: str, default: float) -> float:
    try:
        v = float(os.environ.get(name, default))
        return v if v > 0 else default
    except ValueError:
        return default


class Tabs:
    """The per-tab states (browser tabs and API clients alike) that hold images, and a bound on them.

    Gradio keeps a tab's ``gr.State`` for as long as its session lives, and an API client's session never
    ends. Every handler that takes a tab's state runs inside ``hold``: the state is marked in use, then
    registered as used now, with the bytes of arrays and tensors it holds (``memsize.nbytes``: images,
    masks, patches, model inputs, explainer runs, maps). A state idle for longer than ``ttl_s``, or the
    least recently used one while the tabs together hold more than ``max_bytes`` or more than ``max_tabs``
    tabs hold images, is released: its images and caches are dropped and ``expired`` says why, so the page
    tells a returning user in one sentence instead of failing. States in use are never released, nor the
    most recently used one (a single tab larger than the bound keeps working). A daemon thread sweeps
    every ``sweep_s`` seconds, so an idle server frees memory too, and after events it hands the heap
    pages Python and torch freed back to the system (glibc keeps them otherwise: 420 MB after 32 tabs of
    16 clients' strokes, which the sweep returned).

    ``IC_ZOO_SESSION_TTL_S`` (default 1800), ``IC_ZOO_SESSIONS_MB`` (default ``DEFAULT_MB``) and
    ``IC_ZOO_MAX_SESSIONS`` (default 64) set the bounds.
    """

    #: What all tabs together may hold, in MB (10^6 bytes), unless ``IC_ZOO_SESSIONS_MB`` says otherwise.
    DEFAULT_MB = 800

    def __init__(self, kind: type, ttl_s: float | None = None, max_tabs: int | None = None,
                 sweep_s: float = 30.0, max_bytes: int | None = None) -> None:
        import collections
        import threading
        import weakref

        self.kind = kind
        self.ttl_s = ttl_s or _env_number("IC_ZOO_SESSION_TTL_S", 1800)
        self.max_tabs = int(max_tabs or _env_number("IC_ZOO_MAX_SESSIONS", 64))
        self.max_bytes = int(max_bytes or _env_number("IC_ZOO_SESSIONS_MB", self.DEFAULT_MB) * 1e6)
        # id -> (ref, last used, bytes held when last used), least recently used first
        self._live: collections.OrderedDict[int, tuple] = collections.OrderedDict()
        self._busy: dict[int, int] = {}
        self._lock = threading.Lock()
        self._weakref = weakref.ref
        self.released = 0
        self.events = 0  # handlers run (the sweeper returns freed memory after events)
        self._stop = threading.Event()
        t = threading.Thread(target=self._sweeper, args=(sweep_s,), name="ic_zoo-tabs", daemon=True)
        t.start()

    def __len__(self) -> int:
        with self._lock:
            return sum(1 for ref, *_ in self._live.values() if ref() is not None)

    def states(self) -> list:
        """The live tab states, least recently used first (for tests and benchmarks)."""
        with self._lock:
            return [st for st in (ref() for ref, *_ in self._live.values()) if st is not None]

    def held_bytes(self) -> int:
        """What the live tabs held when each was last used (for the health page, tests and benchmarks)."""
        with self._lock:
            return sum(n for ref, _, n in self._live.values() if ref() is not None)

    def _sweeper(self, every: float) -> None:
        trimmed = 0
        while not self._stop.wait(every):
            if not self.sweep() and self.events != trimmed:  # a sweep that released anything trimmed already
                _return_freed_memory()
            trimmed = self.events

    def close(self) -> None:
        self._stop.set()

    def _touch(self, st, size: int | None = None) -> None:
        import time

        key = id(st)
        old = self._live.pop(key, None)
        if size is None:
            size = old[2] if old is not None else 0
        self._live[key] = (self._weakref(st), time.monotonic(), size)

    def sweep(self) -> list:
        """Release what is past the time to live or over the cap; returns the released states."""
        import time

        out = []
        with self._lock:
            now = time.monotonic()
            total = sum(n for _, _, n in self._live.values())
            newest = next(reversed(self._live), None)
            for key in list(self._live):
                ref, used, size = self._live[key]
                st = ref()
                if st is None:
                    del self._live[key]
                    total -= size
                    continue
                many = len(self._live) > self.max_tabs
                heavy = total > self.max_bytes
                idle = now - used > self.ttl_s
                if not (many or heavy or idle):
                    break  # oldest first: everything after is more recent, and the tabs are within the bounds
                if self._busy.get(key) or (key == newest and not idle):
                    continue
                del self._live[key]
                total -= size
                # released under the lock: a handler starting now waits for it, then finds the sentence
                st.release(f"it was idle for more than {_duration(self.ttl_s)}" if idle else
                           f"the server keeps at most {self.max_tabs} sessions and this one was the least "
                           "recently used" if many else
                           f"the server keeps at most {self.max_bytes / 1e6:.0f} MB of sessions' images and "
                           "this one was the least recently used")
                out.append(st)
            self.released += len(out)
        if out:
            _return_freed_memory()
        return out

    def hold(self, fn):
        """``fn`` with every tab state among its arguments marked in use while it runs, and every tab
        state among its results registered as used now (a state that crossed to a ZeroGPU worker comes
        back as a new object)."""

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            states = [a for a in args if isinstance(a, self.kind)]
            self.events += 1
            with self._lock:
                for st in states:
                    self._busy[id(st)] = self._busy.get(id(st), 0) + 1
                    self._touch(st)
            try:
                out = fn(*args, **kwargs)
            finally:
                with self._lock:
                    for st in states:
                        n = self._busy.get(id(st), 1) - 1
                        if n:
                            self._busy[id(st)] = n
                        else:
                            self._busy.pop(id(st), None)
            results = out.values() if isinstance(out, dict) else out if isinstance(out, (list, tuple)) else [out]
            touched = {id(o): o for o in list(states) + list(results) if isinstance(o, self.kind)}
            sizes = {k: nbytes(o) for k, o in touched.items()}  # outside the lock: other tabs go on
            with self._lock:
                for k, o in touched.items():
                    self._touch(o, sizes[k])
            self.sweep()
            return out

        return wrapper


def _return_freed_memory() -> None:
    """Hand the heap pages freed by released tabs back to the system (glibc keeps them otherwise, and a
    server's RSS then only grows); a no-op where there is no glibc."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} minutes" if seconds >= 120 else f"{seconds:.0f} seconds"


def expired_sentence(reason: str) -> str:
    return (f"Your session expired ({reason}), so the server let its image and strokes go; reload the page to "
            "rebuild them from what this browser kept, or pick an example or upload an image.")


def on_zero_gpu() -> bool:
    """A Hugging Face Space on ZeroGPU hardware (which sets SPACES_ZERO_GPU) with the ``spaces`` package."""
    flag = os.environ.get("SPACES_ZERO_GPU", "").strip().lower() in ("1", "true", "yes")
    return flag and importlib.util.find_spec("spaces") is not None


class _WireTable:
    """A styled table on its way out of a ZeroGPU worker: the DataFrame crosses, the style is re-applied."""

    def __init__(self, df) -> None:
        self.df = df


def _map_leaves(value, leaf):
    """``leaf`` applied to every value inside nested lists, tuples and dicts (a handler's outputs)."""
    if isinstance(value, (list, tuple)):
        return type(value)(_map_leaves(v, leaf) for v in value)
    if isinstance(value, dict):
        return {k: _map_leaves(v, leaf) for k, v in value.items()}
    return leaf(value)


class _WireOutputs(dict):
    """A handler's ``{component: value}`` on its way out of a ZeroGPU worker: keyed by the components' ids
    (the worker's copies of the components are not the page's)."""


def _to_wire(value):
    if isinstance(value, dict) and value and all(isinstance(k, gr.blocks.Block) for k in value):
        return _WireOutputs({gradio_internals.block_id(k): _to_wire(v) for k, v in value.items()})
    return _map_leaves(value, lambda v: _WireTable(v.data) if type(v).__name__ == "Styler" and hasattr(v, "data")
                       else v)


def _from_wire(value):
    from ..presentation.present import style_table

    if isinstance(value, _WireOutputs):
        # the page's components as built (an update rebuilds a session's copy of a component under a new
        # id, which Gradio would not match to the event's outputs), then this session's (a gr.render's)
        built, session = gradio_internals.current_blocks()
        return {(built.get(i) or session[i]): _from_wire(v) for i, v in value.items()}
    return _map_leaves(value, lambda v: style_table(v.df) if isinstance(v, _WireTable) else v)


def gpu(fn, duration: int | None = None):
    """``fn`` inside ``@spaces.GPU`` on ZeroGPU (a GPU is attached for each call), ``fn`` itself elsewhere.

    ZeroGPU runs the call in a forked worker and pickles its arguments and its result, so the result
    goes out as picklable values (styled tables as their DataFrame) and is restyled here; the session
    state pickles without its caches (see ``Session.__getstate__``). ``spaces`` is optional: it is
    imported only on ZeroGPU. ``IC_ZOO_GPU_DURATION`` (seconds) sets the longest a call may hold the GPU
    (default 60)."""
    if not on_zero_gpu():
        return fn
    import spaces

    duration = duration or int(os.environ.get("IC_ZOO_GPU_DURATION", "60"))

    @functools.wraps(fn)
    def in_worker(*args, **kwargs):
        return _to_wire(fn(*args, **kwargs))

    remote = spaces.GPU(duration=duration)(in_worker)

    @functools.wraps(fn)
    def handler(*args, **kwargs):
        return _from_wire(remote(*args, **kwargs))

    return handler


def model_call(fn):
    """A handler that runs models: one sentence for every failure (``guarded``), on a ZeroGPU GPU when the
    Space has one (``gpu``)."""
    return gpu(guarded(fn))


def editor_rgb(img) -> np.ndarray | None:
    """An editor background (RGBA or RGB) as an RGB uint8 array, transparency composed over white."""
    if img is None:
        return None
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[2] == 4:
        alpha = a[..., 3:4].astype(np.float32) / 255.0
        a = (a[..., :3].astype(np.float32) * alpha + 255.0 * (1 - alpha) + 0.5).astype(np.uint8)
    return imageio.as_rgb_array(a) if a.dtype != np.uint8 or a.ndim != 3 else np.ascontiguousarray(a)


def stroke_mask(value) -> np.ndarray | None:
    """Painted pixels: opaque brush-red pixels of any layer (the eraser leaves transparency). A layer of
    another size than the background is resized to fit, with a warning, as ``load_mask`` does."""
    if not value or value.get("background") is None:
        return None
    shape = np.asarray(value["background"]).shape[:2]
    m = np.zeros(shape, bool)
    for i, layer in enumerate(value.get("layers") or []):
        a = np.asarray(layer)
        if a.ndim != 3 or a.shape[2] not in (3, 4):
            raise gr.Error(f"Stroke layer {i + 1} is not a colour image ({a.shape}); reload the page and paint again.",
                           print_exception=False)
        if a.shape[2] == 4:
            painted = (a[..., 3] > 0) & (a[..., 0] > 150) & (a[..., 1] < 100) & (a[..., 2] < 100)
        else:
            painted = (a[..., 0] > 150) & (a[..., 1] < 100) & (a[..., 2] < 100)
        if painted.shape != shape:
            gr.Warning(f"Stroke layer {i + 1} is {painted.shape[1]}x{painted.shape[0]} but the image is "
                       f"{shape[1]}x{shape[0]}; the stroke was resized to fit.")
            painted = imageio.resize_mask(painted, shape)
        m |= painted
    return m


def same_image(a: np.ndarray, b: np.ndarray) -> bool:
    """The same picture, up to the canvas's rounding (mean absolute difference under one grey level)."""
    return a.shape == b.shape and float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean()) < 1.0


def fit_max_side(img: np.ndarray, max_side: int) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    s = max_side / max(h, w)
    if s >= 1:
        return img
    return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def write_editor_png(img: np.ndarray, path) -> str:
    """Lossless (the next event must give these pixels back) but fast: PNG at compression level 1."""
    import cv2

    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    return str(path)


#: Layers one editor event may carry. The app's canvas has one stroke layer (``layers=False``); a few
#: more are allowed for API clients that send strokes separately. More is refused before any is decoded.
MAX_LAYERS = 8
#: Edits whose images were uploaded but whose event has not arrived yet (per canvas, all users).
MAX_PENDING_EDITS = 64
#: What the canvas sends (it renders PNG); JPEG and WebP for API clients.
EDITOR_FORMATS = ("PNG", "JPEG", "WEBP")


# Gradio's component metaclass writes a ``.pyi`` stub beside the module of every component class it
# creates (for its own custom-component tooling): next to an installed package that is a write into
# site-packages, which fails on a read-only install. Canvas adds no events, so it needs no stub.
_no_stub = gradio_internals.no_component_stub


#: a canvas file this server does not have (uploaded to another replica, or before a restart)
UPLOAD_GONE = ("Your last change reached a server that stopped, or another one: reload the page to continue where "
               "you left off (in a study, everything you did is kept).")


with _no_stub():
    class Canvas(gr.ImageEditor):
        """``gr.ImageEditor`` whose every image (background, layers, composite) passes the library's input gate
        before it is decoded: the pixel limit read from the header, PNG / JPEG / WebP only, EXIF orientation,
        damaged or truncated files, at most ``MAX_LAYERS`` layers, and one sentence for each failure (Gradio's
        own conversion would decode anything Pillow opens, at any size, and answer with a generic error).
        The background arrives as RGB, layers as RGBA (``type="numpy"`` only). The composite is checked from
        its header and dropped: the app never uses it, so it is never decoded."""

        # class attributes, not constructor arguments: Gradio rebuilds a component from its constructor
        # arguments for each session it updates, and an __init__ of its own would hide ImageEditor's
        # arguments from the page's config. ``editor()`` makes a subclass per limit.
        max_pixels: int | None = None  # default: the library's limit
        max_layers: int = MAX_LAYERS

        def get_block_name(self) -> str:  # the frontend's ImageEditor
            return "imageeditor"

        def get_block_class(self) -> str:
            return "imageeditor"

        def _gate(self, file, what: str, decode: bool = True):
            from PIL import Image

            if file is None:
                return None
            src = file.path if hasattr(file, "path") else bytes(file)
            if isinstance(src, str) and not os.path.isfile(src):
                # uploaded to another replica (the proxy sent the upload to a replica that was stopping and
                # the event to another), or to this one before a restart: nothing here to read
                raise gr.Error(UPLOAD_GONE, print_exception=False)
            limit = self.max_pixels if self.max_pixels is not None else imageio.max_pixels_default()
            try:
                with imageio.opened(src, limit, name=what, formats=EDITOR_FORMATS, decode=decode) as (im, _):
                    if not decode:
                        return None
                    if what == "the image":
                        return np.asarray(imageio.to_rgb_pil(im), dtype=np.uint8)
                    try:
                        from PIL import ImageOps

                        im = ImageOps.exif_transpose(im)
                    except Exception:  # noqa: BLE001 - malformed EXIF must not lose the stroke
                        pass
                    return np.asarray(im.convert("RGBA") if im.mode != "RGBA" else im, dtype=np.uint8)
            except IcZooError as exc:
                raise gr.Error(str(exc)[:1].upper() + str(exc)[1:], print_exception=False) from None
            except (OSError, ValueError, Image.DecompressionBombError) as exc:
                raise gr.Error(f"{what[:1].upper() + what[1:]} cannot be decoded ({exc}); reload the page and try "
                               "again.", print_exception=False) from None

        @server
        def accept_blobs(self, data):
            """The canvas uploads each image of an edit here before the event: a layer index past the cap is
            refused (Gradio would grow a list to any index sent), and at most ``MAX_PENDING_EDITS`` uploads
            wait for their event (one that never comes, from a script, is dropped oldest first)."""
            kind, index = data.data.get("type"), data.data.get("index")
            if kind == "layer" and index not in (None, "", "null"):
                try:
                    i = int(index)
                except (TypeError, ValueError):
                    i = -1
                if not 0 <= i < self.max_layers:
                    raise gr.Error(f"One edit can carry at most {self.max_layers} stroke layers (layer index "
                                   f"{str(index)[:20]} refused).", print_exception=False)
            pending = gradio_internals.pending_uploads(self)
            while len(pending) >= MAX_PENDING_EDITS and data.data.get("id") not in pending:
                pending.pop(next(iter(pending)))
            return super().accept_blobs(data)

        def preprocess(self, payload):
            if payload is None:
                return None
            pending = gradio_internals.pending_uploads(self)
            blobs = pending.pop(payload.id, None) if payload.id is not None else None
            data = blobs if blobs is not None else (payload if payload.id is None else None)
            if data is None:
                raise gr.Error("The images of this edit did not arrive (the server was busy, or they were sent to "
                               "another server); please paint the stroke again.", print_exception=False)
            layers = list(data.layers or [])
            if len(layers) > self.max_layers:
                raise gr.Error(f"One edit can carry at most {self.max_layers} stroke layers, not {len(layers)}; "
                               "merge the strokes into one layer.", print_exception=False)
            bg = self._gate(data.background, "the image")
            out = [self._gate(f, f"stroke layer {i + 1}") for i, f in enumerate(layers)]
            self._gate(data.composite, "the composite", decode=False)
            return {"background": bg, "layers": [a for a in out if a is not None], "composite": None}


def editor(label: str, height: int | str = 520, elem_id: str = "editor", max_pixels: int | None = None,
           visible: bool = True) -> Canvas:
    """The painting canvas: one fixed red brush, no eraser, no uploads or transforms (the mask must align); every
    image it sends passes the input gate (see ``Canvas``), ``max_pixels`` each (default: the library's)."""
    return _canvas_class(max_pixels)(
        label=label, type="numpy", image_mode="RGBA", sources=(), layers=False, transforms=(), format="png",
        elem_id=elem_id, elem_classes=["ic-canvas"], height=height, visible=visible,
        brush=gr.Brush(colors=[BRUSH], color_mode="fixed", default_size=BRUSH_SIZE),
        eraser=gr.Eraser(default_size=BRUSH_SIZE))  # (its button is hidden: PAGE_CSS)


@functools.lru_cache(maxsize=None)
def _canvas_class(max_pixels: int | None) -> type:
    if max_pixels is None:
        return Canvas
    with _no_stub():
        return type("Canvas", (Canvas,), {"max_pixels": int(max_pixels), "__module__": __name__})


#: The page's styles and keys, installed by ``page_script()`` from a load event (Gradio 6 takes ``css``
#: and ``js`` only at launch, and tests and Spaces launch the demo themselves).
PAGE_CSS = """
/* one set of undo / redo / reset: the app's (the canvas's own would undo pixels the tables never saw) */
.ic-canvas button[aria-label="Undo"], .ic-canvas button[aria-label="Redo"],
.ic-canvas button[aria-label="Clear canvas"] { display: none !important; }
/* busy while a stroke is processed: the status line's progress tracker is showing (an error shows the
   same tracker with a clear button instead of the progress: the second pair of rules, more specific,
   takes the sign back; a :has() nested in another is invalid, and would drop the whole rule) */
.ic-canvas, .ic-paint-stage { position: relative; }
body:has(#status [data-testid="status-tracker"]:not(.hide)) .ic-canvas::after,
body:has(#status [data-testid="status-tracker"]:not(.hide)) .ic-paint-stage::after {
  content: "Classifying…"; position: absolute; top: 44px; right: 10px; z-index: 50; pointer-events: none;
  padding: 2px 10px; border-radius: 10px; background: rgba(20, 20, 20, .72); color: #fff; font-size: 13px; }
body:has(#status [data-testid="status-tracker"]:not(.hide)) .ic-canvas canvas,
body:has(#status [data-testid="status-tracker"]:not(.hide)) .ic-paint-img { opacity: .82; }
body:has(#status [data-testid="status-tracker"]:not(.hide) .clear-status) .ic-canvas::after,
body:has(#status [data-testid="status-tracker"]:not(.hide) .clear-status) .ic-paint-stage::after { content: none; }
body:has(#status [data-testid="status-tracker"]:not(.hide) .clear-status) .ic-canvas canvas,
body:has(#status [data-testid="status-tracker"]:not(.hide) .clear-status) .ic-paint-img { opacity: 1; }
/* no eraser: strokes are applied on release, so there is never paint left to erase (eraser=False would
   also drop the canvas's zoom readout) */
.ic-canvas button[aria-label="Erase"] { display: none !important; }
/* gallery titles wrap instead of being cut (the examples and every gallery of maps) */
#examples .caption-label, .ic-gallery .caption-label { white-space: normal !important; overflow: visible !important;
  text-overflow: clip !important; max-width: 100% !important; line-height: 1.15; }
#brush_label { font-size: 13px; opacity: .85; }
/* the model tables: numbers on one line in a narrow column */
[id^="model_"][id$="_table"] .body-cell:not(.first-column) { white-space: nowrap !important; }
[id^="model_"][id$="_table"] th, [id^="model_"][id$="_table"] th *,
[id^="model_"][id$="_table"] .body-cell:not(.first-column) * { white-space: nowrap !important; word-break: keep-all !important; }
[id^="model_"][id$="_table"] th, [id^="model_"][id$="_table"] .body-cell { font-size: 12.5px !important; }
/* all five rows at a glance: a class by its short name where it has one (the full label on hover),
   wrapped between words where it has none (Flower2D's "red petals, green centre": cut, its rows would all
   read "red petals…") */
[id^="model_"][id$="_table"] .body-cell.first-column, [id^="model_"][id$="_table"] .body-cell.first-column * {
  overflow-wrap: normal !important; word-break: normal !important; line-height: 1.25;
  font-family: var(--font) !important; }  /* the page's proportional font: "yellow petals," fits a line */
[id^="model_"][id$="_table"] .body-cell .md p { margin: 0 !important; }
/* a number, and a column's name, is never cut: a narrow column lets it run into its padding instead */
[id^="model_"][id$="_table"] .body-cell:not(.first-column), [id^="model_"][id$="_table"] .body-cell:not(.first-column) *,
[id^="model_"][id$="_table"] th, [id^="model_"][id$="_table"] th * {
  overflow: visible !important; text-overflow: clip !important; }
[id^="model_"][id$="_table"] .body-cell:not(.first-column), [id^="model_"][id$="_table"] th:not(:first-child) {
  padding-left: 2px !important; padding-right: 2px !important; }
#model_columns_at { position: absolute !important; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
/* four models: two rows of two, each column half the width (three at 230 px and a fourth on a full-width
   row of its own was what the wrap gave) */
/* a phone: the canvas comes right after the examples; the pickers (the models' box alone is 340 px tall
   there) and the tools follow the results */
@media (max-width: 640px) {
  #pickers { order: 1; }
  #tools, #pickers ~ #tools { order: 2; }
  /* the first screen is the work: the hint gives way to the tutorial's button, the examples and the upload
     share one row, and the first model's result comes right after the canvas and its status line (the
     canvas column's buttons, keys and other selections after the results) */
  #header p { display: none; }
  #inputs { flex-wrap: nowrap !important; gap: 8px !important; }
  #inputs > .column { min-width: 0 !important; }
  #inputs > .column:first-child { flex: 5 1 0 !important; }
  #inputs > .column:last-child { flex: 2 1 0 !important; }
  #canvas_column { display: contents !important; }
  #workspace > * { flex: 1 1 100% !important; min-width: 100% !important; }
  #results { order: 1; }
  #canvas_column > :not(#editor):not(#before_after):not(#status) { order: 2; }
  #domain_row { flex-wrap: wrap !important; }
  #domain_row > * { flex: 1 1 100% !important; min-width: 100% !important; }
  #upload { max-height: 128px !important; overflow: hidden !important; }
  #upload > label { display: none !important; }
}
/* before / after on the canvas: the compare toggle swaps the canvas for the slider (body.ic-compare) */
#before_after { display: none !important; }
body.ic-compare #before_after { display: flex !important; }
body.ic-compare #editor { display: none !important; }
/* the map viewer: three pictures side by side at the canvas's size (one under the other on a phone), their
   labels and the colour bars in the page's text size */
#map_row > .ic-map { flex: 1 1 300px !important; min-width: 0 !important; }
#map_row .ic-map [data-testid="block-label"], #map_row .ic-map label { font-size: var(--text-md) !important; }
.ic-legends { display: flex; gap: 24px; flex-wrap: wrap; font-size: var(--text-md); }
.ic-legend { flex: 2 1 300px; }
.ic-legend + .ic-legend { flex: 1 1 200px; }
.ic-bar { height: 14px; border-radius: 3px; border: 1px solid rgba(128, 128, 128, .3); }
.ic-ticks { display: flex; justify-content: space-between; }
.ic-caption { opacity: .8; }
#model_columns:has(#model_3_title) > [id^="model_"] {
  flex: 1 1 calc(50% - var(--layout-gap, 16px)) !important; max-width: calc(50% - var(--layout-gap, 16px) / 2); }
"""

PAGE_JS = """
() => {
  if (window.__icZooKeys) return;
  window.__icZooKeys = true;
  const style = document.createElement('style');
  style.textContent = __CSS__;
  document.head.appendChild(style);
  const canvas = () => document.querySelector('.ic-canvas');
  const tool = (name) => canvas() && canvas().querySelector(`button[aria-label="${name}"]`);
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  window.icZooBrush = __BRUSH__;
  const showBrush = (v) => {
    const el = document.querySelector('#brush_label');
    if (el) el.querySelectorAll('.ic-brush').forEach((s) => { s.textContent = String(v); });
  };
  async function setBrush(delta) {
    const own = document.querySelector('.ic-paint-size');  // the page's canvas (painter): its own slider
    if (own) {
      const v = Math.max(1, Math.min(100, (parseInt(own.value, 10) || window.icZooBrush) + delta));
      own.value = String(v);
      own.dispatchEvent(new Event('input', { bubbles: true }));
      window.icZooBrush = v;
      showBrush(v);
      return;
    }
    // the size lives in the canvas's own size picker: open it, set it, and give the drawing tool back
    // (an open picker would eat the next stroke's first press)
    const active = ['Erase', 'Brush'].find((n) => tool(n) && tool(n).classList.contains('highlight')) || 'Brush';
    let range = canvas() && canvas().querySelector('.size_picker input[type=range]');
    if (!range) {
      const b = tool('Brush Size');
      if (!b) return;
      b.click(); await sleep(60);
      range = canvas().querySelector('.size_picker input[type=range]');
    }
    if (!range) return;
    const v = Math.max(1, Math.min(100, (parseInt(range.value, 10) || window.icZooBrush) + delta));
    range.value = String(v);
    range.dispatchEvent(new Event('input', { bubbles: true }));
    range.dispatchEvent(new Event('change', { bubbles: true }));
    window.icZooBrush = v;
    showBrush(v);
    // a full press (the picker closes on a pointer press outside it, which .click() alone is not)
    const back = tool(active);
    if (back) {
      for (const t of ['pointerdown', 'mousedown', 'pointerup', 'mouseup'])
        back.dispatchEvent(new PointerEvent(t, { bubbles: true, cancelable: true }));
      back.click();
    }
  }
  let queue = Promise.resolve();
  document.addEventListener('keydown', (e) => {
    const t = e.target;
    const typing = t && (t.isContentEditable || (/^(INPUT|TEXTAREA|SELECT)$/).test(t.tagName)) &&
                   !(t.type === 'range');
    if (typing) return;
    const mod = e.ctrlKey || e.metaKey;
    const key = (e.key || '').toLowerCase();
    if (mod && key === 'z') {
      e.preventDefault();
      const b = document.querySelector(e.shiftKey ? '#redo' : '#undo');
      if (b) b.click();
    } else if (mod && key === 'y') {
      e.preventDefault();
      const b = document.querySelector('#redo');
      if (b) b.click();
    } else if (!mod && (e.key === '[' || e.key === ']')) {
      e.preventDefault();
      const d = e.key === '[' ? -3 : 3;
      queue = queue.then(() => setBrush(d));  // one at a time: each reads the size the last one set
    }
  }, true);
  // click-select: Shift-clicks collect several regions into one selection, applied on releasing Shift
  let shiftPicked = false;
  const collectBox = () => document.querySelector('#collect input[type=checkbox]');
  document.addEventListener('click', (e) => {
    if (!e.shiftKey || !e.target.closest || !e.target.closest('#click_select')) return;
    const box = collectBox();
    if (box && !box.checked) box.click();
    shiftPicked = true;
  }, true);
  const idle = () => {  // no progress on the status line (an error's tracker holds a clear button instead)
    const t = document.querySelector('#status [data-testid="status-tracker"]:not(.hide)');
    return !t || !!t.querySelector('.clear-status');
  };
  // a failed event leaves a red "Error" and a clear button on every output it had (Gradio's tracker), long
  // after its sentence's toast closed: they go with the toast (closed by the person, or after its time)
  const errorToast = () => document.querySelector('.toast-body.error, [data-testid="toast-body"].error');
  let clearing = null;
  const clearErrors = () => {
    if (clearing) return;
    clearing = setInterval(() => {
      if (errorToast()) return;
      document.querySelectorAll('[data-testid="status-tracker"] .clear-status button').forEach((b) => b.click());
      clearInterval(clearing);
      clearing = null;
    }, 300);
  };
  new MutationObserver(() => {
    if (document.querySelector('[data-testid="status-tracker"] .clear-status')) clearErrors();
  }).observe(document.body, { subtree: true, childList: true });
  document.addEventListener('keyup', async (e) => {
    if (e.key !== 'Shift' || !shiftPicked) return;
    shiftPicked = false;
    for (let i = 0; i < 100 && !idle(); i++) await sleep(50);  // the last click's event first
    const b = document.querySelector('#remove_selected');
    if (b) b.click();
    const box = collectBox();
    if (box && box.checked) box.click();
  });
}
"""

def keys_help(redo: bool = True) -> str:
    """The line under the canvas: the brush size (kept current by the page script) and the keys."""
    return (f"Brush size: <b class='ic-brush'>{BRUSH_SIZE}</b> px · <kbd>[</kbd> / <kbd>]</kbd> smaller / larger · "
            "<kbd>Ctrl</kbd>+<kbd>Z</kbd> undo" + (" · <kbd>Shift</kbd>+<kbd>Ctrl</kbd>+<kbd>Z</kbd> redo"
                                                  if redo else "") + " (<kbd>⌘</kbd> on a Mac)")


#: Study pages: participants see no navigation (Gradio 6.31 still draws "Home" with gr.Navbar(visible=False)).
NO_NAVIGATION_CSS = ".nav-holder { display: none !important; }"


def page_script(demo: gr.Blocks, extra_css: str = "") -> None:
    """Install the page's styles and keys (call inside ``with demo:``)."""
    js = PAGE_JS.replace("__CSS__", json.dumps(PAGE_CSS + extra_css)).replace("__BRUSH__", str(BRUSH_SIZE))
    demo.load(None, None, None, js=js, api_visibility="private", queue=False)


def monotonic(progress):
    """A ``gr.Progress`` that never goes backwards (steps that each report 0..1 would make it jump back)."""
    best = [0.0]

    def report(fraction, desc=None):
        if isinstance(fraction, (int, float)):
            best[0] = max(best[0], float(fraction))
            fraction = best[0]
        return progress(fraction, desc=desc)

    return report
