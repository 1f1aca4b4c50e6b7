"""Study mode of the app: ``python app.py --study study.yaml [--db URL]``.

A participant arrives by a link (``?participant=P01.<token>``, signed with ``IC_ZOO_STUDY_SECRET`` by
``python -m ic_zoo study links``; plain ``?participant=P01`` only for a local study without that secret;
or an id generated and kept in the browser), accepts the consent text (nothing is recorded before), then
works through their tasks: paint over part of the task's image, see each model's top-5 and class map
(models in the participant's counterbalanced order), answer the questions. Every interaction is
committed to the log before the page answers, and a change counts only once its row is: one that cannot
be logged is undone and the participant asked to repeat it. A participant who leaves and comes back
resumes where they were, strokes included. Every change is fenced (db.py): the page carries the number
of the last logged event it shows (its base, a hidden field), and a change whose base is not the log's
(the participant went on in another tab, or on another replica after a reload) is refused with one
sentence asking for a reload, and nothing of it is logged; a resume moves the log on, so a stroke still
running on the old replica is refused when it tries to commit. Researchers see progress on ``/admin`` (password from the
environment; wrong passwords are logged and lock the page after a few). See ``security.py``.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import sqlalchemy as sa

from ... import imageio
from ...errors import IcZooError
from ...study.db import StaleBase, aware, now, open_engine
from ...study.definition import MAX_MODELS_PER_TASK, Study
from ...study.research import rebuild
from ...study.security import AdminThrottle, ClientRateCap, RateCap, env_int, issue, new_id, study_secrets, verify
from .. import gradio_util, jobs, painter, watchdog
from ..comparison import Comparison, comparison, model_view
from ..gradio_util import editor, editor_rgb, fit_max_side, guarded, same_image, stroke_mask, write_editor_png
from ..serve import client_address

log = logging.getLogger("ic_zoo.study")
MAX_QUESTIONS = 6
PARTICIPANT_COLUMNS = ["participant", "order", "tasks_done", "events", "consented", "finished"]  # db.participant_progress
TASK_COLUMNS = ["task", "completed", "strokes", "attention_passed"]  # StudyStore.task_progress
MAX_TEXT = 5000
CLIENT_TIME_JS = "(t, ...rest) => [Date.now(), ...rest]"  # the browser's clock rides along as the first input
BAD_ID = ("The participant id in this link is not valid: use 1 to 40 letters, digits, '-' or '_' "
          "(for example ?participant=P01). Please check the link you were given.")
BAD_LINK = ("The participant id in this link is not valid for this study: please open the exact link you were "
            "given (an id cannot be typed in or changed).")
TOO_MANY = "Many people are joining the study at this moment: please wait a minute and try again."
TOO_MANY_HERE = ("Many people have joined the study from this network in the last minute: please wait a minute "
                 "and try again.")
NOT_SAVED = ("Your last change could not be saved (the study log is busy), so it was undone: please make it "
             "again.")
MOVED = ("The server you were working on stopped: please reload the page to continue where you left off "
         "(everything you did is kept).")
NOT_ANSWERED = "Your answers could not be saved (the study log is busy): please submit them again."
STALE = ("This page shows an older image than the study log (the study went on in another tab or window, or on "
         "another server): please reload the page to continue where you left off; your last change was not saved.")
NO_BASE = -1  # the hidden base field's value when an API caller leaves it out: only the tab's own base is checked
RESUME_TRIES = 5


class StudyState:
    """One browser tab's place in the study (in gr.State, never global)."""

    def __init__(self) -> None:
        self.code: str | None = None  # the id offered on the consent screen
        self.participant: dict | None = None  # after consent
        self.task_index = 0
        self.session = None
        self.models: list[str] = []
        self.started = None  # server time the current task was first shown
        self.png: str | None = None
        self.sess: str | None = None  # Gradio's session hash, logged with each interaction
        self.views: list = []  # what the model columns show (ui.comparison)
        self.views_stamp: int | str = ""
        self.base: int | None = None  # the number of the participant's last logged event this tab's page shows
        self.paint_ack = 0  # the last canvas stroke this tab took (painter: the page resends until acknowledged)
        self.paint_v = 0  # the version of the image last sent to the canvas
        self.lock = threading.Lock()  # one event of a tab at a time: each starts from where the last one ended

    def release(self, reason: str) -> None:
        """Drop the images (gradio_util.Tabs: idle too long, or the server needed room); the place in
        the study stays, and the next event rebuilds the task's image from the log."""
        self.session, self.views = None, []
        if self.png is not None:
            Path(self.png).unlink(missing_ok=True)
            self.png = None

    def __deepcopy__(self, memo):
        return StudyState()


def saved_image_state(session) -> tuple:
    """What a change can alter in a Session: its edit and redo stacks, and the pixels their edits hold
    (images, patches; a stroke can retire the deepest one). References only, nothing is copied."""
    stacked = session._edits + session._redo
    return session, list(session._edits), list(session._redo), [e.snapshot() for e in stacked]


def put_back(saved: tuple):
    """The session of ``saved_image_state``, exactly as it was then (cached model results are recomputed)."""
    session, edits, redo, snaps = saved
    with session._lock:
        session._edits[:], session._redo[:] = edits, redo
        for e, snap in zip(edits + redo, snaps):
            e.restore(snap)
    return session


def _digest(text) -> bytes:
    """Passwords are compared as digests: equal lengths, so the comparison's time says nothing."""
    return hashlib.sha256(str(text).encode()).digest()


def default_db(study: Study) -> str:
    return str(Path.cwd() / f"{Path(study.source).stem or 'study'}.sqlite")


# -- the pages' panels ---------------------------------------------------------------------------------
@dataclass
class ConsentPanel:
    pid_note: gr.Markdown
    column: gr.Column
    pid_box: gr.Textbox
    agree: gr.Button


def consent_panel(study: Study) -> ConsentPanel:
    pid_note = gr.Markdown(elem_id="participant_note")
    with gr.Column(visible=True, elem_id="consent_screen") as col:
        gr.Markdown(study.consent or "Please confirm that you agree to take part.", elem_id="consent_text")
        pid_box = gr.Textbox(label="Your participant id", interactive=False, elem_id="participant")
        agree = gr.Button("I agree and want to take part", variant="primary", elem_id="agree", visible=False)
    return ConsentPanel(pid_note, col, pid_box, agree)


@dataclass
class TaskPanel:
    column: gr.Column
    header: gr.Markdown
    canvas: gr.ImageEditor  # not shown: the study_edit API's input (an image and its stroke layers)
    paint: gr.HTML  # the canvas participants paint on (painter: strokes sent as points)
    api_edit: gr.Button  # never shown: study_edit's trigger (API clients call it by name)
    undo: gr.Button
    reset: gr.Button
    status: gr.Markdown
    radios: list
    texts: list
    submit: gr.Button
    upload: gr.File
    compare: Comparison

    def questions(self) -> list:
        return [c for pair in zip(self.radios, self.texts) for c in pair]


def task_panel(study: Study, state: gr.State, editor_pixels: int) -> TaskPanel:
    """The task screen: the canvas, its buttons, the questions directly under it (on a phone too: the
    results come after them), and beside it the comparison view (the app's own)."""
    # "hidden", not False: the canvas is mounted with the page, so the change event the editor swallows
    # after mounting is not the participant's first stroke
    with gr.Column(visible="hidden", elem_id="task_screen") as col:
        with gr.Accordion("Instructions", open=False):
            gr.Markdown(study.instructions or "Paint over part of the image: the region is removed and the "
                        "models classify the edited image again. Then answer the questions below.")
        header = gr.Markdown(elem_id="task_header")
        with gr.Row():
            with gr.Column(scale=3):
                paint = painter.painter("Paint over what to remove", height=440)
                canvas = editor("Paint over what to remove", height=440, max_pixels=editor_pixels,
                                elem_id="editor_api", visible=False)
                api_edit = gr.Button(visible=False)
                gr.HTML(gradio_util.keys_help(redo=False), elem_id="brush_label")
                with gr.Row():
                    undo = gr.Button("Undo", size="sm", elem_id="undo")
                    reset = gr.Button("Reset", size="sm", elem_id="reset")
                status = gr.Markdown(elem_id="status")
                radios, texts = [], []
                for j in range(MAX_QUESTIONS):
                    radios.append(gr.Radio([], visible=False, elem_id=f"q{j}_choice"))
                    texts.append(gr.Textbox(visible=False, lines=2, max_length=MAX_TEXT, elem_id=f"q{j}_text"))
                submit = gr.Button("Submit and continue", variant="primary", elem_id="submit")
                upload = gr.File(label="…or use your own image", file_count="single", type="filepath",
                                 elem_id="upload", visible=study.allow_upload)
            with gr.Column(scale=2):
                compare = comparison(slots=MAX_MODELS_PER_TASK, info=False)
    return TaskPanel(col, header, canvas, paint, api_edit, undo, reset, status, radios, texts, submit, upload, compare)


@dataclass
class StudyPage:
    state: gr.State
    stored: gr.BrowserState
    client_time: gr.Number
    base: gr.Number
    consent: ConsentPanel
    task: TaskPanel
    done: gr.Markdown

    def screen_outputs(self) -> list:
        c, t = self.consent, self.task
        return ([self.state, self.stored, c.pid_box, c.pid_note, c.agree, c.column, t.column, t.header, t.canvas,
                 t.status, *t.compare.outputs()] + t.questions() + [self.done, t.paint, self.base])

    def edit_outputs(self) -> list:
        return [self.state, self.task.canvas, self.task.status, *self.task.compare.outputs(),
                self.task.paint, self.base]


# -- the study's server side ----------------------------------------------------------------------------
class StudyApp:
    """One study's handlers and what they share (the log, the secrets, the model slots, the tab states)."""

    def __init__(self, study: Study, db: str | None = None, device: str | None = None, pretrained: bool = True,
                 concurrency: int | None = None, plugins_dir: str | None = None, max_side: int = 768,
                 public: bool = False) -> None:
        from ic_zoo import discovery

        from ...study.db import StudyStore
        from ...study.definition import check_models

        discovery.ensure_loaded(**({"plugins_dir": plugins_dir} if plugins_dir else {}))
        problems = check_models(study)
        if problems:
            raise IcZooError("the study names things that are not available: " + "; ".join(problems) + ".")
        self.study, self.device, self.pretrained, self.max_side = study, device, pretrained, max_side
        self.link_secret, self.browser_secret = study_secrets(public or bool(os.environ.get("SPACE_ID")))
        self.joins = RateCap(env_int("IC_ZOO_STUDY_NEW_PER_MIN", 30))  # new participants a minute
        # and from one address (a script alone cannot use up the minute's places of everyone else)
        self.joins_per_client = ClientRateCap(env_int("IC_ZOO_STUDY_NEW_PER_CLIENT_PER_MIN", 10))
        self.throttle = AdminThrottle(env_int("IC_ZOO_ADMIN_MAX_FAILURES", 5), env_int("IC_ZOO_ADMIN_WINDOW_S", 900),
                                      env_int("IC_ZOO_ADMIN_MAX_DELAY_S", 60))
        self.store = StudyStore(open_engine(db, default_db(study)), study)  # one sentence if the log cannot open
        self.url = self.store.engine.url.render_as_string(hide_password=True)
        u = self.store.engine.url  # what the admin page says of the log: its kind and name, no server path
        self.log_name = f"{u.get_backend_name()} database '{os.path.basename(u.database or '') or '(memory)'}'"
        log.info("study '%s' (%s): logging to %s", study.title, study.key, self.url)
        if self.link_secret is None:
            log.warning("IC_ZOO_STUDY_SECRET is not set: participant ids in links are not signed (fine on this "
                        "machine only; a public study needs it)")
        conc = concurrency or int(os.environ.get("IC_ZOO_CONCURRENCY", "2"))
        # Model work and log writes are kept apart: every handler runs in the Gradio queue "study", which
        # admits several at once, and holds one of `conc` model slots only around model work (inpainting,
        # evaluating, rebuilding a task). Its log write comes after the slot is released, so a write waiting
        # on a locked log (at most IC_ZOO_DB_BUSY_TIMEOUT_S) never keeps anyone's models waiting.
        self.model_slots = threading.BoundedSemaphore(conc)
        self.common = dict(concurrency_id="study", concurrency_limit=max(8, 4 * conc))
        self.png_dir = Path(tempfile.mkdtemp(prefix="ic_zoo_study_"))
        self.n_tasks = len(study.tasks)
        # bounded memory (gradio_util.Tabs): a tab idle past IC_ZOO_SESSION_TTL_S, or the least recently used
        # beyond IC_ZOO_MAX_SESSIONS, gives up its images; its next event rebuilds them from the log
        self.tabs = gradio_util.Tabs(StudyState)
        # the canvas sends back what it was given (a task image, or an upload fitted to max_side): anything
        # far larger did not come from this page
        biggest = max([max_side * max_side] + [int(np.prod(im.shape[:2])) for im in self.store.images.values()])
        self.editor_pixels = min(imageio.max_pixels_default(), max(4 * biggest, 1_000_000))
        self.ui: StudyPage | None = None
        self.analysis_cache: dict = {}  # the admin page's live report: model maps per task
        # the analysis and the export are jobs (ic_zoo/app/jobs.py): in the deployment's PostgreSQL when
        # IC_ZOO_JOBS names it, so another replica finishes one whose replica died; keyed by the log's
        # version, so asking again before the log changed gets the same result
        self.jobs = jobs.Jobs.from_env()
        self.jobs.handle("study_export", self.export_job)
        self.jobs.handle("study_analysis", self.analysis_job)

    def held(self, fn):
        return self.tabs.hold(guarded(fn))

    def new_session(self, img):  # task images are used as the researcher made them; uploads are fitted first
        import ic_zoo

        return ic_zoo.Session(img, device=self.device, pretrained=self.pretrained)

    @staticmethod
    def sess_id(request, st=None) -> str | None:
        h = getattr(request, "session_hash", None) if request is not None else None
        if st is not None and h:
            st.sess = h
        return h

    @staticmethod
    def client_ms(t) -> float | None:
        try:
            return float(t) if t not in (None, "") and float(t) > 0 else None
        except (TypeError, ValueError):
            return None

    # -- views -------------------------------------------------------------------------------------------
    def editor_value(self, st):
        path = write_editor_png(st.session.modified,
                                self.png_dir / f"{id(st)}_{st.session.version}_{time.monotonic_ns()}.png")
        if st.png is not None:
            Path(st.png).unlink(missing_ok=True)
        st.png = path
        return {"background": path, "layers": [], "composite": None}

    @staticmethod
    def paint_value(st) -> dict:
        """The participant's canvas (painter): the task's image as one JPEG, the last stroke taken."""
        st.paint_v += 1
        return painter.value(st.session.modified, str(st.paint_v), st.paint_ack)

    def evaluate(self, st):
        """Each model's column (comparison.ModelView), and what the log keeps of them."""
        with self.model_slots:
            task = self.study.tasks[st.task_index]
            s = st.session
            res = s.evaluate(st.models, map_classes=[])
            views, logged = [], {}
            for m in st.models:
                r = res.models[m]
                c = r.tracked[0].index
                # participants see what the study designed; a trust line would be a new cue for them
                view, cm = model_view(s, m, r, c, task.explainer, trust=False)
                entry = r.to_dict()
                entry["map"] = {"explainer": task.explainer, "class": c}
                if cm is None:
                    entry["map"]["note"] = view.info
                elif s.edits:
                    mask = s.edits[-1].mask
                    entry["map"].update(mass_in_mask_original=cm.mass_in(mask, "original"),
                                        mass_in_mask_modified=cm.mass_in(mask, "modified"))
                views.append(view)
                logged[m] = entry
            return res, views, logged

    def shown(self, st, res, views) -> dict:
        """The canvas, the status and the model columns after a change."""
        t = self.ui.task
        return {self.ui.state: st, self.ui.base: st.base, t.canvas: self.editor_value(st), t.paint: self.paint_value(st),
                t.status: self.status_text(st, res), **t.compare.show(st, views, stamp=len(st.session.edits))}

    def unchanged(self, st) -> dict:
        """The edit outputs when nothing was applied: only the status is refreshed."""
        return {self.ui.state: st, self.ui.base: st.base, self.ui.task.status: self.status_text(st)}

    @staticmethod
    def status_text(st, res=None) -> str:
        s = st.session
        txt = f"{len(s.edits)} stroke(s) on this image"
        if s.edits:
            txt += f"; last one filled with {s.edits[-1].inpainter}"
        if res is not None:
            flipped = [m for m, r in res.models.items() if r.top1_changed]
            if flipped:
                txt += f"; **top-1 changed for {', '.join(flipped)}**"
        return txt

    def open_task(self, st, client_time=None, session=None) -> None:
        """Show the current task: rebuild its image from the log (resume) and log that it was shown."""
        task = self.study.tasks[st.task_index]
        p = st.participant
        st.models = self.study.model_order(task, p["ordinal"], p["code"])
        # the page is rebuilt from the log up to event `base`, and its row is logged only if the log is still
        # there (compare-and-set): a stroke of this participant that commits meanwhile (still running on
        # another replica, or in another tab) makes the rebuild start again with it; once the row is in,
        # any such stroke is refused at its commit. Either way the page shows what the log replays.
        for _ in range(RESUME_TRIES):
            base = self.store.version(p["id"])
            events = self.store.timeline(p["id"], task.id, upto=base)
            with self.model_slots:
                st.session = rebuild(self.new_session, self.store.images[task.id], events, self.store.image)
            shown = [e for e in events if e["kind"] == "task_shown"]
            st.started = aware(shown[0]["server_time"]) if shown else now()
            try:
                st.base = self.store.record(
                    p["id"], "task_resumed" if shown else "task_shown", task.id,
                    {"task_index": st.task_index, "model_order": st.models, "explainer": task.explainer,
                     "inpainter": task.inpainter, "replayed_edits": len(st.session.edits), "replayed_upto": base},
                    client_time=client_time, session=session, base=base)
                return
            except StaleBase as exc:
                log.info("participant %s: the log moved on while the task was rebuilt (%s); rebuilding again",
                         p["code"], exc)
        raise gr.Error(STALE, print_exception=False)

    def screen(self, st, note: str = "", stored=None) -> dict:
        """The full page: which screen is shown, and everything on it."""
        ui, c = self.ui, self.ui.consent
        consented = st.participant is not None
        done = consented and st.task_index >= self.n_tasks
        on_task = consented and not done
        out = {ui.state: st, c.pid_box: st.code or "", c.pid_note: note,
               c.agree: gr.update(visible=st.code is not None and not consented),
               c.column: gr.update(visible=not consented), ui.task.column: gr.update(visible=True if on_task else "hidden")}
        if stored is not None:
            out[ui.stored] = stored
        out[ui.base] = st.base
        if on_task:
            out.update(self.task_screen(st))
        code = st.participant["code"] if consented else ""
        out[ui.done] = (f"## Thank you!\nYou have finished all {self.n_tasks} tasks. Your participant id is "
                        f"**{code}**; you can close this page." if done else "")
        return out

    def task_screen(self, st) -> dict:
        t, task = self.ui.task, self.study.tasks[st.task_index]
        header = f"## Task {st.task_index + 1} of {self.n_tasks}\n{task.prompt}"
        if task.time_limit_s:
            header += (f"\n\n*Suggested time: {task.time_limit_s / 60:.0f} min. You can still answer after it; "
                       "the answer is then marked late.*")
        res, views, _ = self.evaluate(st)
        out = {t.header: header, **self.shown(st, res, views)}
        for j in range(MAX_QUESTIONS):
            q = task.questions[j] if j < len(task.questions) else None
            radio, text = t.radios[j], t.texts[j]
            if q is None:
                out.update({radio: gr.update(visible=False, value=None), text: gr.update(visible=False, value="")})
            elif q.type == "text":
                out.update({radio: gr.update(visible=False, value=None),
                            text: gr.update(visible=True, label=q.text + ("" if q.required else " (optional)"),
                                            value="")})
            else:
                choices = q.choices if q.type == "choice" else [str(v) for v in range(q.min, q.max + 1)]
                label = q.text + (f" ({q.min} = lowest, {q.max} = highest)" if q.type == "scale" else "")
                out.update({radio: gr.update(visible=True, label=label, choices=choices, value=None),
                            text: gr.update(visible=False, value="")})
        return out

    # -- arriving: the link, the consent -----------------------------------------------------------------
    def on_load(self, stored, request: gr.Request):
        st = StudyState()
        params = dict(request.query_params) if request is not None else {}
        if "participant" in params:
            issued = params.get("participant")
            code = verify(self.link_secret, issued)
            if code is None:
                return self.screen(st, BAD_ID if self.link_secret is None else BAD_LINK)
        else:  # the id this browser was given before, or a new random one
            issued, code = stored, verify(self.link_secret, stored)
            if code is None:
                code = new_id()
                issued = code if self.link_secret is None else issue(self.link_secret, code)
        st.code = issued  # shown on the consent screen and sent back with the consent, as issued
        self.sess_id(request, st)
        row = self.store.participant(code)
        if row is None:
            return self.screen(st, "", stored=issued)
        return self._enter(st, row, None, self.sess_id(request), issued, resumed=True)

    def _enter(self, st, row, client_time, session, stored, resumed):
        st.participant = row
        st.task_index = row["task_index"]
        if st.task_index < self.n_tasks:
            self.open_task(st, client_time, session)
        note = "Welcome back: you continue where you left off." if resumed and st.task_index < self.n_tasks else ""
        return self.screen(st, note, stored=stored)

    def on_consent(self, t, code, st, request: gr.Request):
        st = st if isinstance(st, StudyState) else StudyState()
        issued, code = code, verify(self.link_secret, code)
        if code is None:
            raise gr.Error(BAD_ID if self.link_secret is None else BAD_LINK, print_exception=False)
        st.code = issued
        self.sess_id(request, st)
        ip = request.client.host if (self.study.log_ip and request is not None and request.client) else None
        existed = self.store.participant(code) is not None
        if not existed:  # refused before the log: no Latin-square row is used
            host = client_address(request)  # None behind an untrusted proxy: the global cap alone
            if host is not None and not self.joins_per_client.take(host):
                raise gr.Error(TOO_MANY_HERE, print_exception=False)
            if not self.joins.take():
                if host is not None:
                    self.joins_per_client.give_back(host)
                raise gr.Error(TOO_MANY, print_exception=False)
        row = self.store.consent(code, ip=ip, client_time=self.client_ms(t), session=self.sess_id(request))
        return self._enter(st, row, self.client_ms(t), self.sess_id(request), issued, resumed=existed)

    def wire_arrival(self, demo: gr.Blocks) -> None:
        ui = self.ui
        demo.load(self.held(self.on_load), [ui.stored], ui.screen_outputs(), api_visibility="private",
                  show_progress_on=[ui.consent.pid_note], **self.common)
        ui.consent.agree.click(self.held(self.on_consent), [ui.client_time, ui.consent.pid_box, ui.state],
                               ui.screen_outputs(), api_name="consent", js=CLIENT_TIME_JS,
                               show_progress_on=[ui.consent.pid_note], **self.common)

    # -- a task: strokes, undo / reset, an upload, the answers ---------------------------------------------
    def need_task(self, st, request=None, base=None):
        if not isinstance(st, StudyState) or st.participant is None:
            from .. import serve

            if request is not None and serve.moved_here(request):  # its replica stopped: the log has it all
                raise gr.Error(MOVED, print_exception=False)
            # the page shows a task (its base is a logged event) but this server has no tab for it: the
            # server it was on stopped or restarted, or the request reached another one (no proxy header)
            try:
                shows_task = base is not None and int(base) != NO_BASE
            except (TypeError, ValueError):
                shows_task = False
            if shows_task:
                raise gr.Error(MOVED, print_exception=False)
            raise gr.Error("Please read and accept the consent text first.", print_exception=False)
        if st.task_index >= self.n_tasks:
            raise gr.Error("You have finished the study; thank you!", print_exception=False)
        if st.session is None:  # released by Tabs (idle, or the server needed room): rebuilt from the log
            task = self.study.tasks[st.task_index]
            with self.model_slots:
                st.session = rebuild(self.new_session, self.store.images[task.id],
                                     self.store.timeline(st.participant["id"], task.id, upto=st.base), self.store.image)
        return st

    @staticmethod
    def tab_lock(st):
        import contextlib

        return st.lock if isinstance(st, StudyState) else contextlib.nullcontext()

    def check_base(self, st, base) -> None:
        """Refuse (one sentence, nothing changed) a change from a page behind this tab (``base``, the page's
        hidden field, when given) or a tab behind the log. Checked before any work; the log checks again
        at commit."""
        if base is not None and int(base) != NO_BASE and int(base) != st.base:
            log.info("participant %s: a change based on event %s refused (this tab is at event %s)",
                     st.participant["code"], base, st.base)
            raise gr.Error(STALE, print_exception=False)
        try:
            current = self.store.version(st.participant["id"])
        except sa.exc.SQLAlchemyError:  # an unreadable log: the commit's compare-and-set still decides
            return
        if current != st.base:
            log.info("participant %s: a change based on event %s refused (the log is at event %s)",
                     st.participant["code"], st.base, current)
            raise gr.Error(STALE, print_exception=False)

    def logged_change(self, st, kind, t, request, change):
        """Make a change (``change()`` returns its payload and mask), evaluate it, log it, and return the
        edit outputs. It counts only once its row is committed: when the write fails (a locked or
        unreachable log, within the busy timeout) the tab's image is put back exactly as it was (edits,
        redo stack, image) and the participant is asked to make the change again; earlier rows stay."""
        before = saved_image_state(st.session)
        try:
            payload, mask = change()
            t0 = time.perf_counter()
            res, views, logged = self.evaluate(st)
            payload.update(models=logged, model_order=st.models, pretrained=self.pretrained,
                           n_edits=len(st.session.edits), compute_ms=round(1000 * (time.perf_counter() - t0), 2),
                           seconds_on_task=round((now() - st.started).total_seconds(), 3))
            st.base = self.store.record(st.participant["id"], kind, self.study.tasks[st.task_index].id, payload,
                                        mask=mask, client_time=self.client_ms(t), session=self.sess_id(request),
                                        base=st.base)
            log.info("participant %s: %s logged (%d edit(s) on task %s)", st.participant["code"], kind,
                     len(st.session.edits), self.study.tasks[st.task_index].id)
        except BaseException as exc:
            st.session = put_back(before)
            if isinstance(exc, StaleBase):  # another tab or replica logged first: nothing of this was
                log.warning("participant %s: a %s was refused at commit (%s)", st.participant["code"], kind, exc)
                raise gr.Error(STALE, print_exception=False) from None
            if not isinstance(exc, sa.exc.SQLAlchemyError):
                raise
            why = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
            log.warning("participant %s: a %s could not be logged (%s); it was undone", st.participant["code"],
                        kind, why)
            gr.Warning(NOT_SAVED)
            return {self.ui.state: st, self.ui.base: st.base, self.ui.task.canvas: self.editor_value(st),
                    self.ui.task.paint: self.paint_value(st), self.ui.task.status: f"**{NOT_SAVED}**"}
        return self.shown(st, res, views)

    def on_edit(self, t, value, base, st, request: gr.Request):
        with self.tab_lock(st):
            return self._on_edit(t, value, base, st, request)

    def _on_edit(self, t, value, base, st, request):
        st = self.need_task(st, request, base)
        if not value or value.get("background") is None:
            return self.unchanged(st)
        img = editor_rgb(value["background"])
        if not same_image(img, st.session.modified):
            raise gr.Error(STALE, print_exception=False)
        mask = stroke_mask(value)
        if mask is None or not mask.any():
            return self.unchanged(st)
        self.check_base(st, base)
        return self.logged_stroke(st, mask, t, request)

    def logged_stroke(self, st, mask, t, request) -> dict:
        """Apply the participant's stroke with the task's inpainter and log it (``logged_change``)."""
        inpainter = self.study.tasks[st.task_index].inpainter

        def stroke():
            with self.model_slots:
                edit = st.session.apply(mask, inpainter)
            return edit.summary(), edit.mask

        return self.logged_change(st, "stroke", t, request, stroke)

    def on_stroke(self, t, value, base, st, request: gr.Request):
        with self.tab_lock(st):
            return self._on_stroke(t, value, base, st, request)

    def _on_stroke(self, t, value, base, st, request):
        """The participant's stroke as the canvas sends it (points): logged as the editor's strokes are. Its ids
        are taken once even when it cannot be logged (the participant is told, and paints it again)."""
        st = self.need_task(st, request, base)
        strokes, painted = painter.parse(value, st.paint_ack)  # a malformed one: its sentence (guarded)
        if not strokes:
            return self.unchanged(st)
        mask = painter.stroke_mask(strokes, painted, st.session.original.shape[:2])
        self.check_base(st, base)
        st.paint_ack = max(s["id"] for s in strokes)
        if not mask.any():  # (outside the image): nothing to log; the page's ink goes
            return {**self.unchanged(st), self.ui.task.paint: self.paint_value(st)}
        return self.logged_stroke(st, mask, t, request)

    def stack_op(self, op: str):
        def fn(t, base, st, request: gr.Request):
            with self.tab_lock(st):
                return run(t, base, st, request)

        def run(t, base, st, request):
            st = self.need_task(st, request, base)
            s = st.session
            if not {"undo": s.can_undo, "redo": s.can_redo, "reset": bool(s.edits)}[op]:
                gr.Info(f"Nothing to {op}.")
                return self.unchanged(st)
            self.check_base(st, base)

            def do():
                getattr(st.session, op)()
                return {}, None

            return self.logged_change(st, op, t, request, do)

        fn.__name__ = f"on_{op}"
        return fn

    def on_upload(self, t, path, base, st, request: gr.Request):
        with self.tab_lock(st):
            return self._on_upload(t, path, base, st, request)

    def _on_upload(self, t, path, base, st, request):
        st = self.need_task(st, request, base)
        if not path:
            return self.unchanged(st)
        self.check_base(st, base)
        img = fit_max_side(imageio.load_image(path), self.max_side)
        key = "upload:" + hashlib.sha256(img.tobytes()).hexdigest()[:16]

        def use_it():
            sha = self.store.store_image(key, img)
            st.session = self.new_session(img)
            return {"image_key": key, "image_sha256": sha, "shape": list(img.shape),
                    "filename": os.path.basename(str(path))}, None

        return self.logged_change(st, "upload", t, request, use_it)

    def on_submit(self, t, *args):  # (client time, the question inputs..., base, state)
        with self.tab_lock(args[-1]):
            return self._on_submit(t, *args)

    def _on_submit(self, t, *args):
        *vals, base, st = args
        st = self.need_task(st, None, base)
        task = self.study.tasks[st.task_index]
        radios, texts = vals[:MAX_QUESTIONS], vals[MAX_QUESTIONS:2 * MAX_QUESTIONS]
        answers = {}
        for j, q in enumerate(task.questions):
            a = texts[j] if q.type == "text" else radios[j]
            a = None if a is None or (isinstance(a, str) and not a.strip()) else str(a).strip()
            if a is None:
                if q.required:
                    raise gr.Error(f"Please answer: {q.text}", print_exception=False)
            elif q.type == "choice" and a not in q.choices:
                raise gr.Error(f"'{a}' is not one of the choices for: {q.text}", print_exception=False)
            elif q.type == "scale" and not (a.lstrip("-").isdigit() and q.min <= int(a) <= q.max):
                raise gr.Error(f"Please choose a number from {q.min} to {q.max} for: {q.text}", print_exception=False)
            elif q.type == "text" and len(a) > MAX_TEXT:
                raise gr.Error(f"Please keep the answer to '{q.text}' under {MAX_TEXT} characters.",
                               print_exception=False)
            answers[q.id] = a
        if base is not None and int(base) != NO_BASE and int(base) != st.base:
            raise gr.Error(STALE, print_exception=False)
        elapsed = (now() - st.started).total_seconds()
        late = bool(task.time_limit_s and elapsed > task.time_limit_s)
        try:
            r = self.store.answer(st.participant["id"], st.task_index, answers,
                                  {"answers": answers, "late": late, "seconds_on_task": round(elapsed, 3),
                                   "n_edits": len(st.session.edits), "model_order": st.models},
                                  client_time=self.client_ms(t), session=st.sess, base=st.base)
        except StaleBase as exc:  # another tab or replica logged first: this page's answers are not logged
            log.warning("participant %s: answers refused (%s)", st.participant["code"], exc)
            raise gr.Error(STALE, print_exception=False) from None
        except sa.exc.SQLAlchemyError as exc:  # one transaction: nothing of it was kept
            log.warning("participant %s: answers could not be logged (%s)", st.participant["code"],
                        type(exc).__name__)
            raise gr.Error(NOT_ANSWERED, print_exception=False) from None
        st.task_index, st.base = r["task_index"], r["seq"]
        if st.task_index < self.n_tasks:
            self.open_task(st, self.client_ms(t), st.sess)
        note = "" if r["advanced"] else "That task was already submitted (perhaps in another tab); here is where you are now."
        return self.screen(st, note)

    def wire_task(self) -> None:
        ui, t = self.ui, self.ui.task
        busy = dict(js=CLIENT_TIME_JS, show_progress_on=[t.status], **self.common)
        # the participant paints on ``paint`` (points); API clients send an image and its layers to study_edit,
        # whose trigger the page never shows
        t.paint.submit(self.held(self.on_stroke), [ui.client_time, t.paint, ui.base, ui.state], ui.edit_outputs(),
                       api_name="study_stroke", trigger_mode="always_last", **busy)
        t.api_edit.click(self.held(self.on_edit), [ui.client_time, t.canvas, ui.base, ui.state], ui.edit_outputs(),
                         api_name="study_edit", trigger_mode="always_last", **busy)
        for btn, op in ((t.undo, "undo"), (t.reset, "reset")):
            btn.click(self.held(self.stack_op(op)), [ui.client_time, ui.base, ui.state], ui.edit_outputs(),
                      api_name=f"study_{op}", **busy)
        if self.study.allow_upload:
            t.upload.upload(self.held(self.on_upload), [ui.client_time, t.upload, ui.base, ui.state], ui.edit_outputs(),
                            api_name="study_upload", **busy)
        t.submit.click(self.held(self.on_submit), [ui.client_time] + t.radios + t.texts + [ui.base, ui.state],
                       ui.screen_outputs(), api_name="submit", js=CLIENT_TIME_JS,
                       show_progress_on=[ui.consent.pid_note], **self.common)

    # -- the researchers' page -------------------------------------------------------------------------
    def admin_ok(self, password, request):
        """Every admin handler starts here: an address that must wait (security.AdminThrottle) is told how
        long before its password is looked at; a wrong one is logged (the address, never the password) and
        counted."""
        want = self.study.password()
        if not want:
            raise gr.Error(f"The admin page is disabled: set the environment variable "
                           f"{self.study.admin_password_env} before starting the app.", print_exception=False)
        host = (request.client.host if request is not None and request.client else None) or "unknown"
        throttle = self.throttle  # the address is the TCP peer, or what a trusted proxy says (serve.trust_proxies)
        wait = throttle.wait_for(host)
        if wait > 0:
            raise gr.Error(f"Too many wrong passwords: try again in {math.ceil(wait)} s.", print_exception=False)
        if not password or not hmac.compare_digest(_digest(password), _digest(want)):  # constant time
            n = throttle.failed(host)
            log.warning("admin: wrong password from %s (%d in a row; the next try waits %.0f s)", host, n,
                        throttle.delay(n))
            raise gr.Error("Wrong password.", print_exception=False)
        throttle.succeeded(host)

    def on_admin(self, password, request: gr.Request):
        import pandas as pd

        self.admin_ok(password, request)
        parts = self.store.progress()
        tasks = self.store.task_progress()
        done = sum(1 for p in parts if p["finished"])
        summary = (f"**{self.study.title}** (key `{self.study.key}`, log: {self.log_name}): {len(parts)} participant(s), "
                   f"{done} finished, {self.n_tasks} task(s).")
        return summary, pd.DataFrame(parts, columns=PARTICIPANT_COLUMNS), pd.DataFrame(tasks, columns=TASK_COLUMNS)

    def export_job(self, args: dict, progress) -> bytes:
        """The log's export (CSV, JSON, masks) as a job's result: one zip."""
        from ...study.research import export

        self._own_study(args)
        d = Path(tempfile.mkdtemp(prefix="ic_zoo_study_export_"))
        try:
            progress(0.1, "exporting the log")
            export(self.store.engine, d / "export", self.study.key)
            return jobs.pack({"name": f"study_{self.study.key}.zip"}, {"export.zip": _zip_folder(d / "export")})
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def analysis_job(self, args: dict, progress) -> bytes:
        """The humans-vs-models report of the log as a job's result: its HTML body and its zip. It holds one
        model slot, so participants keep the others."""
        from ...study.analysis import analyze, report_body

        self._own_study(args)
        d = Path(tempfile.mkdtemp(prefix="ic_zoo_study_analysis_"))
        try:
            progress(0.05, "analysing the log")
            with self.model_slots:
                doc = analyze(self.store.engine, d / "analysis", self.study.key, n_boot=300, device=self.device,
                              log=lambda s: log.info("analysis: %s", s), cache=self.analysis_cache)
            when = time.strftime("%H:%M:%S")
            body = f"<p>Computed at {when} from the log as it was then.</p>" + report_body(doc, doc.get("figures", {}))
            return jobs.pack({"body": body, "name": f"analysis_{self.study.key}.zip"},
                             {"analysis.zip": _zip_folder(d / "analysis")})
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def _own_study(self, args: dict) -> None:
        if args.get("study") != self.study.key:
            raise IcZooError(f"This server runs study {self.study.key}, not {args.get('study')}.")

    def _job_file(self, kind: str, progress=None) -> tuple[dict, str]:
        """Run (or reuse) the job of ``kind`` on the log as it is now; its doc and its zip, written here
        (a file this replica serves, whichever replica computed it)."""
        args = {"study": self.study.key, "log": self.store.log_version()}
        key = self.jobs.submit(kind, args)
        st = self.jobs.wait(key, progress)
        doc, files = jobs.unpack(st.result)
        d = Path(tempfile.mkdtemp(prefix="ic_zoo_study_job_"))
        path = d / doc["name"]
        path.write_bytes(next(iter(files.values())))
        return doc, str(path)

    def on_admin_export(self, password, request: gr.Request):
        self.admin_ok(password, request)
        return self._job_file("study_export")[1]

    def on_admin_analysis(self, password, request: gr.Request, progress=gr.Progress()):
        """The humans-vs-models report of the log as it is now (model maps kept between refreshes)."""
        self.admin_ok(password, request)
        doc, path = self._job_file("study_analysis", lambda f, n: progress(f, desc=n))
        return doc["body"], path

    def admin_page(self) -> None:
        """The /admin page (by URL only): progress and the log's export, behind the admin password."""
        import pandas as pd

        gr.Markdown(f"# {self.study.title}: progress (researchers only)")
        pw = gr.Textbox(label="Admin password", type="password", elem_id="admin_password")
        with gr.Row():
            show = gr.Button("Show progress", elem_id="admin_show")
            dl = gr.Button("Download the log (CSV, JSON, masks)", elem_id="admin_export")
        summary = gr.Markdown(elem_id="admin_summary")
        # their columns before the password is given (an empty Dataframe shows placeholder columns "1 2 3")
        per_p = gr.Dataframe(pd.DataFrame(columns=PARTICIPANT_COLUMNS), label="Per participant", interactive=False,
                             elem_id="admin_participants")
        per_t = gr.Dataframe(pd.DataFrame(columns=TASK_COLUMNS), label="Per task", interactive=False,
                             elem_id="admin_tasks")
        zip_file = gr.File(label="Export", interactive=False)
        show.click(guarded(self.on_admin), pw, [summary, per_p, per_t], api_name="admin_progress")
        dl.click(guarded(self.on_admin_export), pw, zip_file, api_name="admin_export")
        gr.Markdown("## Humans vs models\nWhat the participants removed against where each model looks (the "
                    "report of `python -m ic_zoo study analyze`), from the log as it is now.")
        with gr.Row():
            run = gr.Button("Analyse now", elem_id="admin_analyse")
            live = gr.Checkbox(label="Update every minute while this page is open", value=False,
                               elem_id="admin_live")
        report = gr.HTML(elem_id="admin_report")
        report_zip = gr.File(label="The analysis (CSV, JSON, figures, report.html)", interactive=False)
        timer = gr.Timer(60, active=False)
        live.change(lambda on: gr.Timer(active=bool(on)), live, timer, api_visibility="private")
        run.click(guarded(self.on_admin_analysis), pw, [report, report_zip], api_name="admin_analysis",
                  **self.common)
        timer.tick(guarded(self.on_admin_analysis), pw, [report, report_zip], api_visibility="private", **self.common)


def _zip_folder(folder: Path) -> bytes:
    """A folder as the bytes of one zip file."""
    return Path(shutil.make_archive(str(folder.parent / f"{folder.name}_zip"), "zip", folder)).read_bytes()


def build_study_demo(study: Study, db: str | None = None, device: str | None = None, pretrained: bool = True,
                     concurrency: int | None = None, plugins_dir: str | None = None,
                     max_side: int = 768, public: bool = False) -> gr.Blocks:
    """The study's pages. ``public``: reachable from other machines (``--share``, a non-loopback
    ``--host``; a Hugging Face Space always is): then IC_ZOO_STUDY_SECRET and IC_ZOO_BROWSER_SECRET must
    be set (one sentence if not)."""
    from .. import gradio_internals

    gradio_internals.check_version()  # one sentence outside the Gradio versions this app is tested on
    app = StudyApp(study, db, device, pretrained, concurrency, plugins_dir, max_side, public)
    with gr.Blocks(title=study.title, fill_width=True, delete_cache=(600, 3600)) as demo:
        state = gr.State(StudyState(), time_to_live=4 * app.tabs.ttl_s,
                         delete_callback=lambda st: st.release("idle") if isinstance(st, StudyState) else None)
        stored = gr.BrowserState(None, storage_key=f"ic_zoo_study_{study.key}", secret=app.browser_secret)
        client_time = gr.Number(visible=False, value=0)
        # the number of the last logged event the page shows: every change sends it, the log refuses a stale one
        base = gr.Number(visible=False, value=NO_BASE, precision=0, elem_id="edit_base")
        gr.Navbar(visible=False, main_page_name=False)  # participants see no "Home" / "Admin" links (the admin page is by URL)
        gradio_util.page_script(demo, gradio_util.NO_NAVIGATION_CSS)
        watchdog.install(demo, MOVED)  # no hang: a request that fails, or an event never answered, ends in MOVED
        gr.Markdown(f"# {study.title}")
        consent = consent_panel(study)
        task = task_panel(study, state, app.editor_pixels)
        done = gr.Markdown(elem_id="done")
        app.ui = StudyPage(state, stored, client_time, base, consent, task, done)
        app.wire_arrival(demo)
        app.wire_task()
    with demo.route("Admin", "/admin", show_in_navbar=False):
        app.admin_page()
    demo.study_store = app.store  # for tests and scripts
    demo.ic_zoo_closers = [app.jobs.close, app.store.engine.dispose]  # ic_zoo.app.serve closes the log after the last event
    demo.ic_zoo_tabs = app.tabs  # for tests
    demo.ic_zoo_study_app = app  # for tests (the admin throttle)
    return demo
