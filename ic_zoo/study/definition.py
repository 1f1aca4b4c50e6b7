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
from dataclasses import asdict, dataclass, field, replace
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
    #: a predict-then-see task (``Predict``): the participant predicts what the models will do before they are
    #: shown; None for a task where every stroke is answered at once
    predict: "Predict | None" = None
    #: a prepared edit (a mask next to the study file, white = removed): applied when the task opens, and the
    #: participant predicts its outcome; None for an edit the participant paints
    edit: str | None = None
    #: "learning" (examples with their explanations) or "test" (no explanations), as simulation studies run
    #: them; "" for a task outside such a design
    phase: str = ""
    #: what the model columns show as the class map: "shown" (the explainer's), "hidden" (no map) or "random"
    #: (a random smooth map of the same size: the control of simulation studies)
    maps: str = "shown"


@dataclass
class Predict:
    """What a predict-then-see task asks before the models answer. ``models``: "all" (a prediction per model)
    or "first" (for the first model of the participant's order); ``ask``: "flip" (will its top-1 change?)
    and / or "class" (which class will it say: its current top-5 or "something else"); ``confidence``: also
    how sure (1-5)."""
    models: str = "all"
    ask: list[str] = field(default_factory=lambda: ["flip", "class"])
    confidence: bool = False


@dataclass
class Condition:
    """A between-subject condition: a name and the overrides it applies to every task (None: as the task
    says); ``tasks``, the ids of the tasks its participants do (None: all)."""
    name: str
    maps: str | None = None
    explainer: str | None = None
    models: list[str] | None = None
    inpainter: str | None = None
    tasks: list[str] | None = None


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
    #: between-subject conditions (``Condition``); empty for a study without them
    conditions: list[Condition] = field(default_factory=list)
    #: the analysis plan fixed in advance (``ANALYSIS_KEYS``: explainers, bootstrap, random, seed, blur), part of
    #: the study's key; None when the study file has none
    analysis: dict | None = None

    def public_dict(self) -> dict:
        """The definition as logged: image paths relative to the study file, each with its file's hash, so
        the same study started from another folder or machine is the same study."""
        d = asdict(self)
        d.pop("source")
        if d["withdrawal"] == "delete":
            d.pop("withdrawal")  # the default: a study written before the field keeps its key
        if d["recruitment"] is None:
            d.pop("recruitment")
        if not d["conditions"]:
            d.pop("conditions")  # a study written before conditions keeps its key
        else:
            d["conditions"] = [{k: v for k, v in c.items() if v is not None} for c in d["conditions"]]
        if d["analysis"] is None:
            d.pop("analysis")
        base = Path(self.source).parent if self.source else None
        for t in d["tasks"]:
            for key, default in (("predict", None), ("edit", None), ("phase", ""), ("maps", "shown")):
                if t.get(key) == default:
                    t.pop(key)  # (the same: keys a study written before them never had)
            for key in ("image", "parts", "truth", "edit"):
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
        """The task's models in the participant's order. With conditions, the ordinals of one condition are
        every C-th (``condition_of``), so the square's row is the participant's rank within their condition:
        each condition gets every row equally often."""
        row = participant_index // max(len(self.conditions), 1)
        return counterbalance(task.models, self.counterbalance, row, f"{self.seed}:{participant_code}:{task.id}")

    def condition_of(self, ordinal: int) -> Condition | None:
        """The condition of the participant with this ordinal (the log's counter, taken at consent): the
        conditions in turn, so their counts differ by at most one whatever the number of replicas."""
        return self.conditions[int(ordinal) % len(self.conditions)] if self.conditions else None

    def task_for(self, task: Task, condition: Condition | None) -> Task:
        """The task as a participant of ``condition`` does it (its overrides applied)."""
        if condition is None:
            return task
        over = {k: getattr(condition, k) for k in ("maps", "explainer", "models", "inpainter")
                if getattr(condition, k) is not None}
        return replace(task, **over) if over else task

    def includes(self, task: Task, condition: Condition | None) -> bool:
        """Whether participants of ``condition`` do ``task``."""
        return condition is None or condition.tasks is None or task.id in condition.tasks

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


def _lines(path: Path) -> dict:
    """The line (1-based) of each item of the study file's ``tasks`` and ``conditions`` lists, as
    {("tasks", i): line}; empty for TOML (its parser keeps no positions)."""
    if path.suffix.lower() == ".toml":
        return {}
    import yaml

    try:
        root = yaml.compose(path.read_text())
    except yaml.YAMLError:
        return {}
    out = {}
    if isinstance(root, yaml.MappingNode):
        for k, v in root.value:
            if getattr(k, "value", None) in ("tasks", "conditions") and isinstance(v, yaml.SequenceNode):
                for i, item in enumerate(v.value):
                    out[(k.value, i)] = item.start_mark.line + 1
    return out


MAPS = ("shown", "hidden", "random")
PHASES = ("learning", "test")
PREDICT_ASK = ("flip", "class")
CONDITION_KEYS = {"name", "maps", "explainer", "models", "inpainter", "tasks"}


def _predict(block, where: str) -> Predict:
    """A task's ``predict:`` block (``true`` for the defaults)."""
    if block is True:
        return Predict()
    if not isinstance(block, dict):
        raise StudyError(f"{where}: 'predict' is true or a mapping with models, ask and confidence.")
    extra = set(block) - {"models", "ask", "confidence"}
    if extra:
        raise StudyError(f"{where}: unknown field(s) {', '.join(sorted(extra))} in 'predict' (it takes models, ask "
                         "and confidence).")
    models = str(block.get("models", "all"))
    if models not in ("all", "first"):
        raise StudyError(f"{where}: predict.models is 'all' (one prediction per model) or 'first', not '{models}'.")
    ask = block.get("ask", ["flip", "class"])
    ask = [ask] if isinstance(ask, str) else ask
    if not isinstance(ask, list) or not ask or any(a not in PREDICT_ASK for a in ask) or len(set(ask)) != len(ask):
        raise StudyError(f"{where}: predict.ask lists what to predict, from flip and class, each once.")
    return Predict(models, [str(a) for a in ask], bool(block.get("confidence", False)))


def _conditions(raw, path: Path, tasks: list[Task], lines: dict) -> list[Condition]:
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) < 2:
        raise StudyError(f"'conditions' in {path.name} is a list of at least two conditions, each with a 'name'.")
    ids = [t.id for t in tasks]
    out, names = [], set()
    for j, c in enumerate(raw):
        line = lines.get(("conditions", j))
        where = f"condition {j + 1} of {path.name}" + (f" (line {line})" if line else "")
        if not isinstance(c, dict) or not c.get("name"):
            raise StudyError(f"{where} needs a 'name'.")
        name = str(c["name"])
        if not re.match(r"^[A-Za-z0-9_.-]{1,40}$", name):
            raise StudyError(f"{where}: the name '{name}' must be 1-40 letters, digits, '.', '-' or '_'.")
        where = f"condition '{name}' of {path.name}" + (f" (line {line})" if line else "")
        if name in names:
            raise StudyError(f"{where}: two conditions are called '{name}'.")
        names.add(name)
        extra = set(c) - CONDITION_KEYS
        if extra:
            raise StudyError(f"{where}: unknown field(s) {', '.join(sorted(extra))} (a condition sets maps, "
                             "explainer, models, inpainter or tasks).")
        maps = None if c.get("maps") is None else str(c["maps"])
        if maps is not None and maps not in MAPS:
            raise StudyError(f"{where}: maps is shown, hidden or random, not '{maps}'.")
        if maps in ("hidden", "random") and c.get("explainer") is not None:
            raise StudyError(f"{where}: it hides the maps (maps: {maps}) and names an explainer; the two conflict.")
        models = c.get("models")
        if models is not None:
            if isinstance(models, str):
                models = [models]
            if not isinstance(models, list) or not models or len(models) > MAX_MODELS_PER_TASK:
                raise StudyError(f"{where}: models is a list of 1 to {MAX_MODELS_PER_TASK} model names.")
            models = [str(m) for m in models]
        chosen = c.get("tasks")
        if chosen is not None:
            chosen = [chosen] if isinstance(chosen, str) else chosen
            if not isinstance(chosen, list) or not chosen:
                raise StudyError(f"{where}: tasks is a list of task ids.")
            chosen = [str(x) for x in chosen]
            unknown = [x for x in chosen if x not in ids]
            if unknown:
                raise StudyError(f"{where}: there is no task called '{unknown[0]}'.")
        out.append(Condition(name, maps, None if c.get("explainer") is None else str(c["explainer"]), models,
                             None if c.get("inpainter") is None else str(c["inpainter"]), chosen))
    return out


ANALYSIS_KEYS = {"explainers", "bootstrap", "random", "seed", "blur"}


def parse_analysis(raw, where: str) -> dict | None:
    """A study file's ``analysis:`` block, the plan ``study analyze`` follows: each setting checked, one sentence
    for a bad one. Returns the plan with every setting (the defaults for those not given), or None."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise StudyError(f"'analysis' in {where} is a mapping of explainers, bootstrap, random, seed and blur.")
    extra = set(raw) - ANALYSIS_KEYS
    if extra:
        raise StudyError(f"unknown field(s) {', '.join(sorted(extra))} in the analysis plan of {where} (it sets "
                         "explainers, bootstrap, random, seed and blur).")
    ex = raw.get("explainers", ["gradcam", "occlusion"])
    ex = [ex] if isinstance(ex, str) else ex
    if not isinstance(ex, list) or not ex or not all(isinstance(e, str) and e for e in ex):
        raise StudyError(f"the analysis plan's explainers in {where} is a list of explainer names.")
    plan = {"explainers": [str(e) for e in ex]}
    for key, default, low in (("bootstrap", 1000, 0), ("random", 8, 1), ("seed", 0, 0)):
        v = raw.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise StudyError(f"the analysis plan's {key} in {where} is a whole number of at least {low}, not {v!r}.")
        plan[key] = int(v)
    blur = raw.get("blur", {"size": 10, "sigma": 10})
    if not isinstance(blur, dict) or set(blur) - {"size", "sigma"}:
        raise StudyError(f"the analysis plan's blur in {where} is {{size: taps, sigma: pixels}} (0 for no blur).")
    size, sigma = blur.get("size", 10), blur.get("sigma", 10)
    if isinstance(size, bool) or not isinstance(size, int) or size < 0 or not isinstance(sigma, (int, float)) or sigma < 0:
        raise StudyError(f"the analysis plan's blur in {where} has a whole size of 0 or more and a sigma of 0 or more.")
    plan["blur"] = {"size": int(size), "sigma": float(sigma)}
    return plan


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
             "admin_password_env", "defaults", "tasks", "conditions", "analysis"}
    lines = _lines(path)
    extra = set(raw) - known
    if "admin_password" in extra:
        raise StudyError(f"{path.name} must not hold a password: set it in the environment variable named by "
                         "admin_password_env (default IC_ZOO_ADMIN_PASSWORD).")
    if extra:
        raise StudyError(f"unknown field(s) {', '.join(sorted(extra))} in {path.name}.")
    tasks, seen = [], set()
    for i, t in enumerate(raw["tasks"]):
        where = f"task {i + 1}"
        line = f" (line {lines[('tasks', i)]})" if ("tasks", i) in lines else ""
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
        twhere = f"task '{tid}' of {path.name}{line}"
        predict = None if t.get("predict") in (None, False) else _predict(t["predict"], twhere)
        edit = None
        if t.get("edit"):
            if predict is None:
                raise StudyError(f"{twhere}: a prepared edit ('edit') is for a predict-then-see task; add 'predict'.")
            f = (path.parent / t["edit"]).resolve()
            if not f.is_file():
                raise StudyError(f"{twhere}: the edit's mask ({t['edit']}) does not exist next to {path.name}.")
            edit = str(f)
        phase = str(t.get("phase", defaults.get("phase", "")) or "")
        if phase and phase not in PHASES:
            raise StudyError(f"{twhere}: phase is learning or test, not '{phase}'.")
        maps = str(t.get("maps", defaults.get("maps", "shown")))
        if maps not in MAPS:
            raise StudyError(f"{twhere}: maps is shown, hidden or random, not '{maps}'.")
        tasks.append(Task(tid, str(img), str(t.get("prompt", "")), models,
                          str(t.get("explainer", defaults.get("explainer", "gradcam"))),
                          str(t.get("inpainter", defaults.get("inpainter", "telea"))), qs,
                          float(t["time_limit_s"]) if t.get("time_limit_s") else None,
                          bool(t.get("attention_check", False)), truth.get("parts"), truth.get("truth"),
                          predict, edit, phase, maps))
    study = Study(str(raw["title"]), tasks, str(raw.get("consent", "")), str(raw.get("instructions", "")),
                  int(raw.get("seed", 0)), str(raw.get("counterbalance", "latin")), bool(raw.get("allow_upload", False)),
                  bool(raw.get("log_ip", False)), str(raw.get("admin_password_env", "IC_ZOO_ADMIN_PASSWORD")),
                  str(path.resolve()), str(raw.get("withdrawal", "delete")),
                  parse_recruitment(raw.get("recruitment"), path.name), _conditions(raw.get("conditions"), path, tasks, lines),
                  parse_analysis(raw.get("analysis"), path.name))
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
    for e in (study.analysis or {}).get("explainers", []):
        if ("explainer", e) not in REGISTRY:
            out.append(f"analysis plan: unknown explainer '{e}'")
    for c in study.conditions:
        for m in c.models or []:
            if ("classifier", m) not in REGISTRY:
                out.append(f"condition '{c.name}': unknown model '{m}'")
        if c.explainer is not None and ("explainer", c.explainer) not in REGISTRY:
            out.append(f"condition '{c.name}': unknown explainer '{c.explainer}'")
        if c.inpainter is not None and ("inpainter", c.inpainter) not in REGISTRY:
            out.append(f"condition '{c.name}': unknown inpainter '{c.inpainter}'")
    return out
