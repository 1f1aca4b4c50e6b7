"""ZeroGPU (a Hugging Face Space whose GPU is attached per call, in a forked worker): handlers that run
models go to the GPU, and their results cross back in a wire format (components by id, styled tables as
their DataFrame)."""
from __future__ import annotations

import functools
import importlib.util
import inspect
import os

import gradio as gr

from . import gradio_internals
from .guard import guarded


def on_zero_gpu() -> bool:
    """A Hugging Face Space on ZeroGPU hardware (which sets SPACES_ZERO_GPU) with the ``spaces`` package."""
    flag = os.environ.get("SPACES_ZERO_GPU", "").strip().lower() in ("1", "true", "yes")
    return flag and importlib.util.find_spec("spaces") is not None


class _WireTable:
    """A styled table on its way out of a ZeroGPU worker: the DataFrame crosses, the style is re-applied."""

    def __init__(self, df) -> None:
        self.df = df


def _map_leaves(value, leaf):
    """``leaf`` applied to every value inside nested lists, tuples and dicts (a handler's outputs)."""
    if isinstance(value, (list, tuple)):
        return type(value)(_map_leaves(v, leaf) for v in value)
    if isinstance(value, dict):
        return {k: _map_leaves(v, leaf) for k, v in value.items()}
    return leaf(value)


class _WireOutputs(dict):
    """A handler's ``{component: value}`` on its way out of a ZeroGPU worker: keyed by the components' ids
    (the worker's copies of the components are not the page's)."""


def _to_wire(value):
    if isinstance(value, dict) and value and all(isinstance(k, gr.blocks.Block) for k in value):
        return _WireOutputs({gradio_internals.block_id(k): _to_wire(v) for k, v in value.items()})
    return _map_leaves(value, lambda v: _WireTable(v.data) if type(v).__name__ == "Styler" and hasattr(v, "data")
                       else v)


def _from_wire(value):
    from ..presentation.present import style_table

    if isinstance(value, _WireOutputs):
        # the page's components as built (an update rebuilds a session's copy of a component under a new
        # id, which Gradio would not match to the event's outputs), then this session's (a gr.render's)
        built, session = gradio_internals.current_blocks()
        return {(built.get(i) or session[i]): _from_wire(v) for i, v in value.items()}
    return _map_leaves(value, lambda v: style_table(v.df) if isinstance(v, _WireTable) else v)


def gpu(fn, duration: int | None = None):
    """``fn`` inside ``@spaces.GPU`` on ZeroGPU (a GPU is attached for each call), ``fn`` itself elsewhere.

    ZeroGPU runs the call in a forked worker and pickles its arguments and its result, so the result
    goes out as picklable values (styled tables as their DataFrame) and is restyled here; the session
    state pickles without its caches (see ``Session.__getstate__``). ``spaces`` is optional: it is
    imported only on ZeroGPU. ``IC_ZOO_GPU_DURATION`` (seconds) sets the longest a call may hold the GPU
    (default 60)."""
    if not on_zero_gpu():
        return fn
    import spaces

    duration = duration or int(os.environ.get("IC_ZOO_GPU_DURATION", "60"))
    if inspect.isgeneratorfunction(fn):  # a handler that answers in steps: one GPU call, its steps as one answer
        @functools.wraps(fn)
        def in_worker_all(*args, **kwargs):
            merged: dict = {}
            for part in fn(*args, **kwargs):
                merged.update(part)
            return _to_wire(merged)

        remote_all = spaces.GPU(duration=duration)(in_worker_all)

        @functools.wraps(fn)
        def steps(*args, **kwargs):
            yield _from_wire(remote_all(*args, **kwargs))

        return steps

    @functools.wraps(fn)
    def in_worker(*args, **kwargs):
        return _to_wire(fn(*args, **kwargs))

    remote = spaces.GPU(duration=duration)(in_worker)

    @functools.wraps(fn)
    def handler(*args, **kwargs):
        return _from_wire(remote(*args, **kwargs))

    return handler


def model_call(fn):
    """A handler that runs models: one sentence for every failure (``guarded``), on a ZeroGPU GPU when the
    Space has one (``gpu``)."""
    return gpu(guarded(fn))
