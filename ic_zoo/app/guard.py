"""The error guard of both apps: every failure of a handler reaches the person as one sentence, edits
already made are kept; and a progress bar that never goes backwards."""
from __future__ import annotations

import functools
import inspect
import logging
from contextlib import contextmanager

import gradio as gr

from ..errors import IcZooError
from ..presentation.present import public_text

log = logging.getLogger("ic_zoo.app")


def _sentence(fn, exc: Exception) -> gr.Error:
    """The one sentence a handler's failure reaches the user as."""
    if isinstance(exc, gr.Error):  # a sentence for the user, not a failure: no traceback in the server log
        exc.print_exception = False
        return exc
    if isinstance(exc, IcZooError):
        return gr.Error(public_text(exc), print_exception=False)
    log.error("handler %s failed", fn.__name__, exc_info=exc)
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return gr.Error(f"Something went wrong ({public_text(msg)}); your earlier edits are kept, please try again.",
                    print_exception=False)


@contextmanager
def _one_sentence(fn):
    """Around a handler's call (or its steps): a failure leaves as its one sentence (``_sentence``)."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001
        err = _sentence(fn, exc)
        if err is exc:
            raise
        raise err from None


def guarded(fn):
    """Every failure reaches the user as one sentence; edits already made are kept. A handler that answers
    in steps (a generator) keeps its steps."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def steps(*args, **kwargs):
            with _one_sentence(fn):
                yield from fn(*args, **kwargs)

        return steps

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _one_sentence(fn):
            return fn(*args, **kwargs)

    return wrapper


def monotonic(progress):
    """A ``gr.Progress`` that never goes backwards (steps that each report 0..1 would make it jump back)."""
    best = [0.0]

    def report(fraction, desc=None):
        if isinstance(fraction, (int, float)):
            best[0] = max(best[0], float(fraction))
            fraction = best[0]
        return progress(fraction, desc=desc)

    return report
