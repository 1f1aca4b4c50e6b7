"""The tab store of both apps: every tab's state registered while its handlers run, and released (its
images and caches dropped, a sentence kept) when idle too long or over the memory bound."""
from __future__ import annotations

import functools
import inspect
import os

from ..memsize import nbytes


def _env_number(name: str, default: float) -> float:
    try:
        v = float(os.environ.get(name, default))
        return v if v > 0 else default
    except ValueError:
        return default


class Tabs:
    """The per-tab states (browser tabs and API clients alike) that hold images, and a bound on them.

    Gradio keeps a tab's ``gr.State`` for as long as its session lives, and an API client's session never
    ends. Every handler that takes a tab's state runs inside ``hold``: the state is marked in use, then
    registered as used now, with the bytes of arrays and tensors it holds (``memsize.nbytes``: images,
    masks, patches, model inputs, explainer runs, maps). A state idle for longer than ``ttl_s``, or the
    least recently used one while the tabs together hold more than ``max_bytes`` or more than ``max_tabs``
    tabs hold images, is released: its images and caches are dropped and ``expired`` says why, so the page
    tells a returning user in one sentence instead of failing. States in use are never released, nor the
    most recently used one (a single tab larger than the bound keeps working). A daemon thread sweeps
    every ``sweep_s`` seconds, so an idle server frees memory too, and after events it hands the heap
    pages Python and torch freed back to the system (glibc keeps them otherwise: 420 MB after 32 tabs of
    16 clients' strokes, which the sweep returned).

    ``IC_ZOO_SESSION_TTL_S`` (default 1800), ``IC_ZOO_SESSIONS_MB`` (default ``DEFAULT_MB``) and
    ``IC_ZOO_MAX_SESSIONS`` (default 64) set the bounds.
    """

    #: What all tabs together may hold, in MB (10^6 bytes), unless ``IC_ZOO_SESSIONS_MB`` says otherwise.
    DEFAULT_MB = 800

    def __init__(self, kind: type, ttl_s: float | None = None, max_tabs: int | None = None,
                 sweep_s: float = 30.0, max_bytes: int | None = None) -> None:
        import collections
        import threading
        import weakref

        self.kind = kind
        self.ttl_s = ttl_s or _env_number("IC_ZOO_SESSION_TTL_S", 1800)
        self.max_tabs = int(max_tabs or _env_number("IC_ZOO_MAX_SESSIONS", 64))
        self.max_bytes = int(max_bytes or _env_number("IC_ZOO_SESSIONS_MB", self.DEFAULT_MB) * 1e6)
        # id -> (ref, last used, bytes held when last used), least recently used first
        self._live: collections.OrderedDict[int, tuple] = collections.OrderedDict()
        self._busy: dict[int, int] = {}
        self._lock = threading.Lock()
        self._weakref = weakref.ref
        self.released = 0
        self.events = 0  # handlers run (the sweeper returns freed memory after events)
        self._stop = threading.Event()
        t = threading.Thread(target=self._sweeper, args=(sweep_s,), name="ic_zoo-tabs", daemon=True)
        t.start()

    def __len__(self) -> int:
        with self._lock:
            return sum(1 for ref, *_ in self._live.values() if ref() is not None)

    def states(self) -> list:
        """The live tab states, least recently used first (for tests and benchmarks)."""
        with self._lock:
            return [st for st in (ref() for ref, *_ in self._live.values()) if st is not None]

    def held_bytes(self) -> int:
        """What the live tabs held when each was last used (for the health page, tests and benchmarks)."""
        with self._lock:
            return sum(n for ref, _, n in self._live.values() if ref() is not None)

    def _sweeper(self, every: float) -> None:
        trimmed = 0
        while not self._stop.wait(every):
            if not self.sweep() and self.events != trimmed:  # a sweep that released anything trimmed already
                _return_freed_memory()
            trimmed = self.events

    def close(self) -> None:
        self._stop.set()

    def _touch(self, st, size: int | None = None) -> None:
        import time

        key = id(st)
        old = self._live.pop(key, None)
        if size is None:
            size = old[2] if old is not None else 0
        self._live[key] = (self._weakref(st), time.monotonic(), size)

    def sweep(self) -> list:
        """Release what is past the time to live or over the cap; returns the released states."""
        import time

        out = []
        with self._lock:
            now = time.monotonic()
            total = sum(n for _, _, n in self._live.values())
            newest = next(reversed(self._live), None)
            for key in list(self._live):
                ref, used, size = self._live[key]
                st = ref()
                if st is None:
                    del self._live[key]
                    total -= size
                    continue
                many = len(self._live) > self.max_tabs
                heavy = total > self.max_bytes
                idle = now - used > self.ttl_s
                if not (many or heavy or idle):
                    break  # oldest first: everything after is more recent, and the tabs are within the bounds
                if self._busy.get(key) or (key == newest and not idle):
                    continue
                del self._live[key]
                total -= size
                # released under the lock: a handler starting now waits for it, then finds the sentence
                st.release(f"it was idle for more than {_duration(self.ttl_s)}" if idle else
                           f"the server keeps at most {self.max_tabs} sessions and this one was the least "
                           "recently used" if many else
                           f"the server keeps at most {self.max_bytes / 1e6:.0f} MB of sessions' images and "
                           "this one was the least recently used")
                out.append(st)
            self.released += len(out)
        if out:
            _return_freed_memory()
        return out

    def hold(self, fn):
        """``fn`` with every tab state among its arguments marked in use while it runs, and every tab
        state among its results registered as used now (a state that crossed to a ZeroGPU worker comes
        back as a new object)."""

        def begin(args) -> list:
            states = [a for a in args if isinstance(a, self.kind)]
            self.events += 1
            with self._lock:
                for st in states:
                    self._busy[id(st)] = self._busy.get(id(st), 0) + 1
                    self._touch(st)
            return states

        def end(states) -> None:
            with self._lock:
                for st in states:
                    n = self._busy.get(id(st), 1) - 1
                    if n:
                        self._busy[id(st)] = n
                    else:
                        self._busy.pop(id(st), None)

        def used(states, out) -> None:
            results = out.values() if isinstance(out, dict) else out if isinstance(out, (list, tuple)) else [out]
            touched = {id(o): o for o in list(states) + list(results) if isinstance(o, self.kind)}
            sizes = {k: nbytes(o) for k, o in touched.items()}  # outside the lock: other tabs go on
            with self._lock:
                for k, o in touched.items():
                    self._touch(o, sizes[k])
            self.sweep()

        if inspect.isgeneratorfunction(fn):  # a handler that answers in steps: held until its last
            @functools.wraps(fn)
            def steps(*args, **kwargs):
                states, out = begin(args), None
                try:
                    for out in fn(*args, **kwargs):
                        yield out
                finally:
                    end(states)
                used(states, out)

            return steps

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            states = begin(args)
            try:
                out = fn(*args, **kwargs)
            finally:
                end(states)
            used(states, out)
            return out

        return wrapper


def _return_freed_memory() -> None:
    """Hand the heap pages freed by released tabs back to the system (glibc keeps them otherwise, and a
    server's RSS then only grows); a no-op where there is no glibc."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} minutes" if seconds >= 120 else f"{seconds:.0f} seconds"


def expired_sentence(reason: str) -> str:
    return (f"Your session expired ({reason}), so the server let its image and strokes go; reload the page to "
            "rebuild them from what this browser kept, or pick an example or upload an image.")
