"""Chaos on loopback (issue 33, item 5): N replicas of ``python app.py`` in study mode behind the project's
HAProxy config and one PostgreSQL (benchmarks/replicas.py's cluster), scripted participants painting
through the proxy, CPU burners on the same cores, and three faults at fixed points of the run (after K
answered strokes, never wall-clock):

* ``kill -9`` of the replica holding most participants (a supervisor restarts it, as compose's
  ``restart:`` or Kubernetes would),
* SIGTERM of another one (it drains and exits; the exit time is measured; then it is restarted),
* SIGSTOP of a third for ``--pause`` seconds (default: long enough for HAProxy's checks to mark it DOWN,
  fall x (inter + timeout check) + inter of deploy/haproxy.cfg), then SIGCONT.

What it reports (a table, and JSON with ``--json``):

* false DOWN transitions: HAProxy marking DOWN a replica that was not killed, stopped, paused or
  restarting (read from HAProxy's stats socket, which the benchmark adds to its own copy of the config:
  the ``chkdown`` counter of each server, polled);
* hung clients: an event (join or stroke) with neither an answer nor a sentence within ``--hang`` s (30);
  every gradio_client call runs with that time-out, and then the participant reloads;
* the faulted replicas' participants: how many were told in one of the app's sentences (reload,
  stale page, draining) and how many could finish after resuming; failures that came without a
  sentence (CancelledError, a proxy's 502/503, ...), with examples;
* acknowledged strokes lost from the log or logged twice (each stroke is a square at a place unique
  to its participant, found again in the logged masks);
* log-vs-seen mismatches: each participant's log replayed with the library's replay
  (ic_zoo.study.research.rebuild, what ``study replay`` runs) and compared with the last image that
  participant's client was shown (its stroke count and its pixels), and as a control the same log less
  its last stroke, which must not match;
* the time each SIGTERM'd replica took to exit, and its exit status.

With ``--app-users N``, users of the comparison app (not a study) work at the same time on their own
replicas behind their own HAProxy, with the same faults at the same points of their strokes. Their
originals and their long jobs are in the same PostgreSQL (``IC_ZOO_IMAGE_STORE``, ``IC_ZOO_JOBS``). Each
one loads an image, paints squares at places unique to it, asks for slow maps (a job) after every
``--slow-every``-th stroke, keeps the signed work record each answer carries, and reloads with ``/restore``
and that record. Reported for them: hung clients, failures with and without a sentence, acknowledged
strokes missing from or twice in the last record, the record rebuilt from the shared image store and drawn
as the canvas draws it against the last canvas the client saw (bit for bit; the record less its last
stroke as the control), and the slow-maps jobs in the queue: asked, answered, done, started again
elsewhere.

    python benchmarks/chaos.py --replicas 3 --participants 30 --strokes 15 --burn 6 --app-users 10 \
        --json benchmarks/chaos_cpu.json
    python benchmarks/chaos.py --table benchmarks/chaos_cpu.json      # the README's table, from the JSON

tests/test_chaos.py runs a small form (2 replicas, a kill -9 and a short SIGSTOP).
"""
from __future__ import annotations

import argparse
from collections import Counter
import concurrent.futures as cf
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import replicas as R  # noqa: E402

ROOT = R.ROOT
SQUARE = 6  # a stroke: a SQUARE x SQUARE red square


# -- load ---------------------------------------------------------------------------------------------------
class Burners:
    """``n`` Python processes spinning on the CPU (``while True: pass``), lowest priority off: they compete
    with the replicas like another tenant's jobs."""

    def __init__(self, n: int):
        self.n, self.procs = n, []

    def __enter__(self):
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(self.n)]
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait(10)


class LoadSampler(threading.Thread):
    """The 1-minute load average, sampled every second."""

    def __init__(self):
        super().__init__(daemon=True)
        self.samples, self.stop = [], threading.Event()

    def run(self):
        while not self.stop.wait(1.0):
            self.samples.append(os.getloadavg()[0])


# -- HAProxy, watched ------------------------------------------------------------------------------------------
def check_timing(cfg: str) -> dict:
    """inter, fall, rise and timeout check (seconds) of deploy/haproxy.cfg."""
    def num(rx, default):
        m = re.search(rx, cfg, re.M)
        return float(m.group(1)) if m else default
    return {"inter": num(r"^\s*default-server.*\binter (\d+(?:\.\d+)?)s", 2.0),
            "fall": int(num(r"^\s*default-server.*\bfall (\d+)", 3)),
            "rise": int(num(r"^\s*default-server.*\brise (\d+)", 2)),
            "timeout_check": num(r"^\s*timeout check (\d+(?:\.\d+)?)s", 5.0)}


class ChaosCluster(R.Cluster):
    """The loopback cluster with HAProxy's stats socket in its own copy of deploy/haproxy.cfg, and replicas
    that can be restarted on their port."""

    def start_proxy(self) -> None:
        cfg = (ROOT / "deploy" / "haproxy.cfg").read_text()
        self.sock = self.folder / "haproxy.sock"
        cfg = cfg.replace("global\n", f"global\n    stats socket {self.sock} mode 600 level admin\n", 1)
        (self.folder / "haproxy.cfg").write_text(cfg)
        haproxy = shutil.which("haproxy")
        if haproxy is None:
            raise RuntimeError("haproxy is not installed (.ci/run installs Debian's haproxy package).")
        env = dict(os.environ, IC_ZOO_PROXY_BIND=f"127.0.0.1:{self.proxy_port}")
        for i in range(3):
            env[f"IC_ZOO_REPLICA_{i + 1}"] = f"127.0.0.1:{self.ports[i] if i < self.n else R.free_port()}"
        f = open(self.folder / "haproxy.log", "w")
        self.proxy = subprocess.Popen([haproxy, "-db", "-f", str(self.folder / "haproxy.cfg")], env=env,
                                      stdout=f, stderr=subprocess.STDOUT)
        f.close()
        R.wait_for(lambda: self.health(None)[0] == 200, 30)

    def stats(self) -> dict[str, dict]:
        """HAProxy's 'show stat' for the running replicas' servers (the config names three): {name: row}."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(str(self.sock))
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        lines = data.decode().splitlines()
        head = lines[0].lstrip("# ").split(",")
        out = {}
        for ln in lines[1:]:
            row = dict(zip(head, ln.split(",")))
            if row.get("pxname") == "replicas" and row.get("svname") in {f"r{i + 1}" for i in range(self.n)}:
                out[row["svname"]] = row
        return out

    closing = False

    def restart(self, i: int) -> None:
        if self.closing:
            return
        self.logs[i] = self.folder / f"r{i + 1}-restarted.log"
        f = open(self.logs[i], "w")
        self.procs[i] = subprocess.Popen([sys.executable] + R.ENTRYPOINT, cwd=str(ROOT), env=self.replica_env(i),
                                         stdout=f, stderr=subprocess.STDOUT)
        f.close()


class DownWatch(threading.Thread):
    """Polls the stats socket: every UP -> DOWN transition (the chkdown counter going up) with its time."""

    def __init__(self, cluster: ChaosCluster, step: float = 0.25):
        super().__init__(daemon=True)
        self.cluster, self.step, self.stop = cluster, step, threading.Event()
        self.downs: list[dict] = []
        self.errors = 0
        self.t0 = time.monotonic()

    def run(self):
        last: dict[str, int] = {}
        while not self.stop.wait(self.step):
            try:
                st = self.cluster.stats()
            except OSError:
                self.errors += 1
                continue
            for name, row in st.items():
                n = int(row.get("chkdown") or 0)
                if n > last.get(name, 0):
                    for _ in range(n - last.get(name, 0)):
                        self.downs.append({"server": name, "t": round(time.monotonic() - self.t0, 2),
                                           "check": row.get("check_status", ""), "status": row.get("status", "")})
                last[name] = n


# -- participants -------------------------------------------------------------------------------------------
SENTENCES = None


def sentences() -> dict[str, str]:
    global SENTENCES
    if SENTENCES is None:
        os.environ.setdefault("IC_ZOO_APP_NO_DEMO", "1")
        from ic_zoo.app import client, gated_canvas, serve
        from ic_zoo.app.study import ui

        SENTENCES = {"moved": ui.MOVED, "stale": ui.STALE, "draining": serve.DRAINING, "file_gone": serve.FILE_GONE,
                     "upload_gone": gated_canvas.UPLOAD_GONE,
                     "moved_app": serve.MOVED, "lost_study": client.STUDY_LOST, "lost_app": client.APP_LOST}
    return SENTENCES


def told(msg: str) -> str | None:
    """Which of the app's sentences a failure carried, if any."""
    for name, s in sentences().items():
        if s in msg:
            return name
    return None


class ChaosParticipant(R.Participant):
    """A participant whose every call has a time-out, whose strokes are squares at places unique to it,
    and who remembers the last image its client was shown."""

    def __init__(self, *a, hang: float = 30.0, **k):
        super().__init__(*a, **k)
        self.hang = hang
        free = [(y, x) for y in range(0, self.size - SQUARE, SQUARE + 1) for x in range(0, self.size - SQUARE, SQUARE + 1)]
        self.places = [free[j] for j in self.rng.permutation(len(free))]
        self.acked: list[tuple[int, int]] = []  # the squares whose stroke was answered
        self.sent = 0
        self.seen: np.ndarray | None = None
        self.seen_n = 0

    def join(self) -> list:
        from ic_zoo.app.client import Client
        from ic_zoo.study.security import issue

        self.client = Client(self.url, study=True, hang=self.hang)
        link = issue(self.secret, self.code) if self.secret else self.code
        out = self.client.call(0, link, api_name="/consent")
        canvas = next(o for o in out if isinstance(o, dict) and o.get("background"))
        self.bg = canvas["background"]
        self.n = R.strokes_in(out)
        self.joins += 1
        self._saw()
        return out

    def stroke(self) -> list:
        from gradio_client import handle_file

        y, x, path, bg = self._next_square()
        out = self.client.call(0, {"background": handle_file(str(bg)), "layers": [handle_file(path)],
                                   "composite": None}, api_name="/study_edit")
        self._took(out)
        self.acked.append((int(y), int(x)))
        self._saw()
        return out

    def _next_square(self) -> tuple[int, int, str, str]:
        """The next stroke: a square at this client's next place, as an editor layer file; and the
        background the client was last shown (what the canvas sends back)."""
        y, x = self.places[self.sent % len(self.places)]
        self.sent += 1
        m = np.zeros((self.size, self.size), bool)
        m[y:y + SQUARE, x:x + SQUARE] = True
        path = R.layer_png((self.size, self.size), m, self.folder / f"{self.code}_{self.sent}.png")
        return y, x, path, str(self.seen_file)

    def _saw(self) -> None:
        """Download the image the client was just shown, through the proxy with its affinity cookie (as a
        page does); it is also what the canvas sends back with the next stroke."""
        from PIL import Image

        from ic_zoo.app.gated_canvas import editor_rgb

        self.seen_file = self.folder / f"{self.code}_seen.png"
        self.seen_file.write_bytes(self.client.download(self.bg))
        self.seen, self.seen_n = editor_rgb(np.asarray(Image.open(self.seen_file))), self.n


class AppUser(ChaosParticipant):
    """A user of the comparison app (not a study): loads an image, paints squares at places unique to it,
    asks for slow maps (a job) after every ``slow_every``-th stroke, and keeps the signed work record each
    answer carries; its reload is ``/restore`` with that record on whichever replica the proxy picks."""

    SECRET = "loopback-browser-secret"  # benchmarks/replicas.py gives every replica this IC_ZOO_BROWSER_SECRET

    def __init__(self, url, code, folder, image: Path, models, seed: int = 0, hang: float = 30.0,
                 slow_every: int = 5):
        from PIL import Image

        size = Image.open(image).size[0]
        super().__init__(url, code, None, folder, size, seed=seed, hang=hang)
        self.image, self.models, self.slow_every = image, list(models), slow_every
        self.record: str | None = None
        self.slow_asked = self.slow_answered = 0

    def _call(self, *args, api_name: str) -> list:
        return self.client.call(*args, api_name=api_name)

    def join(self) -> list:
        from gradio_client import handle_file

        from ic_zoo.app.client import Client
        from ic_zoo.app.main.context import ROWS

        self.client = Client(self.url, hang=self.hang)
        if self.record:
            out = self._call(self.record, self.models, "gradcam", ROWS[0], api_name="/restore")
        else:
            out = self._call(handle_file(str(self.image)), self.models, "gradcam", ROWS[0], api_name="/load")
        self._took(out)
        self.joins += 1
        self._saw()
        return out

    def stroke(self) -> list:
        from gradio_client import handle_file

        from ic_zoo.app.main.context import ROWS

        y, x, path, bg = self._next_square()
        out = self._call({"background": handle_file(str(bg)), "layers": [handle_file(path)], "composite": None},
                         self.models, "telea", "gradcam", ROWS[0], api_name="/edit")
        self._took(out)
        self.acked.append((int(y), int(x)))
        self._saw()
        if self.slow_every and len(self.acked) % self.slow_every == 0:
            self.slow_asked += 1
            gallery, _ = self._call(self.models[:1], "occlusion", api_name="/slow_maps")
            if gallery:
                self.slow_answered += 1
        return out

    def _took(self, out) -> None:
        from ic_zoo.app import work

        self.bg = out[0]["background"]
        rec = next((o for o in out if isinstance(o, str) and o.count(".") == 1 and len(o) > 100), None)
        if rec is not None:
            self.record = rec
        self.n = len(work.decode(self.record, self.SECRET).strokes) if self.record else 0


def audit_apps(url: str, users: list[AppUser]) -> dict:
    """Each app user's last work record against what its client was last shown: the squares acknowledged
    (lost, duplicated), and the work rebuilt from the record and the shared image store, drawn as the
    canvas draws it (the models' crop frames), equal to the last canvas, bit for bit; the control (the
    record less its last stroke) must differ. And the slow-maps jobs in the queue's table."""
    import sqlalchemy as sa

    from ic_zoo.presentation import present
    from ic_zoo.session import Session
    from ic_zoo.app import work

    store = work.SqlImageStore(url)
    out = {"users": len(users), "acked": 0, "lost": [], "duplicated": [], "rebuilt": 0, "mismatches": [],
           "controls": 0, "controls_caught": 0, "slow_asked": sum(u.slow_asked for u in users),
           "slow_answered": sum(u.slow_answered for u in users)}
    for u in users:
        out["acked"] += len(u.acked)
        if not u.record or u.seen is None:
            continue
        w = work.decode(u.record, AppUser.SECRET)
        squares = [square_at(m) for m, _, _ in w.strokes]
        out["lost"] += [f"{u.code}@{sq}" for sq in u.acked if sq not in squares]
        out["duplicated"] += [f"{u.code}@{sq}" for sq in set(squares) if squares.count(sq) > 1]

        def canvas(wk):
            s = work.rebuild(wk, store, lambda im: Session(im))
            return present.burn_frames(s.modified, {m: s.classifier(m).input_box(s.original.shape)
                                                    for m in u.models}), len(s.edits)

        img, n = canvas(w)
        out["rebuilt"] += 1
        diff = int(np.abs(img.astype(int) - u.seen.astype(int)).max()) if img.shape == u.seen.shape else -1
        if n != u.seen_n or diff != 0:
            out["mismatches"].append({"code": u.code, "record_edits": n, "seen_edits": u.seen_n, "max_pixel_diff": diff})
        if w.strokes:
            short = work.Work(w.image, w.source, w.strokes[:-1], w.models, w.selected)
            out["controls"] += 1
            out["controls_caught"] += int(not np.array_equal(canvas(short)[0], u.seen))
    store.engine.dispose()
    eng = sa.create_engine("postgresql+psycopg://" + url.split("://", 1)[1])
    try:
        with eng.connect() as conn:
            rows = conn.execute(sa.text("SELECT state, runs FROM ic_zoo_jobs WHERE kind = 'slow_maps'")).all()
    except sa.exc.SQLAlchemyError:
        rows = []
    finally:
        eng.dispose()
    out["jobs"] = len(rows)
    out["jobs_done"] = sum(1 for r in rows if r.state == "done")
    out["jobs_restarted"] = sum(1 for r in rows if r.runs > 1)
    out["jobs_states"] = dict(Counter(r.state for r in rows))
    return out


@dataclass
class Chaos:
    strokes: int = 0
    seconds: float = 0.0
    faults: list = field(default_factory=list)  # {"kind", "replica", "after_strokes", "t", "pinned", ...}
    hung: list = field(default_factory=list)
    failures: list = field(default_factory=list)  # {"code", "replica", "t", "told", "message"}
    unfinished: list = field(default_factory=list)
    latencies: list = field(default_factory=list)


class Faults:
    """The faults of one cluster: each hits the live, not yet faulted replica holding most clients
    (``holders()``: (replica, still working, code) per client), and is recorded in ``ch.faults``."""

    def __init__(self, cluster, ch, pause: float, restart: bool, now, log, holders):
        self.cluster, self.ch, self.pause, self.restart, self.now, self.log = cluster, ch, pause, restart, now, log
        self.holders = holders
        self.faulted: set[int] = set()
        self.workers: list[threading.Thread] = []

    def join(self, limit: float) -> None:
        deadline = time.monotonic() + limit
        for th in self.workers:
            th.join(timeout=max(0.0, deadline - time.monotonic()))

    def inject(self, kind: str, after: int) -> None:
        cluster, ch, pause, restart, now, log = self.cluster, self.ch, self.pause, self.restart, self.now, self.log
        clients = self.holders()
        held: dict[str, int] = {}
        for replica, _, _ in clients:
            if replica:
                held[replica] = held.get(replica, 0) + 1
        alive = [i for i in range(cluster.n) if i not in self.faulted and cluster.procs[i].poll() is None]
        if not alive:
            return
        i = max(alive, key=lambda j: (held.get(f"r{j + 1}", 0), -j))
        self.faulted.add(i)
        name = f"r{i + 1}"
        rec = {"kind": kind, "replica": name, "after_strokes": after, "t": now(), "pinned": held.get(name, 0),
               "active": sum(1 for r, working, _ in clients if r == name and working),
               "codes": sorted(c for r, _, c in clients if r == name)}
        ch.faults.append(rec)
        log(f"[{rec['t']:.1f} s] {kind} {name} after {after} strokes ({rec['pinned']} client(s) on it, "
            f"{rec['active']} still working)")
        proc = cluster.procs[i]
        if kind == "STOP":
            proc.send_signal(signal.SIGSTOP)

            def cont():
                time.sleep(pause)
                proc.send_signal(signal.SIGCONT)
                rec["end_t"] = now()
                log(f"[{rec['end_t']:.1f} s] CONT {name}")
            th = threading.Thread(target=cont, daemon=True)
        else:
            proc.send_signal(getattr(signal, "SIG" + kind))

            def after_exit():
                ts = time.monotonic()
                code = proc.wait()
                rec["exit_s"], rec["exit_code"] = round(time.monotonic() - ts, 2), code
                if kind == "TERM":
                    txt = cluster.log_text(i)
                    rec["drained"] = "shutdown: done" in txt
                    log(f"[{now():.1f} s] {name} exited {code} {rec['exit_s']} s after SIGTERM")
                if restart:
                    cluster.restart(i)
                    t1 = time.monotonic()
                    try:
                        R.wait_for(lambda: cluster.health(i)[0] == 200 or cluster.procs[i].poll() is not None, 600, 0.5)
                    except TimeoutError:
                        pass
                    rec["restart_ready_s"] = round(time.monotonic() - t1, 1) if cluster.health(i)[0] == 200 else None
                rec["end_t"] = now()
                if restart:
                    log(f"[{rec['end_t']:.1f} s] {name} restarted: ready after {rec.get('restart_ready_s')} s")
            th = threading.Thread(target=after_exit, daemon=True)
        th.start()
        self.workers.append(th)


def drive(cluster: ChaosCluster, participants: int, strokes: int, plan: list[tuple[str, int]], pause: float,
          hang: float, restart: bool, t0: float, log=print, clients=None) -> tuple[Chaos, list[ChaosParticipant]]:
    """Participants paint ``strokes`` each through the proxy; ``plan`` is [(fault, after K strokes)] with
    fault in KILL, TERM, STOP. A participant whose call fails (or hangs) reloads, as a browser would,
    up to 12 times."""
    ch = Chaos()
    lock = threading.Lock()
    ps = clients if clients is not None else [
        ChaosParticipant(cluster.url(), f"C{k:02d}", cluster.secret, cluster.folder, cluster.size, seed=k, hang=hang)
        for k in range(participants)]
    participants = len(ps)
    pending = sorted(plan, key=lambda f: f[1])
    fault_lock = threading.Lock()

    def now():
        return round(time.monotonic() - t0, 2)

    faults = Faults(cluster, ch, pause, restart, now, log, lambda: [(p.replica, p.n < strokes, p.code) for p in ps])

    def maybe_fault():
        with lock:
            due = [f for f in pending if ch.strokes >= f[1]]
            for f in due:
                pending.remove(f)
        for kind, after in due:
            with fault_lock:
                faults.inject(kind, after)

    def one(p: ChaosParticipant):
        tries, joined = 0, False
        while p.n < strokes or not joined:
            what = "join" if not joined else "stroke"
            on = p.replica
            t1 = time.monotonic()
            try:
                if not joined:
                    p.join()
                    joined = True
                else:
                    p.stroke()
            except Exception as exc:  # noqa: BLE001 - every failure is counted, with its participant
                msg = f"{type(exc).__name__}: {exc}" + (f" [{exc.cause}]" if getattr(exc, "cause", "") else "")
                hung = (isinstance(exc, TimeoutError) or "timed out" in msg.lower() or "TimeoutError" in msg
                        or time.monotonic() - t1 >= hang)  # told, but only when the client gave up waiting
                with lock:
                    rec = {"code": p.code, "replica": on, "t": now(), "sent_t": round(t1 - t0, 2), "event": what,
                           "told": told(msg),
                           "message": msg[:300], "waited_s": round(time.monotonic() - t1, 1)}
                    ch.failures.append(rec)
                    if hung:
                        ch.hung.append(rec)
                tries += 1
                if tries > 12:
                    with lock:
                        ch.unfinished.append(p.code)
                    return
                joined = False  # the reload: a fresh connection through the proxy, the same link
                time.sleep(min(0.5 * tries, 3))
                continue
            dt = time.monotonic() - t1
            with lock:
                if dt > hang:  # answered, but later than a participant waits (the join's requests each had the time-out)
                    ch.hung.append({"code": p.code, "replica": on, "t": now(), "sent_t": round(t1 - t0, 2),
                                    "event": what, "told": None, "message": f"answered after {dt:.1f} s",
                                    "waited_s": round(dt, 1)})
                if what == "join":
                    continue
                ch.strokes += 1
                ch.latencies.append(dt)
            maybe_fault()

    t1 = time.perf_counter()
    with cf.ThreadPoolExecutor(participants) as ex:
        list(ex.map(one, ps))
    ch.seconds = time.perf_counter() - t1
    faults.join(pause + 30)  # a restart still warming up after that is reported as not back
    return ch, ps


# -- what the log holds ------------------------------------------------------------------------------------
def square_at(mask: np.ndarray) -> tuple[int, int]:
    ys, xs = np.nonzero(mask)
    return int(ys.min()), int(xs.min())


def audit(url: str, ps: list[ChaosParticipant]) -> dict:
    """Acknowledged strokes lost or logged twice, and each participant's log replayed against the last
    image its client saw."""
    import sqlalchemy as sa

    from ic_zoo.session import Session
    from ic_zoo.study import db as D
    from ic_zoo.study.research import pick_study, rebuild

    eng = D.engine_for(url)
    out = {"acked": 0, "logged_strokes": 0, "lost": [], "duplicated": [], "unacked_logged": 0,
           "mismatches": [], "replayed": 0, "seq_gaps": [], "controls": 0, "controls_caught": 0}
    try:
        with eng.connect() as conn:
            sid = pick_study(eng, None)["id"]
            ids = {r.code: r.id for r in conn.execute(sa.select(D.participants_t.c.code, D.participants_t.c.id))}
            for p in ps:
                if p.code not in ids:
                    continue
                rows = [dict(r) for r in conn.execute(sa.select(D.interactions_t).where(
                    D.interactions_t.c.participant_id == ids[p.code]).order_by(D.interactions_t.c.seq)).mappings()]
                seqs = [r["seq"] for r in rows]
                if seqs != list(range(1, len(seqs) + 1)):
                    out["seq_gaps"].append(p.code)
                logged = [square_at(D.png_to_mask(r["mask_png"])) for r in rows if r["kind"] == "stroke"]
                out["acked"] += len(p.acked)
                out["logged_strokes"] += len(logged)
                out["lost"] += [f"{p.code}@{sq}" for sq in p.acked if sq not in logged]
                out["duplicated"] += [f"{p.code}@{sq}" for sq in set(logged) if logged.count(sq) > 1]
                out["unacked_logged"] += sum(1 for sq in set(logged) if sq not in p.acked)
                if p.seen is None:
                    continue
                events = [r for r in rows if r["task_id"] is not None]
                if not events:
                    continue
                task = events[-1]["task_id"]
                events = [r for r in events if r["task_id"] == task]
                payload = json.loads(next(r for r in events if r["kind"] == "stroke")["payload"]) \
                    if any(r["kind"] == "stroke" for r in events) else {}
                session = rebuild(lambda img: Session(img, pretrained=bool(payload.get("pretrained", True))),
                                  D.stored_image(conn, sid, task), events, lambda key: D.stored_image(conn, sid, key))
                out["replayed"] += 1
                img = np.asarray(session.modified)
                n_log = len(session.edits)
                diff = int(np.abs(img.astype(int) - p.seen.astype(int)).max()) if img.shape == p.seen.shape else -1
                if n_log != p.seen_n or diff != 0:
                    out["mismatches"].append({"code": p.code, "log_edits": n_log, "seen_edits": p.seen_n,
                                              "max_pixel_diff": diff})
                # the control: the same log less its last stroke must not match (the comparison can fail)
                last = max((k for k, r in enumerate(events) if r["kind"] == "stroke"), default=None)
                if last is not None:
                    short = rebuild(lambda img: Session(img, pretrained=bool(payload.get("pretrained", True))),
                                    D.stored_image(conn, sid, task), events[:last] + events[last + 1:],
                                    lambda key: D.stored_image(conn, sid, key))
                    out["controls"] += 1
                    out["controls_caught"] += int(not np.array_equal(np.asarray(short.modified), p.seen))
    finally:
        eng.dispose()
    return out


# -- the benchmark -----------------------------------------------------------------------------------------------
def classify_downs(downs: list[dict], faults: list[dict], pause: float, timing: dict) -> list[dict]:
    """The DOWN transitions no fault explains: a fault explains one DOWN of its replica between the fault
    and its end (SIGCONT, or the restarted replica's first ready answer) plus one check cycle."""
    grace = timing["fall"] * (timing["inter"] + timing["timeout_check"]) + timing["inter"]
    windows = [[f["replica"], f["t"], (f.get("end_t") or float("inf")) + grace, 1] for f in faults]
    false = []
    for d in downs:
        w = next((w for w in windows if w[0] == d["server"] and w[1] <= d["t"] <= w[2] and w[3] > 0), None)
        if w is None:
            false.append(d)
        else:
            w[3] -= 1
    return false


def run_chaos(folder: Path, server: str, replicas: int, participants: int, strokes: int, models, size: int,
              burn: int, pause: float | None, hang: float = 30.0, faults=("STOP", "KILL", "TERM"),
              restart: bool = True, log=print, app_users: int = 0, slow_every: int = 5) -> dict:
    cfg = (ROOT / "deploy" / "haproxy.cfg").read_text()
    timing = check_timing(cfg)
    if pause is None:
        pause = timing["fall"] * (timing["inter"] + timing["timeout_check"]) + timing["inter"] + 2
    total = participants * strokes
    plan = [(k, total * (j + 1) // (len(faults) + 1)) for j, k in enumerate(faults)]
    url = R.new_database(server)
    cluster = ChaosCluster(folder, replicas=replicas, db=url, proxy=True, models=models, size=size,
                           env={"IC_ZOO_DRAIN_S": "20"})
    # the comparison app's replicas (main-app users): the originals and the long jobs in the same PostgreSQL
    apps = ChaosCluster(folder / "app", replicas=replicas, db=url, proxy=True, models=models, size=size, study=False,
                        env={"IC_ZOO_DRAIN_S": "20", "IC_ZOO_IMAGE_STORE": url, "IC_ZOO_JOBS": url,
                             "IC_ZOO_JOBS_STALLED_S": "10"}) if app_users else None
    load = LoadSampler()
    app_result: dict = {}
    try:
        t_start = time.perf_counter()
        cluster.start(timeout=600)
        if apps is not None:
            apps.start(timeout=600)
        started = time.perf_counter() - t_start
        watch = DownWatch(cluster)
        watch.start()
        app_watch = DownWatch(apps) if apps is not None else None
        if app_watch is not None:
            app_watch.t0 = watch.t0
            app_watch.start()
        with Burners(burn):
            load.start()
            R.drive(cluster, min(3, participants), 1, prefix="W")  # warm-up
            th = None
            if apps is not None:
                images = sorted((ROOT / "examples" / "flower2d" / "images").glob("*.png"))
                users = [AppUser(apps.url(), f"U{k:02d}", apps.folder, images[k % len(images)], models, seed=100 + k,
                                 hang=hang, slow_every=slow_every) for k in range(app_users)]
                app_plan = [(k, app_users * strokes * (j + 1) // (len(faults) + 1)) for j, k in enumerate(faults)]

                def run_apps():
                    app_result["ch"], app_result["users"] = drive(apps, 0, strokes, app_plan, pause, hang, restart,
                                                                  watch.t0, log=lambda m: log("app " + m), clients=users)
                th = threading.Thread(target=run_apps, daemon=True)
                th.start()
            ch, ps = drive(cluster, participants, strokes, plan, pause, hang, restart, watch.t0, log=log)
            if th is not None:
                th.join()
            load.stop.set()
        time.sleep(1.0)
        for w in (watch, app_watch):
            if w is not None:
                w.stop.set()
                w.join(5)
    finally:
        cluster.closing = True
        cluster.stop()
        if apps is not None:
            apps.closing = True
            apps.stop()
    au = audit(url, ps)
    false = classify_downs(watch.downs, ch.faults, pause, timing)
    faulted_codes = {f["replica"]: set(f["codes"]) for f in ch.faults}
    per_fault, in_flight_ids = [], set()
    for f in ch.faults:
        codes = set(f["codes"])
        mine = [x for x in ch.failures if x["code"] in codes and x["t"] >= f["t"]]
        # an event sent before the fault to the faulted replica and failed after it: its stream broke (or it
        # went unanswered); no server can answer it with a sentence, the page's watchdog shows one at once
        flight = [x for x in mine if x["sent_t"] < f["t"] and x["replica"] == f["replica"] and not x["told"]]
        in_flight_ids.update(id(x) for x in flight)
        fin = {p.code for p in ps if p.code in codes and p.n >= strokes}
        down = next((d["t"] for d in watch.downs if d["server"] == f["replica"] and d["t"] >= f["t"]), None)
        per_fault.append({**{k: v for k, v in f.items() if k != "codes"}, "hit": len({x["code"] for x in mine}),
                          "told": len({x["code"] for x in mine if x["told"]}),
                          "in_flight": len({x["code"] for x in flight}), "finished": len(fin),
                          "down_after_s": round(down - f["t"], 1) if down is not None else None})
    untold = [x for x in ch.failures if not x["told"] and x not in ch.hung and id(x) not in in_flight_ids]
    lat = sorted(ch.latencies) or [float("nan")]
    doc = {"replicas": replicas, "participants": participants, "strokes_each": strokes, "models": list(models),
           "size": size, "burners": burn, "cores": os.cpu_count(), "pause_s": pause, "hang_s": hang,
           "check": timing, "restart": restart, "start_s": round(started, 1), "seconds": round(ch.seconds, 1),
           "strokes": ch.strokes, "p50_ms": round(1000 * lat[len(lat) // 2], 0),
           "p95_ms": round(1000 * lat[min(len(lat) - 1, int(0.95 * len(lat)))], 0),
           "load_avg_max": round(max(load.samples, default=0.0), 1),
           "load_avg_mean": round(sum(load.samples) / len(load.samples), 1) if load.samples else None,
           "faults": per_fault, "downs": watch.downs, "false_downs": false, "stats_errors": watch.errors,
           "hung": ch.hung, "failures": len(ch.failures), "told": sum(1 for x in ch.failures if x["told"]),
           "untold": untold[:20], "untold_count": len(untold),
           "untold_kinds": dict(Counter(x["message"].split(":")[0] for x in untold)),
           "in_flight_broken": len(in_flight_ids), "failure_log": ch.failures[:200], "unfinished": ch.unfinished,
           "finished": sum(1 for p in ps if p.n >= strokes), "reloads": sum(max(0, p.joins - 1) for p in ps),
           "acked": au["acked"], "logged_strokes": au["logged_strokes"], "lost": au["lost"],
           "duplicated": au["duplicated"], "unacked_logged": au["unacked_logged"], "seq_gaps": au["seq_gaps"],
           "replayed": au["replayed"], "mismatches": au["mismatches"],
           "controls": au["controls"], "controls_caught": au["controls_caught"],
           "sigterm_exit_s": [f.get("exit_s") for f in ch.faults if f["kind"] == "TERM"],
           "faulted_participants": {k: len(v) for k, v in faulted_codes.items()}}
    if apps is not None and "ch" in app_result:
        ach, users = app_result["ch"], app_result["users"]
        alat = sorted(ach.latencies) or [float("nan")]
        doc["app"] = {"users": len(users), "strokes_each": strokes, "slow_every": slow_every,
                      "faults": [{k: v for k, v in f.items() if k != "codes"} for f in ach.faults],
                      "downs": app_watch.downs, "false_downs": classify_downs(app_watch.downs, ach.faults, pause, timing),
                      "hung": ach.hung, "failures": len(ach.failures), "told": sum(1 for x in ach.failures if x["told"]),
                      "untold": [x for x in ach.failures if not x["told"] and x not in ach.hung][:20],
                      "failure_log": ach.failures[:200], "finished": sum(1 for u in users if u.n >= strokes),
                      "reloads": sum(max(0, u.joins - 1) for u in users), "unfinished": ach.unfinished,
                      "p50_ms": round(1000 * alat[len(alat) // 2], 0),
                      "p95_ms": round(1000 * alat[min(len(alat) - 1, int(0.95 * len(alat)))], 0),
                      **audit_apps(url, users)}
    return doc


def table(doc: dict) -> str:
    """The README's tables for one chaos run: each fault, then what the participants and the log show."""
    r = doc["run"] if "run" in doc else doc
    lines = ["| fault | replica | after strokes | participants on it (still painting) | met a failure | told in one sentence "
             "| an event in flight broke | finished | HAProxy DOWN after | exit |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for x in r["faults"]:
        label = {"KILL": "kill -9", "TERM": "SIGTERM", "STOP": f"SIGSTOP {r['pause_s']:.0f} s"}[x["kind"]]
        down = "-" if x.get("down_after_s") is None else f"{x['down_after_s']:.0f} s"
        ex = {"KILL": "killed", "STOP": "SIGCONT"}.get(x["kind"], f"{x.get('exit_code')} after {x.get('exit_s')} s")
        lines.append(f"| {label} | {x['replica']} | {x['after_strokes']} | {x['pinned']} ({x['active']}) | {x['hit']} | "
                     f"{x['told']} | "
                     f"{x['in_flight']} | {x['finished']} | {down} | {ex} |")
    lines += ["",
              f"| {r['replicas']} replicas, {r['participants']} participants x {r['strokes_each']} strokes, "
              f"{r['burners']} CPU burners on {r['cores']} cores (load average up to {r['load_avg_max']}) | measured |",
              "|---|---|",
              f"| HAProxy DOWN transitions: all / false (a replica not faulted) | {len(r['downs'])} / "
              f"{len(r['false_downs'])} |",
              f"| hung clients (no answer nor sentence within {r['hang_s']:.0f} s) | {len(r['hung'])} |",
              f"| failed calls: told in a sentence / in flight at a fault / other, without a sentence | {r['told']} / "
              f"{r['in_flight_broken']} / {r['untold_count']} |",
              f"| participants who finished every stroke | {r['finished']} of {r['participants']} |",
              f"| acknowledged strokes: logged / lost / duplicated | {r['acked'] - len(r['lost'])} of {r['acked']} / "
              f"{len(r['lost'])} / {len(r['duplicated'])} |",
              f"| each participant's log replayed vs the last image its client saw: mismatches | "
              f"{len(r['mismatches'])} of {r['replayed']} |",
              f"| stroke p50 / p95 (ms) | {r['p50_ms']:.0f} / {r['p95_ms']:.0f} |"]
    a = r.get("app")
    if a:
        faults = ", ".join(f"{x['kind']} {x['replica']}" for x in a["faults"])
        lines += ["",
                  f"| the comparison app: {r['replicas']} replicas, {a['users']} users x {a['strokes_each']} strokes, "
                  f"slow maps (a job) after every {a['slow_every']}th; faults: {faults} | measured |",
                  "|---|---|",
                  f"| HAProxy DOWN transitions: all / false | {len(a['downs'])} / {len(a['false_downs'])} |",
                  f"| hung clients (no answer nor sentence within {r['hang_s']:.0f} s) | {len(a['hung'])} |",
                  f"| failed calls: told in a sentence / other | {a['told']} / {a['failures'] - a['told']} |",
                  f"| users who finished every stroke (reloads: /restore with their record) | {a['finished']} of "
                  f"{a['users']} ({a['reloads']}) |",
                  f"| acknowledged strokes: in the last record / lost / duplicated | {a['acked'] - len(a['lost'])} of "
                  f"{a['acked']} / {len(a['lost'])} / {len(a['duplicated'])} |",
                  f"| each user's record rebuilt vs the last canvas it saw: mismatches (control caught) | "
                  f"{len(a['mismatches'])} of {a['rebuilt']} ({a['controls_caught']} of {a['controls']}) |",
                  f"| slow-maps jobs: asked / answered / in the queue, done / started again elsewhere | "
                  f"{a['slow_asked']} / {a['slow_answered']} / {a['jobs_done']} of {a['jobs']} / {a['jobs_restarted']} |",
                  f"| stroke p50 / p95 (ms) | {a['p50_ms']:.0f} / {a['p95_ms']:.0f} |"]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--participants", type=int, default=12)
    p.add_argument("--strokes", type=int, default=10)
    p.add_argument("--preset", choices=sorted(R.PRESETS), default="flower2d")
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--burn", type=int, default=None, help="CPU burner processes (default: 2 per core)")
    p.add_argument("--pause", type=float, default=None, help="SIGSTOP seconds (default: HAProxy's time to DOWN + 2)")
    p.add_argument("--hang", type=float, default=30.0)
    p.add_argument("--faults", default="STOP,KILL,TERM", help="the faults, in order, at equal stroke intervals")
    p.add_argument("--no-restart", action="store_true")
    p.add_argument("--app-users", type=int, default=0, help="users of the comparison app on their own replicas "
                   "(as many as the study's, behind their own HAProxy; the same PostgreSQL holds their originals "
                   "and their slow-maps jobs)")
    p.add_argument("--slow-every", type=int, default=5, help="an app user asks for slow maps after every N-th stroke")
    p.add_argument("--json", default=None)
    p.add_argument("--table", default=None, metavar="JSON", help="print the table of a JSON and exit")
    args = p.parse_args(argv)
    if args.table:
        print(table(json.loads(Path(args.table).read_text())))
        return 0
    import torch

    burn = args.burn if args.burn is not None else 2 * (os.cpu_count() or 1)
    try:
        with R.postgres() as server, tempfile.TemporaryDirectory(prefix="ic_zoo_chaos_") as tmp:
            r = run_chaos(Path(tmp), server, args.replicas, args.participants, args.strokes, R.PRESETS[args.preset],
                          args.size, burn, args.pause, args.hang, tuple(args.faults.split(",")),
                          not args.no_restart, log=lambda s: print(s, file=sys.stderr, flush=True),
                          app_users=args.app_users, slow_every=args.slow_every)
    except RuntimeError as exc:
        print(f"chaos: {exc}", file=sys.stderr)
        return 2
    doc = {"machine": {"cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
           "command": "python benchmarks/chaos.py " + " ".join(argv if argv is not None else sys.argv[1:]), "run": r}
    print(table(doc))
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1, default=str))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
