"""Issue 38 item 4: recruitment platforms. The platform sends the participant with its own id in the URL:
the log keeps that id (or a keyed hash of it), the same id resumes and never starts a second participant,
and the finish page shows the completion code (the screen-out code after a failed attention check) and
sends the participant back; an MTurk preview records nothing; a missing or malformed id, a recruitment block
without the fields its platform needs, a consent for an id the page was not given: one sentence each."""
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

PROLIFIC = "recruitment: {platform: prolific, completion_code: C1A2B3, screen_out_code: SCR00N}"


def _study(tmp_path, block: str):
    from conftest import _loopback

    path = _loopback().study_file(tmp_path, ("flower2d/squeezenet",), 128, tasks=1, name="r", title="R")
    text = path.read_text().replace("  - id: t0\n", "  - id: t0\n    attention_check: true\n", 1)
    text = text.replace('type: choice, choices: [petals, leaf]}', 'type: choice, choices: [petals, leaf], expected: leaf}', 1)
    path.write_text(text + "\n" + block + "\n")
    return load_study(path)


def _request(**query):
    from types import SimpleNamespace

    return SimpleNamespace(query_params=query, session_hash="h", client=None)


def _fn(demo, name):
    f = next(f for f in demo.fns.values() if f.name == name)

    def call(*args):
        out = f.fn(*args)
        return {c.elem_id or str(c._id): v for c, v in out.items()} if isinstance(out, dict) else out, out

    return call


@pytest.mark.parametrize("block,msg", [
    ("recruitment: {platform: prolific}", "needs its completion_code"),
    ("recruitment: {platform: sona}", "needs its credit_url"),
    ("recruitment: {platform: generic}", "needs id_param"),
    ("recruitment: {platform: qualtrics}", "prolific, mturk, sona or generic"),
    ("recruitment: {platform: prolific, completion_code: X, store_id: encrypted}", "as_given or hashed"),
    ("recruitment: {platform: generic, id_param: pid, completion_url: 'ftp://x'}", "is a web address"),
    ("recruitment: {platform: prolific, completion_code: X, colour: red}", r"unknown field\(s\) colour"),
])
def test_a_recruitment_block_without_what_its_platform_needs_is_one_sentence(tmp_path, block, msg):
    with pytest.raises(StudyError, match=msg) as info:
        _study(tmp_path, block)
    assert "\n" not in str(info.value)


def test_the_platforms_ids_codes_and_urls(tmp_path):
    s = _study(tmp_path, PROLIFIC)
    rec = s.recruitment
    assert rec.participant_code("5f0c8d3e2a1b4c6d7e8f9a0b", "k") == "5f0c8d3e2a1b4c6d7e8f9a0b"
    assert rec.participant_code("<script>", "k") is None and rec.participant_code(None, "k") is None
    assert rec.finish("x", False) == ("C1A2B3", "https://app.prolific.com/submissions/complete?cc=C1A2B3")
    assert rec.finish("x", True) == ("SCR00N", "https://app.prolific.com/submissions/complete?cc=SCR00N")
    sona = _study(tmp_path / "s", "recruitment: {platform: sona, credit_url: "
                                  "'https://u.sona-systems.com/webstudy_credit.aspx?experiment_id=1&credit_token=t&survey_code='}")
    assert sona.recruitment.finish("4711", False)[1].endswith("survey_code=4711")
    hashed = _study(tmp_path / "h", "recruitment: {platform: prolific, completion_code: C, store_id: hashed}").recruitment
    a, b = hashed.participant_code("PID1", "secret"), hashed.participant_code("PID1", "secret")
    assert a == b and a.startswith("h-") and "PID1" not in a and a != hashed.participant_code("PID1", "other")
    assert hashed.params({"PROLIFIC_PID": "PID1", "SESSION_ID": "S"}) == {"platform": "prolific"}


@pytest.mark.slow
def test_a_prolific_participant_is_logged_resumes_and_is_sent_back(tmp_path):
    from ic_zoo.app.study.ui import build_study_demo

    study = _study(tmp_path, PROLIFIC)
    url_db = f"sqlite:///{tmp_path / 'log.sqlite'}"
    demo = build_study_demo(study, url_db)
    load, consent, submit = _fn(demo, "on_load"), _fn(demo, "on_consent"), _fn(demo, "on_submit")
    pid = "5f0c8d3e2a1b4c6d7e8f9a0b"
    query = {"PROLIFIC_PID": pid, "STUDY_ID": "study1", "SESSION_ID": "sess1"}
    # no id in the link: one sentence, no way to consent, nothing logged
    view, _ = load(None, _request(STUDY_ID="study1"))
    assert "PROLIFIC_PID" in view["participant_note"] and view["agree"]["visible"] is False
    view, raw = load(None, _request(**query))
    st = next(v for v in raw.values() if type(v).__name__ == "StudyState")
    assert st.code == pid and view["agree"]["visible"] is True
    with pytest.raises(Exception, match="open the study from the link your recruitment platform gave you"):
        consent(0, "someone-else", st, _request())
    view, raw = consent(1.7e12, pid, st, _request())
    store = D.StudyStore(D.engine_for(url_db), study)
    row = store.participant(pid)
    with store.engine.connect() as conn:
        payload = json.loads(conn.execute(sa.select(D.interactions_t.c.payload).where(
            D.interactions_t.c.kind == "consent")).scalar_one())
    assert payload["platform"] == "prolific" and payload["SESSION_ID"] == "sess1" and payload["STUDY_ID"] == "study1"
    # the same id again (another tab, a reload): the same participant, the same counterbalancing row
    view, raw = load(None, _request(**query))
    st2 = next(v for v in raw.values() if type(v).__name__ == "StudyState")
    assert st2.participant["id"] == row["id"] and "Welcome back" in view["participant_note"]
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(D.participants_t)).scalar_one() == 1
    # the attention check failed: the screen-out code, and the platform's page
    view, raw = submit(0, "petals", *[None] * 5, *[""] * 6, -1, st2)
    assert "**SCR00N**" in view["done"] and view["redirect"].endswith("cc=SCR00N")
    demo.close()


@pytest.mark.slow
def test_an_mturk_preview_records_nothing(tmp_path):
    from ic_zoo.app.study.ui import build_study_demo

    study = _study(tmp_path, "recruitment: {platform: mturk, completion_code: MT-42}")
    url_db = f"sqlite:///{tmp_path / 'log.sqlite'}"
    demo = build_study_demo(study, url_db)
    load = _fn(demo, "on_load")
    view, _ = load(None, _request(assignmentId="ASSIGNMENT_ID_NOT_AVAILABLE", hitId="H1"))
    assert "preview" in view["participant_note"] and view["agree"]["visible"] is False
    with D.engine_for(url_db).connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(D.interactions_t)).scalar_one() == 0
    demo.close()


def test_an_mturk_external_question_hit_is_submitted_to_the_site_it_came_from(tmp_path):
    """An ExternalQuestion HIT passes turkSubmitTo: the finish page sends the worker to its externalSubmit with
    the assignment and the code (live or sandbox only; any other host is ignored and the code shown)."""
    from ic_zoo.app.study.ui import build_study_demo

    rec = _study(tmp_path, "recruitment: {platform: mturk, completion_code: MT-42}").recruitment
    q = {"workerId": "W1", "assignmentId": "3AB4C5D6E7F8", "hitId": "H1"}
    assert rec.submit_to({**q, "turkSubmitTo": "https://workersandbox.mturk.com"}) == \
        "https://workersandbox.mturk.com/mturk/externalSubmit?assignmentId=3AB4C5D6E7F8"
    assert rec.submit_to({**q, "turkSubmitTo": "https://www.mturk.com/"}).startswith("https://www.mturk.com/mturk/")
    for bad in ({**q, "turkSubmitTo": "https://evil.example"}, q,
                {**q, "assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE", "turkSubmitTo": "https://www.mturk.com"}):
        assert rec.submit_to(bad) == ""
    study = _study(tmp_path, "recruitment: {platform: mturk, completion_code: MT-42}")
    demo = build_study_demo(study, f"sqlite:///{tmp_path / 'log.sqlite'}")
    load, consent, submit = _fn(demo, "on_load"), _fn(demo, "on_consent"), _fn(demo, "on_submit")
    query = {**q, "turkSubmitTo": "https://workersandbox.mturk.com"}
    _, raw = load(None, _request(**query))
    st = next(v for v in raw.values() if type(v).__name__ == "StudyState")
    consent(1.7e12, "W1", st, _request(**query))
    view, _ = submit(0, "leaf", *[None] * 5, *[""] * 6, -1, st)
    assert "**MT-42**" in view["done"]
    assert view["redirect"] == ("https://workersandbox.mturk.com/mturk/externalSubmit?assignmentId=3AB4C5D6E7F8"
                                "&completion_code=MT-42")
    demo.close()
