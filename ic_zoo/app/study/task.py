"""Study mode's tasks: strokes, edits, undo / redo / reset, uploads and the answers to the questions,
each fenced against the log (a change counts once its row is committed) and answered with the models'
columns."""
from __future__ import annotations

import hashlib
import logging
import os
import time

import gradio as gr
import sqlalchemy as sa

from ... import imageio
from ...study.db import StaleBase, now
from ...study.research import rebuild
from .. import painter
from ..gated_canvas import editor_rgb, fit_max_side, same_image, stroke_mask
from . import conditions
from .pages import (CLIENT_TIME_JS, REDIRECT_JS, MAX_QUESTIONS, MOVED, NOT_ANSWERED, NOT_PREDICTED, NOT_SAVED, NO_BASE,
                    NOTHING_TO_PREDICT, PREDICT_BEFORE_SUBMIT, PREDICT_FIRST, PREPARED_EDIT, STALE, StudyState, put_back,
                    saved_image_state)

log = logging.getLogger("ic_zoo.study")


class TaskHandlers:
    """The task handlers of ``StudyApp``."""

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
                st.session = rebuild(self.make_session, self.store.images[task.id],
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

    def logged_change(self, st, kind, t, request, change, trial: dict | None = None):
        """Make a change (``change()`` returns its payload and mask), evaluate it, log it, and return the
        edit outputs. It counts only once its row is committed: when the write fails (a locked or
        unreachable log, within the busy timeout) the tab's image is put back exactly as it was (edits,
        redo stack, image) and the participant is asked to make the change again; earlier rows stay."""
        before = saved_image_state(st.session)
        try:
            payload, mask = change()
            t0 = time.perf_counter()
            res, views, logged = self.evaluate(st)
            payload.update(trial or {})
            payload.update(models=logged, model_order=st.models, pretrained=self.pretrained,
                           n_edits=len(st.session.edits), compute_ms=round(1000 * (time.perf_counter() - t0), 2),
                           seconds_on_task=round((now() - st.started).total_seconds(), 3))
            st.base = self.store.record(st.participant["id"], kind, self.study.tasks[st.task_index].id, payload,
                                        mask=mask, client_time=self.client_ms(t), session=self.sess_id(request),
                                        base=st.base)
            if trial is not None:  # a predict-then-see edit: its answer waits for the prediction
                st.pending = {"trial": trial["trial"], "seq": st.base, "before": trial["before"],
                              "models": trial["predict_models"], "shown_at": now()}
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
        self.check_change(st)
        img = editor_rgb(value["background"])
        if not same_image(img, st.session.modified):
            raise gr.Error(STALE, print_exception=False)
        mask = stroke_mask(value)
        if mask is None or not mask.any():
            return self.unchanged(st)
        self.check_base(st, base)
        return self.logged_stroke(st, mask, t, request)

    def check_change(self, st) -> None:
        """A predict-then-see task takes no change while its trial waits for the prediction, and none at all
        when its edit is the researcher's (one sentence, nothing logged)."""
        task = self.task_of(st)
        if task.predict is None:
            return
        if st.pending is not None:
            raise gr.Error(PREDICT_FIRST, print_exception=False)
        if task.edit is not None:
            raise gr.Error(PREPARED_EDIT, print_exception=False)

    def logged_stroke(self, st, mask, t, request) -> dict:
        """Apply the participant's stroke with the task's inpainter and log it (``logged_change``). On a
        predict-then-see task it opens a trial: the answer the participant saw before it is logged with it,
        and the models' answer to it waits for the prediction."""
        task = self.task_of(st)
        trial = None
        if task.predict is not None:
            with self.model_slots:
                trial = self.start_trial(st, self.outcome_of(st.session.evaluate(st.models, map_classes=[]), st.models))

        def stroke():
            with self.model_slots:
                edit = st.session.apply(mask, task.inpainter)
            return edit.summary(), edit.mask

        return self.logged_change(st, "stroke", t, request, stroke, trial=trial)

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
        try:
            self.check_change(st)
        except gr.Error:  # the page's ink goes, the stroke is not taken
            st.paint_ack = max(s["id"] for s in strokes)
            raise
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
            self.check_change(st)
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
        self.check_change(st)
        self.check_base(st, base)
        img = fit_max_side(imageio.load_image(path), self.max_side)
        key = "upload:" + hashlib.sha256(img.tobytes()).hexdigest()[:16]

        def use_it():
            sha = self.store.store_image(key, img)
            st.session = self.make_session(img)
            return {"image_key": key, "image_sha256": sha, "shape": list(img.shape),
                    "filename": os.path.basename(str(path))}, None

        return self.logged_change(st, "upload", t, request, use_it)

    def on_submit(self, t, *args):  # (client time, the question inputs..., base, state)
        with self.tab_lock(args[-1]):
            return self._on_submit(t, *args)

    def _on_submit(self, t, *args):
        *vals, base, st = args
        st = self.need_task(st, None, base)
        task = self.task_of(st)
        if task.predict is not None and st.pending is not None:
            raise gr.Error(PREDICT_FIRST, print_exception=False)
        if task.predict is not None and st.trials == 0:
            raise gr.Error(PREDICT_BEFORE_SUBMIT, print_exception=False)
        radios, texts = vals[:MAX_QUESTIONS], vals[MAX_QUESTIONS:2 * MAX_QUESTIONS]
        answers = {}
        for j, q in enumerate(task.questions):
            a = texts[j] if q.kind.widget == "text" else radios[j]
            a = None if a is None or (isinstance(a, str) and not a.strip()) else str(a).strip()
            if a is None:
                if q.required:
                    raise gr.Error(f"Please answer: {q.text}", print_exception=False)
            elif (why := q.kind.refusal(q, a)) is not None:  # the question's type checks the answer
                raise gr.Error(why, print_exception=False)
            answers[q.id] = a
        if base is not None and int(base) != NO_BASE and int(base) != st.base:
            raise gr.Error(STALE, print_exception=False)
        elapsed = (now() - st.started).total_seconds()
        late = bool(task.time_limit_s and elapsed > task.time_limit_s)
        try:
            r = self.store.answer(st.participant["id"], st.task_index, answers,
                                  {"answers": answers, "late": late, "seconds_on_task": round(elapsed, 3),
                                   "n_edits": len(st.session.edits), "model_order": st.models,
                                   **({"condition": st.condition.name} if st.condition else {}),
                                   **({"phase": task.phase} if task.phase else {})},
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

    # -- predict-then-see: the prediction, then the models' answer ------------------------------------------
    def on_predict(self, t, *args):  # (client time, flips..., classes..., confidence, trial, base, state)
        with self.tab_lock(args[-1]):
            return self._on_predict(t, *args)

    def _on_predict(self, t, *args):
        """The participant's prediction for the pending trial: checked (each asked field, from the choices
        shown), logged with what the models did and whether it was right, and only then the models' answer
        is sent (the columns, the outcome in the status line). A prediction for another trial, or sent
        again after its reveal, is refused with one sentence and nothing is logged."""
        *vals, trial, base, st = args
        st = self.need_task(st, None, base)
        task = self.task_of(st)
        n = len(self.ui.task.predict.flips)
        flips, classes, confidence = vals[:n], vals[n:2 * n], vals[2 * n] if len(vals) > 2 * n else None
        pend = st.pending
        try:
            trial = int(trial)
        except (TypeError, ValueError):
            trial = None
        if task.predict is None or pend is None or trial != pend["trial"]:
            raise gr.Error(NOTHING_TO_PREDICT, print_exception=False)
        predictions = {}
        for j, m in enumerate(pend["models"]):
            p = {}
            if "flip" in task.predict.ask:
                if flips[j] not in conditions.FLIP_CHOICES:
                    raise gr.Error(f"Please predict whether {m} will change its top-1 class (yes or no).",
                                   print_exception=False)
                p["flip"] = flips[j]
            if "class" in task.predict.ask:
                if classes[j] not in conditions.class_choices(pend["before"][m]["top5"]):
                    raise gr.Error(f"Please predict which class {m} will say: one of the choices shown.",
                                   print_exception=False)
                p["class"] = classes[j]
            predictions[m] = p
        if task.predict.confidence and str(confidence) not in {str(k) for k in range(1, 6)}:
            raise gr.Error("Please say how sure you are (1 to 5).", print_exception=False)
        self.check_base(st, base)
        res, views, _ = self.evaluate(st)  # the tab's image after the edit (its results are cached)
        scored = conditions.score(pend["before"], self.outcome_of(res, pend["models"]), predictions)
        payload = {"trial": trial, "edit_seq": pend["seq"], "models": pend["models"], "predictions": predictions,
                   "confidence": int(confidence) if task.predict.confidence else None, "outcome": scored,
                   "correct": all(o["correct"] for o in scored.values()),
                   "response_time_s": round((now() - pend["shown_at"]).total_seconds(), 3),
                   "phase": task.phase, "maps": conditions.maps_mode(task),
                   "condition": st.condition.name if st.condition else None}
        try:
            st.base = self.store.record(st.participant["id"], "prediction", task.id, payload,
                                        client_time=self.client_ms(t), session=st.sess, base=st.base)
        except StaleBase as exc:
            log.warning("participant %s: a prediction was refused at commit (%s)", st.participant["code"], exc)
            raise gr.Error(STALE, print_exception=False) from None
        except sa.exc.SQLAlchemyError as exc:  # nothing was kept: the trial still waits for the prediction
            log.warning("participant %s: a prediction could not be logged (%s)", st.participant["code"],
                        type(exc).__name__)
            raise gr.Error(NOT_PREDICTED, print_exception=False) from None
        st.pending, st.trials = None, st.trials + 1
        log.info("participant %s: prediction %d logged on task %s", st.participant["code"], trial, task.id)
        return {**self.shown(st, res, views), self.ui.task.status: conditions.reveal_text(scored, predictions)}

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
        pr = t.predict
        pr.commit.click(self.held(self.on_predict), [ui.client_time, *pr.flips, *pr.classes, pr.confidence, pr.trial,
                                                     ui.base, ui.state], ui.edit_outputs(), api_name="study_predict",
                        **busy)
        t.submit.click(self.held(self.on_submit), [ui.client_time] + t.radios + t.texts + [ui.base, ui.state],
                       ui.screen_outputs(), api_name="submit", js=CLIENT_TIME_JS,
                       show_progress_on=[ui.consent.pid_note], **self.common).then(
            None, [ui.redirect], None, js=REDIRECT_JS, api_visibility="private", queue=False)
