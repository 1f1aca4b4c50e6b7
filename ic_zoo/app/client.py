"""A Python client for the app and study mode behind replicas: ``gradio_client`` with the page watchdog's
promise (issue 33, item 3). Every call ends in its answer, the app's own error, or one sentence
(:class:`ServerLost`) within ``hang`` seconds; never a hang, never a bare transport error.

``gradio_client`` meets a replica's failure as whatever broke first: ``CancelledError`` when the event's
stream breaks (its replica was killed or frozen and the proxy closed its connections), an ``httpx`` 502 /
503 / 504 from the proxy, a connection error, "Session not found" when the call reached a replica that
never saw the client, or nothing at all while it waits on a stream that only sends heartbeats. The page's
watchdog (:mod:`ic_zoo.app.watchdog`) turns each of those into the reload sentence in the browser; this
does the same for scripts, with the API's way to go on in place of "reload the page":

* a study participant joins again with the same link (``/consent``): the log rebuilds the task;
* an app user sends the signed work record of its last answer to ``/restore`` on any replica.

**One TLS context for all the client's requests.** ``gradio_client`` passes its ``ssl_verify`` to every
request it makes through a fresh ``httpx`` client (each upload, each join, each stream), and with the default
(``True``) each of them loads the certificate store again: 36 ms on this project's 2-core machine, four times
for an edit with two images, which made a 250 ms edit take 1.5x its server's work through ``gradio_client``
(issue 35). This client builds httpx's own default context once (:func:`tls_context`: the same certificates,
the same checks) and hands that to ``gradio_client``, which passes it on. ``ssl_verify=False`` (a
self-signed server) is still honoured.

Errors the app raises itself (``gradio_client``'s ``AppError``, which carries the app's sentence) pass
through unchanged. A result file is downloaded through the proxy with the client's affinity cookie
(:meth:`Client.download`); one that another replica made, or that a stopped replica held, is the server's
file sentence (``serve.FILE_GONE``).

    from ic_zoo.app.client import Client, ServerLost
    c = Client("https://study.example.org", study=True)
    try:
        out = c.call(0, link, api_name="/consent")
    except ServerLost as e:
        print(e)   # one sentence; join again with the link
"""
from __future__ import annotations

import concurrent.futures as cf
import functools
import threading

#: what a study participant's script is told when its replica is lost
STUDY_LOST = ("The server you were working on stopped: join again with your link (/consent) to continue where "
              "you left off (everything you did is kept).")
#: what an app user's script is told
APP_LOST = ("The server you were working on stopped: send the work record of your last answer to /restore to "
            "continue where you left off (your image and strokes are in that record).")
#: gradio_client's own words for an event that reached a replica without the client's session
_LOST_WORDS = ("Session not found", "Server stopped unexpectedly")
_PROXY_CODES = (502, 503, 504)


class ServerLost(RuntimeError):
    """The replica a call was on stopped, froze, or the call reached another one: ``str(exc)`` is one
    sentence that says how to go on; ``cause`` is what broke first (for logs)."""

    def __init__(self, sentence: str, cause: str = ""):
        super().__init__(sentence)
        self.sentence, self.cause = sentence, cause


@functools.cache
def tls_context():
    """httpx's default TLS context (certifi's store, or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``; hostnames and
    certificates checked), built once per process and shared by every request of every :class:`Client`."""
    import httpx

    return httpx.create_ssl_context()


def lost(exc: BaseException) -> bool:
    """Whether ``exc``, raised by a ``gradio_client`` call, means the call's replica was lost (rather than an
    error of the app's, which is the app's sentence)."""
    import httpx

    if isinstance(exc, (cf.CancelledError, cf.TimeoutError, TimeoutError, httpx.TransportError, ConnectionError)):
        return True
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code in _PROXY_CODES
    return any(w in str(exc) for w in _LOST_WORDS)


class Client:
    """``gradio_client.Client`` through one URL (the proxy's), whose calls end in their answer, the app's
    error, or :class:`ServerLost` within ``hang`` seconds. ``study`` picks the sentence's way to go on."""

    def __init__(self, url: str, study: bool = False, hang: float = 30.0, **kwargs):
        from gradio_client import Client as GradioClient

        self.url, self.hang = url.rstrip("/"), float(hang)
        self.sentence = STUDY_LOST if study else APP_LOST
        kwargs.setdefault("verbose", False)
        kwargs.setdefault("download_files", False)
        kwargs.setdefault("httpx_kwargs", {"timeout": self.hang})
        kwargs.setdefault("ssl_verify", tls_context())
        self.verify = kwargs["ssl_verify"]
        try:
            self.client = GradioClient(self.url, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the app's config could not be read: no replica answered?
            if lost(exc) or _http_error(exc) or self._proxy_alone():
                raise ServerLost(self.sentence, f"{type(exc).__name__}: {exc}") from exc
            raise

    def _proxy_alone(self) -> bool:
        """Whether the URL answers as a proxy with no server behind it (``gradio_client`` says only "Could
        not fetch config" for any status)."""
        import httpx

        try:
            return httpx.get(self.url + "/config", timeout=self.hang, verify=self.verify).status_code in _PROXY_CODES
        except httpx.HTTPError:
            return True

    @property
    def cookies(self) -> dict:
        return dict(self.client.cookies or {})

    def call(self, *args, api_name: str):
        """One event: its outputs, the app's own error (``gradio_client``'s ``AppError``), or
        :class:`ServerLost`. An event unanswered after ``hang`` seconds is cancelled aside (its cancel may
        hang on a frozen replica too) and is :class:`ServerLost`."""
        try:
            job = self.client.submit(*args, api_name=api_name)
            try:
                return job.result(timeout=self.hang)
            except (cf.TimeoutError, TimeoutError):
                threading.Thread(target=_quietly, args=(job.cancel,), daemon=True).start()
                raise
        except Exception as exc:  # noqa: BLE001 - sorted below: the replica's loss, or the app's error
            if lost(exc) or _http_error(exc):
                raise ServerLost(self.sentence, f"{type(exc).__name__}: {exc}") from exc
            raise

    def download(self, file) -> bytes:
        """The bytes of a result file (an output's ``{"url": ...}`` or a URL), fetched through the proxy with
        this client's affinity cookie, as a page fetches it. A file the server refuses (another replica made
        it, or a stopped one held it) raises :class:`ServerLost` with the server's file sentence."""
        import httpx

        url = file.get("url") if isinstance(file, dict) else str(file)
        if not url:
            raise ValueError("This output has no URL to download: ask the client with download_files=False.")
        if url.startswith("/"):
            url = self.url + url
        try:
            r = httpx.get(url, cookies=self.cookies, timeout=self.hang, follow_redirects=True, verify=self.verify)
        except Exception as exc:  # noqa: BLE001 - a transport failure is the replica's loss
            if lost(exc):
                raise ServerLost(self.sentence, f"{type(exc).__name__}: {exc}") from exc
            raise
        if r.status_code in (403, 404) or r.status_code in _PROXY_CODES:
            from ic_zoo.app import serve

            said = r.text.strip() if serve.FILE_GONE in r.text else self.sentence
            raise ServerLost(said, f"HTTP {r.status_code} for {url}")
        r.raise_for_status()
        return r.content


def _http_error(exc: BaseException) -> bool:
    """A proxy's 502 / 503 / 504 that ``gradio_client`` wrapped in its own exception text."""
    s = str(exc)
    return any(f"'{c} " in s or f" {c} " in s for c in _PROXY_CODES) and ("Bad Gateway" in s or "Service Unavailable" in s
                                                                         or "Gateway Time" in s)


def _quietly(fn) -> None:
    try:
        fn()
    except Exception:  # noqa: BLE001 - a cancel sent to a dead or paused replica
        pass
