"""The platform both apps stand on (the main app's ``AppContext`` and study mode's ``StudyApp`` are built on
it): the plugins, the models' device and weights, the limits, the tab store, the image folder, the editor
value, the concurrency, the long jobs and the error guard, each decided in one place."""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from .. import discovery, imageio
from . import jobs
from .gated_canvas import write_editor_png
from .guard import guarded
from .tab_store import Tabs

#: the longest side of an image the apps show (uploads are fitted to it)
MAX_SIDE = 768


def concurrency_from_env(concurrency: int | None = None) -> int:
    """Model events run at once: ``concurrency``, else ``IC_ZOO_CONCURRENCY`` (default 2)."""
    return int(concurrency or os.environ.get("IC_ZOO_CONCURRENCY", "2"))


class AppPlatform:
    """What an app's handlers share, whichever app.

    * ``report``: the plugins discovered (the built-ins, entry points and ``plugins_dir``), once;
    * ``device``, ``pretrained``: where and with which weights every model runs; ``make_session``
      makes the library ``Session`` of an image with them;
    * ``max_side`` and ``editor_pixels``: the largest image shown, and the most pixels the canvas may send
      back (:meth:`editor_limit`: four times the largest image the page showed, at least a megapixel, at
      most the library's limit: anything far larger did not come from this page);
    * ``concurrency``: model events at once (``IC_ZOO_CONCURRENCY``);
    * ``tabs``: the tab store (``tab_store.Tabs``: bounded memory, a sentence for a released tab) of
      ``state_kind`` states; ``tab_guarded(fn)``: a handler under the error guard (one sentence for every
      failure) whose tab states are held while it runs;
    * ``png_dir``: the image folder (the canvas's PNGs, written by :meth:`editor_png`);
    * ``jobs``: long jobs (``jobs.Jobs.from_env``: a PostgreSQL queue when ``IC_ZOO_JOBS`` names one,
      else a worker thread), or None where the app runs none.
    """

    def __init__(self, state_kind: type, *, device: str | None = None, pretrained: bool = True,
                 max_side: int = MAX_SIDE, plugins_dir: str | None = None, concurrency: int | None = None,
                 png_prefix: str = "ic_zoo_", with_jobs: bool = True) -> None:
        self.report = discovery.ensure_loaded(**({"plugins_dir": plugins_dir} if plugins_dir else {}))
        self.device, self.pretrained, self.max_side = device, pretrained, max_side
        self.check_start()  # a bad setting is one sentence before any thread, folder or queue exists
        self.concurrency = concurrency_from_env(concurrency)
        self.editor_pixels = self.editor_limit(max_side * max_side)
        self.png_dir = Path(tempfile.mkdtemp(prefix=png_prefix))
        self.tabs = Tabs(state_kind)
        self.jobs = jobs.Jobs.from_env() if with_jobs else None

    def check_start(self) -> None:
        """The app's own checks of its settings against the plugins discovered (the named models, a study's
        models and inpainters), run before the services start; raise IcZooError with one sentence."""

    @staticmethod
    def editor_limit(biggest_pixels: int) -> int:
        """The most pixels the canvas may send back when the largest image it was given has
        ``biggest_pixels``."""
        return min(imageio.max_pixels_default(), max(4 * int(biggest_pixels), 1_000_000))

    def make_session(self, img: np.ndarray):
        """The library's ``Session`` of ``img``, on this app's device and weights."""
        import ic_zoo

        return ic_zoo.Session(img, device=self.device, pretrained=self.pretrained)

    def editor_png(self, st, img: np.ndarray, attr: str = "png") -> str:
        """``img`` as the PNG the canvas composes (lossless, fast), in the image folder; the tab's previous one
        (its path in ``st.<attr>``) is removed (Gradio copied it into its cache already)."""
        path = write_editor_png(img, self.png_dir / f"{id(st)}_{st.session.version}_{time.monotonic_ns()}.png")
        old = getattr(st, attr, None)
        if old is not None:
            Path(old).unlink(missing_ok=True)
        setattr(st, attr, path)
        return path

    def tab_guarded(self, fn):
        """``fn`` under the error guard (every failure one sentence, edits kept), its tab states held."""
        return self.tabs.hold(guarded(fn))
