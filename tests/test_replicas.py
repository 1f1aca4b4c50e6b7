"""Beyond one machine: the container's entrypoint as 3 replicas behind the project's HAProxy config
(cookie affinity), one PostgreSQL log, gradio_client participants through the proxy, and a replica
killed with -9 in the middle; the health endpoint and the graceful shutdown on SIGTERM; the Dockerfile
and the Kubernetes manifests linted and validated against their schemas.

The suite drives 30 participants x 15 strokes (about 80 s on 2 cores; IC_ZOO_REPLICA_LOAD=PxS for
another form); benchmarks/replicas.py is the measured form (throughput, p50 / p95 stroke latency)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ["IC_ZOO_APP_NO_DEMO"] = "1"
from ic_zoo.app import serve  # noqa: E402
from ic_zoo.app.study.ui import MOVED as STUDY_MOVED  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
sys.path.insert(0, str(ROOT / "benchmarks"))
import replicas as R  # noqa: E402  (the loopback cluster, shared with the benchmark)

LOAD = tuple(int(v) for v in os.environ.get("IC_ZOO_REPLICA_LOAD", "30x15").split("x"))


# -- the deployment files --------------------------------------------------------------------------------
def _bin(name):
    exe = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(exe).exists():
        pytest.skip(f"{name} is not installed (requirements-dev.txt has it)")
    return exe


def test_the_dockerfile_lints_clean_and_runs_the_tested_entrypoint(tmp_path):
    hadolint = _bin("hadolint")
    r = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    text = (ROOT / "Dockerfile").read_text()
    cmd = re.search(r'^CMD (\[.*\])$', text, re.M).group(1)
    assert cmd == '["python", "app.py"]' and R.ENTRYPOINT == ["app.py"]  # what the loopback test runs
    assert re.search(r"^USER 10001", text, re.M), "the app runs as a non-root user"
    assert "EXPOSE 7860" in text and serve.HEALTH_PATH in text
    # the linter does lint: a Dockerfile with the usual mistakes fails
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\nCMD python app.py\n")
    r = subprocess.run([hadolint, str(bad)], capture_output=True, text=True)
    assert r.returncode != 0 and "DL3007" in r.stdout


def _docker_ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule for the patterns used here: a path relative to the build context is
    excluded by the last pattern that matches it or one of its parent folders ('**' is any number of
    folders, '!' re-includes)."""
    import fnmatch

    def match(pat, p):
        rx = fnmatch.translate(pat.replace("**/", "\x00")).replace("\x00", "(?:.*/)?")
        return re.match(rx, p) is not None

    parts, out = path.split("/"), False
    for line in patterns:
        neg, pat = line.startswith("!"), line.lstrip("!").strip("/")
        if any(match(pat, "/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            out = not neg
    return out


def test_the_image_build_leaves_out_secrets_and_local_state():
    """`COPY . .` copies the build context: the deploy/.env that the README has users write (and any
    other .env) must never enter the image's layers, while the code and requirements must."""
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [ln for ln in lines if ln and not ln.startswith("#")]
    for secret in ("deploy/.env", ".env", "prod.env", "deploy/staging.env", "study.sqlite", "study.sqlite-wal",
                   ".git/config", "ic_zoo/__pycache__/x.pyc"):
        assert _docker_ignored(secret, patterns), secret
    for needed in ("app.py", "requirements.txt", "ic_zoo/app_main.py", "ic_zoo/flower2d/weights/x.safetensors",
                   "deploy/k8s.yaml", "Dockerfile"):
        assert not _docker_ignored(needed, patterns), needed
    # the rule matters because the whole context is copied
    assert re.search(r"^COPY (--\S+ )*\. \.$", (ROOT / "Dockerfile").read_text(), re.M)


def test_the_kubernetes_manifests_validate_against_their_schemas(tmp_path):
    kv = _bin("kubernetes-validate")
    r = subprocess.run([kv, "--strict", "--quiet", str(DEPLOY / "k8s.yaml")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    import yaml

    docs = {d["kind"]: d for d in yaml.safe_load_all((DEPLOY / "k8s.yaml").read_text())}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    app = pod["containers"][0]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert app[probe]["httpGet"]["path"] == serve.HEALTH_PATH
    assert app["envFrom"] == [{"secretRef": {"name": docs["Secret"]["metadata"]["name"]}}]
    assert "IC_ZOO_STUDY_DB" in docs["Secret"]["stringData"]
    assert docs["Service"]["spec"]["sessionAffinity"] == "ClientIP"
    assert docs["Ingress"]["metadata"]["annotations"]["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    assert pod["securityContext"]["runAsNonRoot"] is True
    # the validator does validate: a misspelt field fails
    bad = tmp_path / "bad.yaml"
    bad.write_text((DEPLOY / "k8s.yaml").read_text().replace("readinessProbe:", "readynessProbe:"))
    r = subprocess.run([kv, "--strict", "--quiet", str(bad)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0


def test_compose_and_the_proxy_config_name_the_same_replicas():
    import yaml

    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    cfg = (DEPLOY / "haproxy.cfg").read_text()
    wanted = set(re.findall(r"\$\{(IC_ZOO_[A-Z0-9_]+)\}", cfg))
    proxy = compose["services"]["proxy"]
    assert wanted <= set(proxy["environment"]), wanted - set(proxy["environment"])
    for var in sorted(v for v in wanted if v.startswith("IC_ZOO_REPLICA_")):
        host = proxy["environment"][var].split(":")[0]
        assert host in compose["services"], f"{var} points at {host}, which compose does not run"
        env = compose["services"][host]["environment"]
        assert env["IC_ZOO_STUDY_DB"].startswith("postgresql://") and env["IC_ZOO_REPLICA"] == host
    assert "cookie ICZOO_REPLICA insert" in cfg and f"option httpchk GET {serve.HEALTH_PATH}" in cfg
    assert "/haproxy.cfg" in " ".join(proxy["volumes"])


# -- one replica: health and a graceful shutdown -------------------------------------------------------------
@pytest.mark.slow
def test_health_is_503_while_loading_200_when_ready_and_sigterm_finishes_the_stroke_in_flight(tmp_path):
    gate = tmp_path / "gate"  # the stroke in flight lasts until the test opens the gate, however busy the cores
    cluster = R.Cluster(tmp_path, replicas=1, db=f"sqlite:///{tmp_path / 'one.sqlite'}", proxy=False,
                        inpainter="slow-telea", env={"IC_ZOO_TEST_GATE": str(gate)})
    try:
        gate.touch()  # the first stroke passes at once
        seen = cluster.start(record_health=True)
        codes = [c for c, _ in seen[0]]
        assert codes[-1] == 200 and 503 in codes, codes  # "starting" before the models were loaded
        assert all(c in (503, 200, None) for c in codes), seen[0]
        assert {b.get("status") for c, b in seen[0] if c == 503} == {"starting"}
        assert seen[0][-1][1]["status"] == "ready" and seen[0][-1][1]["replica"] == "r1"
        p = R.Participant(cluster.url(0), "S1", cluster.secret, tmp_path)
        p.join()
        p.stroke()
        gate.unlink()
        started = Path(str(gate) + ".started")
        started.unlink(missing_ok=True)
        job = p.stroke_async()  # its inpainting waits on the server until the gate opens
        R.wait_for(started.exists, 120)
        cluster.signal(0, "TERM")
        R.wait_for(lambda: cluster.health(0)[0] == 503, 60)
        code, body = cluster.health(0)
        assert code == 503 and body["status"] == "draining", (code, body)
        late = R.Participant(cluster.url(0), "S2", cluster.secret, tmp_path)
        with pytest.raises(Exception):  # a new event while draining is refused...
            late.join()
        code, detail = R.join_status(cluster.url(0))  # ... with one sentence, which the page shows
        assert (code, detail) == (400, serve.DRAINING)
        gate.touch()
        out = job.result(timeout=120)  # the stroke in flight finishes and is answered
        assert R.strokes_in(out) == 2
        assert cluster.wait(0, 120) == 0  # exit status 0
        log = cluster.log_text(0)
        assert "shutdown: every event finished" in log and "shutdown: done" in log
    finally:
        cluster.stop()
    rows = R.rows(f"sqlite:///{tmp_path / 'one.sqlite'}")
    s1 = [r for r in rows if r["code"] == "S1"]
    assert [r["seq"] for r in s1] == list(range(1, len(s1) + 1))
    assert sum(r["kind"] == "stroke" for r in s1) == 2  # both strokes logged, nothing lost


# -- three replicas behind the proxy -----------------------------------------------------------------------
@pytest.mark.slow
def test_three_replicas_behind_the_proxy_share_one_log_and_survive_a_kill_9(pg_url, tmp_path):
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (.ci/run installs Debian's haproxy package)")
    n_participants, n_strokes = LOAD
    cluster = R.Cluster(tmp_path, replicas=3, db=pg_url, proxy=True)
    try:
        cluster.start()
        run = R.drive(cluster, n_participants, n_strokes, kill_after=n_participants * n_strokes // 3)
        # a tab still pinned to the killed replica reaches another one and is told to reload
        from gradio_client import Client

        ghost = Client(cluster.url(), verbose=False, httpx_kwargs={"cookies": {R.COOKIE: run.killed}})
        with pytest.raises(Exception) as moved:
            ghost.predict(0, api_name="/study_undo")
        assert STUDY_MOVED in str(moved.value)
    finally:
        cluster.stop()
    assert run.errors == [], run.errors[:5]
    assert not any("session not found" in m.lower() for m in run.messages), "Session not found"
    # a stroke that reached another replica after the kill was told to reload, not to consent again
    assert not any("accept the consent" in m for m in run.messages)
    assert run.killed is not None and run.moved, "the kill hit no participant"
    # load went to every replica: each one logged strokes (counted in its own log)
    per = run.per_replica_logged
    assert len(per) == 3 and all(v > 0 for v in per.values()), per
    rows = R.rows(pg_url)
    by = {}
    for r in rows:
        by.setdefault(r["code"], []).append(r)
    assert len(by) == n_participants
    for code, rs in by.items():
        assert [r["seq"] for r in rs] == list(range(1, len(rs) + 1)), code  # contiguous, across replicas
        assert sum(r["kind"] == "stroke" for r in rs) == n_strokes, code  # every stroke, exactly once
    for code in run.moved:  # the killed replica's participants resumed on another one
        assert any(r["kind"] == "task_resumed" for r in by[code]), code
    ordinals = sorted(R.ordinals(pg_url).values())
    assert ordinals == list(range(n_participants))  # Latin-square rows: unique and contiguous


@pytest.mark.slow
def test_a_user_whose_replica_dies_gets_one_sentence_and_a_fresh_session(tmp_path):
    """The comparison app (no study): its tab state lives on one replica. When that replica is killed, the
    user's next stroke reaches another one through the proxy and is answered at once with one sentence
    (the image and strokes are gone), never a hang; the image sent again starts a fresh session there."""
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (.ci/run installs Debian's haproxy package)")
    from gradio_client import Client, handle_file

    cluster = R.Cluster(tmp_path, replicas=2, proxy=True, study=False, models=("flower2d/squeezenet",))
    image = cluster.study.parent / "f0.png"  # a held-out flower
    models = ["flower2d/squeezenet"]
    try:
        cluster.start()
        c = Client(cluster.url(), verbose=False, download_files=False, httpx_kwargs={"timeout": 60})
        out = c.predict(handle_file(str(image)), models, "gradcam", "original top-5 (tracked)", api_name="/load")
        path = lambda v: v["path"] if isinstance(v, dict) else v  # noqa: E731  (download_files=False)
        canvas = path(out[0]["background"])

        def edit(k):
            layer = R.stroke_layer((96, 96), k, tmp_path / f"e{k}.png")
            job = c.submit({"background": handle_file(canvas), "layers": [handle_file(str(layer))], "composite": None},
                           models, "telea", "gradcam", "original top-5 (tracked)", api_name="/edit")
            return job.result(timeout=60)  # never a hang

        for k in range(2):
            out = edit(k)
            canvas = path(out[0]["background"])
        assert out[-1]["n_edits"] == 2
        home = c.cookies[R.COOKIE]
        cluster.signal(int(home[1:]) - 1, "KILL")
        cluster.wait(int(home[1:]) - 1, 10)  # it is gone; then the user paints again
        t0 = time.monotonic()
        with pytest.raises(Exception) as gone:
            edit(2)
        assert time.monotonic() - t0 < 30
        assert serve.MOVED in str(gone.value) and "\n" not in str(gone.value).strip(), str(gone.value)
        out = edit(3)  # the same canvas again: a fresh session on the replica that answers now
        assert out[-1]["n_edits"] == 1
    finally:
        cluster.stop()
    other = 1 - (int(home[1:]) - 1)
    assert "Traceback" not in cluster.log_text(other)


# -- the pieces, without processes -----------------------------------------------------------------------
def test_health_states_and_the_pinned_replica(monkeypatch):
    monkeypatch.setenv("IC_ZOO_REPLICA", "r2")
    h = serve.Health()
    assert (h.code, h.body()["status"], h.body()["replica"]) == (503, "starting", "r2")
    h.set("ready")
    assert h.code == 200
    h.set("draining")
    assert h.code == 503

    class Req:
        def __init__(self, pinned):
            self.headers = {serve.PINNED_HEADER: pinned} if pinned is not None else {}

    assert serve.moved_here(Req("r1"))  # pinned to r1, answered by r2: its state is gone
    assert not serve.moved_here(Req("r2")) and not serve.moved_here(Req("")) and not serve.moved_here(Req(None))
    assert not serve.moved_here(None)


def test_the_environment_names_models_device_and_drain_time(monkeypatch):
    import app

    monkeypatch.setenv("IC_ZOO_MODELS", "flower2d/resnet, flower2d/vit")
    monkeypatch.setenv("IC_ZOO_DEVICE", "cpu")
    args = app.parse_args([])
    assert args.model == ["flower2d/resnet", "flower2d/vit"] and args.device == "cpu"
    assert app.parse_args(["-m", "flower2d/squeezenet"]).model == ["flower2d/squeezenet"]  # the flag wins
    monkeypatch.setenv(serve.DRAIN_ENV, "soon")
    from ic_zoo.errors import InputError

    with pytest.raises(InputError, match="IC_ZOO_DRAIN_S must be a number of seconds"):
        serve.drain_seconds()


def test_a_port_in_use_is_one_sentence(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        env = dict(os.environ, IC_ZOO_APP_NO_DEMO="0", GRADIO_SERVER_PORT=str(port))
        r = subprocess.run([sys.executable, "app.py", "--no-pretrained", "-m", "flower2d/squeezenet"], cwd=str(ROOT),
                           env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot listen on 127.0.0.1:{port}") and "Traceback" not in r.stderr, r.stderr[-500:]


# -- conditions: balanced by the log's counter, whichever replica a participant reaches --------------------
@pytest.mark.slow
def test_sixty_participants_through_three_replicas_get_conditions_that_differ_by_at_most_one(pg_url, tmp_path):
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (.ci/run installs Debian's haproxy package)")
    import concurrent.futures as cf
    import json

    cluster = R.Cluster(tmp_path, replicas=3, db=pg_url, proxy=True, conditions=3)
    try:
        cluster.start()
        ps = [R.Participant(cluster.url(), f"Q{k:02d}", cluster.secret, tmp_path) for k in range(60)]
        with cf.ThreadPoolExecutor(12) as ex:  # twelve at a time, each joining through the proxy
            list(ex.map(lambda p: p.join(), ps))
        reached = {p.replica for p in ps}
    finally:
        cluster.stop()
    assert len(reached) == 3, reached  # the proxy spread them over the three replicas
    consents = [r for r in R.rows(pg_url) if r["kind"] == "consent"]
    cond = [json.loads(r["payload"])["condition"] for r in consents]
    counts = {c: cond.count(c) for c in ("c0", "c1", "c2")}
    assert len(consents) == 60 and max(counts.values()) - min(counts.values()) <= 1, counts
    ords = sorted(json.loads(r["payload"])["ordinal"] for r in consents)
    assert ords == list(range(60))  # one counter for all replicas: no ordinal twice, none skipped
