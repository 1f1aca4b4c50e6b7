"""Health that means health (issue 33, item 1): /healthz answers while model work holds every lock and
slot (and, on its own port, while Gradio's event loop itself is stuck); ready only after the warm-up;
Gradio's start-up checks wait on a busy machine instead of giving up; the process exits at once after its
drain; the proxy and the Kubernetes probes allow a busy replica its measured answer time."""
from __future__ import annotations

import http.server
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

os.environ["IC_ZOO_APP_NO_DEMO"] = "1"
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
from ic_zoo import registry  # noqa: E402
from ic_zoo.app import serve  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
sys.path.insert(0, str(ROOT / "benchmarks"))
import replicas as R  # noqa: E402


def get(url: str, timeout: float = 2.0, method: str = "GET") -> tuple[int, bytes, float]:
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=timeout) as r:
            return r.status, r.read(), time.monotonic() - t0
    except urllib.error.HTTPError as e:
        return e.code, e.read(), time.monotonic() - t0
    except OSError:  # refused (not listening yet, or any more), timed out
        return None, b"", time.monotonic() - t0


def blocking_demo(started: threading.Event, release: threading.Event):
    """A page whose 'hold' event holds the registry's build lock (what a model build holds) until released,
    and whose 'stall' event blocks Gradio's event loop itself (an async handler that never awaits)."""
    import gradio as gr

    def hold(x):
        with registry.BUILD_LOCK:
            started.set()
            release.wait(30)
        return x

    async def stall(x):
        started.set()
        release.wait(30)  # blocks the event loop on purpose
        return x

    with gr.Blocks() as demo:
        t = gr.Textbox()
        gr.Button("hold").click(hold, t, t, api_name="hold", concurrency_limit=4)
        gr.Button("stall").click(stall, t, t, api_name="stall")
    return demo


def test_healthz_answers_while_model_work_holds_the_locks_and_the_workers():
    from gradio_client import Client

    started, release = threading.Event(), threading.Event()
    demo = blocking_demo(started, release)
    health = serve.Health("t1")
    hport = R.free_port()
    prober = serve.HealthServer("127.0.0.1", hport, health)
    _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True,
                            app_kwargs={"routes": serve.health_routes(health)})
    try:
        serve.front(demo.server_app, health)
        assert isinstance(demo.server_app.middleware_stack, serve.HealthFront)
        assert get(url + "healthz")[0] == 503  # starting
        health.set("ready")
        code, body, _ = get(url + "healthz")
        assert code == 200 and b'"ready"' in body
        assert get(url + "healthz", method="HEAD")[:2] == (200, b"")
        c = Client(url, verbose=False)
        jobs = [c.submit("x", api_name="/hold") for _ in range(4)]  # one holds the lock, three wait on it
        assert started.wait(30)
        for _ in range(5):
            code, body, took = get(url + "healthz", timeout=10)
            assert code == 200 and took < 2.0, took  # generous: it is milliseconds
            code, _, took = get(f"http://127.0.0.1:{hport}/healthz", timeout=10)
            assert code == 200 and took < 2.0, took
        release.set()
        assert [j.result(timeout=30) for j in jobs] == ["x"] * 4
        # Gradio's event loop itself stuck: the health port still answers (the app's port cannot)
        started.clear()
        release.clear()
        job = c.submit("y", api_name="/stall")
        assert started.wait(30)
        code, _, took = get(f"http://127.0.0.1:{hport}/healthz", timeout=10)
        assert code == 200 and took < 2.0, took
        assert get(f"http://127.0.0.1:{hport}/other", timeout=10)[0] == 404
        release.set()
        assert job.result(timeout=30) == "y"
        health.set("draining")
        assert get(url + "healthz")[0] == 503 and get(f"http://127.0.0.1:{hport}/healthz")[0] == 503
        # a new event from an API client while draining: refused with the sentence, not a bare "400 Bad Request"
        with pytest.raises(Exception) as err:
            c.predict("z", api_name="/hold")
        assert serve.DRAINING in str(err.value), err.value
    finally:
        release.set()
        demo.close(verbose=False)
        prober.stop()


def test_ready_only_after_the_warm_up_and_sigterm_drains(monkeypatch):
    """serve.run in this process: 503 'starting' while the page's warm-up runs, 200 'ready' after it,
    503 'draining' after SIGTERM, then run returns 0; Gradio's start-up checks are its own again after."""
    import gradio as gr
    from gradio import http_server, networking

    port, hport = R.free_port(), R.free_port()
    monkeypatch.setenv(serve.HEALTH_PORT_ENV, str(hport))
    monkeypatch.setenv(serve.DRAIN_ENV, "5")
    warming, go_on = threading.Event(), threading.Event()
    seen = []

    def build():
        with gr.Blocks() as demo:
            gr.Markdown("hi")

        def warm():
            warming.set()
            go_on.wait(30)

        demo.ic_zoo_warm = warm
        return demo

    def watch():
        url = f"http://127.0.0.1:{port}/healthz"
        assert warming.wait(60)
        for u in (url, f"http://127.0.0.1:{hport}/healthz"):
            seen.append(get(u, timeout=10)[:2])
        go_on.set()
        assert R.wait_for(lambda: get(url, timeout=10)[0] == 200, 30)
        seen.append(get(url, timeout=10)[:2])
        os.kill(os.getpid(), signal.SIGTERM)

    url_ok, run_in_thread = networking.url_ok, http_server.Server.run_in_thread
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    assert serve.run(build, "127.0.0.1", port, dict(quiet=True)) == 0
    t.join(10)
    (c1, b1), (c2, b2), (c3, b3) = seen
    assert c1 == c2 == 503 and b'"starting"' in b1 and b"warming up" in b1 and b1 == b2, (b1, b2)
    assert c3 == 200 and b'"ready"' in b3 and b"warm (" in b3
    assert networking.url_ok is url_ok and http_server.Server.run_in_thread is run_in_thread


class _Slow(http.server.BaseHTTPRequestHandler):
    """Answers its first request after 3.5 s (a busy machine), the others at once."""
    first = True

    def do_HEAD(self):
        if type(self).first:
            type(self).first = False
            time.sleep(3.5)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        return None


def test_the_start_up_check_waits_for_a_busy_server_instead_of_giving_up():
    """Gradio's url_ok gives up at its first 3-second time-out (then launch raises "When localhost is not
    accessible..." and app.py exited); the patient one asks again until the page answers."""
    from gradio import networking

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        _Slow.first = True
        assert networking.url_ok(url) is False  # Gradio's own: one slow answer and it is over
        _Slow.first = True
        assert serve.patient_url_ok(url) is True
    finally:
        server.shutdown()
        server.server_close()
    # nothing listening is a real misconfiguration: still False, after 5 refusals
    assert serve.patient_url_ok(f"http://127.0.0.1:{R.free_port()}/") is False


EXITS = """
import sys, threading, time
sys.path.insert(0, {root!r})
import gradio as gr
from ic_zoo.app import serve
threading.Thread(target=time.sleep, args=(300,), daemon=False).start()  # what kept replicas alive
def build():
    with gr.Blocks() as demo:
        gr.Markdown("hi")
    return demo
import logging; logging.basicConfig(level=logging.INFO)
serve.exit_now(serve.run(build, "127.0.0.1", {port}, dict(quiet=True)))
"""


def test_the_process_exits_at_once_after_its_drain(tmp_path):
    """A thread that would keep the interpreter alive for 5 minutes (a cancelled event's worker, a pool)
    does not: the process ends within seconds of 'shutdown: done'."""
    port = R.free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", IC_ZOO_DRAIN_S="5")
    p = subprocess.Popen([sys.executable, "-c", EXITS.format(root=str(ROOT), port=port)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert R.wait_for(lambda: get(f"http://127.0.0.1:{port}/healthz", timeout=5)[0] == 200
                          if p.poll() is None else True, 120)
        assert p.poll() is None
        p.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        rc = p.wait(30)
        took = time.monotonic() - t0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    out = p.stdout.read()
    assert rc == 0 and "shutdown: done" in out, out[-1000:]
    assert took < 15, took  # the drain (nothing in flight) and the exit; the thread alone would take 300 s


def test_models_are_built_one_at_a_time():
    """Two first events building two models at once imported torchvision's model modules from two threads
    and died on "deadlock detected by _ModuleLock" (issue 33): builds are serialised, a built one is not."""
    from ic_zoo.inpainters.opencv_inpaint import Telea

    reg = registry.Registry()
    now, most = [0], [0]
    lock = threading.Lock()

    def factory():
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        time.sleep(0.2)
        with lock:
            now[0] -= 1
        return Telea()

    for name in ("a", "b", "c"):
        reg.register("inpainter", name, lambda: factory())
    threads = [threading.Thread(target=reg.instance, args=("inpainter", n)) for n in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert most[0] == 1
    assert all(reg.has_instance("inpainter", n) for n in ("a", "b", "c"))
    with registry.BUILD_LOCK:  # a model being built elsewhere does not delay one already built
        done = []
        t = threading.Thread(target=lambda: done.append(reg.instance("inpainter", "a")))
        t.start()
        t.join(5)
        assert done


def test_the_proxy_and_the_probes_allow_the_measured_answer_time():
    cfg = (DEPLOY / "haproxy.cfg").read_text()
    check = re.search(r"^\s*timeout check (\d+)s", cfg, re.M)
    assert check and int(check.group(1)) >= 3, "a busy replica answers /healthz in up to 1.6 s"
    ds = re.search(r"^\s*default-server (.*)$", cfg, re.M).group(1)
    fall, rise, inter = (int(re.search(rf"\b{k} (\d+)", ds).group(1)) for k in ("fall", "rise", "inter"))
    assert fall >= 3 and rise >= 2 and inter >= 2
    assert "health_latency" in cfg  # the config says where its numbers come from
    import yaml

    docs = {d["kind"]: d for d in yaml.safe_load_all((DEPLOY / "k8s.yaml").read_text())}
    app = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert app[probe]["timeoutSeconds"] >= 3 and app[probe]["failureThreshold"] >= 3, probe
    assert "health_latency" in (DEPLOY / "k8s.yaml").read_text()
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        pytest.skip("haproxy is not installed (.ci/run installs Debian's haproxy package)")
    env = dict(os.environ, IC_ZOO_PROXY_BIND="127.0.0.1:8080", IC_ZOO_REPLICA_1="127.0.0.1:1",
               IC_ZOO_REPLICA_2="127.0.0.1:2", IC_ZOO_REPLICA_3="127.0.0.1:3")
    r = subprocess.run([haproxy, "-c", "-f", str(DEPLOY / "haproxy.cfg")], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def _client_host_app():
    import gradio as gr

    def who(x, request: gr.Request):
        return request.client.host

    who.__annotations__["request"] = gr.Request  # this module's annotations are strings; gr is local

    with gr.Blocks() as demo:
        t, o = gr.Textbox(), gr.Textbox()
        t.submit(who, t, o, api_name="who")
    return demo


@pytest.mark.parametrize("trusted,seen", [("", "127.0.0.1"), ("127.0.0.1", "6.6.6.6")])
def test_a_forwarded_address_is_believed_only_from_a_trusted_proxy(monkeypatch, trusted, seen):
    """Issue 36 item 2: uvicorn believed X-Forwarded-For from any loopback peer, so behind a same-host
    proxy that passes it on a client chose the address it was counted as (the admin throttle, the join
    cap). serve.trust_proxies: only the proxies in IC_ZOO_TRUSTED_PROXIES (none by default)."""
    from gradio_client import Client

    from ic_zoo.app import serve

    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "placeholder")
    monkeypatch.delenv("FORWARDED_ALLOW_IPS")  # restored to what it was after the test
    monkeypatch.setenv(serve.TRUSTED_PROXIES_ENV, trusted)
    assert serve.trust_proxies() == trusted
    demo = _client_host_app()
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True,
                            show_error=True)
    try:
        c = Client(url, verbose=False, headers={"X-Forwarded-For": "6.6.6.6"})
        assert c.predict("x", api_name="/who") == seen
    finally:
        demo.close()
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.9")  # an operator's own setting is kept
    assert serve.trust_proxies() == "10.0.0.9"


def test_a_client_that_hangs_up_on_the_placeholder_leaves_no_traceback(capfd):
    """Issue 36 item 9: BrokenPipeError tracebacks from the start-up placeholder filled replica logs (a
    proxy's check that gave up, a page that reloaded, before the answer was written)."""
    import socket

    from ic_zoo.app import serve

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    starting = serve.StartingServer("127.0.0.1", port, serve.Health())
    try:
        for _ in range(20):  # ask, and hang up at once with a reset (SO_LINGER 0): the answer's write fails
            c = socket.create_connection(("127.0.0.1", port))
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            c.close()
        time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:  # still serving
            pass
    except urllib.error.HTTPError as exc:
        assert exc.code == 503  # starting: its answer, not a failure
    finally:
        starting.stop()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "BrokenPipeError" not in err and "ConnectionResetError" not in err, err
