"""Study mode of the app: ``python app.py --study study.yaml [--db URL]``.

A participant arrives by a link (``?participant=P01.<token>``, signed with ``IC_ZOO_STUDY_SECRET`` by
``python -m ic_zoo study links``; plain ``?participant=P01`` only for a local study without that secret;
or an id generated and kept in the browser), accepts the consent text (nothing is recorded before), then
works through their tasks: paint over part of the task's image, see each model's top-5 and class map
(models in the participant's counterbalanced order), answer the questions. Every interaction is
committed to the log before the page answers, and a change counts only once its row is: one that cannot
be logged is undone and the participant asked to repeat it. A participant who leaves and comes back
resumes where they were, strokes included. Researchers see progress on ``/admin`` (password from the
environment; wrong passwords are logged and lock the page after a few). See ``security.py``.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import tempfile
import threading
import time
from pathlib import Path

import gradio as gr
import numpy as np
import sqlalchemy as sa

from .. import gradio_util, imageio, present
from ..errors import IcZooError
from ..gradio_util import editor, editor_rgb, fit_max_side, guarded, same_image, stroke_mask, write_editor_png
from .db import aware, now, open_engine
from .definition import Study
from .research import rebuild
from .security import AdminLockout, RateCap, env_int, issue, new_id, study_secrets, verify

log = logging.getLogger("ic_zoo.study")
MAX_MODELS = 4
MAX_QUESTIONS = 6
MAX_TEXT = 5000
CLIENT_TIME_JS = "(t, ...rest) => [Date.now(), ...rest]"  # the browser's clock rides along as the first input
BAD_ID = ("The participant id in this link is not valid: use 1 to 40 letters, digits, '-' or '_' "
          "(for example ?participant=P01). Please check the link you were given.")
BAD_LINK = ("The participant id in this link is not valid for this study: please open the exact link you were "
            "given (an id cannot be typed in or changed).")
TOO_MANY = "Many people are joining the study at this moment: please wait a minute and try again."
NOT_SAVED = ("Your last change could not be saved (the study log is busy), so it was undone: please make it "
             "again.")
NOT_ANSWERED = "Your answers could not be saved (the study log is busy): please submit them again."


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

    def release(self, reason: str) -> None:
        """Drop the images (gradio_util.Tabs: idle too long, or the server needed room); the place in
        the study stays, and the next event rebuilds the task's image from the log."""
        self.session = None
        if self.png is not None:
            Path(self.png).unlink(missing_ok=True)
            self.png = None

    def __deepcopy__(self, memo):
        return StudyState()


def saved_image_state(session) -> tuple:
    """What a change can alter in a Session: its edit and redo stacks, and the images their edits hold
    (a stroke can retire the image of the deepest one). References only, nothing is copied."""
    stacked = session._edits + session._redo
    return session, list(session._edits), list(session._redo), [e.image for e in stacked]


def put_back(saved: tuple):
    """The session of ``saved_image_state``, exactly as it was then (cached model results are recomputed)."""
    session, edits, redo, images = saved
    with session._lock:
        session._edits[:], session._redo[:] = edits, redo
        for e, img in zip(edits + redo, images):
            e.image = img
    return session


def _digest(text) -> bytes:
    """Passwords are compared as digests: equal lengths, so the comparison's time says nothing."""
    return hashlib.sha256(str(text).encode()).digest()


def default_db(study: Study) -> str:
    return str(Path.cwd() / f"{Path(study.source).stem or 'study'}.sqlite")


def build_study_demo(study: Study, db: str | None = None, device: str | None = None, pretrained: bool = True,
                     concurrency: int | None = None, plugins_dir: str | None = None,
                     max_side: int = 768, public: bool = False) -> gr.Blocks:
    """``public``: reachable from other machines (``--share``, a non-loopback ``--host``; a Hugging Face
    Space always is): then IC_ZOO_STUDY_SECRET and IC_ZOO_BROWSER_SECRET must be set (one sentence if not)."""
    import ic_zoo
    from ic_zoo import discovery

    from .db import StudyStore
    from .definition import check_models

    discovery.ensure_loaded(**({"plugins_dir": plugins_dir} if plugins_dir else {}))
    problems = check_models(study)
    if problems:
        raise IcZooError("the study names things that are not available: " + "; ".join(problems) + ".")
    link_secret, browser_secret = study_secrets(public or bool(os.environ.get("SPACE_ID")))
    joins = RateCap(env_int("IC_ZOO_STUDY_NEW_PER_MIN", 30))  # new participants a minute
    lockout = AdminLockout(env_int("IC_ZOO_ADMIN_MAX_FAILURES", 5), env_int("IC_ZOO_ADMIN_LOCKOUT_S", 900))
    store = StudyStore(open_engine(db, default_db(study)), study)  # one sentence if the log cannot open
    url = store.engine.url.render_as_string(hide_password=True)
    log.info("study '%s' (%s): logging to %s", study.title, study.key, url)
    if link_secret is None:
        log.warning("IC_ZOO_STUDY_SECRET is not set: participant ids in links are not signed (fine on this "
                    "machine only; a public study needs it)")
    conc = concurrency or int(os.environ.get("IC_ZOO_CONCURRENCY", "2"))
    # Model work and log writes are kept apart: every handler runs in the Gradio queue "study", which
    # admits several at once, and holds one of `conc` model slots only around model work (inpainting,
    # evaluating, rebuilding a task). Its log write comes after the slot is released, so a write waiting
    # on a locked log (at most IC_ZOO_DB_BUSY_TIMEOUT_S) never keeps anyone's models waiting.
    model_slots = threading.BoundedSemaphore(conc)
    common = dict(concurrency_id="study", concurrency_limit=max(8, 4 * conc))
    png_dir = Path(tempfile.mkdtemp(prefix="ic_zoo_study_"))
    n_tasks = len(study.tasks)
    # bounded memory (gradio_util.Tabs): a tab idle past IC_ZOO_SESSION_TTL_S, or the least recently used
    # beyond IC_ZOO_MAX_SESSIONS, gives up its images; its next event rebuilds them from the log
    tabs = gradio_util.Tabs(StudyState)

    def held(fn):
        return tabs.hold(guarded(fn))

    # the canvas sends back what it was given (a task image, or an upload fitted to max_side): anything far
    # larger did not come from this page
    biggest = max([max_side * max_side] + [int(np.prod(im.shape[:2])) for im in store.images.values()])
    editor_pixels = min(imageio.max_pixels_default(), max(4 * biggest, 1_000_000))

    def new_session(img):  # task images are used as the researcher made them; uploads are fitted first
        return ic_zoo.Session(img, device=device, pretrained=pretrained)

    def sess_id(request, st=None) -> str | None:
        h = getattr(request, "session_hash", None) if request is not None else None
        if st is not None and h:
            st.sess = h
        return h

    def client_ms(t) -> float | None:
        try:
            return float(t) if t not in (None, "") and float(t) > 0 else None
        except (TypeError, ValueError):
            return None

    # -- views ---------------------------------------------------------------------------------------
    def editor_value(st):
        path = write_editor_png(st.session.modified, png_dir / f"{id(st)}_{st.session.version}_{time.monotonic_ns()}.png")
        if st.png is not None:
            Path(st.png).unlink(missing_ok=True)
        st.png = path
        return {"background": path, "layers": [], "composite": None}

    def evaluate(st):
        """Each model's title, table and maps, and what the log keeps of them."""
        with model_slots:
            return _evaluate(st)

    def _evaluate(st):
        task = study.tasks[st.task_index]
        s = st.session
        res = s.evaluate(st.models, map_classes=[])
        views, logged = [], {}
        for m in st.models:
            r = res.models[m]
            c = r.tracked[0].index
            title = present.model_title(m, r)
            entry = r.to_dict()
            entry["map"] = {"explainer": task.explainer, "class": c}
            try:
                cm = s.explain(m, c, task.explainer)
                panel = present.map_panel(s.original, s.modified, cm, box=r.box)
                if s.edits:
                    mask = s.edits[-1].mask
                    entry["map"].update(mass_in_mask_original=cm.mass_in(mask, "original"),
                                        mass_in_mask_modified=cm.mass_in(mask, "modified"))
            except IcZooError as exc:
                panel, entry["map"]["note"] = None, str(exc)
            views.append((title, present.table_frame(present.class_rows(r, "tracked")), panel))
            logged[m] = entry
        return res, views, logged

    def model_outputs(views):
        out = []
        for i in range(MAX_MODELS):
            out += list(views[i]) if i < len(views) else ["", None, None]
        return out

    def unchanged(st):
        """The edit outputs when nothing was applied: only the status is refreshed."""
        return [st, gr.skip(), status_text(st)] + [gr.skip()] * (3 * MAX_MODELS)

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

    def open_task(st, client_time=None, session=None) -> None:
        """Show the current task: rebuild its image from the log (resume) and log that it was shown."""
        task = study.tasks[st.task_index]
        p = st.participant
        st.models = study.model_order(task, p["ordinal"], p["code"])
        events = store.timeline(p["id"], task.id)
        with model_slots:
            st.session = rebuild(new_session, store.images[task.id], events, store.image)
        shown = [e for e in events if e["kind"] == "task_shown"]
        st.started = aware(shown[0]["server_time"]) if shown else now()
        store.record(p["id"], "task_resumed" if shown else "task_shown", task.id,
                     {"task_index": st.task_index, "model_order": st.models, "explainer": task.explainer,
                      "inpainter": task.inpainter, "replayed_edits": len(st.session.edits)},
                     client_time=client_time, session=session)

    def screen(st, note: str = "", stored=None):
        """The full page: which screen is shown, and everything on it."""
        consented = st.participant is not None
        done = consented and st.task_index >= n_tasks
        on_task = consented and not done
        out = [st, stored if stored is not None else gr.skip(), st.code or "", note,
               gr.update(visible=st.code is not None and not consented),
               gr.update(visible=not consented), gr.update(visible=True if on_task else "hidden")]
        if on_task:
            task = study.tasks[st.task_index]
            header = f"## Task {st.task_index + 1} of {n_tasks}\n{task.prompt}"
            if task.time_limit_s:
                header += (f"\n\n*Suggested time: {task.time_limit_s / 60:.0f} min. You can still answer after it; "
                           "the answer is then marked late.*")
            res, views, _ = evaluate(st)
            out += [header, editor_value(st), status_text(st, res)]
            out += [gr.update(visible=i < len(st.models)) for i in range(MAX_MODELS)] + model_outputs(views)
            for j in range(MAX_QUESTIONS):
                q = task.questions[j] if j < len(task.questions) else None
                if q is None:
                    out += [gr.update(visible=False, value=None), gr.update(visible=False, value="")]
                elif q.type == "text":
                    out += [gr.update(visible=False, value=None),
                            gr.update(visible=True, label=q.text + ("" if q.required else " (optional)"), value="")]
                else:
                    choices = q.choices if q.type == "choice" else [str(v) for v in range(q.min, q.max + 1)]
                    label = q.text + (f" ({q.min} = lowest, {q.max} = highest)" if q.type == "scale" else "")
                    out += [gr.update(visible=True, label=label, choices=choices, value=None),
                            gr.update(visible=False, value="")]
        else:
            out += [gr.skip(), gr.skip(), gr.skip()] + [gr.skip()] * MAX_MODELS + [gr.skip()] * (3 * MAX_MODELS)
            out += [gr.skip(), gr.skip()] * MAX_QUESTIONS
        code = st.participant["code"] if consented else ""
        out.append(f"## Thank you!\nYou have finished all {n_tasks} tasks. Your participant id is **{code}**; "
                   "you can close this page." if done else "")
        return out

    # -- handlers --------------------------------------------------------------------------------------
    @held
    def on_load(stored, request: gr.Request):
        st = StudyState()
        params = dict(request.query_params) if request is not None else {}
        if "participant" in params:
            issued = params.get("participant")
            code = verify(link_secret, issued)
            if code is None:
                return screen(st, BAD_ID if link_secret is None else BAD_LINK)
        else:  # the id this browser was given before, or a new random one
            issued, code = stored, verify(link_secret, stored)
            if code is None:
                code = new_id()
                issued = code if link_secret is None else issue(link_secret, code)
        st.code = issued  # shown on the consent screen and sent back with the consent, as issued
        sess_id(request, st)
        row = store.participant(code)
        if row is None:
            return screen(st, "", stored=issued)
        return _enter(st, row, None, sess_id(request), issued, resumed=True)

    def _enter(st, row, client_time, session, stored, resumed):
        st.participant = row
        st.task_index = row["task_index"]
        if st.task_index < n_tasks:
            open_task(st, client_time, session)
        note = "Welcome back: you continue where you left off." if resumed and st.task_index < n_tasks else ""
        return screen(st, note, stored=stored)

    @held
    def on_consent(t, code, st, request: gr.Request):
        st = st if isinstance(st, StudyState) else StudyState()
        issued, code = code, verify(link_secret, code)
        if code is None:
            raise gr.Error(BAD_ID if link_secret is None else BAD_LINK, print_exception=False)
        st.code = issued
        sess_id(request, st)
        ip = request.client.host if (study.log_ip and request is not None and request.client) else None
        existed = store.participant(code) is not None
        if not existed and not joins.take():  # refused before the log: no Latin-square row is used
            raise gr.Error(TOO_MANY, print_exception=False)
        row = store.consent(code, ip=ip, client_time=client_ms(t), session=sess_id(request))
        return _enter(st, row, client_ms(t), sess_id(request), issued, resumed=existed)

    def _need_task(st):
        if not isinstance(st, StudyState) or st.participant is None:
            raise gr.Error("Please read and accept the consent text first.", print_exception=False)
        if st.task_index >= n_tasks:
            raise gr.Error("You have finished the study; thank you!", print_exception=False)
        if st.session is None:  # released by Tabs (idle, or the server needed room): rebuilt from the log
            task = study.tasks[st.task_index]
            with model_slots:
                st.session = rebuild(new_session, store.images[task.id], store.timeline(st.participant["id"], task.id),
                                     store.image)
        return st

    def logged_change(st, kind, t, request, change):
        """Make a change (``change()`` returns its payload and mask), evaluate it, log it, and return the
        edit outputs. It counts only once its row is committed: when the write fails (a locked or
        unreachable log, within the busy timeout) the tab's image is put back exactly as it was (edits,
        redo stack, image) and the participant is asked to make the change again; earlier rows stay."""
        before = saved_image_state(st.session)
        try:
            payload, mask = change()
            t0 = time.perf_counter()
            res, views, logged = evaluate(st)
            payload.update(models=logged, model_order=st.models, pretrained=pretrained,
                           n_edits=len(st.session.edits), compute_ms=round(1000 * (time.perf_counter() - t0), 2),
                           seconds_on_task=round((now() - st.started).total_seconds(), 3))
            store.record(st.participant["id"], kind, study.tasks[st.task_index].id, payload, mask=mask,
                         client_time=client_ms(t), session=sess_id(request))
        except BaseException as exc:
            st.session = put_back(before)
            if not isinstance(exc, sa.exc.SQLAlchemyError):
                raise
            why = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
            log.warning("participant %s: a %s could not be logged (%s); it was undone", st.participant["code"],
                        kind, why)
            gr.Warning(NOT_SAVED)
            return [st, editor_value(st), f"**{NOT_SAVED}**"] + [gr.skip()] * (3 * MAX_MODELS)
        return [st, editor_value(st), status_text(st, res)] + model_outputs(views)

    @held
    def on_edit(t, value, st, request: gr.Request):
        st = _need_task(st)
        if not value or value.get("background") is None:
            return unchanged(st)
        img = editor_rgb(value["background"])
        if not same_image(img, st.session.modified):
            raise gr.Error("This page shows an older image; reload it to continue where you left off.",
                           print_exception=False)
        mask = stroke_mask(value)
        if mask is None or not mask.any():
            return unchanged(st)
        inpainter = study.tasks[st.task_index].inpainter

        def stroke():
            with model_slots:
                edit = st.session.apply(mask, inpainter)
            return edit.summary(), edit.mask

        return logged_change(st, "stroke", t, request, stroke)

    def stack_op(op: str):
        @held
        def fn(t, st, request: gr.Request):
            st = _need_task(st)
            s = st.session
            if not {"undo": s.can_undo, "redo": s.can_redo, "reset": bool(s.edits)}[op]:
                gr.Info(f"Nothing to {op}.")
                return unchanged(st)

            def do():
                getattr(st.session, op)()
                return {}, None

            return logged_change(st, op, t, request, do)

        fn.__name__ = f"on_{op}"
        return fn

    @held
    def on_upload(t, path, st, request: gr.Request):
        st = _need_task(st)
        if not path:
            return unchanged(st)
        img = fit_max_side(imageio.load_image(path), max_side)
        key = "upload:" + hashlib.sha256(img.tobytes()).hexdigest()[:16]

        def use_it():
            sha = store.store_image(key, img)
            st.session = new_session(img)
            return {"image_key": key, "image_sha256": sha, "shape": list(img.shape),
                    "filename": os.path.basename(str(path))}, None

        return logged_change(st, "upload", t, request, use_it)

    @held
    def on_submit(t, *args):  # (client time, the question inputs..., state)
        *vals, st = args
        st = _need_task(st)
        task = study.tasks[st.task_index]
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
        elapsed = (now() - st.started).total_seconds()
        late = bool(task.time_limit_s and elapsed > task.time_limit_s)
        try:
            r = store.answer(st.participant["id"], st.task_index, answers,
                             {"answers": answers, "late": late, "seconds_on_task": round(elapsed, 3),
                              "n_edits": len(st.session.edits), "model_order": st.models},
                             client_time=client_ms(t), session=st.sess)
        except sa.exc.SQLAlchemyError as exc:  # one transaction: nothing of it was kept
            log.warning("participant %s: answers could not be logged (%s)", st.participant["code"],
                        type(exc).__name__)
            raise gr.Error(NOT_ANSWERED, print_exception=False) from None
        st.task_index = r["task_index"]
        if st.task_index < n_tasks:
            open_task(st, client_ms(t), st.sess)
        note = "" if r["advanced"] else "That task was already submitted (perhaps in another tab); here is where you are now."
        return screen(st, note)

    # -- admin -----------------------------------------------------------------------------------------
    def _admin_ok(password, request):
        """Every admin handler starts here: a locked-out address is refused before its password is
        looked at; a wrong one is logged (the address, never the password) and counted."""
        want = study.password()
        if not want:
            raise gr.Error(f"The admin page is disabled: set the environment variable {study.admin_password_env} "
                           "before starting the app.", print_exception=False)
        host = (request.client.host if request is not None and request.client else None) or "unknown"
        wait = lockout.locked_for(host)
        if wait > 0:
            raise gr.Error(f"Too many wrong passwords: the admin page is locked for {math.ceil(wait / 60)} more "
                           "minute(s).", print_exception=False)
        if not password or not hmac.compare_digest(_digest(password), _digest(want)):  # constant time
            n = lockout.failed(host)
            log.warning("admin: wrong password from %s (%d of %d before a lockout)", host, n, lockout.max_failures)
            if lockout.locked_for(host) > 0:
                log.warning("admin: the admin page is locked for %s for %d s after repeated wrong passwords",
                            "everyone" if lockout.locked_for("*") > 0 else host, lockout.lock_s)
            raise gr.Error("Wrong password.", print_exception=False)
        lockout.succeeded(host)

    def on_admin(password, request: gr.Request):
        import pandas as pd

        _admin_ok(password, request)
        parts = store.progress()
        tasks = store.task_progress()
        done = sum(1 for p in parts if p["finished"])
        summary = (f"**{study.title}** (key `{study.key}`, log {url}): {len(parts)} participant(s), {done} finished, "
                   f"{n_tasks} task(s).")
        return summary, pd.DataFrame(parts), pd.DataFrame(tasks)

    def on_admin_export(password, request: gr.Request):
        import shutil

        from .research import export

        _admin_ok(password, request)
        d = Path(tempfile.mkdtemp(prefix="ic_zoo_study_export_"))
        export(store.engine, d / "export", study.key)
        return shutil.make_archive(str(d / f"study_{study.key}"), "zip", d / "export")

    # -- layout ----------------------------------------------------------------------------------------
    with gr.Blocks(title=study.title, fill_width=True, delete_cache=(3600, 3 * 3600)) as demo:
        state = gr.State(StudyState(), time_to_live=4 * tabs.ttl_s,
                         delete_callback=lambda st: st.release("idle") if isinstance(st, StudyState) else None)
        stored = gr.BrowserState(None, storage_key=f"ic_zoo_study_{study.key}",
                                 secret=browser_secret)
        client_time = gr.Number(visible=False, value=0)
        gr.Navbar(visible=False, main_page_name=False)  # participants see no "Home" / "Admin" links (the admin page is by URL)
        gradio_util.page_script(demo, gradio_util.NO_NAVIGATION_CSS)
        gr.Markdown(f"# {study.title}")
        pid_note = gr.Markdown(elem_id="participant_note")
        with gr.Column(visible=True, elem_id="consent_screen") as consent_col:
            gr.Markdown(study.consent or "Please confirm that you agree to take part.", elem_id="consent_text")
            pid_box = gr.Textbox(label="Your participant id", interactive=False, elem_id="participant")
            agree = gr.Button("I agree and want to take part", variant="primary", elem_id="agree", visible=False)
        # "hidden", not False: the canvas is mounted with the page, so the change event the editor swallows
        # after mounting is not the participant's first stroke
        with gr.Column(visible="hidden", elem_id="task_screen") as task_col:
            with gr.Accordion("Instructions", open=False):
                gr.Markdown(study.instructions or "Paint over part of the image: the region is removed and the "
                            "models classify the edited image again. Then answer the questions below.")
            header = gr.Markdown(elem_id="task_header")
            with gr.Row():
                with gr.Column(scale=3):
                    canvas = editor("Paint over what to remove", height=440, max_pixels=editor_pixels)
                    gr.HTML(gradio_util.keys_help(redo=False), elem_id="brush_label")
                    with gr.Row():
                        undo_btn = gr.Button("Undo", size="sm", elem_id="undo")
                        reset_btn = gr.Button("Reset", size="sm", elem_id="reset")
                    status = gr.Markdown(elem_id="status")
                    # the questions directly under the canvas (on a phone too: the results come after them)
                    radios, texts = [], []
                    for j in range(MAX_QUESTIONS):
                        radios.append(gr.Radio([], visible=False, elem_id=f"q{j}_choice"))
                        texts.append(gr.Textbox(visible=False, lines=2, max_length=MAX_TEXT, elem_id=f"q{j}_text"))
                    submit = gr.Button("Submit and continue", variant="primary", elem_id="submit")
                    upload = gr.File(label="…or use your own image", file_count="single", type="filepath",
                                     elem_id="upload", visible=study.allow_upload)
                with gr.Column(scale=2):
                    cols, slots = [], []
                    for i in range(MAX_MODELS):
                        with gr.Column(visible=False, elem_id=f"model_{i}") as col:
                            slots += [gr.Markdown(elem_id=f"model_{i}_title"),
                                      gr.Dataframe(interactive=False, wrap=True, elem_id=f"model_{i}_table",
                                                   show_search="none",
                                                   column_widths=["46%", "18%", "18%", "18%"]),
                                      gr.Image(show_label=False, interactive=False, format="jpeg",
                                               elem_id=f"model_{i}_maps")]
                        cols.append(col)
        done_md = gr.Markdown(elem_id="done")

        question_outputs = [c for pair in zip(radios, texts) for c in pair]
        screen_outputs = ([state, stored, pid_box, pid_note, agree, consent_col, task_col, header, canvas,
                           status] + cols + slots + question_outputs + [done_md])
        edit_outputs = [state, canvas, status] + slots

        demo.load(on_load, [stored], screen_outputs, api_visibility="private", show_progress_on=[pid_note],
                  **common)
        agree.click(on_consent, [client_time, pid_box, state], screen_outputs, api_name="consent", js=CLIENT_TIME_JS,
                    show_progress_on=[pid_note], **common)
        canvas.change(on_edit, [client_time, canvas, state], edit_outputs, api_name="study_edit", js=CLIENT_TIME_JS,
                      trigger_mode="always_last", show_progress_on=[status], **common)
        undo_btn.click(stack_op("undo"), [client_time, state], edit_outputs, api_name="study_undo", js=CLIENT_TIME_JS,
                       show_progress_on=[status], **common)
        reset_btn.click(stack_op("reset"), [client_time, state], edit_outputs, api_name="study_reset",
                        js=CLIENT_TIME_JS, show_progress_on=[status], **common)
        if study.allow_upload:
            upload.upload(on_upload, [client_time, upload, state], edit_outputs, api_name="study_upload",
                          js=CLIENT_TIME_JS, show_progress_on=[status], **common)
        submit.click(on_submit, [client_time] + radios + texts + [state], screen_outputs, api_name="submit",
                     js=CLIENT_TIME_JS, show_progress_on=[pid_note], **common)

    with demo.route("Admin", "/admin", show_in_navbar=False):
        gr.Markdown(f"# {study.title}: progress (researchers only)")
        pw = gr.Textbox(label="Admin password", type="password", elem_id="admin_password")
        with gr.Row():
            show = gr.Button("Show progress", elem_id="admin_show")
            dl = gr.Button("Download the log (CSV, JSON, masks)", elem_id="admin_export")
        summary = gr.Markdown(elem_id="admin_summary")
        per_p = gr.Dataframe(label="Per participant", interactive=False, elem_id="admin_participants")
        per_t = gr.Dataframe(label="Per task", interactive=False, elem_id="admin_tasks")
        zip_file = gr.File(label="Export", interactive=False)
        show.click(guarded(on_admin), pw, [summary, per_p, per_t], api_name="admin_progress")
        dl.click(guarded(on_admin_export), pw, zip_file, api_name="admin_export")
    demo.study_store = store  # for tests and scripts
    demo.ic_zoo_tabs = tabs  # for tests
    return demo
