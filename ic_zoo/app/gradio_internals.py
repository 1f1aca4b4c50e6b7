"""Every use of a Gradio internal, in one place (issue 37 item 3).

The apps stand on Gradio's public API, except for five things it does not expose: the queue (to refuse
new events while a replica drains, and to count what is in flight), the blocks of the running session
and a component's id (to map a ZeroGPU worker's outputs back to components), the metaclass's ``.pyi`` writer (which would
write into site-packages when the canvas class is made), and the ImageEditor's pending uploads (to cap
them). Each is reached only through a function here, and ``tests/test_gradio_internals.py`` checks every
one against the installed Gradio, so an upgrade that changes one fails there by name, not silently in
behaviour. ``check_version`` refuses, with one sentence, a Gradio outside the range the project is
tested on (``TESTED``).
"""
from __future__ import annotations

import contextlib
import re

from ..errors import IcZooError

#: The Gradio versions this project is tested on: from the first, up to (not including) the second.
TESTED = ((6, 31), (7, 0))


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def check_version(version: str | None = None) -> str:
    """The installed Gradio's version; one sentence (IcZooError) outside ``TESTED``."""
    if version is None:
        import gradio

        version = gradio.__version__
    v = _version_tuple(version)
    lo, hi = TESTED
    if not (lo <= v[:2] < hi):
        raise IcZooError(f"This app is tested with Gradio {lo[0]}.{lo[1]} up to (not including) {hi[0]}.{hi[1]}, "
                         f"and Gradio {version} is installed: install the tested one with "
                         "`pip install -r requirements.txt`.")
    return version


def block_id(block) -> int:
    """A component's id in its page (``Block._id``): what the ZeroGPU wire format names outputs by."""
    return block._id


def current_blocks() -> tuple[dict, dict]:
    """The page's components as built, and the running session's (a ``gr.render``'s), by id: where an
    event's handler runs (``gradio.context.LocalContext``)."""
    from gradio.context import LocalContext

    return LocalContext.blocks.get().blocks, LocalContext.blocks_config.get().blocks


@contextlib.contextmanager
def no_component_stub():
    """Make a component class without Gradio's metaclass writing a ``.pyi`` stub beside its module (for
    Gradio's custom-component tooling; beside an installed package it is a write into site-packages)."""
    from gradio import component_meta

    write, component_meta.create_or_modify_pyi = component_meta.create_or_modify_pyi, lambda *a, **k: None
    try:
        yield
    finally:
        component_meta.create_or_modify_pyi = write


def pending_uploads(editor) -> dict:
    """The ImageEditor's images uploaded ahead of their event, by the event's id (``blob_storage``)."""
    return editor.blob_storage


def wrap_queue_push(demo, wrap) -> None:
    """Put ``wrap(push)`` in place of the queue's ``push`` (every new event passes through it)."""
    queue = demo._queue
    queue.push = wrap(queue.push)


def in_flight(demo) -> int:
    """Events running or waiting in the demo's queue."""
    q = demo._queue
    waiting = sum(len(eq.queue) for eq in q.event_queue_per_concurrency_id.values())
    return q.get_active_worker_count() + waiting
