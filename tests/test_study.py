"""User studies: the study file, the log on SQLite and on a real PostgreSQL server (schema, migrations,
transactions), the study app through gradio_client (consent, tasks, resume, answers, admin), export and
replay, kill -9 in the middle of a session, and concurrent participants (8 x 15 edits here, 20 x 50 with
IC_ZOO_STUDY_LOAD=20x50)."""
from __future__ import annotations

import concurrent.futures as cf
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image

os.environ["IC_ZOO_APP_NO_DEMO"] = "1"
from gradio_client import Client, handle_file  # noqa: E402
from ic_zoo.flower2d import generator as g  # noqa: E402
from ic_zoo.study import db as D  # noqa: E402
from ic_zoo.study import load_study, valid_participant, williams_square  # noqa: E402
from ic_zoo.study.definition import StudyError, counterbalance  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "study" / "flower_study.yaml"


# -- helpers ---------------------------------------------------------------------------------------------
def _layer(shape, mask, path):
    from conftest import _loopback

    return _loopback().layer_png(shape, mask, path)


def _edit(c, bg, layer, t=0.0):
    return c.predict(t, {"background": handle_file(str(bg)), "layers": [handle_file(str(layer))], "composite": None},
                     api_name="/study_edit")


def _status(out) -> str:
    return next(o for o in out if isinstance(o, str) and "stroke(s)" in o)


def _rows(url, kind=None, code=None):
    eng = D.engine_for(url)
    q = sa.select(D.interactions_t, D.participants_t.c.code).join(D.participants_t)
    if kind:
        q = q.where(D.interactions_t.c.kind == kind)
    if code:
        q = q.where(D.participants_t.c.code == code)
    with eng.connect() as conn:
        rows = [dict(r) for r in conn.execute(q.order_by(D.interactions_t.c.id)).mappings()]
    eng.dispose()
    return rows


def _mini_study(tmp_path, models=("flower2d/squeezenet",), tasks=1, size=128) -> Path:
    """A small study over held-out flowers (fast enough for 1000 edits)."""
    from conftest import _loopback

    return _loopback().study_file(tmp_path, models, size, tasks=tasks, name="mini", title="Mini study")


# -- the study file ----------------------------------------------------------------------------------------
def test_example_study_loads_and_counterbalances():
    s = load_study(EXAMPLE)
    assert [t.id for t in s.tasks] == ["red-green", "yellow-violet", "attention", "red-violet"]
    assert s.tasks[2].attention_check and s.tasks[2].questions[0].expected == "leaf"
    assert s.tasks[0].questions[1].type == "scale" and s.tasks[3].questions[1].required is False
    # the key is the definition's content, not where it lies
    assert load_study(EXAMPLE).key == s.key and "/" not in json.loads(s.to_json())["tasks"][0]["image_sha256"]
    orders = [tuple(s.model_order(s.tasks[0], i, f"P{i}")) for i in range(6)]
    assert len(set(orders)) == 6  # 3 models, Williams design for odd n: 6 rows, all different
    for pos in range(3):  # each model appears in each position equally often
        assert sorted(o[pos] for o in orders) == sorted(s.tasks[0].models * 2)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_williams_square_is_balanced(n):
    rows = williams_square(n)
    assert all(sorted(r) == list(range(n)) for r in rows)
    for col in range(n):
        counts = np.bincount([r[col] for r in rows], minlength=n)
        assert (counts == counts[0]).all()
    pairs = {}
    for r in rows:
        for a, b in zip(r, r[1:]):
            pairs[(a, b)] = pairs.get((a, b), 0) + 1
    assert len(pairs) == n * (n - 1) and len(set(pairs.values())) == 1  # every ordered pair equally often


def test_seeded_shuffle_is_reproducible():
    a = counterbalance(list("abcd"), "shuffle", 0, "7:P01:t1")
    assert a == counterbalance(list("abcd"), "shuffle", 5, "7:P01:t1") and sorted(a) == list("abcd")
    assert len({tuple(counterbalance(list("abcd"), "shuffle", 0, f"7:P{i}:t1")) for i in range(30)}) > 5


def test_participant_ids_are_validated():
    assert valid_participant("P01") == "P01" and valid_participant(" ab-c_9 ") == "ab-c_9"
    for bad in ("", "a b", "x" * 41, "<script>", "p/../1", "é", None):
        assert valid_participant(bad) is None


@pytest.mark.parametrize("text,expect", [
    ("title: T\n", "needs a 'tasks'"),
    ("title: T\ntasks: [{id: a, image: nope.png, models: [flower2d/vit]}]\n", "does not exist"),
    ("title: T\ncolour: red\ntasks: [{id: a, image: f.png, models: [m]}]\n", "unknown field"),
    ("title: T\nadmin_password: x\ntasks: [{id: a, image: f.png, models: [m]}]\n", "must not hold a password"),
    ("title: T\ntasks: [{id: a, image: f.png}]\n", "has no models"),
    ("title: T\ntasks: [{id: a, image: f.png, models: [m]}, {id: a, image: f.png, models: [m]}]\n", "two tasks"),
    ("title: T\ntasks: [{id: a, image: f.png, models: [m], questions: [{id: q, text: Q, type: slider}]}]\n",
     "use choice, scale or text"),
    ("title: T\ncounterbalance: random\ntasks: [{id: a, image: f.png, models: [m]}]\n", "latin, shuffle or none"),
    ("title: [unclosed\n", "not valid YAML/TOML at line 2"),
])
def test_bad_study_files_get_one_sentence(tmp_path, text, expect):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "f.png")
    (tmp_path / "s.yaml").write_text(text)
    with pytest.raises(StudyError, match=expect) as ei:
        load_study(tmp_path / "s.yaml")
    assert "\n" not in str(ei.value)


def test_toml_study_and_unknown_models(tmp_path):
    from ic_zoo.study.definition import check_models

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "f.png")
    (tmp_path / "s.toml").write_text('title = "T"\n[[tasks]]\nid = "a"\nimage = "f.png"\nmodels = ["flower2d/vit", "nope"]\n')
    s = load_study(tmp_path / "s.toml")
    assert check_models(s) == ["task 'a': unknown model 'nope'"]


# -- the log -----------------------------------------------------------------------------------------------
def test_schema_is_created_and_migrated(db_url):
    eng = D.engine_for(db_url)
    assert D.migrate(eng, target=1) == 1
    with eng.begin() as conn:
        conn.execute(D.studies_t.insert().values(key="k", title="old", definition="{}", n_participants=0,
                                                 created_at=D.now()))
    assert D.migrate(eng, target=2) == 2  # v1 -> v2 keeps the data and adds the index
    with eng.begin() as conn:  # a log written at version 2 had no withdrawal column
        conn.execute(sa.text("ALTER TABLE participants DROP COLUMN withdrawn_at"))
        conn.execute(sa.text("INSERT INTO participants (study_id, code, ordinal, consented_at, task_index, n_events) "
                             "VALUES (1, 'P01', 0, :t, 0, 0)"), {"t": D.now()})
    assert D.migrate(eng) == D.SCHEMA_VERSION == 3  # v2 -> v3: withdrawal (the column and the audit table)
    with eng.connect() as conn:
        assert D.schema_version(conn) == 3
        assert conn.execute(sa.select(D.studies_t.c.title)).scalar_one() == "old"
        assert conn.execute(sa.select(D.participants_t.c.code, D.participants_t.c.withdrawn_at)).one() == ("P01", None)
        idx = {i["name"] for i in sa.inspect(conn).get_indexes("interactions")}
        assert sa.inspect(conn).has_table("withdrawals")
    assert "ix_interactions_participant_task" in idx
    assert D.migrate(eng) == 3  # idempotent
    # many processes starting at once: every migrator ends at the same version, nothing fails
    eng2 = D.engine_for(db_url.replace("study.sqlite", "fresh.sqlite") if db_url.startswith("sqlite") else db_url)
    with cf.ThreadPoolExecutor(6) as ex:
        assert set(ex.map(lambda _: D.migrate(eng2), range(6))) == {3}
    eng.dispose()
    eng2.dispose()


def test_store_consent_record_answer(db_url, tmp_path):
    study = load_study(_mini_study(tmp_path, tasks=2))
    store = D.StudyStore(D.engine_for(db_url), study)
    again = D.StudyStore(D.engine_for(db_url), study)  # a second replica: same study row
    assert again.study_id == store.study_id
    # 20 participants consenting at the same moment get distinct ordinals 0..19 (Latin-square rows)
    codes = [f"P{i:02d}" for i in range(20)]
    with cf.ThreadPoolExecutor(8) as ex:
        parts = list(ex.map(lambda c: (store if int(c[1:]) % 2 else again).consent(c), codes))
    assert sorted(p["ordinal"] for p in parts) == list(range(20))
    assert store.consent("P03")["id"] == parts[3]["id"]  # idempotent
    pid = parts[0]["id"]
    mask = np.zeros((128, 128), bool)
    mask[10:20, 30:50] = True
    store.record(pid, "stroke", "t0", {"inpainter": "telea", "x": np.float32(1.5)}, mask=mask, client_time=1.7e12)
    tl = store.timeline(pid, "t0")
    assert [r["kind"] for r in tl] == ["stroke"] and tl[0]["seq"] == 2  # consent was 1
    assert np.array_equal(D.png_to_mask(tl[0]["mask_png"]), mask) and len(tl[0]["mask_png"]) < 300
    assert json.loads(tl[0]["payload"])["x"] == 1.5 and tl[0]["client_time"] == 1.7e12
    # answering advances once; a double submit is ignored
    assert store.answer(pid, 0, {"part": "petals"}, {"late": True}) == {"advanced": True, "task_index": 1, "seq": 3}
    assert store.answer(pid, 0, {"part": "leaf"}, {}) == {"advanced": False, "task_index": 1, "seq": 3}
    store.answer(pid, 1, {"part": "leaf"}, {})
    prog = {p["participant"]: p for p in store.progress()}
    assert prog["P00"]["tasks_done"] == "2/2" and prog["P00"]["finished"] and prog["P01"]["tasks_done"] == "0/2"
    with store.engine.connect() as conn:
        ans = conn.execute(sa.select(D.answers_t).order_by(D.answers_t.c.id)).mappings().all()
    assert [(a["answer"], a["late"]) for a in ans] == [("petals", True), ("leaf", False)]
    assert store.participant("P00")["ip"] is None  # no IP unless the study asks


def test_ip_is_stored_only_when_the_study_asks(tmp_path):
    path = _mini_study(tmp_path)
    path.write_text(path.read_text().replace("seed: 3", "seed: 3\nlog_ip: true"))
    store = D.StudyStore(D.engine_for(f"sqlite:///{tmp_path / 'ip.sqlite'}"), load_study(path))
    assert store.consent("P1", ip="10.0.0.7")["ip"] == "10.0.0.7"


# -- the study app through gradio_client -----------------------------------------------------------------
@pytest.fixture
def study_app(tmp_path, monkeypatch):
    """The example study in study mode on a fresh SQLite log; yields (demo, url, db url, study)."""
    from ic_zoo.app.study.ui import build_study_demo

    monkeypatch.setenv("IC_ZOO_ADMIN_PASSWORD", "s3cret")
    study = load_study(EXAMPLE)
    url_db = f"sqlite:///{tmp_path / 'log.sqlite'}"
    demo = build_study_demo(study, url_db)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    yield demo, url, url_db, study
    demo.close()


def _disc_layer(study, tmp_path, task=0):
    """The example flower's discriminative parts (petals + centre), as a painted layer."""
    import cv2

    img = np.asarray(Image.open(study.tasks[task].image).convert("RGB"))
    d = ROOT / "examples" / "flower2d"
    row = next(r for r in json.loads((d / "index.json").read_text())
               if Path(study.tasks[task].image).name == Path(r["image"]).name)
    m = np.asarray(Image.open(d / row["mask"])) > 0
    m = cv2.dilate(m.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    return img, _layer(img.shape, m, tmp_path / "disc.png")


def test_study_session_end_to_end(study_app, tmp_path):
    demo, url, url_db, study = study_app
    c = Client(url, verbose=False)
    with pytest.raises(Exception, match="not valid"):
        c.predict(0, "bad id!", api_name="/consent")
    assert _rows(url_db) == []  # nothing recorded before a valid consent
    with pytest.raises(Exception, match="consent"):
        _edit(c, study.tasks[0].image, _disc_layer(study, tmp_path)[1])
    out = c.predict(1.7e12, "P01", api_name="/consent")
    assert any(isinstance(o, str) and "Task 1 of 4" in o for o in out)
    img, layer = _disc_layer(study, tmp_path)
    Image.fromarray(img).save(tmp_path / "bg.png")
    e = _edit(c, tmp_path / "bg.png", layer, t=1.7e12 + 5)
    assert "1 stroke(s)" in _status(e) and "top-1 changed" in _status(e)  # removing petals + centre flips it
    # a stale canvas (not the current image) is one sentence and changes nothing
    with pytest.raises(Exception, match="older image"):
        _edit(c, tmp_path / "bg.png", layer)
    c.predict(0, api_name="/study_undo")
    # a missing answer: one sentence, the task stays
    with pytest.raises(Exception, match="Please answer"):
        c.predict(0, "petals", None, None, None, None, None, "", "", "", "", "", "", api_name="/submit")
    out = c.predict(0, "petals", "4", None, None, None, None, "", "", "", "", "", "", api_name="/submit")
    assert any(isinstance(o, str) and "Task 2 of 4" in o for o in out)
    c.predict(0, "no", None, None, None, None, None, "", "", "", "", "", "", api_name="/submit")
    c.predict(0, "petals", None, None, None, None, None, "", "", "", "", "", "", api_name="/submit")  # fails the check
    out = c.predict(0, "5", None, None, None, None, None, "", "nice", "", "", "", "", api_name="/submit")
    assert any(isinstance(o, str) and "Thank you" in o for o in out)

    rows = _rows(url_db, code="P01")
    kinds = [r["kind"] for r in rows]
    assert kinds == ["consent", "task_shown", "stroke", "undo", "answer", "task_shown", "answer", "task_shown",
                     "answer", "task_shown", "answer", "finish"]
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    stroke = json.loads(rows[2]["payload"])
    assert rows[2]["client_time"] == 1.7e12 + 5 and rows[2]["mask_png"] is not None
    assert set(stroke["models"]) == set(study.tasks[0].models) and stroke["inpainter"] == "telea"
    for m, r in stroke["models"].items():
        assert len(r["original"]["top5"]) == 5 and len(r["modified"]["top5"]) == 5
        assert 0 <= r["map"]["mass_in_mask_original"] <= 1
    assert stroke["model_order"] == json.loads(rows[1]["payload"])["model_order"]
    # the second participant sees another model order (Latin square)
    c2 = Client(url, verbose=False)
    c2.predict(0, "P02", api_name="/consent")
    orders = [json.loads(r["payload"])["model_order"] for r in _rows(url_db, kind="task_shown")]
    assert orders[0] != orders[-1] and sorted(orders[0]) == sorted(orders[-1])
    # admin: password required, then per participant and per task progress; before it, the tables show their
    # columns (not Gradio's placeholder "1 2 3")
    from ic_zoo.app.study.ui import PARTICIPANT_COLUMNS, TASK_COLUMNS

    comps = {c["props"].get("elem_id"): c for c in demo.config["components"] if c.get("props", {}).get("elem_id")}
    assert comps["admin_participants"]["props"]["value"]["headers"] == PARTICIPANT_COLUMNS
    assert comps["admin_tasks"]["props"]["value"]["headers"] == TASK_COLUMNS
    with pytest.raises(Exception, match="Wrong password"):
        c.predict("guess", api_name="/admin_progress")
    summary, per_p, per_t = c.predict("s3cret", api_name="/admin_progress")
    assert "2 participant(s), 1 finished" in summary
    assert "database '" in summary and "/" not in summary.split("log:")[1].split(")")[0]  # no server path
    assert [r[:3] for r in per_p["data"]] == [["P01", 0, "4/4"], ["P02", 1, "0/4"]]
    att = next(r for r in per_t["data"] if r[0] == "attention")
    assert att[-1] == "0/1"  # P01 failed the attention check
    zpath = c.predict("s3cret", api_name="/admin_export")
    import zipfile

    names = zipfile.ZipFile(zpath).namelist()
    assert {"interactions.csv", "answers.csv", "participants.csv", "study.json"} <= set(names)


def test_export_and_replay_cli(study_app, tmp_path, capsys):
    import csv

    from ic_zoo.cli import main

    demo, url, url_db, study = study_app
    c = Client(url, verbose=False)
    c.predict(0, "R1", api_name="/consent")
    img, layer = _disc_layer(study, tmp_path)
    Image.fromarray(img).save(tmp_path / "bg.png")
    e = _edit(c, tmp_path / "bg.png", layer)
    leaf = np.zeros(img.shape[:2], bool)
    leaf[200:215, 20:40] = True
    _edit(c, e[0]["background"], _layer(img.shape, leaf, tmp_path / "l2.png"))
    c.predict(0, api_name="/study_undo")
    c.predict(0, api_name="/study_reset")
    e = _edit(c, tmp_path / "bg.png", _layer(img.shape, leaf, tmp_path / "l3.png"))
    assert main(["study", "progress", "--db", url_db]) == 0
    assert "R1" in capsys.readouterr().out
    out = tmp_path / "export"
    assert main(["study", "export", "--db", url_db, "--out", str(out)]) == 0
    inter = list(csv.DictReader(open(out / "interactions.csv")))
    assert [r["kind"] for r in inter] == ["consent", "task_shown", "stroke", "stroke", "undo", "reset", "stroke"]
    strokes = [r for r in inter if r["kind"] == "stroke"]
    assert all((out / r["mask_file"]).is_file() for r in strokes)
    assert json.loads(inter[2]["payload"])["models"]
    assert (out / "images" / "red-green.png").is_file() and json.loads((out / "study.json").read_text())["key"] == study.key
    rep = tmp_path / "replay.json"
    assert main(["study", "replay", "--db", url_db, "--participant", "R1", "--json", str(rep)]) == 0
    r = json.loads(rep.read_text())
    assert r["strokes"] == 3 and r["reproduced"] == 3 and r["max_prob_diff"] < 1e-4
    # a tampered log is caught
    eng = D.engine_for(url_db)
    with eng.begin() as conn:
        row = conn.execute(sa.select(D.interactions_t).where(D.interactions_t.c.kind == "stroke")).mappings().first()
        p = json.loads(row["payload"])
        first = next(iter(p["models"]))
        p["models"][first]["modified"]["top5"][0]["prob"] += 0.01
        conn.execute(D.interactions_t.update().where(D.interactions_t.c.id == row["id"]).values(payload=json.dumps(p)))
    assert main(["study", "replay", "--db", url_db]) == 1
    assert main(["study", "export", "--db", str(tmp_path / "none" / "x.sqlite"), "--out", str(out)]) == 2


def test_uploads_only_when_the_study_allows_them(tmp_path):
    from ic_zoo.cli import main
    from ic_zoo.app.study.ui import build_study_demo

    path = _mini_study(tmp_path)
    closed = build_study_demo(load_study(path), f"sqlite:///{tmp_path / 'closed.sqlite'}")
    names = {d.get("api_name") for d in closed.config["dependencies"]}
    assert "study_edit" in names and "study_upload" not in names
    path.write_text(path.read_text().replace("seed: 3", "seed: 3\nallow_upload: true"))
    db = f"sqlite:///{tmp_path / 'open.sqlite'}"
    demo = build_study_demo(load_study(path), db)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        c = Client(url, verbose=False)
        c.predict(0, "U1", api_name="/consent")
        p = g.sample_params("double-12c", 0, "test", 8200)
        img, parts = g.render(p, 112)
        Image.fromarray(img).save(tmp_path / "mine.png")
        (tmp_path / "broken.png").write_text("not an image")
        with pytest.raises(Exception, match="image"):
            c.predict(0, handle_file(str(tmp_path / "broken.png")), api_name="/study_upload")
        e = c.predict(0, handle_file(str(tmp_path / "mine.png")), api_name="/study_upload")
        assert np.asarray(Image.open(e[0]["background"]).convert("RGB")).shape == (112, 112, 3)
        e = _edit(c, e[0]["background"], _layer((112, 112), g.disc_mask(p, parts), tmp_path / "u.png"))
        assert "1 stroke(s)" in _status(e)
    finally:
        demo.close()
    assert [r["kind"] for r in _rows(db)] == ["consent", "task_shown", "upload", "stroke"]
    rep = tmp_path / "r.json"
    assert main(["study", "replay", "--db", db, "--json", str(rep)]) == 0
    assert json.loads(rep.read_text())["reproduced"] == 1


# -- nothing lost ------------------------------------------------------------------------------------------
def _start_app(study, db_url, port, log):
    env = dict(os.environ, IC_ZOO_APP_NO_DEMO="0", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--study", str(study), "--db", db_url,
                             "--port", str(port)], cwd=str(ROOT), env=env, stdout=log, stderr=subprocess.STDOUT)


def _wait_up(url, proc, timeout=180):
    import urllib.request

    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"the app exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError("the app did not start")


@pytest.mark.slow
def test_kill_9_loses_nothing_and_a_restart_resumes(tmp_path):
    from conftest import _free_port

    study = _mini_study(tmp_path, models=("flower2d/squeezenet", "flower2d/resnet"))
    db = f"sqlite:///{tmp_path / 'kill.sqlite'}"
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    log = open(tmp_path / "app.log", "w")
    proc = _start_app(study, db, port, log)
    try:
        _wait_up(url, proc)
        c = Client(url, verbose=False)
        c.predict(0, "K1", api_name="/consent")
        bg = study.parent / "f0.png"
        rng = np.random.default_rng(0)
        for i in range(5):
            m = np.zeros((128, 128), bool)
            y, x = rng.integers(10, 100, 2)
            m[y:y + 12, x:x + 12] = True
            e = _edit(c, bg, _layer((128, 128), m, tmp_path / f"k{i}.png"))
            bg = e[0]["background"]
        # a sixth stroke in flight when the process is killed
        job = c.submit(0, {"background": handle_file(str(bg)),
                           "layers": [handle_file(_layer((128, 128), m, tmp_path / "k6.png"))], "composite": None},
                       api_name="/study_edit")
        time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        del job
    finally:
        if proc.poll() is None:
            proc.kill()
    strokes = _rows(db, kind="stroke")
    assert len(strokes) in (5, 6)  # the five answered strokes are there; the one in flight is all or nothing
    n_before = len(_rows(db))
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    proc = _start_app(study, db, port, log)
    try:
        _wait_up(url, proc)
        c = Client(url, verbose=False)
        out = c.predict(0, "K1", api_name="/consent")  # the same participant comes back
        assert any(isinstance(o, str) and f"{len(strokes)} stroke(s)" in o for o in out)  # strokes replayed
        assert any(isinstance(o, str) and "Welcome back" in o for o in out)
        canvas = next(o for o in out if isinstance(o, dict) and o.get("background"))["background"]
        m = np.zeros((128, 128), bool)
        m[5:15, 5:15] = True
        e = _edit(c, canvas, _layer((128, 128), m, tmp_path / "k7.png"))
        assert f"{len(strokes) + 1} stroke(s)" in _status(e)
    finally:
        proc.kill()
        proc.wait(30)
        log.close()
    rows = _rows(db, code="K1")
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1)) and len(rows) == n_before + 2
    assert [r["kind"] for r in rows[-2:]] == ["task_resumed", "stroke"]


#: participants x edits of the concurrent-participants test: a small form in the suite; the full load
#: form with IC_ZOO_STUDY_LOAD=20x50 (about 3 minutes per database on 2 cores)
LOAD = tuple(int(v) for v in os.environ.get("IC_ZOO_STUDY_LOAD", "8x15").split("x"))


@pytest.mark.slow
def test_concurrent_participants_log_every_edit_exactly_once(db_url, tmp_path):
    from ic_zoo.app.study.ui import build_study_demo

    study = load_study(_mini_study(tmp_path, size=96))
    demo = build_study_demo(study, db_url, concurrency=2)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True,
                            max_threads=64)
    n_clients, n_edits = LOAD
    errors, off = [], []

    def participant(k):
        try:
            # no downloads: the next stroke's background is the server's own file (same machine); uploads
            # may wait longer than gradio_client's 20 s on 2 cores under 20 clients (what is asserted is
            # the log, not the latency)
            c = Client(url, verbose=False, download_files=False, httpx_kwargs={"timeout": 90})
            c.predict(0, f"C{k:02d}", api_name="/consent")
            bg = study.tasks[0].image
            rng = np.random.default_rng(k)
            for i in range(n_edits):
                m = np.zeros((96, 96), bool)
                y, x = rng.integers(0, 88, 2)
                m[y:y + 6, x:x + 6] = True
                e = _edit(c, bg, _layer((96, 96), m, tmp_path / f"c{k}_{i % 2}.png"))
                status = _status(e)
                if not status.startswith(f"{i + 1} stroke(s)"):
                    off.append(f"C{k:02d} stroke {i + 1}: {status!r}")
                bg = e[0]["background"]
                bg = bg["path"] if isinstance(bg, dict) else bg
            return status
        except Exception as exc:  # noqa: BLE001
            errors.append(f"C{k:02d}: {exc}")
            raise

    t0 = time.time()
    try:
        with cf.ThreadPoolExecutor(n_clients) as ex:
            statuses = list(ex.map(participant, range(n_clients)))
    finally:
        demo.close()
    dt = time.time() - t0
    assert errors == [] and off == []
    assert all(s.startswith(f"{n_edits} stroke(s)") for s in statuses)
    rows = _rows(db_url)
    assert len(rows) == n_clients * (n_edits + 2)  # consent + task_shown + one row per edit, exactly
    by = {}
    for r in rows:
        by.setdefault(r["code"], []).append(r["seq"])
    assert len(by) == n_clients and all(sorted(v) == list(range(1, n_edits + 3)) for v in by.values())
    assert sum(r["kind"] == "stroke" for r in rows) == n_clients * n_edits
    print(f"\n{db_url.split(':')[0]}: {n_clients} x {n_edits} edits in {dt:.1f} s "
          f"({1000 * dt / (n_clients * n_edits):.1f} ms per edit overall)")


# -- start-up: every database problem is one sentence, within a connect timeout ---------------------------
def _one_sentence(msg: str) -> bool:
    return "\n" not in msg and "Traceback" not in msg and msg.endswith(".")


def test_a_log_damaged_in_part_stops_the_start_with_the_sentence(tmp_path):
    """Issue 36 item 3: a log whose header and schema are intact but whose later pages are damaged opened,
    and every participant then met "database disk image is malformed"; now the start stops, in one
    sentence."""
    import sqlite3

    from ic_zoo.errors import DatabaseError
    from ic_zoo.study.db import open_engine

    path = tmp_path / "partly.sqlite"
    open_engine(f"sqlite:///{path}").dispose()  # a real log
    with sqlite3.connect(path) as conn:  # and pages after it (the log's own rows, in a real study)
        conn.execute("CREATE TABLE filler (k INTEGER PRIMARY KEY, v TEXT)")
        conn.executemany("INSERT INTO filler (v) VALUES (?)", [("x" * 200,) for _ in range(2000)])
    data = bytearray(path.read_bytes())
    page = 4096
    at = len(data) - 8 * page
    data[at:at + 2 * page] = bytes((i * 131 + 7) % 256 for i in range(2 * page))
    path.write_bytes(bytes(data))
    with pytest.raises(DatabaseError) as info:
        open_engine(f"sqlite:///{path}")
    msg = str(info.value)
    assert _one_sentence(msg) and "damaged" in msg and str(path) in msg, msg


def test_a_damaged_or_unwritable_sqlite_log_is_one_sentence(tmp_path):
    """Before: 18-43-frame tracebacks at start-up."""
    from ic_zoo.errors import DatabaseError
    from ic_zoo.study.db import open_engine

    bad = tmp_path / "damaged.sqlite"
    bad.write_bytes(b"this is not an SQLite file at all" * 200)
    with pytest.raises(DatabaseError) as info:
        open_engine(f"sqlite:///{bad}")
    msg = str(info.value)
    assert _one_sentence(msg) and "damaged" in msg and str(bad) in msg, msg
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(DatabaseError) as info:
        open_engine(f"sqlite:///{blocker}/log.sqlite")  # its folder is a file
    msg = str(info.value)
    assert _one_sentence(msg) and "writable" in msg, msg
    with pytest.raises(DatabaseError) as info:
        open_engine("nosuchdb://x")
    assert _one_sentence(str(info.value)) and "not a database URL" in str(info.value)
    for typo in ("localhost:5432/study", "postgres:/db.example.org/study", str(tmp_path / "study")):
        with pytest.raises(DatabaseError) as info:  # it became an SQLite file of that name, silently
            open_engine(typo)
        assert _one_sentence(str(info.value)) and "neither a database URL nor an SQLite file" in str(info.value)
        assert not Path(typo).exists()


def test_a_log_that_opens_but_cannot_take_the_first_writes_is_one_sentence(tmp_path):
    """A valid log opened read-only: the schema is there, so migrating writes nothing; registering a new
    study is then the first write, and it fails as one sentence, not a traceback."""
    from ic_zoo.errors import DatabaseError

    path = tmp_path / "log.sqlite"
    D.StudyStore(D.engine_for(f"sqlite:///{path}"), load_study(_mini_study(tmp_path, tasks=1)))
    other = tmp_path / "other"
    other.mkdir()
    study = load_study(_mini_study(other, tasks=2))
    with pytest.raises(DatabaseError) as info:
        D.StudyStore(D.engine_for(f"sqlite:///file:{path}?mode=ro&uri=true"), study)
    msg = str(info.value)
    assert _one_sentence(msg) and "readonly" in msg.lower() and "writable" in msg, msg


@pytest.mark.slow
def test_an_unreachable_or_silent_postgresql_is_one_sentence_within_the_timeout():
    """Before: a closed port gave a traceback; a port that accepts and never answers hung for 147 s."""
    import socket
    import threading
    import time

    from ic_zoo.errors import DatabaseError
    from ic_zoo.study.db import CONNECT_TIMEOUT_S, open_engine

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    with pytest.raises(DatabaseError) as info:
        open_engine(f"postgresql://study:hunter2@127.0.0.1:{port}/log")
    msg = str(info.value)
    assert _one_sentence(msg) and "hunter2" not in msg and "***" in msg and "PostgreSQL runs" in msg, msg
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    held = []
    stop = threading.Event()

    def accept_and_say_nothing():
        silent.settimeout(0.5)
        while not stop.is_set():
            try:
                held.append(silent.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept_and_say_nothing, daemon=True)
    t.start()
    try:
        t0 = time.monotonic()
        with pytest.raises(DatabaseError) as info:
            open_engine(f"postgresql://study:hunter2@127.0.0.1:{silent.getsockname()[1]}/log")
        took = time.monotonic() - t0
    finally:
        stop.set()
        t.join()
        for c in held:
            c.close()
        silent.close()
    msg = str(info.value)
    assert _one_sentence(msg) and "hunter2" not in msg and took < 3 * CONNECT_TIMEOUT_S + 5, (took, msg)


def test_the_study_cli_and_study_mode_say_it_in_one_line(tmp_path, capsys):
    from ic_zoo.cli import main

    bad = tmp_path / "damaged.sqlite"
    bad.write_bytes(b"garbage" * 500)
    assert main(["study", "progress", "--db", f"sqlite:///{bad}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: The study log") and "damaged" in err[0], err
    import app as app_module

    with pytest.raises(SystemExit) as info:
        app_module.build_study(str(ROOT / "examples" / "study" / "flower_study.yaml"), f"sqlite:///{bad}")
    assert str(info.value).startswith("error: The study log") and "damaged" in str(info.value)


# -- issue 12: a failed log write, guessable links, the admin password -----------------------------------
def _serve(demo):
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    return url


def _strokes_n_edits(db):
    return [json.loads(r["payload"])["n_edits"] for r in _rows(db, kind="stroke")]


def _square(shape, y, x, size=12):
    m = np.zeros(shape, bool)
    m[y:y + size, x:x + size] = True
    return m


def test_a_change_the_log_cannot_take_is_undone_and_the_page_keeps_serving(tmp_path, monkeypatch):
    """Before: with the log locked a stroke waited 63 s, failed, but stayed applied; the next logged
    stroke said n_edits 3 after 1, an image the log cannot rebuild."""
    import sqlite3

    from ic_zoo.cli import main
    from ic_zoo.app.study.ui import build_study_demo

    monkeypatch.setenv("IC_ZOO_DB_BUSY_TIMEOUT_S", "1")
    path = _mini_study(tmp_path)
    path.write_text(path.read_text().replace("seed: 3", "seed: 3\nallow_upload: true"))
    dbfile = tmp_path / "locked.sqlite"
    db = f"sqlite:///{dbfile}"
    demo = build_study_demo(load_study(path), db)
    url = _serve(demo)
    locker = sqlite3.connect(dbfile, isolation_level=None)
    try:
        c = Client(url, verbose=False)
        c.predict(0, "L1", api_name="/consent")
        e1 = _edit(c, path.parent / "f0.png", _layer((128, 128), _square((128, 128), 20, 20), tmp_path / "a.png"))
        assert "1 stroke(s)" in _status(e1)
        shown = np.asarray(Image.open(e1[0]["background"]).convert("RGB"))
        locker.execute("BEGIN EXCLUSIVE")  # another writer holds the log
        for what, call in [
                ("stroke", lambda: _edit(c, e1[0]["background"],
                                         _layer((128, 128), _square((128, 128), 60, 60), tmp_path / "b.png"))),
                ("undo", lambda: c.predict(0, api_name="/study_undo")),
                ("upload", lambda: c.predict(0, handle_file(str(path.parent / "f0.png")), api_name="/study_upload"))]:
            t0 = time.monotonic()
            out = call()
            took = time.monotonic() - t0
            assert "could not be saved" in out[1] and "make it again" in out[1] and took < 15, (what, out, took)
            # the page is back to exactly the image before the change: the last logged one
            assert np.array_equal(np.asarray(Image.open(out[0]["background"]).convert("RGB")), shown), what
        locker.execute("ROLLBACK")
        e2 = _edit(c, out[0]["background"], _layer((128, 128), _square((128, 128), 60, 60), tmp_path / "c.png"))
        assert "2 stroke(s)" in _status(e2)
        c.predict(0, api_name="/study_undo")
    finally:
        locker.close()
        demo.close()
    rows = _rows(db, code="L1")
    assert [r["kind"] for r in rows] == ["consent", "task_shown", "stroke", "stroke", "undo"]
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5]
    assert [json.loads(r["payload"])["n_edits"] for r in rows[2:]] == [1, 2, 1]
    assert main(["study", "replay", "--db", db]) == 0


def test_a_write_to_a_locked_log_fails_within_the_busy_timeout(db_url, tmp_path, monkeypatch):
    """Before: 60 s (SQLite busy timeout) or for ever (PostgreSQL) with the log locked by another writer."""
    monkeypatch.setenv("IC_ZOO_DB_BUSY_TIMEOUT_S", "1")
    store = D.StudyStore(D.engine_for(db_url), load_study(_mini_study(tmp_path)))
    pid = store.consent("W1")["id"]
    other = D.engine_for(db_url).connect()
    try:
        tx = other.begin()
        # an open write: SQLite's one write lock, PostgreSQL's lock on the row every write of W1 updates first
        other.execute(D.participants_t.update().where(D.participants_t.c.id == pid)
                      .values(n_events=D.participants_t.c.n_events))
        t0 = time.monotonic()
        with pytest.raises(sa.exc.OperationalError):
            store.record(pid, "stroke", "t0", {})
        assert time.monotonic() - t0 < 6
        tx.rollback()
    finally:
        other.close()
    store.record(pid, "stroke", "t0", {})  # and the log works again once the lock is gone
    assert [r["kind"] for r in store.timeline(pid)] == ["consent", "stroke"]
    store.engine.dispose()


def test_a_stuck_log_write_holds_no_model_slot(tmp_path, monkeypatch):
    """Before: a write waiting on the log held one of the shared model slots, so with every slot held
    by stuck writes no participant's stroke was even computed."""
    import threading

    from ic_zoo.app.study.ui import build_study_demo

    demo = build_study_demo(load_study(_mini_study(tmp_path)), f"sqlite:///{tmp_path / 'stuck.sqlite'}",
                            concurrency=1)
    url = _serve(demo)
    try:
        bg = tmp_path / "mini" / "f0.png"
        a, b = Client(url, verbose=False), Client(url, verbose=False)
        a.predict(0, "A1", api_name="/consent")
        b.predict(0, "B1", api_name="/consent")
        store = demo.study_store
        real, writing, release = store.record, threading.Semaphore(0), threading.Event()

        def stuck(*args, **kwargs):  # a log that does not answer until released
            writing.release()
            release.wait(60)
            return real(*args, **kwargs)

        monkeypatch.setattr(store, "record", stuck)
        ja = a.submit(0, {"background": handle_file(str(bg)), "layers": [handle_file(
            _layer((128, 128), _square((128, 128), 10, 10), tmp_path / "a.png"))], "composite": None},
            api_name="/study_edit")
        assert writing.acquire(timeout=60)  # A's stroke is computed and now waits on the log
        jb = b.submit(0, {"background": handle_file(str(bg)), "layers": [handle_file(
            _layer((128, 128), _square((128, 128), 50, 50), tmp_path / "b.png"))], "composite": None},
            api_name="/study_edit")
        reached = writing.acquire(timeout=30)  # B's stroke got the only model slot meanwhile
        release.set()
        assert reached, "B's stroke waited for A's log write"
        assert "1 stroke(s)" in _status(ja.result(timeout=60)) and "1 stroke(s)" in _status(jb.result(timeout=60))
    finally:
        release.set()
        demo.close()


def test_replay_reports_a_change_missing_from_the_log(tmp_path, capsys):
    """Before: a log whose n_edits jumped (a stroke applied on the page but never logged) replayed
    without a word about it."""
    from ic_zoo.cli import main
    from ic_zoo.app.study.ui import build_study_demo

    db = f"sqlite:///{tmp_path / 'gap.sqlite'}"
    path = _mini_study(tmp_path)
    demo = build_study_demo(load_study(path), db)
    url = _serve(demo)
    try:
        c = Client(url, verbose=False)
        c.predict(0, "G1", api_name="/consent")
        bg = path.parent / "f0.png"
        for i in range(3):
            e = _edit(c, bg, _layer((128, 128), _square((128, 128), 10 + 30 * i, 20), tmp_path / f"g{i}.png"))
            bg = e[0]["background"]
    finally:
        demo.close()
    assert main(["study", "replay", "--db", db]) == 0
    assert "GAP" not in capsys.readouterr().out
    # the second stroke's row never made it (as when its write failed): numbers close up, n_edits jumps 1 -> 3
    eng = D.engine_for(db)
    with eng.begin() as conn:
        second = [r for r in _rows(db, kind="stroke")][1]
        conn.execute(D.interactions_t.delete().where(D.interactions_t.c.id == second["id"]))
        conn.execute(D.interactions_t.update().where(D.interactions_t.c.seq > second["seq"])
                     .values(seq=D.interactions_t.c.seq - 1))
    assert _strokes_n_edits(db) == [1, 3]
    rep = tmp_path / "gap.json"
    assert main(["study", "replay", "--db", db, "--json", str(rep)]) == 1
    out = capsys.readouterr().out
    assert "GAP G1 task t0 event 4 (stroke): it was made with 3 edit(s) on the image but the log rebuilds 2" in out
    assert json.loads(rep.read_text())["gaps"] == [{"participant": "G1", "task": "t0", "seq": 4, "kind": "stroke",
                                                    "cause": "missing", "logged_n_edits": 3, "rebuilt_n_edits": 2}]
    # a row missing from the middle of the sequence
    with eng.begin() as conn:
        conn.execute(D.interactions_t.delete().where(D.interactions_t.c.kind == "task_shown"))
    eng.dispose()
    assert main(["study", "replay", "--db", db]) == 1
    assert "GAP G1: event number(s) 2 missing from the log" in capsys.readouterr().out


def _load_fn(demo):
    """The study page's load handler, its {component: value} result listed in the order of its outputs."""
    f = next(f for f in demo.fns.values() if f.name == "on_load")

    def call(*args):
        out = f.fn(*args)
        return [out.get(c) for c in f.outputs] if isinstance(out, dict) else out

    return call


def _request(**query):
    from types import SimpleNamespace

    return SimpleNamespace(query_params=query, session_hash="h", client=None)


def test_participant_links_are_signed_and_an_unsigned_one_reaches_nobody(tmp_path, monkeypatch, capsys):
    """Before: anyone who knew or guessed ?participant=P01 resumed P01, strokes and answers included."""
    from ic_zoo.cli import main
    from ic_zoo.study import security
    from ic_zoo.app.study.ui import build_study_demo

    monkeypatch.delenv("IC_ZOO_STUDY_SECRET", raising=False)
    assert main(["study", "links", "--ids", "P01", "--base-url", "http://x/"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "IC_ZOO_STUDY_SECRET" in err[0], err
    monkeypatch.setenv("IC_ZOO_STUDY_SECRET", "link-secret-" + "7" * 20)
    monkeypatch.setenv("IC_ZOO_BROWSER_SECRET", "browser-secret-" + "8" * 20)
    assert main(["study", "links", "--ids", "P01,P02", "--n", "2", "--base-url", "https://study.example.org/s"]) == 0
    lines = [ln.split("\t") for ln in capsys.readouterr().out.strip().splitlines()]
    assert [ln[0] for ln in lines[:2]] == ["P01", "P02"] and len(lines) == 4
    import re

    assert all(re.fullmatch(r"p-[0-9a-f]{16}", ln[0]) for ln in lines[2:]) and lines[2][0] != lines[3][0]
    links = {code: link for code, link in lines}
    assert re.fullmatch(r"https://study\.example\.org/s\?participant=P01\.[0-9a-f]{20}", links["P01"])
    p01 = links["P01"].split("participant=")[1]
    assert security.verify(os.environ["IC_ZOO_STUDY_SECRET"], p01) == "P01"
    assert security.verify("another-secret-0123456789", p01) is None

    db = f"sqlite:///{tmp_path / 'signed.sqlite'}"
    path = _mini_study(tmp_path)
    demo = build_study_demo(load_study(path), db)
    url = _serve(demo)
    try:
        c = Client(url, verbose=False)
        for forged in ("P01", "P01." + "0" * 20, links["P02"].split("=")[1].replace("P02", "P01")):
            with pytest.raises(Exception, match="not valid for this study"):
                c.predict(0, forged, api_name="/consent")
        assert _rows(db) == []  # nobody was created
        out = c.predict(0, p01, api_name="/consent")
        assert any(isinstance(o, str) and "Task 1 of 1" in o for o in out)
        _edit(c, path.parent / "f0.png", _layer((128, 128), _square((128, 128), 30, 30), tmp_path / "s.png"))
        on_load = _load_fn(demo)
        # the unsigned link: one sentence, no consent button, nothing of P01's
        out = on_load(None, _request(participant="P01"))
        assert "not valid for this study" in out[3] and out[4]["visible"] is False and out[0].participant is None
        assert not any(isinstance(o, str) and ("stroke(s)" in o or "Task" in o) for o in out)
        # the link as issued: P01 continues, their stroke included
        out = on_load(None, _request(participant=p01))
        assert any(isinstance(o, str) and "1 stroke(s)" in o for o in out) and out[0].participant["code"] == "P01"
        # without a link: a new random id, signed, kept in the browser
        ids = [on_load(None, _request())[1] for _ in range(2)]
        codes = [security.verify(os.environ["IC_ZOO_STUDY_SECRET"], i) for i in ids]
        assert all(re.fullmatch(r"anon-[0-9a-f]{16}", c_) for c_ in codes) and codes[0] != codes[1]
    finally:
        demo.close()
    assert [p["participant"] for p in D.StudyStore(D.engine_for(db), load_study(path)).progress()] == ["P01"]


def test_the_cap_per_client_counts_only_addresses_that_name_a_client(monkeypatch):
    """Behind a proxy whose forwarded address is not trusted (the default), every participant arrives from
    the proxy's address: a cap per address would cap them all together (test_replicas' 30 participants
    behind HAProxy), so only the global cap applies there; a direct client and a trusted proxy's client
    are counted by their own address."""
    from types import SimpleNamespace as NS

    from ic_zoo.app.serve import client_address

    def req(host, xff=None):
        return NS(client=NS(host=host), headers={"x-forwarded-for": xff} if xff else {})

    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    assert client_address(req("127.0.0.1")) == "127.0.0.1"  # no proxy: the peer is the client
    assert client_address(req("127.0.0.1", "203.0.113.5")) is None  # a same-host proxy, not trusted
    assert client_address(req("10.1.2.3", "203.0.113.5")) is None  # a private-network proxy, not trusted
    assert client_address(req("93.184.216.34", "127.0.0.1")) == "93.184.216.34"  # a public peer is itself
    assert client_address(NS(client=None, headers={})) is None
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "127.0.0.1")  # uvicorn already put the forwarded client in
    assert client_address(req("203.0.113.5", "203.0.113.5")) == "203.0.113.5"


def test_one_client_cannot_use_up_the_minute_of_newcomers(tmp_path, monkeypatch):
    """Issue 36 item 7: the cap on new participants was global only, so one script kept every real newcomer
    out for a minute. Now each address has its own cap under the global one (addresses come from a trusted
    proxy's X-Forwarded-For here, as behind deploy/haproxy.cfg)."""
    from ic_zoo.app import serve
    from ic_zoo.app.study.ui import build_study_demo

    monkeypatch.setenv("IC_ZOO_STUDY_NEW_PER_MIN", "5")
    monkeypatch.setenv("IC_ZOO_STUDY_NEW_PER_CLIENT_PER_MIN", "2")
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "127.0.0.1")  # the test's own client plays the proxy
    db = f"sqlite:///{tmp_path / 'percap.sqlite'}"
    demo = build_study_demo(load_study(_mini_study(tmp_path)), db)
    url = _serve(demo)
    try:
        script = Client(url, verbose=False, headers={"X-Forwarded-For": "10.0.0.66"})
        script.predict(0, "S1", api_name="/consent")
        script.predict(0, "S2", api_name="/consent")
        with pytest.raises(Exception, match="from this network in the last minute: please wait a minute"):
            script.predict(0, "S3", api_name="/consent")
        for i, host in enumerate(("10.0.0.1", "10.0.0.2", "10.0.0.3")):  # real newcomers still get in
            person = Client(url, verbose=False, headers={"X-Forwarded-For": host})
            person.predict(0, f"P{i}", api_name="/consent")
        with pytest.raises(Exception, match="Many people are joining the study at this moment"):  # the global cap
            Client(url, verbose=False, headers={"X-Forwarded-For": "10.0.0.9"}).predict(0, "P9", api_name="/consent")
        assert serve.trust_proxies() == "127.0.0.1"
    finally:
        demo.close()
    eng = D.engine_for(db)
    with eng.connect() as conn:  # no row used by the refused ones
        assert conn.execute(sa.select(D.participants_t.c.code).order_by(D.participants_t.c.ordinal)).scalars().all() \
            == ["S1", "S2", "P0", "P1", "P2"]
    eng.dispose()


def test_new_participants_are_capped_per_minute(tmp_path, monkeypatch):
    """Before: the API created participants without limit, each taking a Latin-square row."""
    from ic_zoo.app.study.ui import build_study_demo

    monkeypatch.setenv("IC_ZOO_STUDY_NEW_PER_MIN", "2")
    db = f"sqlite:///{tmp_path / 'cap.sqlite'}"
    demo = build_study_demo(load_study(_mini_study(tmp_path)), db)
    url = _serve(demo)
    try:
        c = Client(url, verbose=False)
        c.predict(0, "N1", api_name="/consent")
        c.predict(0, "N2", api_name="/consent")
        with pytest.raises(Exception, match="Many people are joining the study at this moment: please wait"):
            c.predict(0, "N3", api_name="/consent")
        out = c.predict(0, "N1", api_name="/consent")  # coming back is not joining
        assert any(isinstance(o, str) and "Welcome back" in o for o in out)
    finally:
        demo.close()
    eng = D.engine_for(db)
    with eng.connect() as conn:
        assert conn.execute(sa.select(D.studies_t.c.n_participants)).scalar_one() == 2  # no row used by N3
        assert conn.execute(sa.select(D.participants_t.c.code).order_by(D.participants_t.c.ordinal)).scalars().all() \
            == ["N1", "N2"]
    eng.dispose()


def test_a_public_study_needs_its_secrets(tmp_path, monkeypatch):
    """Before: the browser-state secret defaulted to a value derived from the public study file."""
    from ic_zoo.errors import IcZooError
    from ic_zoo.app.study.ui import build_study_demo

    study = load_study(_mini_study(tmp_path))
    for name in ("IC_ZOO_STUDY_SECRET", "IC_ZOO_BROWSER_SECRET", "SPACE_ID"):
        monkeypatch.delenv(name, raising=False)
    db = tmp_path / "public.sqlite"
    with pytest.raises(IcZooError) as info:
        build_study_demo(study, f"sqlite:///{db}", public=True)
    msg = str(info.value)
    assert _one_sentence(msg) and "IC_ZOO_STUDY_SECRET and IC_ZOO_BROWSER_SECRET" in msg, msg
    assert "secrets.token_hex(32)" in msg and not db.exists()  # refused before anything is opened
    monkeypatch.setenv("SPACE_ID", "someone/study")  # a Space is public whatever app.py passes
    monkeypatch.setenv("IC_ZOO_STUDY_SECRET", "s" * 32)
    with pytest.raises(IcZooError, match="set IC_ZOO_BROWSER_SECRET in the environment"):
        build_study_demo(study, f"sqlite:///{db}")
    monkeypatch.setenv("IC_ZOO_BROWSER_SECRET", "short")
    with pytest.raises(IcZooError, match="at least 16 characters"):
        build_study_demo(study, f"sqlite:///{db}")
    monkeypatch.setenv("IC_ZOO_BROWSER_SECRET", "b" * 32)

    def browser_secret(demo):
        return next(b for b in demo.blocks.values() if isinstance(b, gr.BrowserState)).secret

    import gradio as gr

    assert browser_secret(build_study_demo(study, f"sqlite:///{db}", public=True)) == "b" * 32
    # on this machine only, without secrets: a random browser secret per process, not one from the study
    for name in ("IC_ZOO_STUDY_SECRET", "IC_ZOO_BROWSER_SECRET", "SPACE_ID"):
        monkeypatch.delenv(name)
    first, second = (browser_secret(build_study_demo(study, f"sqlite:///{db}")) for _ in range(2))
    assert first != second and study.key not in first and len(first) >= 32


def test_admin_wrong_passwords_slow_guessing_down_and_are_logged(tmp_path, monkeypatch, caplog):
    """Before: 1.7 guesses a second per endpoint, forever, and no failure was logged; then a lockout that
    refused even the right password for 15 minutes (issue 36 item 2). Now: after the free tries the address
    waits (1 s, 2 s, ...) before a password is looked at, and the right one works once the wait is over."""
    import logging

    from ic_zoo.app.study.ui import build_study_demo

    monkeypatch.setenv("IC_ZOO_ADMIN_PASSWORD", "s3cret")
    monkeypatch.setenv("IC_ZOO_ADMIN_MAX_FAILURES", "3")
    monkeypatch.setenv("IC_ZOO_ADMIN_MAX_DELAY_S", "2")
    demo = build_study_demo(load_study(_mini_study(tmp_path)), f"sqlite:///{tmp_path / 'admin.sqlite'}")
    url = _serve(demo)
    caplog.set_level(logging.WARNING, logger="ic_zoo.study")
    throttle = demo.ic_zoo_study_app.throttle
    now = [1000.0]  # the throttle's clock, moved by the test: a busy machine's slow calls cannot expire a wait
    throttle.clock = lambda: now[0]
    try:
        c = Client(url, verbose=False)
        assert "0 participant(s)" in c.predict("s3cret", api_name="/admin_progress")[0]
        for guess, api in [("guess-1", "/admin_progress"), ("guess-2", "/admin_export"), ("guess-3", "/admin_progress")]:
            with pytest.raises(Exception, match="Wrong password"):
                c.predict(guess, api_name=api)
        # the third wrong one in a row: the address waits before its next password is even read
        with pytest.raises(Exception, match=r"Too many wrong passwords: try again in [12] s"):
            c.predict("guess-4", api_name="/admin_export")
        assert 0 < throttle.wait_for("127.0.0.1") <= 2  # seconds, never a quarter of an hour
        now[0] += 2.5
        assert throttle.wait_for("127.0.0.1") == 0
        assert "0 participant(s)" in c.predict("s3cret", api_name="/admin_progress")[0]  # the right one works
        assert throttle.wait_for("127.0.0.1") == 0  # and cleared the address
    finally:
        demo.close()
    logged = [r.getMessage() for r in caplog.records if r.name == "ic_zoo.study" and "admin" in r.getMessage()]
    assert sum("wrong password from 127.0.0.1" in m for m in logged) == 3, logged
    assert any("3 in a row; the next try waits 1 s" in m for m in logged), logged
    assert not any("guess" in m or "s3cret" in m for m in logged)


def test_admin_throttle_per_address_and_overall_and_the_join_cap():
    from ic_zoo.study.security import AdminThrottle, RateCap, issue, verify

    t = [0.0]
    th = AdminThrottle(free=5, window_s=900, max_delay_s=60, global_delay_s=2, clock=lambda: t[0])
    for i in range(4):
        assert th.failed("10.0.0.1") == i + 1 and th.wait_for("10.0.0.1") == 0
    th.succeeded("10.0.0.1")  # a right password clears the address
    assert th.wait_for("10.0.0.1") == 0
    waits = []
    for _ in range(12):  # a guesser at one address: 1, 2, 4, ... s, at most 60 s between tries
        th.failed("10.0.0.1")
        waits.append(th.wait_for("10.0.0.1"))
        t[0] += waits[-1]
    assert waits[:4] == [0, 0, 0, 0] and waits[4:9] == [1, 2, 4, 8, 16] and max(waits) == 60, waits
    assert th.wait_for("10.0.0.2") == 0  # another address is not slowed by it (16 failures < 20 in all)
    t[0] += 900  # forgotten after the window
    assert th.wait_for("10.0.0.1") == 0
    for i in range(20):  # one guess from each of 20 addresses: every address waits 2 s, never minutes
        th.failed(f"192.168.0.{i}")
    assert th.wait_for("172.16.0.1") == 2
    t[0] += 2
    assert th.wait_for("172.16.0.1") == 0
    cap = RateCap(2, 60, clock=lambda: t[0])
    assert cap.take() and cap.take() and not cap.take()
    t[0] += 60
    assert cap.take()
    assert verify(None, "P01") == "P01" and verify(None, "P 01") is None  # unsigned: a local study
    signed = issue("k" * 16, "P01")
    assert verify("k" * 16, signed) == "P01" and verify("k" * 16, "P01") is None
    assert verify("k" * 16, signed[:-1] + ("0" if signed[-1] != "0" else "1")) is None


def test_a_released_tab_rebuilds_its_task_from_the_log(tmp_path, monkeypatch):
    """Bounded memory in study mode (issue 12): beyond IC_ZOO_MAX_SESSIONS the least recently used tab
    gives up its images; its next stroke finds them rebuilt from the log, strokes included."""
    from ic_zoo.app.study.ui import build_study_demo

    monkeypatch.setenv("IC_ZOO_MAX_SESSIONS", "1")
    path = _mini_study(tmp_path)
    demo = build_study_demo(load_study(path), f"sqlite:///{tmp_path / 'tabs.sqlite'}")
    url = _serve(demo)
    try:
        a, b = Client(url, verbose=False), Client(url, verbose=False)
        a.predict(0, "R1", api_name="/consent")
        e1 = _edit(a, path.parent / "f0.png", _layer((128, 128), _square((128, 128), 20, 20), tmp_path / "a.png"))
        assert "1 stroke(s)" in _status(e1)
        b.predict(0, "R2", api_name="/consent")  # a second tab: a's images are released
        assert demo.ic_zoo_tabs.released >= 1
        e2 = _edit(a, e1[0]["background"], _layer((128, 128), _square((128, 128), 60, 60), tmp_path / "b.png"))
        assert "2 stroke(s)" in _status(e2)  # the first stroke came back from the log
        assert "1 stroke(s)" in _status(a.predict(0, api_name="/study_undo"))
    finally:
        demo.close()
        demo.ic_zoo_tabs.close()


# -- fencing (issue 33, item 2): a change is logged only on the log state its page showed ------------------
def _fn(demo, name):
    """A study page handler, called directly (as one replica's StudyApp would run it)."""
    return next(f.fn for f in demo.fns.values() if f.name == name)


def _tab(out):
    from ic_zoo.app.study.ui import StudyState

    return next(v for v in out.values() if isinstance(v, StudyState))


def _value(st, mask):
    """What the canvas sends for a stroke painted over ``mask`` on the tab's current image."""
    layer = np.zeros(mask.shape + (4,), np.uint8)
    layer[mask] = (255, 0, 0, 255)
    return {"background": st.session.modified.copy(), "layers": [layer], "composite": None}


def _replayed(db, code):
    """The images the log rebuilds for the participant's first task, and replay's report."""
    from ic_zoo.session import Session
    from ic_zoo.study.research import rebuild, replay

    eng = D.engine_for(db)
    with eng.connect() as conn:
        pid = conn.execute(sa.select(D.participants_t.c.id).where(D.participants_t.c.code == code)).scalar_one()
        events = [dict(r) for r in conn.execute(sa.select(D.interactions_t).where(
            (D.interactions_t.c.participant_id == pid) & (D.interactions_t.c.task_id == "t0"))
            .order_by(D.interactions_t.c.seq)).mappings()]
        base = D.stored_image(conn, 1, "t0")
    session = rebuild(lambda img: Session(img, pretrained=True), base, events, None)
    rep = replay(eng, code, log=lambda s: None)
    eng.dispose()
    return session, rep


def test_a_change_on_a_stale_base_is_refused_and_nothing_of_it_is_logged(db_url, tmp_path):
    import threading

    store = D.StudyStore(D.engine_for(db_url), load_study(_mini_study(tmp_path)))
    pid = store.consent("S1")["id"]
    assert store.version(pid) == 1
    assert store.record(pid, "task_shown", "t0", {}, base=1) == 2
    assert store.record(pid, "stroke", "t0", {"n_edits": 1}, base=2) == 3
    with pytest.raises(D.StaleBase) as exc:
        store.record(pid, "stroke", "t0", {"n_edits": 2}, base=2)  # a page that did not show event 3
    assert (exc.value.base, exc.value.current) == (2, 3)
    with pytest.raises(D.StaleBase):
        store.answer(pid, 0, {"part": "petals"}, {}, base=2)
    assert [r["seq"] for r in store.timeline(pid)] == [1, 2, 3] and store.version(pid) == 3
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(D.answers_t)).scalar_one() == 0
        assert conn.execute(sa.select(D.participants_t.c.task_index).where(D.participants_t.c.id == pid)).scalar_one() == 0
    # two replicas committing on the same base at the same moment: exactly one is logged
    other = D.StudyStore(D.engine_for(db_url), store.study)
    ready = threading.Barrier(2)

    def commit(s):
        ready.wait(30)
        try:
            return s.record(pid, "stroke", "t0", {"n_edits": 2}, base=3)
        except D.StaleBase:
            return None

    with cf.ThreadPoolExecutor(2) as ex:
        got = list(ex.map(commit, [store, other]))
    assert sorted(got, key=str) == [4, None]
    assert [r["seq"] for r in store.timeline(pid)] == [1, 2, 3, 4]
    # the answer on the log's own base is taken, and says where the log now is (the answer 5, the finish 6)
    assert store.answer(pid, 0, {"part": "petals"}, {}, base=4) == {"advanced": True, "task_index": 1, "seq": 6}
    store.engine.dispose()
    other.engine.dispose()


@pytest.mark.parametrize("when", ["after_the_resume", "during_the_resume"])
def test_a_stroke_still_running_on_the_old_replica_never_makes_the_log_differ_from_the_page(
        db_url, tmp_path, monkeypatch, when):
    """Issue 33, finding 3: a stroke whose client gave up kept running on replica A and was committed
    after the participant's reload on replica B had rebuilt the task from the log; B's next strokes
    were logged as if it were not there. Now A's stroke is refused at commit when B's resume is in the
    log first, and B's rebuild starts again with it when it commits first: either way the log replays
    to exactly what B's page shows. Replicas are two StudyApps on one database; the order is forced
    with events, not timing."""
    import threading

    from ic_zoo.app.study.ui import STALE, build_study_demo

    path = _mini_study(tmp_path)
    study = load_study(path)
    a, b = build_study_demo(study, db_url), build_study_demo(study, db_url)
    req_a, req_b = _request(), _request(participant="F1")
    req_a.session_hash, req_b.session_hash = "page-on-A", "page-on-B"
    st_a = _tab(_fn(a, "on_consent")(0, "F1", None, req_a))
    st_a = _tab(_fn(a, "on_edit")(0, _value(st_a, _square((128, 128), 10, 10)), st_a.base, st_a, req_a))
    assert len(st_a.session.edits) == 1 and st_a.base == 3
    square = _square((128, 128), 60, 60)
    with cf.ThreadPoolExecutor(1) as ex:
        if when == "after_the_resume":  # A's stroke is computed and waits to commit while B resumes
            real, reached, go = a.study_store.record, threading.Event(), threading.Event()

            def paused(*args, **kwargs):
                reached.set()
                assert go.wait(60)
                return real(*args, **kwargs)

            monkeypatch.setattr(a.study_store, "record", paused)
            job = ex.submit(_fn(a, "on_edit"), 0, _value(st_a, square), st_a.base, st_a, req_a)
            assert reached.wait(60)
            st_b = _tab(_fn(b, "on_load")(None, req_b))
            go.set()
            with pytest.raises(Exception, match="older image than the study log") as exc:
                job.result(60)
            assert exc.value.message == STALE
            assert len(st_a.session.edits) == 1  # A's tab is back to what was logged
            assert len(st_b.session.edits) == 1
        else:  # A's stroke commits while B rebuilds the task: B's resume is refused once and rebuilt with it
            real, reached, go = b.study_store.timeline, threading.Event(), threading.Event()

            def paused(*args, **kwargs):
                rows = real(*args, **kwargs)
                if not reached.is_set():
                    reached.set()
                    assert go.wait(60)
                return rows

            monkeypatch.setattr(b.study_store, "timeline", paused)
            job = ex.submit(_fn(b, "on_load"), None, req_b)
            assert reached.wait(60)
            st_a = _tab(_fn(a, "on_edit")(0, _value(st_a, square), st_a.base, st_a, req_a))
            assert len(st_a.session.edits) == 2  # logged: B's resume was not in the log yet
            go.set()
            st_b = _tab(job.result(60))
            assert len(st_b.session.edits) == 2
            with pytest.raises(Exception, match="older image than the study log"):  # A's page is now behind
                _fn(a, "on_edit")(0, _value(st_a, _square((128, 128), 90, 20)), st_a.base, st_a, req_a)
    # the participant goes on on B: logged right after B's resume, with B's count of edits
    seen = len(st_b.session.edits)
    st_b = _tab(_fn(b, "on_edit")(0, _value(st_b, _square((128, 128), 30, 80)), st_b.base, st_b, req_b))
    rows = _rows(db_url, code="F1")
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    assert [r["kind"] for r in rows] == (["consent", "task_shown", "stroke"] + (["stroke"] if seen == 2 else [])
                                         + ["task_resumed", "stroke"])
    assert json.loads(rows[-2]["payload"])["replayed_edits"] == seen
    assert json.loads(rows[-1]["payload"])["n_edits"] == seen + 1 == len(st_b.session.edits)
    assert rows[-1]["seq"] == st_b.base
    session, rep = _replayed(db_url, "F1")
    assert np.array_equal(session.modified, st_b.session.modified)  # the log replays what B's page shows
    assert rep["gaps"] == [] and rep["mismatches"] == [] and rep["reproduced"] == rep["strokes"] == seen + 1
    for d in (a, b):
        d.study_store.engine.dispose()


def test_study_api_a_change_with_a_stale_base_gets_the_one_sentence(tmp_path):
    """Through the app endpoint: the edit outputs carry the page's base; a stroke, an undo or answers
    sent with an older one are refused with the sentence and not logged; without one (an API caller
    that leaves it out) the tab's own base is used; a normal run is logged as before."""
    from ic_zoo.app.study.ui import STALE, build_study_demo

    path = _mini_study(tmp_path)
    db = f"sqlite:///{tmp_path / 'fence.sqlite'}"
    demo = build_study_demo(load_study(path), db)
    url = _serve(demo)
    try:
        c = Client(url, verbose=False)
        out = c.predict(0, "K1", api_name="/consent")
        base = out[-1]
        assert base == 2  # consent, task_shown
        layer = _layer((128, 128), _square((128, 128), 20, 20), tmp_path / "a.png")
        canvas = {"background": handle_file(str(path.parent / "f0.png")), "layers": [handle_file(layer)],
                  "composite": None}
        e1 = c.predict(0, canvas, base, api_name="/study_edit")
        assert "1 stroke(s)" in _status(e1) and e1[-1] == 3
        layer2 = _layer((128, 128), _square((128, 128), 60, 60), tmp_path / "b.png")
        canvas2 = {"background": handle_file(e1[0]["background"]), "layers": [handle_file(layer2)], "composite": None}
        for call in (lambda: c.predict(0, canvas2, base, api_name="/study_edit"),
                     lambda: c.predict(0, base, api_name="/study_undo"),
                     lambda: c.predict(0, "petals", None, None, None, None, None, "", "", "", "", "", "", base,
                                       api_name="/submit")):
            with pytest.raises(Exception) as exc:
                call()
            assert STALE in str(exc.value)
        assert [r["kind"] for r in _rows(db, code="K1")] == ["consent", "task_shown", "stroke"]
        e2 = c.predict(0, canvas2, api_name="/study_edit")  # no base given: the tab's own
        assert "2 stroke(s)" in _status(e2) and e2[-1] == 4
        assert c.predict(0, 4, api_name="/study_undo")[-1] == 5
    finally:
        demo.close()
    rows = _rows(db, code="K1")
    assert [r["kind"] for r in rows] == ["consent", "task_shown", "stroke", "stroke", "undo"]
    assert [json.loads(r["payload"])["n_edits"] for r in rows[2:]] == [1, 2, 1]


def test_replay_explains_a_stroke_committed_after_the_reload_in_the_order_it_happened(tmp_path, monkeypatch, capsys):
    """A log written before fencing (the finding's race, re-created with the fence switched off): replay
    names the late stroke itself and says it was committed after the reload, not that 'a change before
    it was not logged'."""
    import threading

    from ic_zoo.cli import main
    from ic_zoo.app.study.ui import StudyApp, build_study_demo

    real_next = D.StudyStore._next_seq
    monkeypatch.setattr(D.StudyStore, "_next_seq", staticmethod(lambda conn, pid, base: real_next(conn, pid, None)))
    monkeypatch.setattr(StudyApp, "check_base", lambda self, st, base: None)
    db = f"sqlite:///{tmp_path / 'old.sqlite'}"
    study = load_study(_mini_study(tmp_path))
    a, b = build_study_demo(study, db), build_study_demo(study, db)
    req_a, req_b = _request(), _request(participant="O1")
    req_a.session_hash, req_b.session_hash = "page-on-A", "page-on-B"
    st_a = _tab(_fn(a, "on_consent")(0, "O1", None, req_a))
    st_a = _tab(_fn(a, "on_edit")(0, _value(st_a, _square((128, 128), 10, 10)), None, st_a, req_a))
    real, reached, go = a.study_store.record, threading.Event(), threading.Event()

    def paused(*args, **kwargs):
        reached.set()
        assert go.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(a.study_store, "record", paused)
    with cf.ThreadPoolExecutor(1) as ex:
        job = ex.submit(_fn(a, "on_edit"), 0, _value(st_a, _square((128, 128), 60, 60)), None, st_a, req_a)
        assert reached.wait(60)
        st_b = _tab(_fn(b, "on_load")(None, req_b))
        go.set()
        job.result(60)  # logged after B's reload: what fencing now refuses
    _fn(b, "on_edit")(0, _value(st_b, _square((128, 128), 30, 80)), None, st_b, req_b)
    for d in (a, b):
        d.study_store.engine.dispose()
    assert [r["kind"] for r in _rows(db, code="O1")] == ["consent", "task_shown", "stroke", "task_resumed", "stroke",
                                                         "stroke"]
    rep = tmp_path / "old.json"
    assert main(["study", "replay", "--db", db, "--json", str(rep)]) == 1
    out = capsys.readouterr().out
    assert ("GAP O1 task t0 event 5 (stroke): it came from the participant's page as it was before the reload at "
            "event 4 and was committed after that reload had rebuilt the task from the log") in out
    assert "was not logged" not in out
    gaps = json.loads(rep.read_text())["gaps"]
    assert [(g["seq"], g["cause"], g.get("reloaded_at")) for g in gaps] == [(5, "after_reload", 4)]


def test_study_api_a_stroke_as_points_is_logged_as_its_mask_once(tmp_path):
    """Through /study_stroke (what the participant's canvas sends): the stroke is logged with the mask the
    brush drew (painter.stroke_mask), the same ids sent again are not logged again, a malformed stroke or a
    stale base gets one sentence and nothing is logged."""
    from ic_zoo.app.study.ui import STALE, build_study_demo
    from ic_zoo.app import painter

    path = _mini_study(tmp_path)
    db = f"sqlite:///{tmp_path / 'points.sqlite'}"
    demo = build_study_demo(load_study(path), db)
    url = _serve(demo)
    stroke = {"w": 128, "h": 128, "strokes": [{"id": 1, "r": 6.0, "pts": [30.5, 40.0, 80.0, 44.5]}]}
    try:
        c = Client(url, verbose=False)
        base = c.predict(0, "K2", api_name="/consent")[-1]
        e1 = c.predict(0, stroke, base, api_name="/study_stroke")
        assert "1 stroke(s)" in _status(e1) and e1[-1] == base + 1
        c.predict(0, stroke, e1[-1], api_name="/study_stroke")  # sent again (unacknowledged): taken once
        bad = [dict(stroke, strokes=[{"id": 2, "r": 0, "pts": [1, 1]}]), dict(stroke, w="wide"), [1, 2]]
        for value in bad:
            with pytest.raises(Exception) as exc:
                c.predict(0, value, e1[-1], api_name="/study_stroke")
            assert str(exc.value).strip().endswith(".") and "Traceback" not in str(exc.value)
        two = dict(stroke, strokes=[{"id": 2, "r": 4.0, "pts": [100.0, 100.0]}])
        with pytest.raises(Exception) as exc:
            c.predict(0, two, base, api_name="/study_stroke")  # the page's base is older than the log
        assert STALE in str(exc.value)
        e2 = c.predict(0, two, e1[-1], api_name="/study_stroke")
        assert "2 stroke(s)" in _status(e2)
    finally:
        demo.close()
    rows = [r for r in _rows(db, code="K2") if r["kind"] == "stroke"]
    assert len(rows) == 2
    want = painter.stroke_mask(painter.parse(stroke, 0)[0], (128, 128), (128, 128))
    assert np.array_equal(D.png_to_mask(rows[0]["mask_png"]), want)
    assert D.png_to_mask(rows[1]["mask_png"])[100, 100] and D.png_to_mask(rows[1]["mask_png"]).sum() < 80
