"""Issue 38 items 2 and 3: predict-then-see tasks and between-subject conditions.

A participant predicts what a model will do with an edit (theirs, or the researcher's prepared one) before the
model's answer is shown; the server never sends that answer before the prediction is logged (checked through
the API); the log keeps the prediction, what the model did and whether it was right. Conditions are given in
turn by the log's counter and logged at consent; the analysis compares them (BCa intervals, a permutation
test, accuracy by trial). Cohorts are driven through gradio_client against the study app: an oracle who
predicts from the model's own class map and the removed region, a coin-flipper, and a null cohort split in
two conditions."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import sqlalchemy as sa
from gradio_client import Client, handle_file

os.environ["IC_ZOO_APP_NO_DEMO"] = "1"
from ic_zoo.flower2d import generator as g  # noqa: E402
from ic_zoo.study import db as D  # noqa: E402
from ic_zoo.study import load_study  # noqa: E402
from ic_zoo.study import simulation as S  # noqa: E402
from ic_zoo.study.definition import StudyError  # noqa: E402

MODEL, SIZE = "flower2d/squeezenet", 128
NQ = 4  # the prediction panel's model slots (MAX_MODELS_PER_TASK)


def _flower(i: int):
    from PIL import Image

    p = g.sample_params("double-12c", 0, "test", 8100 + i)
    img, parts = g.render(p, SIZE)
    return img, parts, g.disc_mask(p, parts), Image


def _background_square(parts: np.ndarray, side: int = 28) -> np.ndarray:
    """A square of background only (nothing of the flower), as far from the flower as the image allows."""
    for y, x in ((0, 0), (0, SIZE - side), (SIZE - side, 0), (SIZE - side, SIZE - side)):
        if not parts[y:y + side, x:x + side].any():
            m = np.zeros(parts.shape, bool)
            m[y:y + side, x:x + side] = True
            return m
    raise AssertionError("no background corner")


def _study(tmp_path, n_tasks: int, conditions: str = "", ask: str = "[flip]", phases=("test",),
           models=(MODEL,), confidence: bool = False, prepared: bool = True, name: str = "p"):
    """A predict-then-see study over Flower2D flowers: task i's prepared edit removes the part that decides
    the class (even i: the model should change its mind) or a background square (odd i)."""
    d = tmp_path / name
    d.mkdir(parents=True, exist_ok=True)
    lines = ["title: Predict", "consent: Agree?", "seed: 5", "counterbalance: none",
             "defaults: {models: [" + ", ".join(models) + "], explainer: gradcam, inpainter: telea}", "tasks:"]
    masks = []
    for i in range(n_tasks):
        img, parts, disc, Image = _flower(i)
        m = disc if i % 2 == 0 else _background_square(parts)
        masks.append(m)
        Image.fromarray(img).save(d / f"f{i}.png")
        Image.fromarray((m * 255).astype(np.uint8)).save(d / f"e{i}.png")
        lines += [f"  - id: t{i}", f"    image: f{i}.png",
                  f"    predict: {{models: all, ask: {ask}, confidence: {str(confidence).lower()}}}",
                  f"    phase: {phases[min(i, len(phases) - 1)]}"]
        if prepared:
            lines.append(f"    edit: e{i}.png")
    (d / "study.yaml").write_text("\n".join(lines) + "\n" + conditions)
    return d / "study.yaml", masks


def _launch(study, tmp_path, name="p"):
    from ic_zoo.app.study.ui import build_study_demo

    db = f"sqlite:///{tmp_path / f'{name}.sqlite'}"
    demo = build_study_demo(study, db, concurrency=2)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    return demo, url, db


def _rows(db, kind=None):
    eng = D.engine_for(db)
    q = sa.select(D.interactions_t, D.participants_t.c.code).join(D.participants_t)
    if kind:
        q = q.where(D.interactions_t.c.kind == kind)
    with eng.connect() as conn:
        out = [dict(r) for r in conn.execute(q.order_by(D.interactions_t.c.id)).mappings()]
    eng.dispose()
    for r in out:
        r["payload"] = json.loads(r["payload"])
    return out


def _predict(c, flips=(), classes=(), confidence=None, trial=1):
    f = list(flips) + [None] * (NQ - len(flips))
    k = list(classes) + [None] * (NQ - len(classes))
    return c.predict(0, *f, *k, confidence, trial, api_name="/study_predict")


def _submit(c):
    return c.predict(0, *[None] * 6, *[""] * 6, api_name="/submit")


def _model_answer_in(out) -> bool:
    """Whether an API answer carries any model output: a column title, a table or a maps picture."""
    for o in out:
        if isinstance(o, str) and (o.startswith("###") or o.endswith((".jpeg", ".jpg"))):
            return True
        if isinstance(o, dict) and ("headers" in o and "data" in o):
            return True
    return False


# -- the study file ----------------------------------------------------------------------------------------
def test_predict_tasks_and_conditions_load(tmp_path):
    conds = ("conditions:\n  - {name: maps, maps: shown}\n  - {name: none, maps: hidden}\n"
             "  - {name: random, maps: random, tasks: [t0]}\n")
    path, _ = _study(tmp_path, 2, conds, ask="[flip, class]", phases=("learning", "test"), confidence=True)
    s = load_study(path)
    t0, t1 = s.tasks
    assert t0.predict.ask == ["flip", "class"] and t0.predict.confidence and t0.edit.endswith("e0.png")
    assert (t0.phase, t1.phase) == ("learning", "test")
    assert [c.name for c in s.conditions] == ["maps", "none", "random"]
    # the conditions in turn by the log's counter; the square's row within each condition
    assert [s.condition_of(i).name for i in range(7)] == ["maps", "none", "random"] * 2 + ["maps"]
    assert s.task_for(t0, s.conditions[1]).maps == "hidden" and s.task_for(t0, None) is t0
    assert s.includes(t1, s.conditions[0]) and not s.includes(t1, s.conditions[2])
    d = json.loads(s.to_json())
    assert d["conditions"][2] == {"name": "random", "maps": "random", "tasks": ["t0"]}
    assert "edit_sha256" in d["tasks"][0] and "/" not in d["tasks"][0]["edit"]


@pytest.mark.parametrize("change, message", [
    (("  - {name: none, maps: hidden}\n", "  - {name: none, maps: hidden, explainer: occlusion}\n"),
     "condition 'none' of p.yaml (line 14): it hides the maps (maps: hidden) and names an explainer; the two conflict."),
    (("  - {name: none, maps: hidden}\n", "  - {name: none, maps: blurred}\n"),
     "condition 'none' of p.yaml (line 14): maps is shown, hidden or random, not 'blurred'."),
    (("  - {name: none, maps: hidden}\n", "  - {name: none, tasks: [t9]}\n"),
     "condition 'none' of p.yaml (line 14): there is no task called 't9'."),
    (("  - {name: none, maps: hidden}\n", "  - {name: maps, maps: hidden}\n"),
     "condition 'maps' of p.yaml (line 14): two conditions are called 'maps'."),
    (("  - {name: none, maps: hidden}\n", "  - {maps: hidden}\n"), "condition 2 of p.yaml (line 14) needs a 'name'."),
    (("  - {name: none, maps: hidden}\n", "  - {name: none, colour: red}\n"),
     "condition 'none' of p.yaml (line 14): unknown field(s) colour (a condition sets maps, explainer, models, "
     "inpainter or tasks)."),
    (("ask: [flip]", "ask: [flip, mood]"), "task 't0' of p.yaml (line 7): predict.ask lists what to predict, from flip "
                                           "and class, each once."),
    (("predict: {models: all,", "predict: {models: some,"),
     "task 't0' of p.yaml (line 7): predict.models is 'all' (one prediction per model) or 'first', not 'some'."),
    (("    phase: test\n", "    phase: exam\n"), "task 't0' of p.yaml (line 7): phase is learning or test, not 'exam'."),
    (("    edit: e0.png\n", "    edit: nowhere.png\n"),
     "task 't0' of p.yaml (line 7): the edit's mask (nowhere.png) does not exist next to p.yaml."),
])
def test_each_mistake_is_one_sentence_with_its_line(tmp_path, change, message):
    conds = "conditions:\n  - {name: maps, maps: shown}\n  - {name: none, maps: hidden}\n"
    path, _ = _study(tmp_path, 1, conds)
    text = path.read_text().replace(*change)
    assert text != path.read_text()
    bad = path.parent / "p.yaml"
    bad.write_text(text)
    with pytest.raises(StudyError) as e:
        load_study(bad)
    assert str(e.value) == message


def test_a_condition_naming_an_unknown_model_or_explainer_is_refused_at_start(tmp_path):
    from ic_zoo.errors import IcZooError
    from ic_zoo.study.definition import check_models

    conds = "conditions:\n  - {name: a, explainer: no-such-cam}\n  - {name: b, models: [flower2d/nope]}\n"
    path, _ = _study(tmp_path, 1, conds)
    s = load_study(path)
    assert check_models(s) == ["condition 'a': unknown explainer 'no-such-cam'", "condition 'b': unknown model 'flower2d/nope'"]
    from ic_zoo.app.study.ui import build_study_demo

    with pytest.raises(IcZooError, match="the study names things that are not available: condition 'a'"):
        demo = build_study_demo(s, f"sqlite:///{tmp_path / 'x.sqlite'}")
        demo.ic_zoo_study_app.check_start()


def test_an_edit_without_predict_is_refused(tmp_path):
    path, _ = _study(tmp_path, 1)
    path.write_text(path.read_text().replace("    predict: {models: all, ask: [flip], confidence: false}\n", ""))
    with pytest.raises(StudyError, match="a prepared edit \\('edit'\\) is for a predict-then-see task; add 'predict'"):
        load_study(path)


# -- the flow through the API ------------------------------------------------------------------------------
def test_the_answer_is_sent_only_after_the_prediction_is_logged(tmp_path):
    path, masks = _study(tmp_path, 2, ask="[flip, class]", confidence=True, phases=("learning", "test"))
    path.write_text(path.read_text().replace("    edit: e1.png\n", ""))  # task t1: the participant paints
    study = load_study(path)
    demo, url, db = _launch(study, tmp_path)
    try:
        c = Client(url, verbose=False)
        out = c.predict(0, "P01", api_name="/consent")
        # the prepared edit is made and logged; the columns show the answer before it, the status asks to predict
        assert "Now predict what the models will do" in next(o for o in out if isinstance(o, str) and "stroke(s)" in o)
        strokes = _rows(db, "stroke")
        assert len(strokes) == 1 and strokes[0]["payload"]["prepared"] and strokes[0]["payload"]["trial"] == 1
        before = strokes[0]["payload"]["before"][MODEL]
        after = strokes[0]["payload"]["models"][MODEL]["modified"]["top5"][0]["label"]
        assert before["top1"] != after  # removing the part that decides the class changes the model's mind
        shown_titles = [o for o in out if isinstance(o, str) and o.startswith("###")]
        assert shown_titles and all(before["top1"] in t for t in shown_titles) and not any(after in t for t in shown_titles)
        trial = out[-2]
        assert trial == 1
        # a resumed page (another tab of the same participant) shows the same waiting trial, nothing more
        c2 = Client(url, verbose=False)
        again = c2.predict(0, "P01", api_name="/consent")
        assert again[-2] == 1 and not any(after in o for o in again if isinstance(o, str) and o.startswith("###"))
        c = c2
        n_events = len(_rows(db))
        for bad, why in (((["yes"], [before["top5"][0]], "3", 2), "There is nothing to predict now"),
                         (([None], [before["top5"][0]], "3", 1), "Please predict whether flower2d/squeezenet will change"),
                         ((["yes"], [before["top5"][0]], None, 1), "Please say how sure you are"),
                         ((["yes"], [before["top5"][0]], "9", 1), "not in the list of choices")):
            with pytest.raises(Exception, match=why):
                _predict(c, *bad)
        with pytest.raises(Exception, match="First predict what the models will do"):
            c.predict(0, api_name="/study_undo")
        with pytest.raises(Exception, match="First predict what the models will do"):
            _submit(c)
        assert len(_rows(db)) == n_events  # nothing of the refused calls was logged
        out = _predict(c, ["yes"], ["something else"], "4", 1)
        assert _model_answer_in(out) and any(after in o for o in out if isinstance(o, str) and o.startswith("###"))
        assert "changed its top-1" in out[1] and "**right**" not in out[1]  # the class was in the top-5: not right
        pred = _rows(db, "prediction")
        assert len(pred) == 1
        p = pred[0]["payload"]
        o = p["outcome"][MODEL]
        assert p["predictions"] == {MODEL: {"flip": "yes", "class": "something else"}} and p["confidence"] == 4
        assert o["flipped"] and o["flip_correct"] and o["top1_after"] == after
        assert o["class_correct"] == (after not in before["top5"]) and p["correct"] == o["class_correct"]
        assert p["phase"] == "learning" and p["response_time_s"] >= 0 and p["edit_seq"] == strokes[0]["seq"]
        with pytest.raises(Exception, match="There is nothing to predict now"):  # a replay after the reveal
            _predict(c, ["yes"], ["something else"], "4", 1)
        assert len(_rows(db, "prediction")) == 1
        out = _submit(c)
        # task t1: the participant paints; the stroke's answer carries nothing of the models
        with pytest.raises(Exception, match="Please make a change and predict"):
            _submit(c)
        from conftest import _loopback

        layer = _loopback().layer_png((SIZE, SIZE), masks[1] | masks[0], tmp_path / "l.png")
        e = c.predict(0, {"background": handle_file(study.tasks[1].image), "layers": [handle_file(layer)],
                          "composite": None}, api_name="/study_edit")
        assert not _model_answer_in(e) and "Now predict" in e[1] and "top-1" not in e[1]
        assert e[-2] == 1
        with pytest.raises(Exception, match="First predict what the models will do"):
            c.predict(0, {"background": handle_file(study.tasks[1].image), "layers": [handle_file(layer)],
                          "composite": None}, api_name="/study_edit")
        out = _predict(c, ["no"], ["something else"], "2", 1)
        assert _model_answer_in(out)
        assert [r["payload"]["trial"] for r in _rows(db, "prediction")] == [1, 1]
        assert _rows(db, "prediction")[1]["payload"]["phase"] == "test"
        out = _submit(c)
        assert any(isinstance(o, str) and "Thank you" in o for o in out)
    finally:
        demo.close()


def test_conditions_are_given_in_turn_logged_at_consent_and_change_the_maps(tmp_path):
    conds = ("conditions:\n  - {name: maps, maps: shown}\n  - {name: none, maps: hidden}\n"
             "  - {name: random, maps: random, tasks: [t1]}\n")
    path, _ = _study(tmp_path, 2, conds, phases=("learning",))
    study = load_study(path)
    demo, url, db = _launch(study, tmp_path)
    try:
        shown = {}
        for k in range(6):
            c = Client(url, verbose=False)
            out = c.predict(0, f"P{k}", api_name="/consent")
            shown[f"P{k}"] = sum(1 for o in out if isinstance(o, str) and o.endswith((".jpeg", ".jpg")))
            if k == 2:  # the 'random' condition does task t1 only: t0 was passed over and logged as skipped
                assert "Task 2 of 2" in next(o for o in out if isinstance(o, str) and o.startswith("## Task"))
        cond = {r["code"]: r["payload"]["condition"] for r in _rows(db, "consent")}
        assert cond == {"P0": "maps", "P1": "none", "P2": "random", "P3": "maps", "P4": "none", "P5": "random"}
        assert shown["P0"] == 1 and shown["P1"] == 0 and shown["P2"] == 1  # a map, none, a (random) map
        skipped = _rows(db, "skipped")
        assert {(r["code"], r["task_id"]) for r in skipped} == {("P2", "t0"), ("P5", "t0")}
        app = demo.ic_zoo_study_app
        assert app.store.condition_counts() == [{"condition": n, "participants": 2, "finished": 0}
                                                for n in ("maps", "none", "random")]
        os.environ["IC_ZOO_ADMIN_PASSWORD"] = "pw"
        try:
            summary = Client(url, verbose=False).predict("pw", api_name="/admin_progress")[0]
        finally:
            os.environ.pop("IC_ZOO_ADMIN_PASSWORD")
        assert "Conditions: **maps** 2 (0 finished), **none** 2 (0 finished), **random** 2 (0 finished)." in summary
    finally:
        demo.close()


def test_a_random_map_is_smooth_seeded_and_not_the_models():
    from ic_zoo.app.study.conditions import random_smooth_map

    a, b = random_smooth_map((56, 56), "s:P1:t0:m:1"), random_smooth_map((56, 56), "s:P1:t0:m:1")
    c = random_smooth_map((56, 56), "s:P2:t0:m:1")
    assert np.array_equal(a, b) and not np.allclose(a, c)
    assert a.min() == 0 and a.max() == pytest.approx(1)
    assert np.abs(np.diff(a, axis=1)).mean() < 0.05  # smooth: neighbours differ by little


# -- cohorts: the analysis separates an oracle from a coin-flipper ---------------------------------------------
def _oracle_flip(study, task_index: int, mask: np.ndarray) -> str:
    """The oracle predicts from the model's own class map and the removed region: a change when the region
    holds at least a fifth of the map's mass (on these flowers: 0.29-0.45 where the model changed its mind,
    at most 0.05 where it did not)."""
    import ic_zoo

    s = ic_zoo.Session(study.tasks[task_index].image, pretrained=True)
    r = s.evaluate([MODEL], map_classes=[])
    cm = s.explain(MODEL, r.models[MODEL].original[0].index, "gradcam")
    return "yes" if cm.mass_in(mask, "original") >= 0.2 else "no"


def _cohort(url, study, codes, answer):
    for code in codes:
        c = Client(url, verbose=False)
        c.predict(0, code, api_name="/consent")
        for i in range(len(study.tasks)):
            _predict(c, [answer(code, i)], trial=1)
            _submit(c)


@pytest.mark.slow
def test_the_analysis_separates_an_oracle_from_a_coin_flipper(tmp_path, monkeypatch, capsys):
    from ic_zoo.study.analysis import analyze

    monkeypatch.setenv("IC_ZOO_STUDY_NEW_PER_CLIENT_PER_MIN", "100")  # twenty participants from one address

    conds = "conditions:\n  - {name: oracle, maps: shown}\n  - {name: coin, maps: shown}\n"
    path, masks = _study(tmp_path, 6, conds)
    study = load_study(path)
    oracle = {i: _oracle_flip(study, i, masks[i]) for i in range(6)}
    rng = np.random.default_rng(11)
    coin = {(f"C{k}", i): str(rng.choice(["yes", "no"])) for k in range(10) for i in range(6)}
    demo, url, db = _launch(study, tmp_path)
    try:  # joining in turn: oracles get the first condition, coin-flippers the second
        for k in range(10):
            _cohort(url, study, [f"O{k}"], lambda code, i: oracle[i])
            _cohort(url, study, [f"C{k}"], lambda code, i: coin[(code, i)])
    finally:
        demo.close()
    from ic_zoo.cli import main as cli  # the CLI's analyze prints the comparison

    cli(["study", "analyze", "--db", db, "--out", str(tmp_path / "cli"), "--explainers", "gradcam", "--bootstrap", "200",
               "--random", "1"])
    printed = capsys.readouterr().out
    assert "simulation accuracy, condition oracle (n=10): 1.00" in printed and "oracle - coin: +" in printed
    eng = D.engine_for(db)
    doc = analyze(eng, tmp_path / "out", explainers=["gradcam"], n_boot=500, n_random=1, log=lambda s: None)
    eng.dispose()
    sim = doc["simulation"]
    acc = {r["condition"]: r["accuracy"] for r in sim["by_condition"] if r["measure"] == "correct" and r["phase"] == "all"}
    print("simulation accuracy", acc)
    assert acc["oracle"][0] >= 0.9 and abs(acc["coin"][0] - 0.5) <= 0.1, acc
    assert acc["oracle"][1] > acc["coin"][2]  # the intervals do not overlap
    d = next(r for r in sim["differences"] if r["measure"] == "correct" and r["phase"] == "all")
    assert d["conditions"] == "oracle - coin" and d["difference"][1] > 0 and d["p_permutation"] < 0.01
    per = {r["participant"]: r for r in sim["participants_table"]}
    assert len(per) == 20 and all(per[f"O{k}"]["condition"] == "oracle" for k in range(10))
    assert (tmp_path / "out" / "simulation_by_condition.csv").is_file()
    assert "Forward simulation" in (tmp_path / "out" / "report.html").read_text()
    # the per-trial export has each prediction with its condition, phase and correctness
    import pandas as pd

    from ic_zoo.study.research import export

    eng = D.engine_for(db)
    export(eng, tmp_path / "exp")
    eng.dispose()
    t = pd.read_csv(tmp_path / "exp" / "trials.csv")
    flips = t[t.measure == "predicted_flip"]
    assert len(flips) == 120 and set(flips.condition) == {"oracle", "coin"} and set(flips.phase) == {"test"}
    assert flips[flips.condition == "oracle"].correct.mean() >= 0.9


def test_the_simulation_statistics_on_planted_data():
    """Planted accuracies: the per-condition means, the difference, the permutation p and the learning curve
    are what the rows say."""
    rows, cond = [], {}
    rng = np.random.default_rng(0)
    for k in range(12):
        code, c = f"P{k}", ("a" if k < 6 else "b")
        cond[code] = c
        for trial in range(8):
            right = bool(rng.random() < (0.9 if c == "a" else 0.4)) if trial > 1 else False  # learning after two
            rows.append({"code": code, "kind": "prediction", "task_id": f"t{trial}",
                         "payload": {"phase": "test", "outcome": {"m": {"flip_correct": right, "correct": right}}}})
    doc = S.simulation(rows, cond, ["a", "b"], n_boot=500, n_perm=2000)
    per = S.per_participant(S.predictions(rows))
    a = np.mean([per[f"P{k}"] for k in range(6)])
    b = np.mean([per[f"P{k}"] for k in range(6, 12)])
    got = {r["condition"]: r["accuracy"] for r in doc["by_condition"] if r["measure"] == "correct" and r["phase"] == "all"}
    assert got["a"][0] == pytest.approx(a) and got["b"][0] == pytest.approx(b)
    assert got["a"][1] <= a <= got["a"][2]
    d = doc["differences"][0]
    assert d["difference"][0] == pytest.approx(a - b) and d["difference"][1] > 0 and d["p_permutation"] < 0.01
    first = [r for r in doc["learning"] if r["condition"] == "a" and r["trial"] in (1, 2)]
    assert [r["accuracy"][0] for r in first] == [0.0, 0.0]  # the planted learning: nobody right at first
    assert S.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_null_cohorts_split_in_two_conditions_find_no_difference_at_the_stated_rate():
    """Coin-flipping cohorts (10 + 10 participants, 6 flip predictions each) split in two conditions, 200 times:
    the difference's 95 % interval holds 0 in about 95 % of them and the permutation test rejects at 0.05 in
    about 5 % (a 95 % interval that held 0 less than 88 % of the time, or a test rejecting over 10 %, would say
    the statistics are wrong)."""
    rng = np.random.default_rng(2)
    held, rejected = 0, 0
    for _ in range(200):
        right = rng.random((20, 6)) < 0.5
        acc = right.mean(1)
        r = S.difference(acc[:10], acc[10:], n_boot=600, n_perm=600, seed=int(rng.integers(1 << 30)))
        held += r["difference"][1] <= 0 <= r["difference"][2]
        rejected += r["p_permutation"] < 0.05
    assert held / 200 >= 0.88 and rejected / 200 <= 0.10, (held, rejected)


def test_conditions_stay_balanced_across_replicas_and_restarts(db_url, tmp_path):
    """Two stores on one log (two replicas, or one restarted) take ordinals from the same counter."""
    conds = "conditions:\n  - {name: a}\n  - {name: b}\n  - {name: c}\n"
    path, _ = _study(tmp_path, 1, conds)
    study = load_study(path)
    one = D.StudyStore(D.engine_for(db_url), study)
    for k in range(4):
        one.consent(f"A{k}")
    one.engine.dispose()
    two = D.StudyStore(D.engine_for(db_url), study)  # the restart (or the other replica)
    for k in range(5):
        two.consent(f"B{k}")
    two.consent("A1")  # consent again: the same participant, no second counter row
    counts = {c["condition"]: c["participants"] for c in two.condition_counts()}
    assert counts == {"a": 3, "b": 3, "c": 3}
    two.withdraw("B0")  # (ordinal 4: condition b) a withdrawal is the one thing that unbalances
    assert {c["condition"]: c["participants"] for c in two.condition_counts()} == {"a": 3, "b": 2, "c": 3}


EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "study", "predict_study.yaml")


def test_the_example_study_loads_with_its_prepared_edits():
    from ic_zoo import imageio
    from ic_zoo.study.definition import check_models

    s = load_study(EXAMPLE)
    assert [c.name for c in s.conditions] == ["gradcam", "no-map", "random-map"]
    assert s.recruitment.platform == "prolific" and [t.phase for t in s.tasks] == ["learning"] * 2 + ["test"] * 4
    assert check_models(s) == []
    for t in s.tasks:
        assert t.predict is not None
        if t.edit:
            m = imageio.load_mask(t.edit)
            assert m.shape == imageio.load_image(t.image).shape[:2] and 0.01 < m.mean() < 0.3


@pytest.mark.slow
def test_the_example_study_runs_offline_for_a_prolific_participant(tmp_path):
    """The example study as Prolific participants meet it, with the embedded Lite weights: every task's
    prediction, its reveal, the completion code; each participant in the next condition (Grad-CAM, no maps,
    random maps). Then its analysis: the report shows the noise ceiling, the published metrics, the saliency
    control, the mixed model and the three conditions compared."""
    from types import SimpleNamespace

    from ic_zoo.app.study.ui import build_study_demo

    study = load_study(EXAMPLE)
    db = f"sqlite:///{tmp_path / 'ex.sqlite'}"
    demo = build_study_demo(study, db)
    app = demo.ic_zoo_study_app
    fn = {f.name: f.fn for f in demo.fns.values()}
    try:
        for n, pid in enumerate(f"5f0c0ffee0000000000000a{k}" for k in range(1, 7)):
            req = SimpleNamespace(query_params={"PROLIFIC_PID": pid, "STUDY_ID": "S1", "SESSION_ID": f"X{n}"},
                                  session_hash=f"h{n}", client=None)
            out = fn["on_load"](None, req)
            st = out[app.ui.state]
            out = fn["on_consent"](1.7e12, pid, st, req)
            maps_shown = out.get(app.ui.task.compare.slots[0].maps)
            assert (maps_shown is not None) == (n % 3 != 1)  # gradcam, no-map, random-map, in turn
            for i, task in enumerate(study.tasks):
                if task.edit is None:  # the participant paints: a stroke over the saucer
                    pts = [120 + 12 * n, 300 - 4 * n, 220 + 12 * n, 330 - 4 * n]  # each a little elsewhere
                    stroke = {"w": 600, "h": 400, "strokes": [{"id": 1, "r": 20, "pts": pts}]}
                    fn["on_stroke"](0, stroke, st.base, st, req)
                assert st.pending is not None and st.pending["trial"] == 1
                k = len(st.pending["models"])
                asked = task.predict.ask
                flips = (["yes"] * k if "flip" in asked else [None] * k) + [None] * (4 - k)
                classes = (["something else"] * k if "class" in asked else [None] * k) + [None] * (4 - k)
                out = fn["on_predict"](0, *flips, *classes, "3", 1, st.base, st)
                assert st.pending is None and "you predicted" in out[app.ui.task.status]
                out = fn["on_submit"](0, *[None] * 6, *[""] * 6, st.base, st)
            assert "**C1A2B3C4**" in out[app.ui.done] and out[app.ui.redirect].endswith("cc=C1A2B3C4")
    finally:
        demo.close()
    rows = _rows(db, "prediction")
    assert len(rows) == 36 and {r["payload"]["condition"] for r in rows} == {"gradcam", "no-map", "random-map"}
    assert [r["payload"]["phase"] for r in rows[:6]] == ["learning"] * 2 + ["test"] * 4
    flipped = {r["task_id"]: [o["flipped"] for o in r["payload"]["outcome"].values()] for r in rows[:5]}
    assert any(any(v) for v in flipped.values()) and any(not all(v) for v in flipped.values())
    # the example study's analysis (issue 39's report on the example study)
    from ic_zoo.study.analysis import SALIENCY, analyze

    eng = D.engine_for(db)
    doc = analyze(eng, tmp_path / "out", explainers=["gradcam"], n_boot=200, n_random=1, log=lambda s: None)
    eng.dispose()
    painted = next(e for e in doc["tasks"] if e["task"] == study.tasks[-1].id)
    assert painted["with_strokes"] == 6 and painted["ceiling"] is not None
    assert np.isfinite(painted["ceiling"]["ceiling"][0])
    rows = {r["model"]: r for r in painted["agreement"]}
    assert set(rows) == set(study.tasks[-1].models) | {SALIENCY}
    assert all(np.isfinite(r["spearman_blurred"][0]) and "explained_by_saliency" in r
               for m, r in rows.items() if m != SALIENCY)
    fit = doc["models"][0]
    assert fit["analysis"] == "agreement" and fit["terms"], fit.get("note")
    cmp = doc["groups"]
    assert cmp["groups"] == ["gradcam", "no-map", "random-map"]
    assert {r["groups"] for r in cmp["differences"]} == {"gradcam - no-map", "gradcam - random-map",
                                                         "no-map - random-map"}
    assert all(r["n"] == [2, 2] for r in cmp["differences"] if r["measure"] == "iou")
    page = (tmp_path / "out" / "report.html").read_text()
    for text in ("Human noise ceiling", "spearman blurred", SALIENCY, "Models of the per-participant table",
                 "Groups compared", "gradcam - no-map"):
        assert text in page, text
