"""Long jobs (ic_zoo/app/jobs.py): one job per key, a sentence when one fails, and on PostgreSQL a job whose
replica died (kill -9) or stopped (SIGTERM's close) finished by another replica, once."""
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
import threading
import time

import numpy as np
import pytest

from ic_zoo.app import jobs


def doubling(calls: list, pause: float = 0.0):
    def h(args, progress):
        calls.append(args)
        for i in range(4):
            progress(i / 4, f"step {i}")
            time.sleep(pause)
        return jobs.pack({"x": args["x"] * 2}, {"a.txt": b"file"})
    return h


def failing(args, progress):
    raise jobs.JobError("That class is not one of the model's.")


def crashing(args, progress):
    raise KeyError("internal")


def check_queue(q: jobs.Jobs) -> None:
    calls: list = []
    q.handle("double", doubling(calls, 0.05))
    q.handle("bad", failing)
    q.handle("crash", crashing)
    k = q.submit("double", {"x": 21})
    assert q.submit("double", {"x": 21}) == k  # asked twice while queued or running: one job
    seen = []
    st = q.wait(k, progress=lambda f, n: seen.append((f, n)), limit_s=60)
    assert st.state == "done" and st.runs == 1
    assert jobs.unpack(st.result) == ({"x": 42}, {"a.txt": b"file"})
    assert [f for f, _ in seen] == sorted(f for f, _ in seen)  # never backwards
    q.submit("double", {"x": 21})  # done: the result, not a second run
    assert q.wait(k, limit_s=60).runs == 1 and len(calls) == 1
    with pytest.raises(jobs.JobError, match="That class is not one of the model's."):
        q.wait(q.submit("bad", {"n": 1, "x": 1}), limit_s=60)
    with pytest.raises(jobs.JobError, match=r"^The job failed on the server \(KeyError\)\.$"):
        q.wait(q.submit("crash", {}), limit_s=60)
    with pytest.raises(jobs.JobError, match="kind 'nope'"):
        q.wait(q.submit("nope", {}), limit_s=60)
    with pytest.raises(jobs.JobError, match="not known here"):
        q.wait("0" * 40, limit_s=5)
    # a failed job asked for again runs again (the failure may have been passing)
    q.handle("bad", doubling(calls))
    assert jobs.unpack(q.wait(q.submit("bad", {"n": 1, "x": 1}), limit_s=60).result)[0] == {"x": 2}
    check_previews(q)


def check_previews(q: jobs.Jobs) -> None:
    """A job that shows its work: each preview it publishes reaches the page that follows it (``follow``: a
    running status carrying the result so far) before the final result; ``wait`` gives the final one only.
    The job publishes its next preview only once the follower has shown the last (no race with the poll)."""
    seen = {1: threading.Event(), 2: threading.Event()}

    def refining(args, progress):
        for step in (1, 2):
            progress.preview(jobs.pack({"step": step, "preview": True}))
            assert seen[step].wait(60)
        return jobs.pack({"step": "final"})

    q.handle("refine", refining)
    key = q.submit("refine", {"n": 1})
    got = []
    for st in q.follow(key, poll_s=0.05, limit_s=60):
        doc = jobs.unpack(st.result)[0]
        got.append((st.state, doc["step"]))
        if st.state == "running":
            seen[doc["step"]].set()
    assert got == [("running", 1), ("running", 2), ("done", "final")]
    assert jobs.unpack(q.wait(key, limit_s=60).result)[0] == {"step": "final"}


def test_local_queue():
    check_queue(jobs.LocalJobs())


def test_postgres_queue(pg_url):
    q = jobs.PgJobs(pg_url, stalled_s=5)
    try:
        check_queue(q)
    finally:
        q.close()


def test_postgres_queue_is_shared_and_one_run_per_key(pg_url):
    """Two replicas asking for the same job at once: one run, both get its result."""
    a, b = jobs.PgJobs(pg_url, stalled_s=5), jobs.PgJobs(pg_url, stalled_s=5)
    calls: list = []
    try:
        for q in (a, b):
            q.handle("double", doubling(calls, 0.2))
        keys = []
        ts = [threading.Thread(target=lambda q=q: keys.append(q.submit("double", {"x": 5}))) for q in (a, b)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert keys[0] == keys[1]
        assert jobs.unpack(a.wait(keys[0], limit_s=60).result)[0] == {"x": 10}
        assert jobs.unpack(b.wait(keys[0], limit_s=60).result)[0] == {"x": 10}
        assert len(calls) == 1
    finally:
        a.close()
        b.close()


REPLICA = textwrap.dedent("""
    import sys, time
    from ic_zoo.app import jobs
    q = jobs.PgJobs(sys.argv[1], stalled_s=3)
    def slow(args, progress):
        while True:
            progress(0.5, "working on it")
            time.sleep(0.2)
    q.handle("double", slow)
    key = q.submit("double", {"x": 4})
    while q.status(key).state != "running":
        time.sleep(0.05)
    print("ready", flush=True)
    time.sleep(600)
""")


def _wait_running(q: jobs.Jobs, key: str, runs: int = 1, limit: float = 60) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        st = q.status(key)
        if st is not None and st.state == "running" and st.runs == runs:
            return
        time.sleep(0.1)
    raise AssertionError(f"job {key} not running (run {runs}) within {limit} s: {q.status(key)}")


def test_a_job_whose_replica_was_killed_is_finished_by_another(pg_url, tmp_path):
    script = tmp_path / "replica.py"
    script.write_text(REPLICA)
    proc = subprocess.Popen([sys.executable, str(script), pg_url], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    q = None
    try:
        assert proc.stdout.readline().strip() == "ready"
        key = jobs.job_key("double", {"x": 4})
        q = jobs.PgJobs(pg_url, stalled_s=3)
        q.handle("double", doubling([]))
        _wait_running(q, key)  # the other replica runs it
        assert q.status(key).note == "working on it"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert q.submit("double", {"x": 4}) == key  # its user asks again at once (a reload), before the look-out
        st = q.wait(key, limit_s=120)  # no heartbeat for 3 s: started again here
        assert st.state == "done" and st.runs == 2
        assert jobs.unpack(st.result)[0] == {"x": 8}
    finally:
        if proc.poll() is None:
            proc.kill()
        if q is not None:
            q.close()


def test_a_stopping_replica_hands_its_running_job_back(pg_url):
    """close() (SIGTERM's drain) puts the running job back at once: another replica finishes it without
    waiting for the stalled-worker time, and the stopped run's late writes are ignored."""
    a = jobs.PgJobs(pg_url, stalled_s=600)
    release = threading.Event()

    def stuck(args, progress):
        progress(0.3, "stuck")
        release.wait(60)
        return jobs.pack({"from": "a"})

    a.handle("double", stuck)
    b = None
    try:
        key = a.submit("double", {"x": 3})
        _wait_running(a, key)
        b = jobs.PgJobs(pg_url, stalled_s=600)
        b.handle("double", doubling([]))
        a.close()
        st = b.wait(key, limit_s=60)
        release.set()
        assert st.runs == 2 and jobs.unpack(st.result)[0] == {"x": 6}
        time.sleep(0.5)
        assert jobs.unpack(b.status(key).result)[0] == {"x": 6}  # a's run ended after: not written
    finally:
        release.set()
        if b is not None:
            b.close()


def test_slow_maps_asked_on_one_replica_are_computed_by_another(pg_url, monkeypatch, tmp_path):
    """The main app's slow maps are a job: replica A (no job worker) asks, replica B's worker rebuilds the
    work from the signed record and the shared image store, and A's page gets maps equal to the library's
    own call on the work the record describes."""
    from gradio_client import Client, handle_file
    from PIL import Image

    os.environ["IC_ZOO_APP_NO_DEMO"] = "1"
    import app as app_module
    import ic_zoo
    from ic_zoo.app import work
    from ic_zoo.app.main import context
    from ic_zoo.app.comparison import slow_maps

    flowers = ["flower2d/squeezenet", "flower2d/resnet"]
    secret = "j" * 64
    for k, v in (("IC_ZOO_BROWSER_SECRET", secret), ("IC_ZOO_IMAGE_STORE", pg_url), ("IC_ZOO_JOBS", pg_url),
                 ("IC_ZOO_JOB_WORKERS", "1")):
        monkeypatch.setenv(k, v)
    b = context.AppContext(flowers)
    monkeypatch.setenv("IC_ZOO_JOB_WORKERS", "0")
    demo = app_module.build_demo(models=flowers)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        img = sorted((app_module.EXAMPLES / "flower2d" / "images").glob("*.png"))[0]
        layer = np.zeros(np.asarray(Image.open(img)).shape[:2] + (4,), np.uint8)
        layer[40:90, 50:110] = (255, 0, 0, 255)
        Image.fromarray(layer).save(tmp_path / "layer.png")
        c = Client(url, verbose=False)
        out = c.predict({"background": handle_file(str(img)), "layers": [handle_file(str(tmp_path / "layer.png"))],
                         "composite": None}, flowers, "telea", "gradcam", app_module.ROWS[0], api_name="/edit")
        record = next(o for o in out if isinstance(o, str) and o.count(".") == 1 and len(o) > 100)
        gallery, note = c.predict(flowers, "occlusion", api_name="/slow_maps")
        assert "current image (edit 1)" in note
        import sqlalchemy as sa  # the job's row, as any replica reads it

        eng = sa.create_engine(jobs._sqlalchemy_url(pg_url))
        with eng.connect() as conn:
            rows = conn.execute(sa.text("SELECT kind, state, runs, replica FROM ic_zoo_jobs")).all()
            stored = conn.execute(sa.text("SELECT result FROM ic_zoo_jobs")).scalar()
        eng.dispose()
        assert rows == [("slow_maps", "done", 1, b.jobs.name)]  # run by B, once
        # the reference: the library's own call on the work the page's record describes
        w = work.decode(record, secret)
        s = work.rebuild(w, b.images, lambda im: ic_zoo.Session(im))
        assert len(s.edits) == 1
        classes = {m: int(s.predict(m, "original").order[0]) for m in flowers}  # the shown class: top-1
        doc, files = jobs.unpack(slow_maps(s, flowers, "occlusion", classes, lambda f, n: None))
        assert jobs.unpack(stored) == (doc, files)  # B's maps are the reference's, bit for bit
        assert len(gallery) == len(doc["pics"]) == 2
        for shown, (name, caption) in zip(gallery, doc["pics"]):  # and the page shows them (as WebP: lossy)
            assert shown["caption"] == caption
            path = shown["image"] if isinstance(shown["image"], str) else shown["image"]["path"]
            got = np.asarray(Image.open(path).convert("RGB")).astype(int)
            assert np.abs(got - ic_zoo.imageio.png_to_image(files[name])).mean() < 4
    finally:
        demo.close()
        demo.ic_zoo_tabs.close()
        for close in demo.ic_zoo_closers:  # A's job queue (what ic_zoo.app.serve closes after the drain)
            close()
        b.jobs.close()
        b.tabs.close()


def test_the_study_export_asked_on_one_replica_is_made_by_another(pg_url, monkeypatch):
    """Study mode's export is a job keyed by the log's version: replica A (no worker) asks, replica B
    makes it, A serves the zip; asking again before the log changes reuses it, after a change makes anew."""
    import zipfile

    from ic_zoo.study import load_study
    from ic_zoo.app.study.ui import StudyApp

    study = load_study(Path(__file__).resolve().parents[1] / "examples" / "study" / "flower_study.yaml")
    monkeypatch.setenv("IC_ZOO_JOBS", pg_url)
    monkeypatch.setenv("IC_ZOO_JOB_WORKERS", "1")
    b = StudyApp(study, pg_url)
    monkeypatch.setenv("IC_ZOO_JOB_WORKERS", "0")
    a = StudyApp(study, pg_url)
    try:
        doc, path = a._job_file("study_export")
        assert "participants.csv" in zipfile.ZipFile(path).namelist()
        st = a.jobs.status(jobs.job_key("study_export", {"study": study.key, "log": a.store.log_version()}))
        assert st.runs == 1
        assert a._job_file("study_export")[1] != path  # a file of its own, the same job
        assert a.jobs.status(jobs.job_key("study_export", {"study": study.key,
                                                           "log": a.store.log_version()})).runs == 1
        before = a.store.log_version()
        a.store.consent("P1")
        assert a.store.log_version() != before
        _, path2 = a._job_file("study_export")
        assert "P1" in zipfile.ZipFile(path2).read("participants.csv").decode()
    finally:
        a.jobs.close()
        b.jobs.close()
        a.store.engine.dispose()
        b.store.engine.dispose()
