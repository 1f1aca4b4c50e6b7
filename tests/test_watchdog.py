"""The pieces of issue 33, item 3 that need no browser: the watchdog's bounds from the environment, and a
result file this replica cannot give answered with one sentence (serve.HealthFront) instead of a bare 403."""
from __future__ import annotations

import asyncio

import pytest

from ic_zoo.app import serve
from ic_zoo.app import watchdog


def test_the_bounds_come_from_the_environment(monkeypatch):
    monkeypatch.delenv(watchdog.WATCHDOG_ENV, raising=False)
    monkeypatch.delenv(watchdog.WATCHDOG_MAX_ENV, raising=False)
    assert watchdog.bounds() == {"quiet": 30.0, "max": 120.0, "silence": 30.0}
    monkeypatch.setenv(watchdog.WATCHDOG_ENV, "3")
    monkeypatch.setenv(watchdog.WATCHDOG_MAX_ENV, "8")
    assert watchdog.bounds() == {"quiet": 3.0, "max": 8.0, "silence": watchdog.STREAM_SILENCE_MIN_S}
    assert '"quiet": 3.0' in watchdog.script("Reload, please.") and "Reload, please." in watchdog.script("Reload, please.")
    monkeypatch.setenv(watchdog.WATCHDOG_ENV, "soon")
    with pytest.raises(Exception, match="IC_ZOO_WATCHDOG_S must be a number"):
        watchdog.bounds()


def _first(app, path) -> dict:
    """The response start and body of one GET through serve.HealthFront."""
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(m):
        sent.append(m)

    asyncio.run(serve.HealthFront(app, serve.Health())({"type": "http", "path": path, "method": "GET"}, receive, send))
    return {"status": sent[0]["status"], "headers": sent[0].get("headers", []),
            "body": b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")}


def _call(app, path):
    r = _first(app, path)
    return r["status"], r["body"]


def _answering(status, body):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app


@pytest.mark.parametrize("status", [403, 404])
def test_a_file_another_replica_made_is_answered_with_the_sentence(status):
    code, body = _call(_answering(status, b'{"detail": "File not allowed"}'), "/gradio_api/file=/tmp/gradio/x/a.png")
    assert code == status and body.decode() == serve.FILE_GONE


def test_other_answers_pass_unchanged():
    assert _call(_answering(200, b"png"), "/gradio_api/file=/tmp/gradio/x/a.png") == (200, b"png")
    assert _call(_answering(403, b"no"), "/gradio_api/other") == (403, b"no")


def _headers(app, path) -> dict:
    return {k.decode(): v.decode() for k, v in _first(app, path)["headers"]}


def _with_headers(status, headers):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"png"})

    return app


def test_a_hash_named_cache_file_may_be_kept_by_the_browser():
    """Gradio names its cache files by their bytes' hash: their URL never means other bytes, so the page may
    keep them (the canvas asked for the same background three times per stroke); any other file, a refusal,
    or another route keeps Gradio's own policy."""
    digest = "0123456789abcdef" * 4
    hashed = f"/gradio_api/file=/tmp/gradio/{digest}/image.png"
    app = _with_headers(200, [(b"cache-control", b"no-cache"), (b"content-type", b"image/png")])
    h = _headers(app, hashed)
    assert h["cache-control"] == serve.IMMUTABLE.decode() and h["content-type"] == "image/png"
    assert _headers(app, "/gradio_api/file=/tmp/gradio/x/image.png")["cache-control"] == "no-cache"
    assert _headers(app, f"/gradio_api/other/{digest}/image.png")["cache-control"] == "no-cache"
    assert _headers(_with_headers(404, []), hashed).get("cache-control") == "no-store"  # the sentence, not kept
