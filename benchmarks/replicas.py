"""Replicas on loopback: the container's entrypoint (``python app.py``) as N processes in study mode, the
project's HAProxy config (deploy/haproxy.cfg, cookie affinity) in front, one PostgreSQL log, and
gradio_client participants painting through the proxy. Used by tests/test_replicas.py, and run as a
benchmark:

    python benchmarks/replicas.py --replicas 3 --participants 30 --strokes 15 --json benchmarks/replicas_cpu.json
    python benchmarks/replicas.py --capacity --json benchmarks/capacity_cpu.json   # the README's capacity table
    python benchmarks/replicas.py --table benchmarks/capacity_cpu.json             # the table, from the JSON

Each participant joins by a signed link (IC_ZOO_STUDY_SECRET), then sends strokes one after another
(each stroke sends back the canvas the previous answer gave), as fast as the answers come. With
``--kill-after K``, one replica (the one holding most participants) is killed with -9 after K strokes:
its participants do what a browser does on reload, a new connection through the proxy and the same
link, and resume from the log on another replica. Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import glob
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ENTRYPOINT = ["app.py"]  # the Dockerfile's CMD: python app.py (all settings from the environment)
SECRET = "loopback-link-secret"
COOKIE = "ICZOO_REPLICA"
PRESETS = {"flower2d": ["flower2d/squeezenet", "flower2d/resnet", "flower2d/vit"],
           "lite": ["tf_efficientnet_lite0.in1k", "tf_efficientnet_lite1.in1k", "tf_efficientnet_lite2.in1k"]}
SLOW_FILL = '''"""A test inpainter: Telea after a pause (a stroke that is still running when SIGTERM comes)."""
import os, time
from ic_zoo import register
from ic_zoo.inpainters.opencv_inpaint import Telea

@register("inpainter", "slow-telea", description="Telea after IC_ZOO_TEST_SLOW_S seconds or once IC_ZOO_TEST_GATE exists (tests only)")
class SlowTelea(Telea):

    def _inpaint(self, image, mask):
        gate = os.environ.get("IC_ZOO_TEST_GATE")
        if gate:  # a test holds the stroke open: "<gate>.started" says it began; it ends once <gate> exists
            open(gate + ".started", "w").close()
            t0 = time.monotonic()
            while not os.path.exists(gate) and time.monotonic() - t0 < 300:
                time.sleep(0.05)
        else:
            time.sleep(float(os.environ.get("IC_ZOO_TEST_SLOW_S", "2")))
        return super()._inpaint(image, mask)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout: float, step: float = 0.1) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return True
        time.sleep(step)
    raise TimeoutError(f"not within {timeout} s")


# -- PostgreSQL on loopback ------------------------------------------------------------------------------
def pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    exe = shutil.which("initdb")
    return Path(exe).parent if exe else None


@contextlib.contextmanager
def postgres(max_connections: int = 200):
    """A throwaway PostgreSQL cluster in a temporary folder (trust auth, loopback only): yields its URL
    without a database name. RuntimeError (one sentence) where none can be started."""
    bindir = pg_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found; install Debian's "
                           "'postgresql' package (.ci/run does).")
    data = Path(tempfile.mkdtemp(prefix="ic_zoo_pg_"))
    prefix = []
    if os.geteuid() == 0:  # the server refuses to run as root
        if shutil.which("runuser") is None:
            raise RuntimeError("running as root without runuser: cannot start PostgreSQL as another user.")
        shutil.chown(data, "postgres", "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    port = free_port()

    def run(*cmd):
        return subprocess.run(prefix + [str(c) for c in cmd], capture_output=True, text=True, timeout=120)

    try:
        r = run(bindir / "initdb", "-D", data / "db", "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        if r.returncode != 0:
            raise RuntimeError(f"initdb failed, cannot start PostgreSQL here: {r.stderr.strip().splitlines()[-1:]}")
        opts = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c max_connections={max_connections}"
        r = run(bindir / "pg_ctl", "-D", data / "db", "-o", opts, "-l", data / "server.log", "-w", "-t", "60", "start")
        if r.returncode != 0:
            log = (data / "server.log").read_text()[-500:] if (data / "server.log").exists() else r.stderr
            raise RuntimeError(f"PostgreSQL did not start here: {log.strip()}")
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}"
        finally:
            run(bindir / "pg_ctl", "-D", data / "db", "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(data, ignore_errors=True)


def new_database(server: str) -> str:
    import uuid

    import sqlalchemy as sa

    name = f"t_{uuid.uuid4().hex[:10]}"
    eng = sa.create_engine("postgresql+psycopg://" + server.split("://", 1)[1] + "/postgres",
                           isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    eng.dispose()
    return f"{server}/{name}"


def rows(url: str) -> list[dict]:
    """Every logged interaction with its participant's code, in commit order."""
    import sqlalchemy as sa

    from ic_zoo.study import db as D

    eng = D.engine_for(url)
    q = sa.select(D.interactions_t, D.participants_t.c.code).join(D.participants_t)
    with eng.connect() as conn:
        out = [dict(r) for r in conn.execute(q.order_by(D.interactions_t.c.id)).mappings()]
    eng.dispose()
    return out


def ordinals(url: str) -> dict[str, int]:
    import sqlalchemy as sa

    from ic_zoo.study import db as D

    eng = D.engine_for(url)
    with eng.connect() as conn:
        out = {r.code: r.ordinal for r in conn.execute(sa.select(D.participants_t.c.code, D.participants_t.c.ordinal))}
    eng.dispose()
    return out


# -- the study and its participants -----------------------------------------------------------------------
def study_file(folder: Path, models, size: int, inpainter: str = "telea", tasks: int = 1, name: str = "study",
               title: str = "Loopback study", conditions: int = 0) -> Path:
    """A small study over held-out Flower2D flowers (or the Lite trio on the same images), in
    ``folder/name``: one choice question per task (petals or leaf); with ``conditions``, that many
    between-subject conditions (c0, c1, ...: maps shown, hidden, random in turn)."""
    from PIL import Image

    from ic_zoo.flower2d import generator as g

    d = folder / name
    d.mkdir(parents=True, exist_ok=True)
    lines = [f"title: {title}", "consent: Agree?", "seed: 3", "counterbalance: latin",
             "defaults: {models: [" + ", ".join(models) + f"], explainer: gradcam, inpainter: {inpainter}}}",
             "tasks:"]
    for i in range(tasks):
        p = g.sample_params("double-12c", 0, "test", 8100 + i)
        img, _ = g.render(p, size)
        Image.fromarray(img).save(d / f"f{i}.png")
        lines += [f"  - id: t{i}", f"    image: f{i}.png", "    questions:",
                  "      - {id: part, text: \"Which part?\", type: choice, choices: [petals, leaf]}"]
    if conditions:
        lines.append("conditions:")
        lines += [f"  - {{name: c{k}, maps: {('shown', 'hidden', 'random')[k % 3]}}}" for k in range(conditions)]
    (d / "study.yaml").write_text("\n".join(lines) + "\n")
    return d / "study.yaml"


def join_status(url: str) -> tuple[int, str]:
    """(HTTP status, detail) of a bare event sent to Gradio's queue (what a new event gets now)."""
    body = json.dumps({"data": [], "fn_index": 0, "session_hash": "probe", "event_data": None,
                       "trigger_id": None}).encode()
    req = urllib.request.Request(url + "gradio_api/queue/join", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read()).get("event_id", "")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}").get("detail", "")


def strokes_in(out) -> int:
    """The stroke count the page shows (its status line: "N stroke(s) ...")."""
    for o in out:
        if isinstance(o, str):
            m = re.search(r"(\d+) stroke\(s\)", o)
            if m:
                return int(m.group(1))
    raise AssertionError(f"no stroke count in the answer: {[o for o in out if isinstance(o, str)][:3]}")


def layer_png(shape, mask: np.ndarray, path) -> str:
    """The editor's stroke layer: ``mask`` painted red on a transparent layer, saved as a PNG."""
    from PIL import Image

    a = np.zeros(tuple(shape[:2]) + (4,), np.uint8)
    a[mask] = (255, 0, 0, 255)
    Image.fromarray(a).save(path)
    return str(path)


def stroke_layer(shape, seed: int, path: Path) -> Path:
    """A small red square at a random place: one stroke."""
    rng = np.random.default_rng(seed)
    m = np.zeros(tuple(shape[:2]), bool)
    y, x = rng.integers(0, min(shape[:2]) - 8, 2)
    m[y:y + 6, x:x + 6] = True
    layer_png(shape, m, path)
    return path


class Participant:
    """One participant through one URL, with gradio_client (which keeps the proxy's affinity cookie)."""

    def __init__(self, url: str, code: str, secret: str | None, folder: Path, size: int = 96, seed: int = 0):
        self.url, self.code, self.secret, self.folder, self.size = url, code, secret, folder, size
        self.rng = np.random.default_rng(seed)
        self.client = None
        self.n = 0
        self.bg = None
        self.joins = 0

    def join(self) -> list:
        """Open the link (again): consent, or resume from the log after a reload."""
        from gradio_client import Client

        from ic_zoo.study.security import issue

        self.client = Client(self.url, verbose=False, download_files=False, httpx_kwargs={"timeout": 90})
        link = issue(self.secret, self.code) if self.secret else self.code
        out = self.client.predict(0, link, api_name="/consent")
        canvas = next(o for o in out if isinstance(o, dict) and o.get("background"))
        self.bg = canvas["background"]
        self.n = strokes_in(out)
        self.joins += 1
        return out

    @property
    def replica(self) -> str | None:
        return (self.client.cookies or {}).get(COOKIE) if self.client is not None else None

    def _payload(self):
        from gradio_client import handle_file

        path = stroke_layer((self.size, self.size), int(self.rng.integers(1 << 30)),
                            self.folder / f"{self.code}_{self.n % 2}.png")
        bg = self.bg["path"] if isinstance(self.bg, dict) else self.bg
        return {"background": handle_file(str(bg)), "layers": [handle_file(str(path))], "composite": None}

    def stroke(self) -> list:
        out = self.client.predict(0, self._payload(), api_name="/study_edit")
        self._took(out)
        return out

    def stroke_async(self):
        return self.client.submit(0, self._payload(), api_name="/study_edit")

    def _took(self, out) -> None:
        self.n = strokes_in(out)
        self.bg = out[0]["background"]


# -- the cluster ------------------------------------------------------------------------------------------
class Cluster:
    """N replicas (``python app.py`` with the container's environment) and HAProxy with deploy/haproxy.cfg."""

    def __init__(self, folder: Path, replicas: int = 3, db: str | None = None, proxy: bool = True,
                 models=("flower2d/squeezenet",), size: int = 96, inpainter: str = "telea", env=None,
                 secret: str | None = SECRET, study: bool = True, conditions: int = 0):
        self.folder, self.n, self.db, self.use_proxy = Path(folder), int(replicas), db, proxy
        self.study_mode, self.models = study, list(models)
        self.size, self.secret = size, secret
        self.folder.mkdir(parents=True, exist_ok=True)
        plugins = self.folder / "plugins"
        plugins.mkdir(exist_ok=True)
        (plugins / "slow_fill.py").write_text(SLOW_FILL)
        self.study = study_file(self.folder, list(models), size, inpainter, conditions=conditions)
        self.ports = [free_port() for _ in range(self.n)]
        self.proxy_port = free_port()
        self.env = dict(env or {})
        self.procs: list[subprocess.Popen | None] = []
        self.logs: list[Path] = []
        self.proxy = None
        self.killed: int | None = None

    def replica_env(self, i: int) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("IC_ZOO_", "GRADIO_"))}
        env.update(PYTHONUNBUFFERED="1", GRADIO_ANALYTICS_ENABLED="False", GRADIO_SERVER_NAME="127.0.0.1",
                   GRADIO_SERVER_PORT=str(self.ports[i]), IC_ZOO_REPLICA=f"r{i + 1}", IC_ZOO_STUDY=str(self.study),
                   IC_ZOO_STUDY_DB=self.db or f"sqlite:///{self.folder / 'study.sqlite'}",
                   IC_ZOO_PLUGINS_DIR=str(self.folder / "plugins"), IC_ZOO_BROWSER_SECRET="loopback-browser-secret",
                   IC_ZOO_STUDY_NEW_PER_MIN="1000", IC_ZOO_DRAIN_S="20", OMP_NUM_THREADS="1")
        if self.secret:
            env["IC_ZOO_STUDY_SECRET"] = self.secret
        if not self.study_mode:  # the comparison app: the models from the environment, no log
            for k in ("IC_ZOO_STUDY", "IC_ZOO_STUDY_DB", "IC_ZOO_STUDY_SECRET"):
                env.pop(k)
            env["IC_ZOO_MODELS"] = ",".join(self.models)
        for k in ("IC_ZOO_CACHE", "HF_HOME", "HF_HUB_OFFLINE"):
            if k in os.environ:
                env[k] = os.environ[k]
        env.update(self.env)
        return env

    def url(self, i: int | None = None) -> str:
        return f"http://127.0.0.1:{self.proxy_port if i is None else self.ports[i]}/"

    def health(self, i: int | None = None) -> tuple[int | None, dict]:
        try:
            with urllib.request.urlopen(self.url(i) + "healthz", timeout=2) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            try:
                return e.code, json.loads(e.read() or b"{}")
            except ValueError:
                return e.code, {}
        except (OSError, ValueError):
            return None, {}

    def start(self, record_health: bool = False, timeout: float = 240) -> list[list]:
        """Start every replica (and the proxy), wait until each /healthz says 200; with
        ``record_health`` the (code, body) seen while waiting, per replica."""
        for i in range(self.n):
            self.logs.append(self.folder / f"r{i + 1}.log")
            f = open(self.logs[i], "w")
            self.procs.append(subprocess.Popen([sys.executable] + ENTRYPOINT, cwd=str(ROOT), env=self.replica_env(i),
                                               stdout=f, stderr=subprocess.STDOUT))
            f.close()
        seen: list[list] = [[] for _ in range(self.n)]
        t0 = time.monotonic()
        ready = set()
        while len(ready) < self.n:
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"replicas {sorted(set(range(self.n)) - ready)} did not become ready in "
                                   f"{timeout:.0f} s: {self.log_text(min(set(range(self.n)) - ready))[-800:]}")
            for i in set(range(self.n)) - ready:
                if self.procs[i].poll() is not None:
                    raise RuntimeError(f"replica r{i + 1} exited with {self.procs[i].returncode}: "
                                       f"{self.log_text(i)[-800:]}")
                code, body = self.health(i)
                if record_health and (not seen[i] or seen[i][-1] != (code, body)):
                    seen[i].append((code, body))
                if code == 200:
                    ready.add(i)
            time.sleep(0.05 if record_health else 0.3)
        if self.use_proxy:
            self.start_proxy()
        return seen

    def start_proxy(self) -> None:
        haproxy = shutil.which("haproxy")
        if haproxy is None:
            raise RuntimeError("haproxy is not installed (.ci/run installs Debian's haproxy package).")
        env = dict(os.environ, IC_ZOO_PROXY_BIND=f"127.0.0.1:{self.proxy_port}")
        for i in range(3):  # the config names three servers; unused ones point at a closed port
            env[f"IC_ZOO_REPLICA_{i + 1}"] = f"127.0.0.1:{self.ports[i] if i < self.n else free_port()}"
        f = open(self.folder / "haproxy.log", "w")
        self.proxy = subprocess.Popen([haproxy, "-db", "-f", str(ROOT / "deploy" / "haproxy.cfg")], env=env,
                                      stdout=f, stderr=subprocess.STDOUT)
        f.close()
        wait_for(lambda: self.health(None)[0] == 200, 30)

    def signal(self, i: int, name: str) -> None:
        self.procs[i].send_signal(getattr(signal, "SIG" + name))
        if name == "KILL":
            self.killed = i

    def wait(self, i: int, timeout: float) -> int:
        return self.procs[i].wait(timeout)

    def log_text(self, i: int) -> str:
        return self.logs[i].read_text(errors="replace") if i < len(self.logs) and self.logs[i].exists() else ""

    def logged_per_replica(self) -> dict[str, int]:
        """Strokes each replica logged, counted in its own log."""
        return {f"r{i + 1}": len(re.findall(r": stroke logged", self.log_text(i))) for i in range(self.n)}

    def rss_mb(self) -> dict[str, float]:
        out = {}
        for i, p in enumerate(self.procs):
            try:
                with open(f"/proc/{p.pid}/status") as f:
                    out[f"r{i + 1}"] = next(int(ln.split()[1]) / 1024 for ln in f if ln.startswith("VmRSS:"))
            except (OSError, StopIteration):
                pass
        return out

    def stop(self) -> None:
        for p in self.procs + [self.proxy]:
            if p is not None and p.poll() is None:
                p.terminate()
        for p in self.procs + [self.proxy]:
            if p is not None:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(10)


@dataclass
class Run:
    strokes: int = 0
    seconds: float = 0.0
    latencies: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    messages: list = field(default_factory=list)
    killed: str | None = None
    moved: set = field(default_factory=set)
    per_replica_logged: dict = field(default_factory=dict)
    pinned: dict = field(default_factory=dict)


def drive(cluster: Cluster, participants: int, strokes: int, kill_after: int | None = None,
          prefix: str = "P") -> Run:
    """``participants`` x ``strokes`` through the proxy; with ``kill_after``, kill -9 the replica holding
    most participants once that many strokes are answered. A participant whose replica was killed
    opens the link again (a reload) and resumes; any other failure is an error."""
    run = Run()
    lock = threading.Lock()
    ps = [Participant(cluster.url(), f"{prefix}{k:02d}", cluster.secret, cluster.folder, cluster.size, seed=k)
          for k in range(participants)]
    killed_cookie: list[str] = []

    def maybe_kill():
        with lock:
            if kill_after is None or killed_cookie or run.strokes < kill_after:
                return
            held: dict[str, int] = {}
            for p in ps:
                if p.replica:
                    held[p.replica] = held.get(p.replica, 0) + 1
            victim = max(sorted(held), key=held.get)
            killed_cookie.append(victim)
            run.killed = victim
            run.pinned = held
        cluster.signal(int(victim[1:]) - 1, "KILL")

    def one(p: Participant):
        try:
            p.join()
        except Exception as exc:  # noqa: BLE001 - every failure is reported, with its participant
            with lock:
                run.errors.append(f"{p.code} join: {type(exc).__name__}: {exc}")
            return
        failures = 0
        while p.n < strokes:
            t0 = time.perf_counter()
            try:
                out = p.stroke()
            except Exception as exc:  # noqa: BLE001
                msg = f"{type(exc).__name__}: {exc}"
                with lock:
                    run.messages.append(msg)
                    on_killed = bool(killed_cookie) and p.replica == killed_cookie[0]
                if not on_killed or failures >= 3:
                    with lock:
                        run.errors.append(f"{p.code} stroke {p.n + 1} on {p.replica}: {msg}")
                    return
                failures += 1
                with lock:
                    run.moved.add(p.code)
                time.sleep(0.5 * failures)
                try:
                    p.join()  # the reload: a fresh connection through the proxy, the same link
                except Exception as exc2:  # noqa: BLE001
                    with lock:
                        run.messages.append(str(exc2))
                        if failures >= 3:
                            run.errors.append(f"{p.code} resume: {type(exc2).__name__}: {exc2}")
                            return
                continue
            dt = time.perf_counter() - t0
            with lock:
                run.latencies.append(dt)
                run.strokes += 1
                run.messages += [o for o in out if isinstance(o, str)][:1]
            maybe_kill()

    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(participants) as ex:
        list(ex.map(one, ps))
    run.seconds = time.perf_counter() - t0
    run.per_replica_logged = cluster.logged_per_replica()
    return run


def summary(run: Run) -> dict:
    lat = sorted(run.latencies) or [float("nan")]
    q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))]  # noqa: E731
    return {"strokes": run.strokes, "seconds": round(run.seconds, 2),
            "edits_per_s": round(run.strokes / run.seconds, 2) if run.seconds else None,
            "p50_ms": round(1000 * statistics.median(lat), 1), "p95_ms": round(1000 * q(0.95), 1),
            "errors": len(run.errors), "per_replica_logged": run.per_replica_logged,
            "killed": run.killed, "moved": len(run.moved)}


# -- the benchmark ----------------------------------------------------------------------------------------
def measure(folder: Path, server: str, replicas: int, participants: int, strokes: int, models, size: int,
            kill_after: int | None, log=print) -> dict:
    cluster = Cluster(folder, replicas=replicas, db=new_database(server), proxy=True, models=models, size=size)
    try:
        t0 = time.perf_counter()
        cluster.start()
        started = time.perf_counter() - t0
        drive(cluster, min(4, participants), 2, prefix="W")  # warm-up: first calls compile and allocate
        run = drive(cluster, participants, strokes, kill_after=kill_after)
        rss = cluster.rss_mb()
    finally:
        cluster.stop()
    out = {"replicas": replicas, "participants": participants, "strokes_each": strokes, "models": list(models),
           "size": size, "start_s": round(started, 1), "rss_mb": rss, **summary(run)}
    log(f"{replicas} replica(s), {participants} x {strokes}, {len(models)} model(s): {out['edits_per_s']} edits/s, "
        f"p50 {out['p50_ms']} ms, p95 {out['p95_ms']} ms, errors {out['errors']}, per replica {out['per_replica_logged']}")
    return out


def capacity_table(doc: dict) -> str:
    """The README's capacity table: edits/s in all, per replica and per core, and how many participants
    painting one stroke every 5 s the run's replicas serve at 70 % of the measured rate."""
    cores = doc["machine"]["cores"]
    lines = [f"| models | replicas on {cores} cores | participants | edits/s | edits/s per replica | edits/s per core "
             "| p50 / p95 stroke (ms) | participants at 1 stroke / 5 s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in doc["runs"]:
        eps = r["edits_per_s"] or 0.0
        lines.append(f"| {r['label']} | {r['replicas']} | {r['participants']} | {eps:.1f} | {eps / r['replicas']:.1f} | "
                     f"{eps / cores:.1f} | {r['p50_ms']:.0f} / {r['p95_ms']:.0f} | {int(eps * 5 * 0.7)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--participants", type=int, default=30)
    p.add_argument("--strokes", type=int, default=15)
    p.add_argument("--preset", choices=sorted(PRESETS), default="flower2d")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--kill-after", type=int, default=None)
    p.add_argument("--capacity", action="store_true",
                   help="the capacity table: 1 and 3 replicas, the Flower2D trio and the EfficientNet-Lite trio")
    p.add_argument("--json", default=None)
    p.add_argument("--table", default=None, metavar="JSON", help="print the capacity table of a JSON and exit")
    args = p.parse_args(argv)
    if args.table:
        print(capacity_table(json.loads(Path(args.table).read_text())))
        return 0
    import torch

    doc = {"machine": {"cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
           "runs": []}
    plan = ([(args.replicas, args.preset, args.kill_after)] if not args.capacity else
            [(1, "flower2d", None), (3, "flower2d", None), (1, "lite", None), (3, "lite", None)])
    try:
        with postgres() as server:
            for replicas, preset, kill in plan:
                with tempfile.TemporaryDirectory(prefix="ic_zoo_replicas_") as tmp:
                    r = measure(Path(tmp), server, replicas, args.participants, args.strokes, PRESETS[preset],
                                args.size, kill, log=lambda s: print(s, file=sys.stderr, flush=True))
                r["label"] = {"flower2d": "Flower2D trio", "lite": "EfficientNet-Lite0/1/2"}[preset]
                doc["runs"].append(r)
    except RuntimeError as exc:
        print(f"replicas: {exc}", file=sys.stderr)
        return 2
    print(capacity_table(doc))
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
