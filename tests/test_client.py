"""ic_zoo.app.client (issue 33, item 3, for API clients): a call ends in its answer, the app's own error, or one
sentence within ``hang`` seconds, when its server is killed in the middle of the call, frozen, or replaced by
a proxy's 502; a result file is downloaded with the client's cookie and a refused one is the sentence."""
from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from ic_zoo.app import client as C

APP = textwrap.dedent("""
    import sys, time
    import gradio as gr
    import numpy as np

    def slow(x):
        time.sleep(float(x))
        return "slept"

    def fails(x):
        raise gr.Error("The app's own sentence.", print_exception=False)

    def picture(x):
        return np.full((8, 8, 3), 200, np.uint8)

    with gr.Blocks() as demo:
        t = gr.Textbox(); o = gr.Textbox(); im = gr.Image(format="png")
        gr.Button("a").click(slow, t, o, api_name="slow")
        gr.Button("b").click(fails, t, o, api_name="fails")
        gr.Button("c").click(picture, t, im, api_name="picture")
    demo.queue().launch(server_name="127.0.0.1", server_port=int(sys.argv[1]), prevent_thread_lock=False)
""")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """A Gradio app in its own process (which the tests kill or freeze, as a replica is)."""
    import httpx

    script = tmp_path / "app.py"
    script.write_text(APP)
    port = _port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.Popen([sys.executable, str(script), str(port)], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(1200):  # a busy machine starts it slowly: no clock decides, only its first answer
        try:
            if httpx.get(url + "/config", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, "the app did not start"
        time.sleep(0.25)
    yield url, proc
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
    proc.wait()


def test_answers_and_the_apps_own_error_pass_through(server):
    url, _ = server
    c = C.Client(url, hang=60)
    assert c.call("0", api_name="/slow") == "slept"
    with pytest.raises(Exception) as e:
        c.call("0", api_name="/fails")
    assert not isinstance(e.value, C.ServerLost) and "The app's own sentence." in str(e.value)
    img = c.call("0", api_name="/picture")
    data = c.download(img)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_call_whose_server_is_killed_mid_call_is_the_sentence(server):
    url, proc = server
    c = C.Client(url, study=True, hang=60)
    box = {}

    def call():
        t = time.monotonic()
        try:
            c.call("30", api_name="/slow")
        except Exception as exc:  # noqa: BLE001 - what the caller meets
            box["exc"], box["s"] = exc, time.monotonic() - t

    th = threading.Thread(target=call)
    th.start()
    time.sleep(1.0)  # the event is sent (the sleep keeps it running for 30 s)
    proc.kill()
    th.join(90)
    assert isinstance(box.get("exc"), C.ServerLost), box
    assert str(box["exc"]) == C.STUDY_LOST
    assert box["s"] < 30  # told when the stream broke, not when the event would have ended


def test_a_frozen_server_is_the_sentence_after_hang_seconds(server):
    url, proc = server
    c = C.Client(url, hang=3)
    os.kill(proc.pid, signal.SIGSTOP)
    t = time.monotonic()
    with pytest.raises(C.ServerLost) as e:
        c.call("0", api_name="/slow")
    assert str(e.value) == C.APP_LOST
    assert time.monotonic() - t < 3 * 4  # bounded by the hang (its requests each have it as their time-out)


def test_a_refused_file_is_the_sentence(server):
    url, _ = server
    c = C.Client(url, hang=30)
    with pytest.raises(C.ServerLost) as e:
        c.download({"url": url + "/gradio_api/file=/etc/hostname"})
    assert str(e.value) == C.APP_LOST and "403" in e.value.cause


class _BadGateway(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the standard library's name
        self.send_response(502, "Bad Gateway")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *a):
        pass


def test_a_proxy_with_no_server_behind_it_is_the_sentence():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BadGateway)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        with pytest.raises(C.ServerLost) as e:
            C.Client(f"http://127.0.0.1:{srv.server_address[1]}", study=True, hang=10)
        assert str(e.value) == C.STUDY_LOST
    finally:
        srv.shutdown()


def test_lost_tells_a_replicas_loss_from_an_apps_error():
    import concurrent.futures as cf

    import httpx

    req = httpx.Request("GET", "http://x/")
    assert C.lost(cf.CancelledError())
    assert C.lost(httpx.ConnectError("refused", request=req))
    assert C.lost(httpx.HTTPStatusError("502", request=req, response=httpx.Response(502, request=req)))
    assert not C.lost(httpx.HTTPStatusError("400", request=req, response=httpx.Response(400, request=req)))
    assert C.lost(ValueError("Session not found."))
    assert not C.lost(ValueError("Please paint over a region first."))


def test_calls_share_one_verifying_tls_context(server, monkeypatch):
    """Issue 35: gradio_client's default loads the certificate store again for every request (36 ms each
    here); ic_zoo's client builds httpx's default context once, with its checks, and no call loads it again.
    Plain gradio_client, counted the same way, shows what the count catches."""
    import ssl

    from gradio_client import Client as GradioClient

    url, _ = server
    ctx = C.tls_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname and ctx.cert_store_stats()["x509_ca"] > 0
    loads = []
    real = ssl.SSLContext.load_verify_locations

    def counted(self, *a, **k):
        loads.append(a or k)
        return real(self, *a, **k)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counted)
    c = C.Client(url, hang=60)
    assert c.client.ssl_verify is ctx
    for _ in range(3):
        assert c.call("0", api_name="/slow") == "slept"
    assert c.download(c.call("0", api_name="/picture"))[:4] == b"\x89PNG"
    assert loads == []
    plain = GradioClient(url, verbose=False, download_files=False)
    before = len(loads)
    assert plain.predict("0", api_name="/slow") == "slept"
    assert len(loads) - before >= 2  # the join and the stream, each with its own store
    assert C.Client(url, hang=60, ssl_verify=False).client.ssl_verify is False  # a self-signed server: still honoured
