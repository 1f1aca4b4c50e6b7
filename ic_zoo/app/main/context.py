"""What the app's handlers share: the configuration decided at start-up (plugins, zoos, defaults), the
model checks, the per-tab state store, and ``show``, the one function that turns a tab's session into
what the page shows."""
from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import time
from pathlib import Path

import gradio as gr
import numpy as np

import ic_zoo

from ... import discovery, priority, zoo
from ...errors import IcZooError
from ...presentation import present
from .. import painter, platform, work, zerogpu
from ..gated_canvas import fit_max_side
from ..tab_store import expired_sentence
from ..zerogpu import model_call
from ..comparison import model_view, props_once, slow_maps
from .state import AppState

log = logging.getLogger("ic_zoo.app")
MAX_MODELS = 4
MOVED = ("The server you were working on stopped: please reload the page to continue where you left off "
         "(your image and strokes are kept in this browser).")
#: uploads are downscaled to this longer side: the canvas stays responsive, models see <= 256 px (the platform's)
MAX_SIDE = platform.MAX_SIDE
ROWS = ["original top-5 (tracked)", "modified top-5"]
EXAMPLE_CAPTIONS = {"chelsea": "Chelsea the cat: paint over the eyes", "coffee": "An espresso: paint over the cup",
                    "camera": "The cameraman: paint over the tripod", "astronaut": "Astronaut Eileen Collins",
                    "rocket": "A SpaceX rocket"}


def example_list(folder: Path) -> list[tuple[str, str]]:
    """(path, caption) for the examples in ``folder``, each caption naming the zoo it uses: photos
    (ImageNet models) first, then Flower2D flowers (the Flower2D models, which know their ground truth)."""
    out = []
    for name, cap in EXAMPLE_CAPTIONS.items():
        p = folder / f"{name}.jpg"
        if p.is_file():
            out.append((str(p), f"{cap} · ImageNet models"))
    idx = folder / "flower2d" / "index.json"
    if idx.is_file():
        for row in json.loads(idx.read_text()):
            out.append((str(folder / "flower2d" / row["image"]), f"Flower2D: {row['label_name']} · Flower2D models"))
    return out


def explainer_choices() -> list[tuple[str, str]]:
    return [(s.name + (" (slow)" if s.meta.get("cost") == "slow" else "")
             + (" (unavailable)" if s.unavailable_reason() else ""), s.name)
            for s in ic_zoo.list_plugins("explainer") if not s.is_namespace]


def inpainter_choices() -> tuple[list[tuple[str, str]], list[str]]:
    """The inpainters that can run here (choices), and the names of the others (named beside the picker,
    not offered: a stroke must never be painted for a filler that cannot fill it; the Plugins tab says
    why)."""
    usable, unusable = [], []
    for s in ic_zoo.list_plugins("inpainter"):
        if s.unavailable_reason() is None:
            usable.append((s.name, s.name))
        else:
            unusable.append(s.name)
    return usable, unusable


def classifier_choices(extra=()) -> list[tuple[str, str]]:
    """Every registered classifier (marked when it needs a download), then names given with --model or
    typed in the picker (``timm:<name>``, ``torchvision:<name>``, ``hf-hub:<repo id>``)."""
    out, seen = [], set()
    for s in ic_zoo.list_plugins("classifier"):
        if s.is_namespace:
            continue
        reason = s.unavailable_reason()
        note = " (embedded, offline)" if s.meta.get("embedded") and reason is None else ""
        out.append((s.name + (note if reason is None else " (needs a download)"), s.name))
        seen.add(s.name)
    for name in extra:
        if name not in seen:
            out.append((name, name))
            seen.add(name)
    return out


def _foreground(fn):
    """An event a person waits for: background work (the trust follow-up) gives it the cores while it runs."""

    if inspect.isgeneratorfunction(fn):  # a handler that answers in steps: the cores are its until the last
        @functools.wraps(fn)
        def steps(*args, **kwargs):
            with priority.foreground():
                yield from fn(*args, **kwargs)

        return steps

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with priority.foreground():
            return fn(*args, **kwargs)

    return wrapper


class AppContext(platform.AppPlatform):
    """The main app's start-up decisions and shared services, on the platform both apps stand on
    (``AppPlatform``: plugins, device, limits, tab store, image folder, jobs, error guard). ``ui`` (the page's
    panels) is set once they are built."""

    def __init__(self, models=None, device=None, max_side: int = MAX_SIDE, plugins_dir=None, concurrency=None,
                 pretrained: bool = True, examples_dir: Path | None = None, default_plugins: Path | None = None):
        if plugins_dir is None and default_plugins is not None and not os.environ.get(discovery.PLUGINS_DIR_ENV) \
                and not discovery.autoload_disabled():
            plugins_dir = str(default_plugins)  # the app's own folder, wherever it is started from
        self._models = models
        # ZeroGPU: long jobs run inside the GPU call, not in a queue of their own
        super().__init__(AppState, device=device, pretrained=pretrained, max_side=max_side, plugins_dir=plugins_dir,
                         concurrency=concurrency, png_prefix="ic_zoo_editor_", with_jobs=not zerogpu.on_zero_gpu())
        self.auto_models = not self.named  # no --model: each new image gets the zoo of its domain
        # the zoo of each domain, decided once at start-up (each decision checks every default's weights)
        self.zoo_for = {d: zoo.default_models(pretrained=pretrained, domain=d)[:MAX_MODELS] for d in zoo.DOMAINS}
        self.default = (self.named or self.zoo_for["imagenet"])[:MAX_MODELS]
        self.checked: set[str] = set(self.named)  # names that passed zoo.resolve_model
        if zerogpu.on_zero_gpu():
            self._preload()
        # the canvas sends back at most editor_pixels (the platform's): the app shows images of at most
        # max_side (an API client sends its own image through /load, which fits it)
        self.common = dict(concurrency_id="models", concurrency_limit=self.concurrency)  # every event that runs models
        self.examples = example_list(examples_dir) if examples_dir is not None else []
        # each tab's work is kept by its browser (signed) and its originals by hash: any replica rebuilds it
        self.images = work.ImageStore.from_env(self.png_dir / "originals")
        self.work_secret = work.browser_secret()
        # long jobs (slow maps): in the deployment's PostgreSQL when IC_ZOO_JOBS names it (another replica
        # finishes a job whose replica died), else a worker thread of this process (ic_zoo/app/jobs.py)
        if self.jobs is not None:
            self.jobs.handle("slow_maps", self.slow_maps_job)
        self.ui = None

    def check_start(self) -> None:
        """The models named at start-up (``--model``), each resolved: one sentence for a bad one."""
        self.named = [zoo.resolve_model(m, pretrained=self.pretrained) for m in (self._models or [])]

    def _preload(self) -> None:
        """ZeroGPU runs each model call in a forked worker: load the default zoos here, in the main process,
        so that every worker has them (ZeroGPU moves them to its GPU)."""
        for m in dict.fromkeys(self.default + self.zoo_for["imagenet"] + self.zoo_for["flower2d"]):
            try:
                self.clf(m)
            except IcZooError as exc:
                log.warning("could not preload %s: %s", m, exc)

    # -- services ----------------------------------------------------------------------------------------
    def tab_call(self, fn):
        """A handler that runs models and takes (or returns) a tab's state: one sentence for every failure,
        on a ZeroGPU GPU when there is one, the tab's state held while it runs."""
        return self.tabs.hold(model_call(fn))

    def interactive(self, fn):
        """``tab_call`` for an event a person waits for at the canvas (a stroke, an image, undo, a row):
        background work (the trust follow-up) yields it the cores while it runs (``priority``). Never for an
        event that itself waits on background work (the slow maps' job)."""
        return self.tab_call(_foreground(fn))

    def busy(self) -> dict:
        """The settings of an event that runs models: the models queue, the busy sign on the status line
        (and the canvas)."""
        return dict(show_progress_on=[self.ui.editor.status], **self.common)

    def latest(self) -> dict:
        """``busy``, for an event whose last trigger is the one that counts (an example, an upload, a
        setting, a row): a trigger while one is running is not dropped (Gradio's default, "once", would
        leave the page on the image before the last one clicked) but runs after it, the ones between
        skipped."""
        return dict(trigger_mode="always_last", **self.busy())

    def clf(self, name):
        return ic_zoo.get_classifier(name, pretrained=self.pretrained, device=self.device)

    def check_models(self, names) -> list[str]:
        """The names, each validated once (before anything loads); one sentence for the first bad one."""
        if isinstance(names, str):  # one name (an API client's), not its characters
            names = [names]
        names = [str(n).strip() for n in (names or [])][:MAX_MODELS]
        for n in names:
            if n not in self.checked:
                zoo.resolve_model(n, pretrained=self.pretrained)
                self.checked.add(n)
        return names

    def check_settings(self, names, explainer, rows_mode) -> list[str]:
        """Everything an event that changes the work reads, checked before it changes anything (a refused
        event must leave the stroke count as it was): the models (at least one, each name valid), the
        explainer and the table rows. One sentence for the first bad one."""
        names = self.check_models(names)
        if not names:
            raise gr.Error("Select at least one model.")
        explainers = [v for _, v in explainer_choices()]
        if not isinstance(explainer, str) or explainer not in explainers:
            raise gr.Error(f"There is no explainer called {explainer!r}: use one of {', '.join(explainers)}.")
        if rows_mode not in ROWS:
            raise gr.Error(f"The table rows are {' or '.join(repr(r) for r in ROWS)}, not {rows_mode!r}.")
        return names

    def check_stroke(self, names, inpainter, explainer, rows_mode) -> list[str]:
        """``check_settings`` for an event that removes a region: the inpainter's name too (one that cannot run
        here is said by the inpainter itself, before the stroke is applied)."""
        names = self.check_settings(names, explainer, rows_mode)
        known = [sp.name for sp in ic_zoo.list_plugins("inpainter")]
        if not isinstance(inpainter, str) or inpainter not in known:
            raise gr.Error(f"There is no inpainter called {inpainter!r}: use one of {', '.join(known)}.")
        return names

    @staticmethod
    def state_of(st, request=None) -> AppState:
        """The tab's state. A tab whose replica stopped reaches this one with a fresh state: its first
        event here (when the proxy says where it was pinned, see ic_zoo.app.serve.moved_here) marks the
        state expired, so that the handler says so in one sentence and the next image starts afresh."""
        from .. import serve

        st = st if isinstance(st, AppState) else AppState()
        if not st.arrived:
            st.arrived = True
            if st.session is None and request is not None and serve.moved_here(request):
                st.expired = serve.MOVED
        return st

    @classmethod
    def need_session(cls, st, request=None) -> AppState:
        """The tab's state with its image, or one sentence: a tab that moved here from a stopped replica is
        told so (``state_of``), one that never had an image is asked for one."""
        st = cls.state_of(st, request)
        if isinstance(st, AppState) and st.session is None and st.expired:
            raise gr.Error(expired_sentence(st.expired))
        if not isinstance(st, AppState) or st.session is None:
            raise gr.Error("Pick an example or upload an image first.")
        return st

    def shown_class(self, st, name: str) -> int:
        """The class a model's maps show: the one picked for it, else its original top-1."""
        r = st.result.models[name] if st.result and name in st.result.models else None
        return st.selected.get(name, r.tracked[0].index if r else 0)

    def new_session(self, st: AppState, img: np.ndarray, source: str, names=None):
        """A new image: a new session; returns the models to switch to when the image's domain calls for
        another zoo and nobody named models (no --model, no choice in this tab), else None."""
        self._begin(st, ic_zoo.Session(fit_max_side(img, self.max_side), device=self.device,
                                       pretrained=self.pretrained), source)
        for msg in st.session.warnings:  # a tiny image, NaN pixels: beside the results, and as a toast
            gr.Warning(msg)
            st.notice = f"{st.notice} {present.md_text(msg)}".strip()
        if not self.auto_models or st.user_chose:
            return None
        want = self.zoo_for[st.domain]
        return want if list(names or []) != want else None

    @staticmethod
    def _begin(st: AppState, session, source: str, selected: dict | None = None) -> None:
        """The tab starts on ``session`` (a new image, or work rebuilt from the browser): everything of
        the image before it is dropped, its work record included (written anew by ``work_record``)."""
        st.session, st.source, st.selected = session, source, dict(selected or {})
        st.rows, st.result, st.expired, st.slow_of, st.pending, st.original_view = {}, None, "", None, None, None
        st.work_key = st.work_sent = None
        st.domain = zoo.image_domain(session.original)

    def boxes(self, st, names):
        return {m: self.clf(m).input_box(st.session.original.shape) for m in names}

    def editor_value(self, st, shown):
        """The /edit API's canvas value: the image shown (``st.displayed``), as a PNG file the editor composes."""
        return {"background": self.editor_png(st, shown, "last_png"), "layers": [], "composite": None}  # the canvas composes it

    @staticmethod
    def paint_value(st, shown) -> dict:
        """The page's canvas value (painter): the image shown as one JPEG in the answer, and the last stroke
        applied (the page stops resending it)."""
        st.paint_v += 1
        return painter.value(shown, str(st.paint_v), st.paint_ack)

    # -- what the page shows -------------------------------------------------------------------------------
    def show(self, st: AppState, names, explainer, rows_mode, show_editor=True, show_original=True,
             stroke_effect=True, switch_to=None, api_canvas=True, page_canvas=True) -> dict:
        """Everything an event changes, by component: the model columns, the canvas, the picker, the
        original, the before / after slider, the click-select image, the domain line, the status and the
        JSON. Components left out keep their value. ``switch_to``: models replacing ``names`` (the picker
        is updated); otherwise the picker is left alone. ``api_canvas=False``: the page's canvas only (its
        stroke), not the /edit API's PNG too; ``page_canvas=False``: the API's PNG only (/edit, which the
        page never sends: not the page canvas's JPEG too)."""
        *_, out = self.show_steps(st, names, explainer, rows_mode, show_editor, show_original, stroke_effect,
                                  switch_to, api_canvas, page_canvas, early=False)
        return out

    def show_steps(self, st: AppState, names, explainer, rows_mode, show_editor=True, show_original=True,
                   stroke_effect=True, switch_to=None, api_canvas=True, page_canvas=True, early=True):
        """``show`` in two answers, for a handler that yields (the page's stroke): with ``early``, first the
        canvas's new image and the status line, as soon as the models have classified the edit, then
        everything (the columns, their tables and maps, the JSON; the canvas and the status again, the
        same values, so that the last answer alone is the whole result, as an API client reads it). The
        columns follow the status line by the time their maps and pictures take (issue 35)."""
        ui = self.ui
        if switch_to is not None:
            names = switch_to
        names = self.check_models(names)
        out: dict = {ui.state: st}
        if switch_to is not None:
            out[ui.pickers.models] = gr.update(value=names)
        if st.session is None:
            if show_editor:
                out[ui.editor.canvas] = None
                out[ui.editor.paint] = self.paint_value(st, None)
            out.update({ui.tools.original: None, ui.results.domain_md: "", ui.tools.result_json: None,
                        **props_once(st, ui.results.domain_btn, visible=False)})
            out.update(ui.results.compare.clear(st))
            notice = st.take_notice()
            if notice:
                out[ui.editor.status] = notice
            yield out
            return
        if not names:
            raise gr.Error("Select at least one model.")
        st.models = names
        interactive, slow_note = present.interactive_explainer(explainer)
        t0 = time.perf_counter()
        # one forward per model serves the prediction and the maps (the explainer's taps ride along)
        res = st.session.evaluate(names, explainer=interactive, map_classes=[])
        st.result = res
        s = st.session
        if show_editor:
            shown = st.displayed = present.burn_frames(s.modified, self.boxes(st, names))
            if page_canvas:
                out[ui.editor.paint] = self.paint_value(st, shown)
            if api_canvas:
                out[ui.editor.canvas] = self.editor_value(st, shown)
            # the slider and the click-select image only while they are shown (each is two or one more
            # images encoded and downloaded per stroke): their toggles send them when opened
            if st.comparing:
                out[ui.editor.slider] = (s.original, s.modified)
            if st.selecting:
                out[ui.editor.click_img] = s.modified
        flipped, notice = [m for m in names if res.models[m].top1_changed], st.take_notice()
        if early:  # the status line as soon as the models have answered (the flips are known)
            out[ui.editor.status] = present.status_line(s, time.perf_counter() - t0, flipped, notice,
                                                        done="models (their maps follow)")
            yield dict(out)
        if show_original or st.original_view is None:
            st.original_view = present.boxes_overlay(s.original, self.boxes(st, names))
            out[ui.tools.original] = st.original_view
        views = []
        for m in names:
            r = res.models[m]
            view, _ = model_view(s, m, r, st.selected.get(m, r.tracked[0].index), interactive,
                                 rows_mode="modified" if rows_mode == ROWS[1] else "tracked", slow_note=slow_note,
                                 effect=stroke_effect, trust="later")  # measured by the follow-up
            st.rows[m] = view.rows
            views.append(view)
        out.update(ui.results.compare.show(st, views, stamp=len(s.edits)))
        out[ui.editor.status] = present.status_line(s, time.perf_counter() - t0, flipped, notice)
        if st.slow_of is not None:
            out[ui.tools.slow_note] = present.slow_maps_note(st.slow_of, s)
        out.update(self.domain_and_json(st, names, res))
        out.update(self.work_record(st, names))
        yield out

    def job_record(self, st: AppState, names) -> str | None:
        """The tab's work as a signed record (what the browser keeps and a job rebuilds it from), or None when
        it is too large; the original is put in the image store once."""
        if st.work_key is None:
            st.work_key = self.images.put(st.session.original)
        return work.encode(work.Work.of(st.work_key, st.session, st.source, names, st.selected), self.work_secret)

    def slow_maps_job(self, args: dict, progress) -> bytes:
        """A slow-maps job: the work its signed record describes, rebuilt here, and each model's map of its
        class (PNG panels, their captions, the trust lines and the models that gave no map)."""
        w = work.decode(args["record"], self.work_secret)
        session = work.rebuild(w, self.images, self.make_session)
        return slow_maps(session, args["models"], args["explainer"], args["classes"], progress,
                         preview=getattr(progress, "preview", None))  # the job's previews (Jobs.follow)

    def work_record(self, st: AppState, names) -> dict:
        """The browser's work record, when the work changed since it was last written (ui.work): the
        original is put in the image store once, the record names it by hash."""
        s = st.session
        seen = (s.version, len(s.edits), tuple(names), tuple(sorted(st.selected.items())), st.source)
        if seen == st.work_sent or self.ui.work is None:
            return {}
        try:
            record = self.job_record(st, names)
        except Exception as exc:  # noqa: BLE001 - a store that fails costs the reload, never the event
            log.warning("the work record could not be written: %s", exc)
            return {}
        st.work_sent = seen
        return {self.ui.work: record}

    def restore(self, st: AppState, record) -> list[str] | None:
        """Rebuild the tab's work from the browser's record (a reload, or a tab moved to this replica): the
        models it showed, or None when there is no record. WorkError when it cannot be used."""
        if not record:
            return None
        w = work.decode(record, self.work_secret)
        self._begin(st, work.rebuild(w, self.images, self.make_session), w.source, w.selected)
        st.work_key = w.image  # stored already
        n = len(st.session.edits)
        st.notice = f"Your work on {w.source or 'the image'} was restored ({n} edit(s))."
        return w.models or None

    def result_doc(self, st, names, res, mismatch=None) -> dict:
        """The JSON the API returns for ``res``: the result, the last edit, the image, the maps each column
        shows with their trust scores, and the domain line when the models and the image do not fit
        (``mismatch``: :func:`zoo.domain_mismatch`'s answer, computed here when not given)."""
        s = st.session
        doc = res.to_dict()
        if s.edits:
            doc["last_edit"] = s.edits[-1].summary()
        doc["image_shape"] = list(s.original.shape)
        doc["image_domain"] = st.domain
        views = getattr(st, "views", None) or []
        for v in views:  # the maps each column shows (blank or not), beside the tracked classes' maps
            if v.map is not None and v.name in doc["models"]:
                doc["models"][v.name]["maps"][str(v.cls)] = v.map
        trust = {v.name: v.trust for v in views if v.trust}
        if trust:
            doc["trust"] = trust  # each shown map's deletion AUC beside random maps' (trust.TrustScore)
        if mismatch is None:
            mismatch = zoo.domain_mismatch(names, domain=st.domain)
        doc["domain_mismatch"] = bool(mismatch)
        if mismatch:
            doc["domain_note"] = mismatch[0]
        return doc

    def domain_and_json(self, st, names, res) -> dict:
        """The domain line (the models and the image do not fit: the fitting zoo in one click) and the
        JSON the API returns (:meth:`result_doc`). The button's props go only when they change."""
        ui = self.ui
        mismatch = zoo.domain_mismatch(names, domain=st.domain)  # (line, the fitting domain) or None
        if mismatch is None:
            out = {ui.results.domain_md: "", **props_once(st, ui.results.domain_btn, visible=False)}
        else:
            text, fits = mismatch
            out = {ui.results.domain_md: f"**{text}**",
                   **props_once(st, ui.results.domain_btn, visible=True,
                                value=f"Use the {zoo.DOMAIN_TITLE[fits]} models")}
        out[ui.tools.result_json] = self.result_doc(st, names, res, mismatch or ())
        return out
