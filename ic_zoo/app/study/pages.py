"""Study mode's pages, without their handlers: the consent and task panels (their components), the page
object the handlers fill, a tab's state (``StudyState``) and the sentences participants read."""
from __future__ import annotations

import hashlib
import logging
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from ...study.definition import MAX_MODELS_PER_TASK, Study
from ...study.questions import Text
from .. import gated_canvas, painter
from ..comparison import Comparison, comparison
from ..gated_canvas import editor
log = logging.getLogger("ic_zoo.study")
MAX_QUESTIONS = 6
PARTICIPANT_COLUMNS = ["participant", "order", "tasks_done", "events", "consented", "finished"]  # db.participant_progress
TASK_COLUMNS = ["task", "completed", "strokes", "attention_passed"]  # StudyStore.task_progress
WITHDRAWN = {"delete": "## You have withdrawn from the study\nEverything recorded of your participation was deleted. "
                        "Thank you for your time; you can close this page.",
             "flag": "## You have withdrawn from the study\nAs the consent text said, what was recorded is kept but "
                     "marked as withdrawn and left out of every analysis; nothing more is recorded. Thank you for "
                     "your time; you can close this page."}
PLATFORM_NAMES = {"prolific": "Prolific", "mturk": "Mechanical Turk", "sona": "Sona", "generic": "the study's site"}
NO_PLATFORM_ID = ("This page needs the participant id your recruitment platform adds to the link ({param}): please "
                  "open the study from the platform.")
PLATFORM_LINK = "Please open the study from the link your recruitment platform gave you."
MTURK_PREVIEW_NOTE = ("This is a preview of the HIT: accept it on Mechanical Turk to take part. Nothing is recorded "
                      "in a preview.")
#: after the finish page is shown, the browser goes to the platform's URL (a hidden field carries it)
REDIRECT_JS = "(u) => { if (u) setTimeout(() => { window.location.href = u; }, 4000); }"
WITHDRAWN_BEFORE = "## You withdrew from this study\nNothing more is recorded for this participant id."
MAX_TEXT = Text.max_chars  # a text answer's longest (the question type's)
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
        self.withdrawn = ""  # the sentence of a participant who withdrew (the page then shows only it)
        self.platform_id: str | None = None  # the recruitment platform's id of this participant (as sent)
        self.platform: dict = {}  # what the log keeps of the platform's parameters at consent
        self.platform_submit = ""  # where the finish page submits an MTurk assignment ("" for other platforms)
        self.condition = None  # the participant's between-subject condition (definition.Condition), None without
        #: a predict-then-see trial waiting for its prediction: {"trial", "seq" (its edit's event), "before"
        #: (each model's top-1 and top-5 the participant saw), "models", "shown_at"}; None otherwise
        self.pending: dict | None = None
        self.trials = 0  # predict-then-see trials revealed on the current task

    def release(self, reason: str) -> None:
        """Drop the images (tab_store.Tabs: idle too long, or the server needed room); the place in
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
    predict: PredictPanel

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
                gr.HTML(gated_canvas.keys_help(redo=False), elem_id="brush_label")
                with gr.Row():
                    undo = gr.Button("Undo", size="sm", elem_id="undo")
                    reset = gr.Button("Reset", size="sm", elem_id="reset")
                status = gr.Markdown(elem_id="status")
                predict = predict_panel()
                radios, texts = [], []
                for j in range(MAX_QUESTIONS):
                    radios.append(gr.Radio([], visible=False, elem_id=f"q{j}_choice"))
                    texts.append(gr.Textbox(visible=False, lines=2, max_length=MAX_TEXT, elem_id=f"q{j}_text"))
                submit = gr.Button("Submit and continue", variant="primary", elem_id="submit")
                upload = gr.File(label="…or use your own image", file_count="single", type="filepath",
                                 elem_id="upload", visible=study.allow_upload)
            with gr.Column(scale=2):
                compare = comparison(slots=MAX_MODELS_PER_TASK, info=False)
    return TaskPanel(col, header, canvas, paint, api_edit, undo, reset, status, radios, texts, submit, upload, compare,
                     predict)


PREDICT_FIRST = "First predict what the models will do with your last change, then continue."
NOTHING_TO_PREDICT = ("There is nothing to predict now: this prediction is for an edit whose outcome was already "
                      "shown, or for another task. Please reload the page.")
PREDICT_BEFORE_SUBMIT = "Please make a change and predict what the models will do before you continue."
NOT_PREDICTED = "Your prediction could not be saved (the study log is busy): please commit it again."
PREPARED_EDIT = "This task's edit is prepared for you: there is nothing to paint or undo here."


@dataclass
class PredictPanel:
    """A predict-then-see task's questions, asked after an edit and before the models' answer is shown:
    per model slot, will its top-1 change and which class will it say; how sure; the trial they are for."""
    column: gr.Column
    prompt: gr.Markdown
    flips: list
    classes: list
    confidence: gr.Radio
    trial: gr.Number  # hidden: the trial the shown questions are for (a prediction for another is refused)
    commit: gr.Button

    def components(self) -> list:
        return [self.column, self.prompt, *self.flips, *self.classes, self.confidence, self.trial]


def predict_panel() -> PredictPanel:
    with gr.Column(visible=False, elem_id="predict") as col:
        prompt = gr.Markdown(elem_id="predict_prompt")
        flips, classes = [], []
        for j in range(MAX_MODELS_PER_TASK):
            flips.append(gr.Radio([], visible=False, elem_id=f"predict_{j}_flip"))
            classes.append(gr.Radio([], visible=False, elem_id=f"predict_{j}_class"))
        confidence = gr.Radio([str(k) for k in range(1, 6)], label="How sure are you? (1 = guessing, 5 = certain)",
                              visible=False, elem_id="predict_confidence")
        trial = gr.Number(visible=False, value=0, precision=0, elem_id="predict_trial")
        commit = gr.Button("Commit my prediction and show the models' answer", variant="primary",
                           elem_id="predict_commit")
    return PredictPanel(col, prompt, flips, classes, confidence, trial, commit)


@dataclass
class StudyPage:
    state: gr.State
    stored: gr.BrowserState
    client_time: gr.Number
    base: gr.Number
    consent: ConsentPanel
    task: TaskPanel
    done: gr.Markdown
    withdraw: gr.Accordion  # on every page after consent: the way out, with what it does
    withdraw_btn: gr.Button
    redirect: gr.Textbox  # hidden: where the finish page sends the participant (a recruitment platform's URL)

    def screen_outputs(self) -> list:
        c, t = self.consent, self.task
        return ([self.state, self.stored, c.pid_box, c.pid_note, c.agree, c.column, t.column, t.header, t.canvas,
                 t.status, *t.compare.outputs()] + t.questions() + [self.done, t.paint, self.redirect, self.withdraw,
                                                                     *t.predict.components(), self.base])  # the base last (API clients)

    def edit_outputs(self) -> list:
        return [self.state, self.task.canvas, self.task.status, *self.task.compare.outputs(),
                self.task.paint, *self.task.predict.components(), self.base]


# -- the study's server side ----------------------------------------------------------------------------


def _zip_folder(folder: Path) -> bytes:
    """A folder as the bytes of one zip file."""
    return Path(shutil.make_archive(str(folder.parent / f"{folder.name}_zip"), "zip", folder)).read_bytes()
