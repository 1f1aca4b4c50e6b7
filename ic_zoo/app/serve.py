"""Serving the app as one replica of many: a health endpoint and a graceful shutdown.

``python app.py`` (the container's entrypoint) runs through :func:`run`:

1. While the page is built and the default models load, a small placeholder server holds the port and
   answers every request with 503 (``/healthz``: ``{"status": "starting"}``), so a proxy or a Kubernetes
   probe sees "not ready" rather than a refused connection.
2. The placeholder lets go of the port and Gradio takes it. ``GET /healthz`` now answers 200
   ``{"status": "ready", ...}``.
3. On SIGTERM (``docker stop``, a Kubernetes rollout) or SIGINT: ``/healthz`` answers 503
   ``{"status": "draining"}`` at once, so the proxy sends no new sessions here; a new event gets one
   sentence (:data:`DRAINING`) instead of being queued; the events in flight finish (at most
   ``IC_ZOO_DRAIN_S`` seconds, default 20); then the database is closed and the server stops, with exit
   status 0.

Health that means health (issue 33):

* ``/healthz`` never waits on Python model work: it is answered by :class:`HealthFront`, a bare ASGI
  layer in front of Gradio's whole app (no middleware, no thread pool, no lock shared with a handler; the
  body is bytes made when the state changes). With ``IC_ZOO_HEALTH_PORT`` set, a thread of its own also
  answers it on that port (:class:`HealthServer`), off the event loop as well.
* ``ready`` comes only after the page's warm-up (``demo.ic_zoo_warm``: the imports and models a first
  event needs, built once, one at a time); until then ``/healthz`` answers 503 ``starting``.
* Start-up never gives up on a busy machine: Gradio's own checks of its local URL (5 tries of 3 s, then
  "When localhost is not accessible..." and an exit) and of its server thread (5 s) wait, patiently,
  for as long as the server is alive (:func:`patient_launch`).
* After the drain the process exits at once (:func:`exit_now`): nothing left (a worker thread of a
  cancelled event, torch's pools) keeps it alive past a proxy's or an orchestrator's grace period.

Nothing here is process-wide beyond the signal handlers that :func:`run` installs for its own server
(and Gradio's two start-up checks, replaced only while :func:`run` launches).
"""
from __future__ import annotations

import collections
import contextlib
import http.server
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from typing import Callable
from urllib.parse import unquote

log = logging.getLogger("ic_zoo.app.serve")

HEALTH_PATH = "/healthz"
DRAINING = ("This server is shutting down: reload the page to continue on another one (in a study, your "
            "work so far is kept).")
DRAIN_ENV = "IC_ZOO_DRAIN_S"
#: the replica a request's affinity cookie named (deploy/haproxy.cfg sets it from ICZOO_REPLICA before
#: redispatching a request whose replica is down), compared with this replica's IC_ZOO_REPLICA
PINNED_HEADER = "x-ic-zoo-pinned"
MOVED = "the server that held it stopped, and this is another one"


def replica_name() -> str:
    return os.environ.get("IC_ZOO_REPLICA") or socket.gethostname()


def moved_here(request) -> bool:
    """Whether ``request`` (a gr.Request) was pinned to another replica: its tab's state is gone."""
    headers = getattr(request, "headers", None) or {}
    pinned = (headers.get(PINNED_HEADER) or "").strip()
    return bool(pinned) and pinned != replica_name()


class Health:
    """starting -> ready -> draining, read by ``/healthz`` and by the queue guard."""

    def __init__(self, replica: str | None = None) -> None:
        self.state = "starting"
        self.replica = replica or replica_name()
        self.since = time.time()
        self.detail: dict = {}
        self._answer = self._render()

    def set(self, state: str, **detail) -> None:
        self.state, self.since = state, time.time()
        self.detail.update(detail)
        self._answer = self._render()
        log.info("health: %s%s", state, "".join(f" ({v})" for k, v in detail.items() if k == "phase"))

    def _render(self) -> tuple[int, bytes]:
        return self.code, json.dumps(self.body()).encode()

    def answer(self) -> tuple[int, bytes]:
        """(status, JSON body) as made when the state last changed: one attribute read, no lock, nothing
        computed, so that a probe never waits on anything the handlers hold."""
        return self._answer

    def body(self) -> dict:
        return {"status": self.state, "replica": self.replica, "pid": os.getpid(), **self.detail}

    @property
    def code(self) -> int:
        return 200 if self.state == "ready" else 503


class _Starting(http.server.BaseHTTPRequestHandler):
    health: Health

    only_health = False  # HealthServer: /healthz only (404 elsewhere), with the state's own status

    def _answer(self) -> None:
        if self.path.split("?")[0] == HEALTH_PATH:
            code, body = self.health.answer()
            code = code if self.only_health else 503
        elif self.only_health:
            code, body = 404, b"Only /healthz is served on this port.\n"
        else:
            code, body = 503, b"Interactive Classification is starting (loading its models); try again in a few seconds.\n"
        self.send_response(code)
        self.send_header("Content-Type", "application/json" if body.startswith(b"{") else "text/plain")
        self.send_header("Retry-After", "5")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = _answer

    def log_message(self, *args) -> None:  # probes every second would flood the log
        return None


class _QuietServer(http.server.ThreadingHTTPServer):
    """A client that hangs up before its answer is written (a proxy's check that timed out, a page that
    reloaded) is not an error: socketserver printed a BrokenPipeError traceback per hang-up into replica
    logs (issue 36 item 9). Anything else is still reported."""

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)):
            return
        super().handle_error(request, client_address)


class StartingServer:
    """503 on ``host:port`` until :meth:`stop` (then the port is free for Gradio)."""

    only_health = False

    def __init__(self, host: str, port: int, health: Health) -> None:
        handler = type("Handler", (_Starting,), {"health": health, "only_health": self.only_health})
        self.server = _QuietServer((host, port), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                       name="ic_zoo-starting", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class HealthServer(StartingServer):
    """``GET /healthz`` on a port of its own (``IC_ZOO_HEALTH_PORT``), answered by a thread of its own for
    the process's whole life: it needs neither Gradio's event loop nor its thread pool, only a moment of
    the interpreter."""

    only_health = True


HEALTH_PORT_ENV = "IC_ZOO_HEALTH_PORT"


def health_port() -> int | None:
    raw = (os.environ.get(HEALTH_PORT_ENV) or "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        from ..errors import InputError

        raise InputError(f"{HEALTH_PORT_ENV} must be a port number, not '{raw}'.")
    return int(raw)


class HealthFront:
    """A bare ASGI layer in front of Gradio's app (its middleware included): ``GET``/``HEAD /healthz`` is
    answered here, on the event loop's next turn, from bytes made when the state last changed; no
    thread-pool hop, no middleware, no lock. Everything else goes to the app."""

    HEADERS = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]

    def __init__(self, app, health: Health, uploads: "UploadBudget | None" = None) -> None:
        self.app, self.health = app, health
        self.uploads = uploads if uploads is not None else UploadBudget.from_env()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].endswith(UPLOAD_ROUTE):
            await self.uploads.guard(self.app, scope, receive, send)
            return
        if scope["type"] == "http" and scope["path"] == HEALTH_PATH and scope["method"] in ("GET", "HEAD"):
            code, body = self.health.answer()
            await send({"type": "http.response.start", "status": code,
                        "headers": self.HEADERS + [(b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
            return
        if scope["type"] == "http" and FILE_ROUTE in scope["path"]:
            await self.app(scope, receive, file_refusal(send, content_addressed(scope["path"])))
            return
        if (self.health.state == "draining" and scope["type"] == "http" and scope["method"] == "POST"
                and scope["path"].endswith("/queue/join") and _header(scope, b"x-gradio-user") == b"api"):
            await self._refuse_api(send)
            return
        await self.app(scope, receive, send)

    async def _refuse_api(self, send) -> None:
        """A new event from gradio_client while draining: a 422 in the form gradio_client reads as a
        validation message, so the API client gets :data:`DRAINING` as its error (a 400, what the page gets
        through ``guard_queue``, reaches gradio_client as a bare "400 Bad Request")."""
        body = json.dumps({"detail": [{"__type__": "validate", "is_valid": False, "parameter_name": "server",
                                       "message": DRAINING}]}).encode()
        await send({"type": "http.response.start", "status": 422,
                    "headers": self.HEADERS + [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


#: Gradio's upload route (the canvas's images, a study's own image, an API client's files)
UPLOAD_ROUTE = "/upload"
UPLOAD_MB_ENV = "IC_ZOO_UPLOAD_MB_PER_CLIENT"
#: the largest file the apps take (Gradio refuses a larger one while it streams in): a 40 MP JPEG is about
#: 15 MB; nothing the apps read needs more
MAX_FILE_SIZE = "20mb"


def client_address(request) -> str | None:
    """The address that names the client of a Gradio ``request`` (:func:`named_client`: None behind a
    proxy whose forwarded address is not trusted, where every client has the proxy's address)."""
    client = getattr(request, "client", None)
    headers = getattr(request, "headers", None) or {}
    return named_client(getattr(client, "host", None) if client is not None else None,
                        headers.get("x-forwarded-for") is not None)


def named_client(host: str | None, forwarded: bool) -> str | None:
    """The address that names a request's client (its peer ``host``; ``forwarded``: it carries
    X-Forwarded-For), or None where clients cannot be told apart: behind a proxy on this host or a private
    network whose forwarded address is not trusted (``trust_proxies``: no ``FORWARDED_ALLOW_IPS``), every
    client arrives from the proxy's address, and a cap per address would cap them all together. With a
    trusted proxy uvicorn has already put the forwarded client in the peer's place."""
    import ipaddress

    if not host:
        return None
    if os.environ.get("FORWARDED_ALLOW_IPS", "").strip() or not forwarded:
        return host
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    return None if (ip.is_loopback or ip.is_private) else host


def scope_client(scope) -> str | None:
    """``named_client`` of an ASGI request."""
    client = scope.get("client")
    return named_client(client[0] if client else None, _header(scope, b"x-forwarded-for") is not None)


class UploadBudget:
    """Bytes one client may upload in any ``window_s`` seconds (``IC_ZOO_UPLOAD_MB_PER_CLIENT``, default
    ``DEFAULT_MB`` per 10 minutes): a script cannot fill the server's disk with files it never uses (Gradio
    keeps every upload until its cache is cleaned). Counted per client address (``scope_client``; behind an
    untrusted proxy only the size limit holds); a request over the budget is refused with 429 and
    :data:`UPLOADS_REFUSED` before its body is read. A request's size is its Content-Length, or the bytes
    read where there is none."""

    DEFAULT_MB = 1000

    def __init__(self, limit_bytes: int, window_s: float = 600.0, clock=time.monotonic) -> None:
        self.limit, self.window_s, self.clock = int(limit_bytes), float(window_s), clock
        self._sent: dict[str, collections.deque] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls) -> "UploadBudget":
        from ..errors import InputError

        raw = os.environ.get(UPLOAD_MB_ENV, "").strip()
        try:
            mb = float(raw) if raw else cls.DEFAULT_MB
        except ValueError:
            raise InputError(f"{UPLOAD_MB_ENV} must be a number of megabytes, not '{raw}'.") from None
        if mb <= 0:
            raise InputError(f"{UPLOAD_MB_ENV} must be a positive number of megabytes, not '{raw}'.")
        return cls(int(mb * 1e6))

    def used(self, key: str) -> int:
        with self._lock:
            now = self.clock()
            for k in [k for k, q in self._sent.items() if not q or now - q[-1][0] >= self.window_s]:
                del self._sent[k]
            q = self._sent.get(key)
            while q and now - q[0][0] >= self.window_s:
                q.popleft()
            return sum(n for _, n in q) if q else 0

    def add(self, key: str, n: int) -> None:
        with self._lock:
            self._sent.setdefault(key, collections.deque()).append((self.clock(), int(n)))

    async def guard(self, app, scope, receive, send) -> None:
        key = scope_client(scope)
        if key is None:
            await app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        try:
            want = int(length) if length is not None else 0
        except ValueError:
            want = 0
        if self.used(key) + want > self.limit:
            body = UPLOADS_REFUSED.format(mb=self.limit / 1e6, minutes=self.window_s / 60).encode()
            await send({"type": "http.response.start", "status": 429,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"cache-control", b"no-store"),
                                    (b"retry-after", str(int(self.window_s)).encode()),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        got = [0]

        async def counted():
            message = await receive()
            if message.get("type") == "http.request":
                got[0] += len(message.get("body", b""))
            return message

        try:
            await app(scope, counted, send)
        finally:
            self.add(key, max(want, got[0]))


UPLOADS_REFUSED = ("This connection uploaded more than {mb:.0f} MB in the last {minutes:.0f} minutes, the most the "
                   "server takes from one client: please wait a few minutes, then go on.")


def _header(scope, name: bytes) -> bytes | None:
    for k, v in scope.get("headers") or []:
        if k.lower() == name:
            return v
    return None


#: Gradio's route for the files a page shows (result images); another replica's file is refused with 403
FILE_ROUTE = "/file="
FILE_GONE = ("This file is on a server that stopped, or on another one: reload the page to continue where you left "
             "off (in a study, everything you did is kept).")


def file_refusal(send, immutable: bool = False):
    """``send`` for a file request: a 403 or 404 (Gradio's answers for a file this replica did not make, or
    no longer has: another replica made it, or this one before a restart) goes out as one sentence
    (:data:`FILE_GONE`), not a bare "File not allowed". The study page's watchdog shows its own sentence
    when an image fails; this one is for a download link and API clients. A file ``immutable`` (named by its
    bytes' hash) is sent with :data:`IMMUTABLE` as its cache policy."""
    state = {"refused": False}

    async def wrapped(message):
        if message["type"] == "http.response.start" and message["status"] in (403, 404):
            state["refused"] = True
            body = FILE_GONE.encode()
            await send({"type": "http.response.start", "status": message["status"],
                        "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"cache-control", b"no-store"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        if state["refused"]:  # the original body is dropped
            return
        if message["type"] == "http.response.start" and message["status"] == 200 and immutable:
            message = {**message, "headers": [(k, v) for k, v in message.get("headers", [])
                                              if k.lower() != b"cache-control"] + [(b"cache-control", IMMUTABLE)]}
        await send(message)

    return wrapped


#: a file of Gradio's cache is named by the hash of its bytes (``<cache>/<sha256>/<name>``): its URL
#: always means the same bytes, so the browser may keep it (the canvas asks for its background three times
#: per stroke: 3 x 200 KB at 451 x 300, twice for nothing)
IMMUTABLE = b"private, max-age=86400, immutable"
_HASHED = re.compile(r"/[0-9a-f]{64}/[^/]+$")


def content_addressed(path: str) -> bool:
    """Whether a file URL's path is one of Gradio's hash-named cache files."""
    return bool(_HASHED.search(unquote(path)))


def front(app, health: Health, uploads: UploadBudget | None = None) -> None:
    """Put :class:`HealthFront` in front of a launched Gradio app's middleware stack (Starlette builds that
    stack on the first request; ``health_routes`` answers until then)."""
    stack = app.middleware_stack if app.middleware_stack is not None else app.build_middleware_stack()
    if not isinstance(stack, HealthFront):
        app.middleware_stack = HealthFront(stack, health, uploads)


def health_routes(health: Health) -> list:
    """``GET /healthz``, given to Gradio's app when it is created (ahead of its own routes, so that it
    answers from the first request)."""
    from starlette.responses import Response
    from starlette.routing import Route

    async def healthz(request):
        code, body = health.answer()
        return Response(body, status_code=code, media_type="application/json",
                        headers={"Cache-Control": "no-store"})

    return [Route(HEALTH_PATH, healthz, methods=["GET", "HEAD"])]


def guard_queue(demo, health: Health) -> None:
    """While draining, a new event is refused with :data:`DRAINING` as its detail, which Gradio's page shows
    as the event's error (for a 503, "queue full", it would show its own "busy" line instead); events
    already queued still run."""
    from . import gradio_internals

    def wrap(push):
        async def guarded_push(body, request, username):
            if health.state == "draining":
                return False, DRAINING, "error"
            return await push(body, request, username)

        return guarded_push

    gradio_internals.wrap_queue_push(demo, wrap)


def in_flight(demo) -> int:
    """Events running or waiting in the queue."""
    from . import gradio_internals

    return gradio_internals.in_flight(demo)


def drain(demo, wait_s: float, poll_s: float = 0.1) -> int:
    """Wait until no event of ``demo`` runs or waits (its follow-ups included), at most ``wait_s`` seconds;
    the events still in flight then (0: all finished). A process that exits while a worker thread is inside a
    torch op aborts ("terminate called without an active exception")."""
    t0 = time.monotonic()
    while in_flight(demo) and time.monotonic() - t0 < wait_s:
        time.sleep(poll_s)
    return in_flight(demo)


def drain_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get(DRAIN_ENV) or 20))
    except ValueError:
        from ..errors import InputError

        raise InputError(f"{DRAIN_ENV} must be a number of seconds, not '{os.environ[DRAIN_ENV]}'.") from None


def _close(closers) -> None:
    for close in closers:
        try:
            close()
        except Exception as exc:  # noqa: BLE001 - closing is best effort, and said
            log.warning("shutdown: %s", exc)


# -- warm before ready ---------------------------------------------------------------------------------------
def warm(jobs, device: str | None = None, pretrained: bool = True) -> list[str]:
    """Do once what a first event does, so that ``ready`` means a first event finds everything imported and
    built: for each ``(image, models, explainer, inpainter)``, classify and explain the image with every
    model, paint one small stroke with the inpainter and classify again. A job that fails is logged and
    skipped (its first event will say the sentence); returns those messages."""
    import numpy as np

    import ic_zoo

    problems = []
    for image, models, explainer, inpainter in jobs:
        try:
            s = ic_zoo.Session(image, device=device, pretrained=pretrained)
            s.evaluate(models, explainer)
            if inpainter:
                h, w = s.original.shape[:2]
                m = np.zeros((h, w), bool)
                m[h // 3:h // 3 + max(2, h // 10), w // 3:w // 3 + max(2, w // 10)] = True
                s.apply(m, inpainter)
                s.evaluate(models, explainer)
        except Exception as exc:  # noqa: BLE001 - the event that needs it will say it
            problems.append(f"{', '.join(models)} / {explainer} / {inpainter}: {exc}")
            log.warning("warm-up: %s", problems[-1])
    return problems


def study_warmup(study, device: str | None = None, pretrained: bool = True) -> Callable[[], list[str]]:
    """The warm-up of a study: each distinct (models, explainer, inpainter) of its tasks, on its task's image."""
    jobs = {}
    for t in study.tasks:
        jobs.setdefault((tuple(t.models), t.explainer, t.inpainter), t.image)
    return lambda: warm([(img, list(m), e, i) for (m, e, i), img in jobs.items()], device, pretrained)


def app_warmup(models, explainer: str = "gradcam", inpainter: str = "telea", device: str | None = None,
               pretrained: bool = True) -> Callable[[], list[str]]:
    """The comparison app's warm-up: its default models on a plain synthetic image."""
    def run_it():
        import numpy as np

        y, x = np.mgrid[0:224, 0:224]
        img = np.stack([x, y, (x + y) // 2], -1).astype(np.uint8)
        return warm([(img, list(models), explainer, inpainter)], device, pretrained)

    return run_it


# -- start-up that waits ----------------------------------------------------------------------------------
_OK = (200, 401, 301, 302, 303, 307, 308)  # what Gradio's own check of its local URL accepts


def patient_url_ok(url: str) -> bool:
    """Gradio's check of its local URL (``networking.url_ok``: 5 HEADs of 3 s, then launch() raises "When
    localhost is not accessible..."), made patient: a time-out means the machine is busy, so it asks
    again, with a longer time-out, for as long as it takes (saying so every minute); only an answer that
    is not the page, or a refused connection, 5 times (a proxy variable without NO_PROXY, say), is
    False, as before."""
    import httpx

    timeout, wrong, t0, said = 3.0, 0, time.monotonic(), 0.0
    while True:
        try:
            r = httpx.head(url, timeout=timeout, verify=False)
            if r.status_code in _OK:
                return True
            wrong += 1
        except httpx.TimeoutException:
            timeout = min(2 * timeout, 60.0)
            if time.monotonic() - said > 60:
                said = time.monotonic()
                log.warning("start-up: %s has not answered for %.0f s (a busy machine); still waiting", url,
                            said - t0)
        except (httpx.HTTPError, OSError):
            wrong += 1
        if wrong >= 5:
            return False
        time.sleep(0.5)


def _patient_run_in_thread(self) -> None:
    """gradio.http_server.Server.run_in_thread without its 5-second limit (a busy machine can take
    longer to start uvicorn): it waits until the server has started, or its thread has ended (the port
    was taken: uvicorn exits its thread), which is then Gradio's ServerFailedToStartError as before."""
    from gradio.exceptions import ServerFailedToStartError

    self.thread = threading.Thread(target=self.run, daemon=True)
    self.thread.start()
    t0, said = time.monotonic(), time.monotonic()
    while not self.started:
        if not self.thread.is_alive():
            raise ServerFailedToStartError("Server failed to start. Please check that the port is available.")
        if time.monotonic() - said > 60:
            said = time.monotonic()
            log.warning("start-up: the web server has not started after %.0f s (a busy machine); still waiting",
                        said - t0)
        time.sleep(0.01)


@contextlib.contextmanager
def patient_launch():
    """While a page launches: Gradio's two start-up checks wait instead of giving up (see above)."""
    from gradio import http_server, networking

    url_ok, run_in_thread = networking.url_ok, http_server.Server.run_in_thread
    networking.url_ok = patient_url_ok
    http_server.Server.run_in_thread = lambda self: (run_in_thread(self) if self.reloader
                                                     else _patient_run_in_thread(self))
    try:
        yield
    finally:
        networking.url_ok, http_server.Server.run_in_thread = url_ok, run_in_thread


def exit_now(code: int) -> None:
    """End the process now, after its drain and its closers: flush the logs and streams, then
    ``os._exit``. A plain exit would wait for whatever is left (a thread of a cancelled event, pools'
    worker threads, the interpreter tearing down torch), which took 25-61 s on a busy machine, past
    compose's 30 s grace period (issue 33)."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed stream: nothing to flush
            pass
    os._exit(code)


#: the proxies whose X-Forwarded-For is believed (addresses or networks, comma-separated; "*" for any peer,
#: only where the replicas cannot be reached except through the proxy); none by default
TRUSTED_PROXIES_ENV = "IC_ZOO_TRUSTED_PROXIES"


def trust_proxies() -> str:
    """Which peers' X-Forwarded-For names the client (the admin page's throttle and the new-participant cap
    count clients by it). uvicorn believes it from ``FORWARDED_ALLOW_IPS``, loopback by default: behind a
    same-host proxy that passes a client's own header on, a guesser chose the address it was counted as.
    Here only the proxies in ``IC_ZOO_TRUSTED_PROXIES`` are believed (none by default: the TCP peer is the
    client); an operator's own ``FORWARDED_ALLOW_IPS`` is kept. Returns the setting uvicorn will read.
    ``deploy/haproxy.cfg`` drops a client's header and sets its own."""
    if "FORWARDED_ALLOW_IPS" not in os.environ:
        os.environ["FORWARDED_ALLOW_IPS"] = os.environ.get(TRUSTED_PROXIES_ENV, "").strip()
    return os.environ["FORWARDED_ALLOW_IPS"]


def run(build: Callable[[], object], host: str, port: int, launch: dict) -> int:
    """Build the page (placeholder 503 meanwhile), launch it, serve until SIGTERM / SIGINT, drain, close.
    The page's ``ic_zoo_closers`` (the study log's ``engine.dispose``) run after the last event. Returns
    the exit status."""
    health = Health()
    wait = drain_seconds()
    hport = health_port()
    uploads = UploadBudget.from_env()  # a bad setting is said before anything starts
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    prober = None
    try:
        if hport is not None:  # for the process's whole life: starting, ready, draining
            prober = HealthServer(host, hport, health)
        try:
            starting = StartingServer(host, port, health)
        except OSError as exc:  # the port is taken: build anyway (a bad --model is said first), Gradio then says it
            log.warning("cannot hold %s:%s while loading (%s)", host, port, exc.strerror or exc)
            starting = None
        try:
            demo = build()
        finally:
            if starting is not None:
                starting.stop()
        closers = list(getattr(demo, "ic_zoo_closers", []))
        if stop.is_set():  # stopped while loading: nothing to drain, only the log to close
            _close(closers)
            return 0
        trust_proxies()
        with patient_launch():
            demo.launch(server_name=host, server_port=port, prevent_thread_lock=True,
                        app_kwargs={"routes": health_routes(health)}, **launch)
        front(demo.server_app, health, uploads)
        guard_queue(demo, health)
        warm = getattr(demo, "ic_zoo_warm", None)
        if warm is not None:  # 503 "starting" until what a first event needs is imported and built
            health.set("starting", phase="warming up")
            t0 = time.monotonic()
            warm()
            health.set("starting", phase=f"warm ({time.monotonic() - t0:.1f} s)")
        if stop.is_set():
            _close(closers)
            demo.close(verbose=False)
            return 0
        health.set("ready")
        while not stop.wait(0.5):
            if not getattr(demo, "is_running", True):
                return 1
        health.set("draining")
        t0 = time.monotonic()
        left = drain(demo, wait)
        if left:
            log.warning("shutdown: %d event(s) still running after %.0f s; stopping anyway", left, wait)
        else:
            log.info("shutdown: every event finished (%.1f s)", time.monotonic() - t0)
        _close(closers)
        demo.close(verbose=False)
        log.info("shutdown: done")
        return 0
    finally:
        if prober is not None:
            prober.stop()
        for s, h in previous.items():
            signal.signal(s, h)
