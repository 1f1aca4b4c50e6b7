"""Study definitions: a small YAML (or TOML) file a researcher writes.

    title: Which part makes the flower?
    consent: |
      ...
    instructions: |
      ...
    seed: 7
    counterbalance: latin        # latin (balanced Latin square) | shuffle (seeded) | none
    allow_upload: false
    log_ip: false
    admin_password_env: IC_ZOO_ADMIN_PASSWORD   # the admin page's password comes from this env variable
    defaults: {inpainter: telea, explainer: gradcam, models: [flower2d/squeezenet, flower2d/resnet]}
    tasks:
      - id: flower1
        image: flowers/red_green.png       # relative to this file
        prompt: Paint over what decides the class, then answer.
        time_limit_s: 180
        questions:
          - {id: part, text: Which part decides the class?, type: choice, choices: [petals, centre, stem, leaf]}
          - {id: sure, text: How sure are you?, type: scale, min: 1, max: 5}
          - {id: why, text: Why?, type: text, required: false}
      - id: check1
        attention_check: true
        image: flowers/blue_orange.png
        questions:
          - {id: ac, text: "To show you are reading, choose 'leaf'.", type: choice, choices: [petals, leaf], expected: leaf}

Every mistake is reported as one sentence naming the task and the field.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .errors import StudyError
from .questions import QUESTION_TYPES, QuestionType
from .recruitment import Recruitment, parse_recruitment

PARTICIPANT_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")

MAX_MODELS_PER_TASK = 4
WITHDRAWAL = ("delete", "flag")  # the columns a task screen shows side by side


@dataclass
class Question:
    id: str
    text: str
    type: str = "text"
    choices: list[str] = field(default_factory=list)
    min: int = 1
    max: int = 5
    required: bool = True
    expected: str | None = None  # attention checks

    @property
    def kind(self) -> QuestionType:
        """The question's type (``questions.QUESTION_TYPES``): its widget, checks, value and summary."""
        return QUESTION_TYPES[self.type]


def questions_of(definition: dict) -> dict[tuple[str, str], Question]:
    """The questions of a logged definition (``Study.public_dict``), by (task id, question id)."""
    return {(str(t["id"]), str(q["id"])): Question(**q) for t in definition.get("tasks", [])
            for q in t.get("questions") or []}


@dataclass
class Task:
    id: str
    image: str  # absolute path once loaded
    prompt: str = ""
    models: list[str] = field(default_factory=list)
    explainer: str = "gradcam"
    inpainter: str = "telea"
    questions: list[Question] = field(default_factory=list)
    time_limit_s: float | None = None
    attention_check: bool = False
    # ground truth for the analysis (optional; Flower2D's examples ship both): a part map (0 background,
    # 1 stem, 2 leaf, 3 petal, 4 centre, as ic_zoo.flower2d writes it) and the region that decides the class
    parts: str | None = None
    truth: str | None = None


@dataclass
class Study:
    title: str
    tasks: list[Task]
    consent: str = ""
    instructions: str = ""
    seed: int = 0
    counterbalance: str = "latin"
    allow_upload: bool = False
    log_ip: bool = False
    admin_password_env: str = "IC_ZOO_ADMIN_PASSWORD"
    source: str = ""
    #: what a withdrawal does: "delete" the participant's rows, masks and uploads, or "flag" them (kept, left out
    #: of every export and analysis; only where the consent text says so)
    withdrawal: str = "delete"
    #: the recruitment platform (``recruitment.Recruitment``), None for the study's own links
    recruitment: Recruitment | None = None

    def public_dict(self) -> dict:
        """The definition as logged: image paths relative to the study file, each with its file's hash, so
        the same study started from another folder or machine is the same study."""
        d = asdict(self)
        d.pop("source")
        if d["withdrawal"] == "delete":
            d.pop("withdrawal")  # the default: a study written before the field keeps its key
        if d["recruitment"] is None:
            d.pop("recruitment")
        base = Path(self.source).parent if self.source else None
        for t in d["tasks"]:
            for key in ("image", "parts", "truth"):
                if t.get(key) is None:
                    t.pop(key, None)  # a study without ground truth keeps the key it always had
                    continue
                p = Path(t[key])
                t[f"{key}_sha256"] = hashlib.sha256(p.read_bytes()).hexdigest()
                t[key] = str(p.relative_to(base)) if base is not None and p.is_relative_to(base) else p.name
        return d

    def to_json(self) -> str:
        return json.dumps(self.public_dict(), sort_keys=True)

    @property
    def key(self) -> str:
        """Identity of the study in the log: a hash of the definition (any change makes a new study)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def model_order(self, task: Task, participant_index: int, participant_code: str) -> list[str]:
        return counterbalance(task.models, self.counterbalance, participant_index, f"{self.seed}:{participant_code}:{task.id}")

    def password(self) -> str | None:
        """The admin page's password, from the environment only (never from the study file)."""
        import os

        return os.environ.get(self.admin_password_env) or None


def williams_square(n: int) -> list[list[int]]:
    """A balanced Latin square (Williams design): every condition appears once in every position and,
    for even n, follows every other condition equally often. For odd n the mirrored rows are appended."""
    if n <= 0:
        return [[]]
    first, lo, hi = [0], 1, n - 1
    while len(first) < n:
        first.append(lo)
        lo += 1
        if len(first) < n:
            first.append(hi)
            hi -= 1
    rows = [[(c + r) % n for c in first] for r in range(n)]
    if n % 2:
        rows += [list(reversed(r)) for r in rows]
    return rows


def counterbalance(items: list, mode: str, index: int, seed_text: str) -> list:
    if mode == "none" or len(items) < 2:
        return list(items)
    if mode == "latin":
        rows = williams_square(len(items))
        return [items[i] for i in rows[index % len(rows)]]
    if mode == "shuffle":
        seed = int(hashlib.sha256(seed_text.encode()).hexdigest()[:12], 16)
        return [items[i] for i in np.random.default_rng(seed).permutation(len(items))]
    raise StudyError(f"counterbalance must be latin, shuffle or none, not '{mode}'.")


def valid_participant(code: str | None) -> str | None:
    """The id if it is 1-40 letters, digits, '-' or '_', else None."""
    if code is None:
        return None
    code = str(code).strip()
    return code if PARTICIPANT_RE.match(code) else None


def _read(path: Path) -> dict:
    text = path.read_text()
    if path.suffix.lower() == ".toml":
        import tomllib

        return tomllib.loads(text)
    import yaml

    return yaml.safe_load(text) or {}


def load_study(path: str | Path) -> Study:
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"the study file {path} does not exist.")
    try:
        raw = _read(path)
    except Exception as exc:  # yaml/toml syntax
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise StudyError(f"the study file {path.name} is not valid YAML/TOML{where}: {what} (put texts with "
                         "':', '?', '#' or '[' in quotes).") from None
    if not isinstance(raw, dict):
        raise StudyError(f"the study file {path.name} must be a mapping with 'title' and 'tasks'.")
    for key in ("title", "tasks"):
        if not raw.get(key):
            raise StudyError(f"the study file {path.name} needs a '{key}'.")
    defaults = raw.get("defaults") or {}
    known = {"title", "consent", "instructions", "seed", "counterbalance", "allow_upload", "log_ip", "withdrawal", "recruitment",
             "admin_password_env", "defaults", "tasks"}
    extra = set(raw) - known
    if "admin_password" in extra:
        raise StudyError(f"{path.name} must not hold a password: set it in the environment variable named by "
                         "admin_password_env (default IC_ZOO_ADMIN_PASSWORD).")
    if extra:
        raise StudyError(f"unknown field(s) {', '.join(sorted(extra))} in {path.name}.")
    tasks, seen = [], set()
    for i, t in enumerate(raw["tasks"]):
        where = f"task {i + 1}"
        if not isinstance(t, dict) or not t.get("id") or not t.get("image"):
            raise StudyError(f"{where} of {path.name} needs an 'id' and an 'image'.")
        tid = str(t["id"])
        if tid in seen:
            raise StudyError(f"two tasks are called '{tid}' in {path.name}.")
        seen.add(tid)
        img = (path.parent / t["image"]).resolve()
        if not img.is_file():
            raise StudyError(f"the image of task '{tid}' ({t['image']}) does not exist next to {path.name}.")
        qs = []
        for j, q in enumerate(t.get("questions") or []):
            if not isinstance(q, dict) or not q.get("id") or not q.get("text"):
                raise StudyError(f"question {j + 1} of task '{tid}' needs an 'id' and a 'text'.")
            qtype, qwhere = str(q.get("type", "text")), f"question '{q['id']}' of task '{tid}'"
            if qtype not in QUESTION_TYPES:
                names = list(QUESTION_TYPES)
                raise StudyError(f"{qwhere} has type '{qtype}'; use {', '.join(names[:-1])} or {names[-1]}.")
            question = Question(str(q["id"]), str(q["text"]), qtype, required=bool(q.get("required", True)),
                                expected=None if q.get("expected") is None else str(q["expected"]),
                                **QUESTION_TYPES[qtype].parse(q, qwhere))
            if question.expected is not None and question.kind.widget == "radio" \
                    and question.expected not in question.kind.choices(question):
                raise StudyError(f"{qwhere} expects '{question.expected}', which is not one of its answers.")
            qs.append(question)
        truth = {}
        for key in ("parts", "truth"):
            if t.get(key):
                f = (path.parent / t[key]).resolve()
                if not f.is_file():
                    raise StudyError(f"the {key} file of task '{tid}' ({t[key]}) does not exist next to {path.name}.")
                truth[key] = str(f)
        models = list(t.get("models") or defaults.get("models") or [])
        if not models:
            raise StudyError(f"task '{tid}' has no models (set 'models' there or in 'defaults').")
        if len(models) > MAX_MODELS_PER_TASK:
            raise StudyError(f"task '{tid}' names {len(models)} models; a task shows at most "
                             f"{MAX_MODELS_PER_TASK} side by side.")
        tasks.append(Task(tid, str(img), str(t.get("prompt", "")), models,
                          str(t.get("explainer", defaults.get("explainer", "gradcam"))),
                          str(t.get("inpainter", defaults.get("inpainter", "telea"))), qs,
                          float(t["time_limit_s"]) if t.get("time_limit_s") else None,
                          bool(t.get("attention_check", False)), truth.get("parts"), truth.get("truth")))
    study = Study(str(raw["title"]), tasks, str(raw.get("consent", "")), str(raw.get("instructions", "")),
                  int(raw.get("seed", 0)), str(raw.get("counterbalance", "latin")), bool(raw.get("allow_upload", False)),
                  bool(raw.get("log_ip", False)), str(raw.get("admin_password_env", "IC_ZOO_ADMIN_PASSWORD")),
                  str(path.resolve()), str(raw.get("withdrawal", "delete")),
                  parse_recruitment(raw.get("recruitment"), path.name))
    if study.withdrawal not in WITHDRAWAL:
        raise StudyError(f"withdrawal is 'delete' or 'flag' in {path.name}, not '{study.withdrawal}'.")
    counterbalance(["a", "b"], study.counterbalance, 0, "check")  # validates the mode
    return study


def check_models(study: Study) -> list[str]:
    """Problems with the models / explainers / inpainters the study names (empty when fine)."""
    from ..discovery import REGISTRY, loaded

    loaded()
    out = []
    for t in study.tasks:
        for m in t.models:
            if ("classifier", m) not in REGISTRY:
                out.append(f"task '{t.id}': unknown model '{m}'")
        if ("explainer", t.explainer) not in REGISTRY:
            out.append(f"task '{t.id}': unknown explainer '{t.explainer}'")
        if ("inpainter", t.inpainter) not in REGISTRY:
            out.append(f"task '{t.id}': unknown inpainter '{t.inpainter}'")
    return out
