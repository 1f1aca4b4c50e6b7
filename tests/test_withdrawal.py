"""Issue 38 item 5: a participant withdraws (the page's button, or ``python -m ic_zoo study withdraw``): their
rows, masks and uploads are deleted (or kept and flagged, when the study file says the consent allowed it),
an audit row records that it happened and when, without content, and every export, analysis and progress
view after it leaves them out. On SQLite and on a real PostgreSQL server."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import sqlalchemy as sa

os.environ["IC_ZOO_APP_NO_DEMO"] = "1"
from ic_zoo.study import db as D  # noqa: E402
from ic_zoo.study import load_study  # noqa: E402
from ic_zoo.study.definition import StudyError  # noqa: E402


def _study(tmp_path, withdrawal=None):
    from conftest import _loopback

    path = _loopback().study_file(tmp_path, ("flower2d/squeezenet",), 128, tasks=1, name="w", title="W")
    if withdrawal:
        path.write_text(path.read_text() + f"\nwithdrawal: {withdrawal}\n")
    return load_study(path)


def _fill(store, codes):
    """Each participant: consent, a stroke with its mask, an upload of their own, one shared upload, answers."""
    mask = np.zeros((128, 128), bool)
    mask[10:20, 30:50] = True
    shared = store.store_image("upload:shared", np.zeros((8, 8, 3), np.uint8))
    for i, code in enumerate(codes):
        pid = store.consent(code)["id"]
        store.record(pid, "stroke", store.study.tasks[0].id, {"inpainter": "telea"}, mask=mask)
        own = f"upload:{code.lower()}"
        store.store_image(own, np.full((8, 8, 3), i, np.uint8))
        for key in (own, "upload:shared"):
            store.record(pid, "upload", store.study.tasks[0].id, {"image_key": key, "image_sha256": shared})
        store.answer(pid, 0, {q.id: q.kind.choices(q)[0] if q.kind.choices(q) else "x"
                              for q in store.study.tasks[0].questions}, {})


def _counts(store):
    with store.engine.connect() as conn:
        return {name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                for name, t in (("participants", D.participants_t), ("interactions", D.interactions_t),
                                ("answers", D.answers_t), ("images", D.images_t), ("withdrawals", D.withdrawals_t))}


def test_a_withdrawal_deletes_the_participant_and_leaves_an_audit_row(db_url, tmp_path):
    from ic_zoo.study.research import export

    study = _study(tmp_path)
    store = D.StudyStore(D.engine_for(db_url), study)
    _fill(store, ["P01", "P02"])
    before = _counts(store)
    n_p01 = len(store.timeline(store.participant("P01")["id"]))
    r = store.withdraw("P01", how="page")
    assert r == {"mode": "delete", "interactions": n_p01, "answers": len(study.tasks[0].questions), "images": 1}
    after = _counts(store)
    assert after["participants"] == before["participants"] - 1 and store.participant("P01") is None
    assert after["interactions"] == before["interactions"] - n_p01
    assert after["images"] == before["images"] - 1  # its own upload; the one P02 used too is kept
    with store.engine.connect() as conn:
        keys = {k for k in conn.execute(sa.select(D.images_t.c.task_id)).scalars()}
        audit = conn.execute(sa.select(D.withdrawals_t)).mappings().all()
    assert "upload:p01" not in keys and {"upload:p02", "upload:shared"} <= keys
    assert [(a["mode"], a["how"]) for a in audit] == [("delete", "page")] and audit[0]["at"] is not None
    assert "P01" not in json.dumps([dict(a) for a in audit], default=str)  # nothing of the participant
    counts = export(store.engine, tmp_path / "export")
    rows = json.loads((tmp_path / "export" / "answers.json").read_text())
    assert counts["participants"] == 1 and {r["participant"] for r in rows} == {"P02"}
    assert [p["participant"] for p in store.progress()] == ["P02"]
    with pytest.raises(StudyError, match="there is no participant 'P01' in this study"):
        store.withdraw("P01")
    assert _counts(store)["withdrawals"] == 1  # a refused withdrawal changes nothing


def test_a_flagged_withdrawal_keeps_the_rows_and_leaves_them_out(tmp_path):
    from ic_zoo.study.analysis import _study_rows
    from ic_zoo.study.research import export

    study = _study(tmp_path, "flag")
    assert study.withdrawal == "flag" and json.loads(study.to_json())["withdrawal"] == "flag"
    assert "withdrawal" not in json.loads(_study(tmp_path / "d").to_json())  # the default keeps a study's key
    store = D.StudyStore(D.engine_for(f"sqlite:///{tmp_path / 'log.sqlite'}"), study)
    _fill(store, ["P01", "P02"])
    before = _counts(store)
    assert store.withdraw("P01")["mode"] == "flag"
    after = _counts(store)
    assert {k: after[k] for k in before if k != "withdrawals"} == {k: before[k] for k in before if k != "withdrawals"}
    assert store.participant("P01")["withdrawn_at"] is not None
    assert export(store.engine, tmp_path / "export")["participants"] == 1
    _, _, rows, answers, _, _ = _study_rows(store.engine, None)
    assert {r["code"] for r in rows + answers} == {"P02"}
    assert [p["participant"] for p in store.progress()] == ["P02"]
    assert store.task_progress()[0]["completed"] == "1/1"
    with pytest.raises(StudyError, match="withdrew already"):
        store.withdraw("P01")
    with pytest.raises(StudyError, match="withdrawal is 'delete' or 'flag'"):
        _study(tmp_path / "bad", "keep")


def test_the_cli_withdraws_and_says_what_it_did(tmp_path, capsys):
    from ic_zoo.cli import main

    study = _study(tmp_path)
    url = f"sqlite:///{tmp_path / 'log.sqlite'}"
    store = D.StudyStore(D.engine_for(url), study)
    _fill(store, ["P01"])
    assert main(["study", "withdraw", "--db", url, "--participant", "P01"]) == 0
    out = capsys.readouterr().out
    assert "participant P01 withdrew" in out and "deleted" in out and "audit row" in out
    assert store.participant("P01") is None
    assert main(["study", "withdraw", "--db", url, "--participant", "P09"]) == 2
    err = capsys.readouterr().err
    assert "there is no participant 'P09' in this study" in err and "Traceback" not in err


@pytest.mark.slow
def test_the_page_withdraws_through_the_api(tmp_path):
    from gradio_client import Client

    from ic_zoo.app.study.ui import build_study_demo

    study = _study(tmp_path)
    url_db = f"sqlite:///{tmp_path / 'log.sqlite'}"
    demo = build_study_demo(study, url_db)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        c = Client(url, verbose=False)
        with pytest.raises(Exception, match="nothing to withdraw"):  # before consent: one sentence, nothing logged
            c.predict(0, api_name="/withdraw")
        out = c.predict(1.7e12, "P07", api_name="/consent")
        assert any(isinstance(o, str) and "Task 1 of 1" in o for o in out)
        out = c.predict(0, api_name="/withdraw")
        assert any(isinstance(o, str) and "You have withdrawn from the study" in o for o in out)
    finally:
        demo.close()
    store = D.StudyStore(D.engine_for(url_db), study)
    assert store.participant("P07") is None and [w["how"] for w in store.withdrawals()] == ["page"]


def test_the_tidy_per_trial_export(tmp_path):
    """Issue 38 item 6: ``trials.csv``, one row per participant x trial x measure, read back with pandas: each
    participant's strokes, each model's flip and confidence change on the final image of the task, and each
    answer as its question type's value, with the response time and the late flag."""
    import pandas as pd

    from ic_zoo.study.research import TRIAL_COLUMNS, export

    study = _study(tmp_path)
    store = D.StudyStore(D.engine_for(f"sqlite:///{tmp_path / 'log.sqlite'}"), study)
    task, m = study.tasks[0], study.tasks[0].models[0]
    for code, flipped in (("P01", True), ("P02", False)):
        pid = store.consent(code)["id"]
        store.record(pid, "task_shown", task.id, {})
        for k in range(2 if flipped else 1):
            top1 = {"top1_changed": flipped and k == 1, "tracked": [{"delta_pp": -40.0 * k - 1}],
                    "map": {"explainer": "gradcam", "mass_in_mask_original": 0.25}}
            store.record(pid, "stroke", task.id, {"models": {m: top1}}, mask=np.ones((128, 128), bool))
        store.answer(pid, 0, {q.id: q.kind.choices(q)[-1] if q.kind.choices(q) else "because"
                              for q in task.questions}, {"seconds_on_task": 12.5, "late": False})
    export(store.engine, tmp_path / "export")
    df = pd.read_csv(tmp_path / "export" / "trials.csv")
    assert list(df.columns) == TRIAL_COLUMNS
    assert len(df) == len(df.drop_duplicates(["participant", "trial", "model", "measure"]))  # one row per measure
    got = df.set_index(["participant", "measure"])["value"]
    num = pd.to_numeric(got, errors="coerce")  # one value column: numbers, and an answer's text where it has one
    got = num.where(num.notna(), got)
    assert got[("P01", "strokes")] == 2 and got[("P02", "strokes")] == 1
    assert got[("P01", "flipped")] == 1 and got[("P02", "flipped")] == 0
    assert got[("P01", "delta_pp")] == -41.0 and got[("P01", "mass_in_last_stroke")] == 0.25
    assert got[("P01", "answer:part")] == "leaf"  # the answer as its type's value (a choice: its text)
    assert (df["response_time_s"] == 12.5).all() and set(df["trial"]) == {0}
