"""Interactive work first: a stroke does not wait for, nor share the cores with, background work.

A follow-up such as the trust scores beside the maps (about 2 s of CPU per model) used to run beside the
next stroke on the same two cores and make it 5x slower. Events a person waits for run inside
``foreground()``; background work calls ``yield_to_foreground()`` between its chunks (a batch of forward
passes, a set of inpaintings) and waits there while any foreground event runs. The background work's
result does not change, only when it is computed; it waits at most ``timeout`` seconds at a time, so a
steady stream of strokes delays it but cannot starve it for ever.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

_cond = threading.Condition()
_running = 0


@contextmanager
def foreground():
    """Mark the calling event as one a person waits for, while it runs."""
    global _running
    with _cond:
        _running += 1
    try:
        yield
    finally:
        with _cond:
            _running -= 1
            if not _running:
                _cond.notify_all()


def busy() -> bool:
    """Whether a foreground event is running now."""
    return _running > 0


def yield_to_foreground(timeout: float = 10.0) -> None:
    """Background work's checkpoint: return at once when nothing is in the foreground, else when it is done
    (or after ``timeout`` seconds)."""
    if not _running:
        return
    with _cond:
        _cond.wait_for(lambda: _running == 0, timeout)
