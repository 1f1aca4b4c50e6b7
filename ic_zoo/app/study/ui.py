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

``StudyApp`` stands on the platform both apps share (``ic_zoo.app.platform``); its handlers are in three
groups, as the main app's are: ``consent.py`` (arrival, consent, resume), ``task.py`` (strokes, edits,
uploads, answers) and ``admin.py`` (the researcher's page); ``pages.py`` holds the components, a tab's
state and the sentences.
"""
from __future__ import annotations

import json
import logging
import os
import threading

import gradio as gr
import numpy as np

from ... import imageio
from ...errors import IcZooError
from ...study.db import StaleBase, aware, now, open_engine
from ...study.definition import Study
from ...study.research import rebuild
from ...study.security import AdminThrottle, ClientRateCap, RateCap, env_int, study_secrets
from .. import page_assets, painter, watchdog
from . import conditions
from ..comparison import model_view
from ..platform import MAX_SIDE, AppPlatform

from .admin import AdminHandlers
from .consent import ConsentHandlers
from .pages import (MAX_QUESTIONS, MOVED, NO_BASE, PLATFORM_NAMES, RESUME_TRIES, STALE, StudyPage, StudyState,
                    consent_panel, default_db, task_panel)
from .pages import PARTICIPANT_COLUMNS, TASK_COLUMNS  # noqa: F401 (the page's names, for scripts and tests)
from .task import TaskHandlers

log = logging.getLogger("ic_zoo.study")


class StudyApp(ConsentHandlers, TaskHandlers, AdminHandlers, AppPlatform):
    """One study's handlers and what they share (the log, the secrets, the model slots), on the platform both
    apps stand on (``AppPlatform``: plugins, device, limits, tab store, image folder, jobs, error guard)."""

    def __init__(self, study: Study, db: str | None = None, device: str | None = None, pretrained: bool = True,
                 concurrency: int | None = None, plugins_dir: str | None = None, max_side: int = MAX_SIDE,
                 public: bool = False) -> None:
        from ...study.db import StudyStore

        self.study = study
        super().__init__(StudyState, device=device, pretrained=pretrained, max_side=max_side, plugins_dir=plugins_dir,
                         concurrency=concurrency, png_prefix="ic_zoo_study_")
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
        conc = self.concurrency
        # Model work and log writes are kept apart: every handler runs in the Gradio queue "study", which
        # admits several at once, and holds one of `conc` model slots only around model work (inpainting,
        # evaluating, rebuilding a task). Its log write comes after the slot is released, so a write waiting
        # on a locked log (at most IC_ZOO_DB_BUSY_TIMEOUT_S) never keeps anyone's models waiting.
        self.model_slots = threading.BoundedSemaphore(conc)
        self.common = dict(concurrency_id="study", concurrency_limit=max(8, 4 * conc))
        self.n_tasks = len(study.tasks)
        # bounded memory (the platform's tab store): a tab released gives up its images; its next event
        # rebuilds them from the log
        # the canvas sends back what it was given (a task image, or an upload fitted to max_side): anything
        # far larger did not come from this page
        biggest = max([max_side * max_side] + [int(np.prod(im.shape[:2])) for im in self.store.images.values()])
        self.editor_pixels = self.editor_limit(biggest)
        self.ui: StudyPage | None = None
        self.analysis_cache: dict = {}  # the admin page's live report: model maps per task
        # the analysis and the export are jobs (ic_zoo/app/jobs.py): in the deployment's PostgreSQL when
        # IC_ZOO_JOBS names it, so another replica finishes one whose replica died; keyed by the log's
        # version, so asking again before the log changed gets the same result (the platform's jobs)
        self.jobs.handle("study_export", self.export_job)
        self.jobs.handle("study_analysis", self.analysis_job)

    def check_start(self) -> None:
        """The study's models, inpainters and explainers, each available here: one sentence otherwise."""
        from ...study.definition import check_models

        problems = check_models(self.study)
        if problems:
            raise IcZooError("the study names things that are not available: " + "; ".join(problems) + ".")

    def held(self, fn):
        return self.tab_guarded(fn)

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
        # task images are used as the researcher made them; uploads are fitted first
        return {"background": self.editor_png(st, st.session.modified), "layers": [], "composite": None}

    @staticmethod
    def paint_value(st) -> dict:
        """The participant's canvas (painter): the task's image as one JPEG, the last stroke taken."""
        st.paint_v += 1
        return painter.value(st.session.modified, str(st.paint_v), st.paint_ack)

    def task_of(self, st):
        """The current task as this participant does it: their condition's overrides applied."""
        return self.study.task_for(self.study.tasks[st.task_index], st.condition)

    def evaluate(self, st, session=None):
        """Each model's column (comparison.ModelView) as the participant's condition shows it, and what the log
        keeps of them (the map as the explainer made it, whatever the page shows). ``session``: another
        session than the tab's (the image before a predict-then-see edit)."""
        with self.model_slots:
            task = self.task_of(st)
            s = session if session is not None else st.session
            res = s.evaluate(st.models, map_classes=[])
            mode = conditions.maps_mode(task)
            views, logged = [], {}
            for m in st.models:
                r = res.models[m]
                c = r.tracked[0].index
                # participants see what the study designed; a trust line would be a new cue for them
                view, cm = model_view(s, m, r, c, task.explainer, trust=False)
                entry = r.to_dict()
                entry["map"] = {"explainer": task.explainer, "class": c, "shown": mode}
                if cm is None:
                    entry["map"]["note"] = view.info
                elif s.edits:
                    mask = s.edits[-1].mask
                    entry["map"].update(mass_in_mask_original=cm.mass_in(mask, "original"),
                                        mass_in_mask_modified=cm.mass_in(mask, "modified"))
                seed = f"{self.study.seed}:{st.participant['code'] if st.participant else ''}:{task.id}:{m}:{len(s.edits)}"
                views.append(conditions.shown_view(view, s, r, cm, mode, seed))
                logged[m] = entry
            return res, views, logged

    @staticmethod
    def outcome_of(res, names) -> dict:
        """Each model's top-1 and top-5 labels in ``res`` (what a prediction is scored against)."""
        out = {}
        for m in names:
            labels = [c.label for c in res.models[m].modified[:5]]
            out[m] = {"top1": labels[0], "top5": labels}
        return out

    def shown(self, st, res, views, columns: bool | None = None) -> dict:
        """The canvas, the status and the model columns after a change. While a predict-then-see trial waits
        for its prediction (``st.pending``) the columns are not sent (``columns``: whether they are; by
        default unless a prediction is pending): the page keeps the answer the participant predicts from, and
        nothing of the models' answer to the edit leaves the server before the prediction is logged."""
        t = self.ui.task
        out = {self.ui.state: st, self.ui.base: st.base, t.canvas: self.editor_value(st), t.paint: self.paint_value(st),
               t.status: self.status_text(st, res), **self.predict_widgets(st)}
        if columns if columns is not None else st.pending is None:
            out.update(t.compare.show(st, views, stamp=len(st.session.edits)))
        return out

    def predict_widgets(self, st) -> dict:
        """The prediction questions: shown, for the models and with the choices of the pending trial; hidden
        when none is pending."""
        p = self.ui.task.predict
        if st.pending is None:
            return {p.column: gr.update(visible=False)}
        task, pend = self.task_of(st), st.pending
        ask = task.predict.ask
        out = {p.column: gr.update(visible=True), p.trial: pend["trial"],
               p.prompt: (f"**Before you see the models' answer:** predict what {'each model' if len(pend['models']) > 1 else pend['models'][0]} "
                          "will do with your edit, then commit your prediction."),
               p.confidence: gr.update(visible=task.predict.confidence, value=None)}
        for j, (flip, cls) in enumerate(zip(p.flips, p.classes)):
            m = pend["models"][j] if j < len(pend["models"]) else None
            if m is None:
                out.update({flip: gr.update(visible=False, value=None), cls: gr.update(visible=False, value=None)})
                continue
            now_top = pend["before"][m]["top1"]
            out[flip] = gr.update(visible="flip" in ask, value=None, choices=conditions.FLIP_CHOICES,
                                  label=f"{m}: will its top-1 class change? (now: {now_top})")
            out[cls] = gr.update(visible="class" in ask, value=None,
                                 choices=conditions.class_choices(pend["before"][m]["top5"]),
                                 label=f"{m}: which class will it say after your edit?")
        return out

    def before_session(self, st):
        """A session of the image before the pending trial's edit (the answer the participant predicts from)."""
        return self.make_session(st.session.before_last()[1])

    def unchanged(self, st) -> dict:
        """The edit outputs when nothing was applied: only the status is refreshed."""
        return {self.ui.state: st, self.ui.base: st.base, self.ui.task.status: self.status_text(st)}

    @staticmethod
    def status_text(st, res=None) -> str:
        s = st.session
        txt = f"{len(s.edits)} stroke(s) on this image"
        if s.edits:
            txt += f"; last one filled with {s.edits[-1].inpainter}"
        if st.pending is not None:  # nothing of the models' answer before the prediction is logged
            return txt + ". **Now predict what the models will do** (below), then commit your prediction."
        if res is not None:
            flipped = [m for m, r in res.models.items() if r.top1_changed]
            if flipped:
                txt += f"; **top-1 changed for {', '.join(flipped)}**"
        return txt

    def open_task(self, st, client_time=None, session=None) -> None:
        """Show the current task: rebuild its image from the log (resume) and log that it was shown. Tasks
        the participant's condition leaves out are passed over first (each logged as skipped); a
        predict-then-see task's prepared edit is made and logged when the task is first shown, and a trial
        still waiting for its prediction is found in the log again."""
        p = st.participant
        while st.task_index < self.n_tasks and not self.study.includes(self.study.tasks[st.task_index], st.condition):
            r = self.store.answer(p["id"], st.task_index, {}, {"skipped": True, "condition": st.condition.name},
                                  client_time=client_time, session=session)
            st.task_index, st.base = r["task_index"], r["seq"]
        if st.task_index >= self.n_tasks:
            return
        task = self.task_of(st)
        st.models = self.study.model_order(task, p["ordinal"], p["code"])
        # the page is rebuilt from the log up to event `base`, and its row is logged only if the log is still
        # there (compare-and-set): a stroke of this participant that commits meanwhile (still running on
        # another replica, or in another tab) makes the rebuild start again with it; once the row is in,
        # any such stroke is refused at its commit. Either way the page shows what the log replays.
        for _ in range(RESUME_TRIES):
            base = self.store.version(p["id"])
            events = self.store.timeline(p["id"], task.id, upto=base)
            with self.model_slots:
                st.session = rebuild(self.make_session, self.store.images[task.id], events, self.store.image)
            shown = [e for e in events if e["kind"] == "task_shown"]
            st.started = aware(shown[0]["server_time"]) if shown else now()
            try:
                st.base = self.store.record(
                    p["id"], "task_resumed" if shown else "task_shown", task.id,
                    {"task_index": st.task_index, "model_order": st.models, "explainer": task.explainer,
                     "inpainter": task.inpainter, "replayed_edits": len(st.session.edits), "replayed_upto": base},
                    client_time=client_time, session=session, base=base)
                self.find_trial(st, events)
                if task.predict is not None and task.edit is not None and not any(e["kind"] == "stroke" for e in events):
                    self.prepared_edit(st, task, client_time, session)
                return
            except StaleBase as exc:
                log.info("participant %s: the log moved on while the task was rebuilt (%s); rebuilding again",
                         p["code"], exc)
        raise gr.Error(STALE, print_exception=False)

    def find_trial(self, st, events) -> None:
        """The predict-then-see state of the task from its logged events: the trials revealed, and the trial
        waiting for its prediction (a stroke after the last prediction), if any."""
        st.pending, st.trials = None, sum(e["kind"] == "prediction" for e in events)
        if self.task_of(st).predict is None:
            return
        for e in reversed(events):
            if e["kind"] == "prediction":
                return
            if e["kind"] in ("undo", "redo", "reset", "upload"):
                return
            if e["kind"] == "stroke":
                pl = e["payload"] if isinstance(e["payload"], dict) else json.loads(e["payload"])
                if pl.get("before"):
                    st.pending = {"trial": st.trials + 1, "seq": e["seq"], "before": pl["before"],
                                  "models": pl["predict_models"], "shown_at": aware(e["server_time"])}
                return

    def start_trial(self, st, before: dict) -> dict:
        """What a predict-then-see edit logs beyond the stroke (the answer the participant predicts from, the
        models predicted); ``st.pending`` is set once the edit's row is committed."""
        task = self.task_of(st)
        return {"before": before, "predict_models": conditions.predicted_models(task, st.models),
                "trial": st.trials + 1}

    def prepared_edit(self, st, task, client_time, session) -> None:
        """Make and log the task's prepared edit (the researcher's mask); its trial waits for the prediction."""
        mask = imageio.load_mask(task.edit)
        if mask.shape != st.session.original.shape[:2]:
            mask = imageio.resize_mask(mask, st.session.original.shape[:2])
        with self.model_slots:
            before = self.outcome_of(st.session.evaluate(st.models, map_classes=[]), st.models)
            edit = st.session.apply(mask, task.inpainter)
        _, _, logged = self.evaluate(st)
        payload = {**edit.summary(), "prepared": True, "models": logged, "model_order": st.models,
                   "n_edits": len(st.session.edits), **self.start_trial(st, before)}
        st.base = self.store.record(st.participant["id"], "stroke", task.id, payload, mask=edit.mask,
                                    client_time=client_time, session=session, base=st.base)
        st.pending = {"trial": payload["trial"], "seq": st.base, "before": before,
                      "models": payload["predict_models"], "shown_at": now()}

    def screen(self, st, note: str = "", stored=None) -> dict:
        """The full page: which screen is shown, and everything on it."""
        ui, c = self.ui, self.ui.consent
        if st.withdrawn:  # the page shows only the withdrawal's sentence; the browser forgets the id
            return {ui.state: st, c.pid_box: "", c.pid_note: "", c.agree: gr.update(visible=False),
                    c.column: gr.update(visible=False), ui.task.column: gr.update(visible="hidden"),
                    ui.done: st.withdrawn, ui.base: st.base, ui.withdraw: gr.update(visible=False),
                    ui.stored: ""}
        consented = st.participant is not None
        done = consented and st.task_index >= self.n_tasks
        on_task = consented and not done
        out = {ui.state: st, c.pid_box: st.code or "", c.pid_note: note,
               c.agree: gr.update(visible=st.code is not None and not consented),
               c.column: gr.update(visible=not consented), ui.task.column: gr.update(visible=True if on_task else "hidden")}
        if stored is not None:
            out[ui.stored] = stored
        out[ui.base] = st.base
        out[ui.withdraw] = gr.update(visible=consented)
        if on_task:
            out.update(self.task_screen(st))
        code = st.participant["code"] if consented else ""
        out[ui.done] = (f"## Thank you!\nYou have finished all {self.n_tasks} tasks. Your participant id is "
                        f"**{code}**; you can close this page." if done else "")
        out[ui.redirect] = ""
        rec = self.study.recruitment
        if done and rec is not None:  # the platform's completion (or screen-out) code, and its page
            finish, url = rec.finish(st.platform_id or "", self.store.failed_checks(st.participant["id"]) > 0,
                                     st.platform_submit)
            where = PLATFORM_NAMES[rec.platform]
            out[ui.done] = (f"## Thank you!\nYou have finished all {self.n_tasks} tasks."
                            + (f" Your completion code is **{finish}**." if finish else "")
                            + (f" [Return to {where}]({url}): you are taken there in a few seconds." if url else
                               " You can close this page."))
            out[ui.redirect] = url
        return out

    def task_screen(self, st) -> dict:
        t, task = self.ui.task, self.study.tasks[st.task_index]
        header = f"## Task {st.task_index + 1} of {self.n_tasks}\n{task.prompt}"
        if task.time_limit_s:
            header += (f"\n\n*Suggested time: {task.time_limit_s / 60:.0f} min. You can still answer after it; "
                       "the answer is then marked late.*")
        if st.pending is not None:  # the columns show the answer the participant predicts from
            _, views, _ = self.evaluate(st, session=self.before_session(st))
            out = {t.header: header, **self.shown(st, None, views, columns=True)}
        else:
            res, views, _ = self.evaluate(st)
            out = {t.header: header, **self.shown(st, res, views)}
        for j in range(MAX_QUESTIONS):
            q = task.questions[j] if j < len(task.questions) else None
            radio, text = t.radios[j], t.texts[j]
            if q is None:
                out.update({radio: gr.update(visible=False, value=None), text: gr.update(visible=False, value="")})
            elif q.kind.widget == "text":  # the question's type decides its widget, label and choices
                out.update({radio: gr.update(visible=False, value=None),
                            text: gr.update(visible=True, label=q.kind.label(q), value="")})
            else:
                out.update({radio: gr.update(visible=True, label=q.kind.label(q), choices=q.kind.choices(q),
                                             value=None),
                            text: gr.update(visible=False, value="")})
        return out


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
        page_assets.page_script(demo, page_assets.NO_NAVIGATION_CSS)
        watchdog.install(demo, MOVED)  # no hang: a request that fails, or an event never answered, ends in MOVED
        gr.Markdown(f"# {study.title}")
        consent = consent_panel(study)
        task = task_panel(study, state, app.editor_pixels)
        done = gr.Markdown(elem_id="done")
        redirect = gr.Textbox(visible=False, elem_id="redirect")
        with gr.Accordion("Withdraw from the study", open=False, visible=False, elem_id="withdraw") as withdraw:
            gr.Markdown("You can stop at any time by closing this page. To withdraw, press the button: "
                        + ("everything recorded of your participation is deleted" if study.withdrawal == "delete" else
                           "what was recorded is kept, marked as withdrawn and left out of every analysis, as the "
                           "consent text said") + ", and nothing more is recorded.")
            withdraw_btn = gr.Button("Withdraw", variant="stop", elem_id="withdraw_btn")
        app.ui = StudyPage(state, stored, client_time, base, consent, task, done, withdraw, withdraw_btn, redirect)
        app.wire_arrival(demo)
        app.wire_task()
        app.wire_withdrawal()
    with demo.route("Admin", "/admin", show_in_navbar=False):
        app.admin_page()
    demo.study_store = app.store  # for tests and scripts
    demo.ic_zoo_closers = [app.jobs.close, app.store.engine.dispose]  # ic_zoo.app.serve closes the log after the last event
    demo.ic_zoo_tabs = app.tabs  # for tests
    demo.ic_zoo_study_app = app  # for tests (the admin throttle)
    return demo
