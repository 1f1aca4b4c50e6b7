"""Issue 38 item 1: a study question type is one registered object (its widget, parsing, checks, correctness,
its value in the export and its summary in the analysis). The built-ins are checked against references, and a
new type, written in this one file, runs through a real study app: the page shows it, the API refuses a
wrong answer with its sentence, the log, the export and the analysis read it."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from scipy import stats

os.environ["IC_ZOO_APP_NO_DEMO"] = "1"
from ic_zoo.study.definition import Question, StudyError, load_study  # noqa: E402
from ic_zoo.study.questions import QUESTION_TYPES, QuestionType, register_question_type  # noqa: E402


def _q(kind, **kw) -> Question:
    fields = QUESTION_TYPES[kind].parse(kw, "question 'q' of task 't'")
    rest = {k: v for k, v in kw.items() if k not in ("choices", "min", "max")}
    return Question("q", "How sure?", kind, **fields, **rest)


def test_a_scale_checks_its_range_and_summarises_with_the_t_interval():
    q = _q("scale", min=1, max=7)
    assert q.kind.choices(q) == [str(v) for v in range(1, 8)] and "(1 = lowest, 7 = highest)" in q.kind.label(q)
    assert q.kind.refusal(q, "7") is None and q.kind.refusal(q, "1") is None
    for bad in ("0", "8", "3.5", "x", "-1"):
        assert "from 1 to 7" in q.kind.refusal(q, bad)
    said = ["1", "2", "3", "4", "5", "5", None, "7"]
    s = q.kind.summary(q, said)
    vals = np.array([1, 2, 3, 4, 5, 5, 7], float)
    lo, hi = stats.t.interval(0.95, len(vals) - 1, loc=vals.mean(), scale=stats.sem(vals))  # the reference
    assert s["n"] == 7 and s["mean"] == pytest.approx(vals.mean()) and s["median"] == 4.0
    assert s["mean_ci95"] == pytest.approx([lo, hi]) and s["counts"]["5"] == 2 and s["counts"]["6"] == 0
    assert q.kind.value(q, "5") == 5 and q.kind.value(q, None) is None
    with pytest.raises(StudyError, match="from 'min' up to 'max'"):
        _q("scale", min=5, max=1)


def test_a_choice_checks_its_choices_and_counts_them():
    q = _q("choice", choices=["petals", "leaf"], expected="leaf")
    assert q.kind.refusal(q, "leaf") is None and "not one of the choices" in q.kind.refusal(q, "stem")
    assert q.kind.correct(q, "leaf") is True and q.kind.correct(q, "petals") is False and q.kind.correct(q, None) is False
    assert q.kind.summary(q, ["leaf", "leaf", "petals", None]) == {"type": "choice", "n": 3,
                                                                 "counts": {"petals": 1, "leaf": 2}}
    for bad, msg in (({}, "without 'choices'"), ({"choices": ["a", "a"]}, "lists a choice twice")):
        with pytest.raises(StudyError, match=msg):
            _q("choice", **bad)
    t = _q("text")
    assert t.kind.widget == "text" and t.kind.refusal(t, "x" * 5001) and t.kind.correct(t, "x") is None


def test_a_study_file_is_checked_by_the_question_types(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "f.png")

    def load(question: str):
        (tmp_path / "s.yaml").write_text(f"title: T\ntasks: [{{id: a, image: f.png, models: [m], questions: [{question}]}}]\n")
        return load_study(tmp_path / "s.yaml")

    with pytest.raises(StudyError, match="expects 'stem', which is not one of its answers"):
        load("{id: q, text: Q, type: choice, choices: [petals, leaf], expected: stem}")
    with pytest.raises(StudyError, match="use choice, scale or text"):  # every registered type is named
        load("{id: q, text: Q, type: slider}")
    assert load("{id: q, text: Q, type: scale, min: 0, max: 10}").tasks[0].questions[0].kind.name == "scale"


class Confidence(QuestionType):
    """A new type, as a researcher would add it: one class, registered (here in this file)."""

    name = "confidence"

    def choices(self, q):
        return ["50 %", "75 %", "100 %"]

    def value(self, q, answer):
        return None if answer is None else float(answer.rstrip(" %")) / 100

    def refusal(self, q, answer):
        return None if answer in self.choices(q) else "Please pick how sure you are (50, 75 or 100 %)."

    def summary(self, q, answers):
        vals = [self.value(q, a) for a in answers if a is not None]
        return {**super().summary(q, answers), "mean": float(np.mean(vals)) if vals else None}


@pytest.fixture
def confidence_type():
    register_question_type(Confidence)
    yield
    QUESTION_TYPES.pop("confidence", None)


@pytest.mark.slow
def test_a_new_question_type_in_one_file_runs_through_the_study_app(confidence_type, tmp_path, monkeypatch):
    import sqlalchemy as sa
    from gradio_client import Client
    from PIL import Image

    from ic_zoo.app.study.ui import build_study_demo
    from ic_zoo.flower2d import generator as g
    from ic_zoo.study import db as D
    from ic_zoo.study.analysis import question_summaries
    from ic_zoo.study.research import export

    with pytest.raises(TypeError, match="called 'confidence' already"):
        register_question_type(type("Other", (QuestionType,), {"name": "confidence"}))
    img, _ = g.render(g.sample_params("double-12c", 0, "test", 7001), 128)
    Image.fromarray(img).save(tmp_path / "f.png")
    (tmp_path / "s.yaml").write_text(
        "title: T\ntasks:\n  - {id: a, image: f.png, models: [flower2d/squeezenet], questions: "
        "[{id: sure, text: 'How sure are you?', type: confidence}, {id: why, text: Why, type: text, required: false}]}\n")
    study = load_study(tmp_path / "s.yaml")
    url_db = f"sqlite:///{tmp_path / 'log.sqlite'}"
    demo = build_study_demo(study, url_db)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        c = Client(url, verbose=False)
        out = c.predict(1.7e12, "P01", api_name="/consent")
        radio = next(o for o in out if isinstance(o, dict) and o.get("label", "").startswith("How sure"))
        assert [ch[0] for ch in radio["choices"]] == ["50 %", "75 %", "100 %"] and radio["visible"]
        rest = [None] * 5  # the other radios; then the six text boxes (question 2 is the second)
        # an answer outside the type's choices is refused in one sentence (Gradio's own check of the radio's
        # choices comes first through the API; the type's refusal stands behind it) and nothing is logged
        with pytest.raises(Exception, match="not in the list of choices"):
            c.predict(0, "90 %", *rest, "", "", "", "", "", "", api_name="/submit")
        q = study.tasks[0].questions[0]
        assert q.kind.refusal(q, "90 %") == "Please pick how sure you are (50, 75 or 100 %)."
        with D.open_engine(url_db).connect() as conn:  # a refused answer is not logged
            assert conn.execute(sa.select(sa.func.count()).select_from(D.answers_t)).scalar_one() == 0
        out = c.predict(0, "75 %", *rest, "", "because", "", "", "", "", api_name="/submit")
        assert any(isinstance(o, str) and "Thank you" in o for o in out)
    finally:
        demo.close()
    engine = D.open_engine(url_db)
    export(engine, tmp_path / "export")
    rows = json.loads((tmp_path / "export" / "answers.json").read_text())
    sure = next(r for r in rows if r["question_id"] == "sure")
    assert sure["type"] == "confidence" and sure["answer"] == "75 %" and sure["value"] == 0.75
    assert "type,answer,value" in (tmp_path / "export" / "answers.csv").read_text().splitlines()[0]
    definition = json.loads((tmp_path / "export" / "study.json").read_text())["definition"]
    summ = question_summaries(definition, [{"task_id": r["task_id"], "question_id": r["question_id"],
                                            "answer": r["answer"]} for r in rows])
    assert {"task": "a", "question": "sure", "type": "confidence", "n": 1, "mean": 0.75} in summ
