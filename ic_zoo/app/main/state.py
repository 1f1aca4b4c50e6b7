"""Everything one browser tab of the app owns (kept in ``gr.State``, never in globals)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


class AppState:
    def __init__(self) -> None:
        self.session = None  # ic_zoo.Session of the current image
        self.selected: dict[str, int] = {}  # model -> class shown in the maps
        self.rows: dict[str, list[dict]] = {}  # model -> rows of its table, as shown
        self.views: list = []  # what the model columns show (comparison.ModelView, in order)
        self.views_stamp: int | str = ""  # the edit count they are of
        self.viewer_model: str | None = None  # the model the map viewer shows (comparison.Viewer)
        self.comparing = False  # the before / after slider is on the canvas: it gets every edit's images
        self.selecting = False  # the click-select panel is open: it gets every edit's image
        self.result = None
        self.source = ""
        self.displayed: np.ndarray | None = None  # what the editor shows: the modified image with crop frames
        self.original_view: np.ndarray | None = None  # the original with every model's crop frame
        self.last_png: str | None = None
        self.domain = "imagenet"  # of the current image: "imagenet" (a photo) or "flower2d"
        self.models: list[str] | None = None  # the last valid model selection (kept when a typed name is refused)
        self.user_chose = False  # the user picked models: images no longer switch the zoo by their domain
        self.typed: list[str] = []  # names this tab typed that were accepted
        self.notice = ""  # a message for the next status line (a refused model name)
        self.expired = ""  # why this tab's session was released (tab_store.Tabs), until a new image
        self.slow_of: tuple[int, int] | None = None  # (session version, edit count) the slow maps are of
        self.pending: np.ndarray | None = None  # regions clicked for one selection, not applied yet
        self.work_key: str | None = None  # the original's hash in the image store (ui.work), once stored
        self.work_sent: tuple | None = None  # what the browser's work record was last written for
        self.paint_ack = 0  # the last canvas stroke applied (painter: the page resends strokes until acknowledged)
        self.paint_v = 0  # the version of the image last sent to the canvas
        self.arrived = False  # its first event was seen here (a tab moved from a stopped replica is told once)

    def release(self, reason: str) -> None:
        """Drop the images and caches (the tab was idle too long, or the server needed room)."""
        self.session, self.result, self.rows, self.selected, self.views = None, None, {}, {}, []
        self.displayed = self.original_view = None
        self.work_key = self.work_sent = None  # the browser keeps its record: a reload rebuilds the work
        if self.last_png is not None:
            Path(self.last_png).unlink(missing_ok=True)
            self.last_png = None
        self.expired = reason

    def take_notice(self) -> str:
        notice, self.notice = self.notice, ""
        return notice

    def __deepcopy__(self, memo):  # gr.State deep-copies its initial value only
        return AppState()
