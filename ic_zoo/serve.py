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

Nothing here is process-wide beyond the signal handlers that :func:`run` installs for its own server.
"""
from __future__ import annotations

import http.server
import json
import logging
import os
import signal
import socket
import threading
import time
from typing import Callable

log = logging.getLogger("ic_zoo.serve")

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

    def set(self, state: str, **detail) -> None:
        self.state, self.since = state, time.time()
        self.detail.update(detail)
        log.info("health: %s", state)

    def body(self) -> dict:
        return {"status": self.state, "replica": self.replica, "pid": os.getpid(), **self.detail}

    @property
    def code(self) -> int:
        return 200 if self.state == "ready" else 503


class _Starting(http.server.BaseHTTPRequestHandler):
    health: Health

    def _answer(self) -> None:
        body = json.dumps(self.health.body()).encode() if self.path.split("?")[0] == HEALTH_PATH else \
            b"Interactive Classification is starting (loading its models); try again in a few seconds.\n"
        self.send_response(503)
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


class StartingServer:
    """503 on ``host:port`` until :meth:`stop` (then the port is free for Gradio)."""

    def __init__(self, host: str, port: int, health: Health) -> None:
        handler = type("Handler", (_Starting,), {"health": health})
        self.server = http.server.ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                       name="ic_zoo-starting", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def health_routes(health: Health) -> list:
    """``GET /healthz``, given to Gradio's app when it is created (ahead of its own routes, so that it
    answers from the first request)."""
    from fastapi.responses import JSONResponse
    from starlette.routing import Route

    async def healthz(request):
        return JSONResponse(health.body(), status_code=health.code, headers={"Cache-Control": "no-store"})

    return [Route(HEALTH_PATH, healthz, methods=["GET", "HEAD"])]


def guard_queue(demo, health: Health) -> None:
    """While draining, a new event is refused with :data:`DRAINING` as its detail, which Gradio's page shows
    as the event's error (for a 503, "queue full", it would show its own "busy" line instead); events
    already queued still run."""
    queue = demo._queue
    push = queue.push

    async def guarded_push(body, request, username):
        if health.state == "draining":
            return False, DRAINING, "error"
        return await push(body, request, username)

    queue.push = guarded_push


def in_flight(demo) -> int:
    """Events running or waiting in the queue."""
    q = demo._queue
    waiting = sum(len(eq.queue) for eq in q.event_queue_per_concurrency_id.values())
    return q.get_active_worker_count() + waiting


def drain_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get(DRAIN_ENV) or 20))
    except ValueError:
        from .errors import InputError

        raise InputError(f"{DRAIN_ENV} must be a number of seconds, not '{os.environ[DRAIN_ENV]}'.") from None


def _close(closers) -> None:
    for close in closers:
        try:
            close()
        except Exception as exc:  # noqa: BLE001 - closing is best effort, and said
            log.warning("shutdown: %s", exc)


def run(build: Callable[[], object], host: str, port: int, launch: dict) -> int:
    """Build the page (placeholder 503 meanwhile), launch it, serve until SIGTERM / SIGINT, drain, close.
    The page's ``ic_zoo_closers`` (the study log's ``engine.dispose``) run after the last event. Returns
    the exit status."""
    health = Health()
    wait = drain_seconds()
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
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
        demo.launch(server_name=host, server_port=port, prevent_thread_lock=True,
                    app_kwargs={"routes": health_routes(health)}, **launch)
        guard_queue(demo, health)
        health.set("ready")
        while not stop.wait(0.5):
            if not getattr(demo, "is_running", True):
                return 1
        health.set("draining")
        t0 = time.monotonic()
        while in_flight(demo) and time.monotonic() - t0 < wait:
            time.sleep(0.1)
        left = in_flight(demo)
        if left:
            log.warning("shutdown: %d event(s) still running after %.0f s; stopping anyway", left, wait)
        else:
            log.info("shutdown: every event finished (%.1f s)", time.monotonic() - t0)
        _close(closers)
        demo.close(verbose=False)
        log.info("shutdown: done")
        return 0
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
