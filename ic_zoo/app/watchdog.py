"""The page watchdog (study mode's and the app's): every failure a person can meet ends in one sentence,
never a hang (issue 33, item 3).

Gradio's page sends an event as a POST to ``/queue/join`` and reads its answer from one stream per tab,
``/queue/data``. Behind replicas, that can fail in ways Gradio's page does not turn into a message: the
join or the stream answers 404 ("Session not found": the tab's replica is gone and the request reached
another one), 502 / 503 / 504 from the proxy, a stream that only sends heartbeats because the event went
to another replica, a replica that stops answering (paused, swapped out, dead behind a half-open
connection), an image of the page that another replica cannot serve (403). The script below watches the
page's own requests (it wraps ``window.fetch``, which Gradio's client calls for both) and shows the
reload sentence (``ui.MOVED``) in a banner over the page:

* at once when a join, the stream, an upload or a file of the page answers 404, 403 (a file) or 502 / 503 / 504,
  when the stream says ``unexpected_error`` (Gradio's "Session not found" comes so, in a 200 stream, and
  so does "Server stopped unexpectedly"), or when the stream breaks while an event of this tab is still
  waiting for its answer (a stream that ends cleanly is left to the bounds below: Gradio may close a tab's
  stream while a slow event runs and open another for its answer, seen in CI's runs);
* after ``IC_ZOO_WATCHDOG_S`` seconds (default 30) when an event has had no message at all about it
  (not queued, not started: the server never got it, or its answer goes elsewhere), or when the stream
  has sent nothing, heartbeats included (Gradio sends one every 15 s), for that long (at least 20 s);
* after ``IC_ZOO_WATCHDOG_MAX_S`` seconds (default 4 x the above) when an event started but never
  finished.

Nothing here talks to the server: it only reads what the page already receives.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

WATCHDOG_ENV = "IC_ZOO_WATCHDOG_S"
WATCHDOG_MAX_ENV = "IC_ZOO_WATCHDOG_MAX_S"
DEFAULT_S = 30.0
#: Gradio's stream sends a heartbeat every 15 s: a stream silent for less than this is not yet suspect
STREAM_SILENCE_MIN_S = 20.0


def _seconds(name: str, default: float) -> float:
    try:
        v = float(os.environ.get(name) or default)
    except ValueError:
        from ..errors import InputError

        raise InputError(f"{name} must be a number of seconds, not {os.environ.get(name)!r}.") from None
    return v if v > 0 else default


def bounds(max_factor: float = 4) -> dict:
    """The watchdog's bounds in seconds, from the environment (read when the page is built). ``max``
    defaults to ``max_factor`` x the quiet bound: the app's tools (slow maps, the inpainter check) may
    work for minutes on a busy machine, a study's strokes do not."""
    quiet = _seconds(WATCHDOG_ENV, DEFAULT_S)
    return {"quiet": quiet, "max": max(quiet, _seconds(WATCHDOG_MAX_ENV, max_factor * quiet)),
            "silence": max(quiet, STREAM_SILENCE_MIN_S)}


#: the page code and styles, as files (``ic_zoo/app/static``)
STATIC = Path(__file__).with_name("static")
WATCHDOG_JS = (STATIC / "watchdog.js").read_text()


def script(sentence: str, max_factor: float = 4) -> str:
    """The watchdog for a page, its bounds read from the environment now."""
    return WATCHDOG_JS.replace("__SENTENCE__", json.dumps(sentence)).replace("__BOUNDS__",
                                                                            json.dumps(bounds(max_factor)))


def install(demo, sentence: str, max_factor: float = 4) -> None:
    """Install the watchdog on a page (call inside ``with demo:``): a load event that only runs JS."""
    demo.load(None, None, None, js=script(sentence, max_factor), api_visibility="private", queue=False)
