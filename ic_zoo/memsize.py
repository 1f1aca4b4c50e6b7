"""How many bytes of arrays and tensors an object holds: what bounds the server's memory (``tab_store.Tabs``).

``nbytes(obj)`` walks containers, dataclasses and the ``__dict__`` / ``__slots__`` of the project's own
objects (a tab's state, a ``Session``, its edits, results and views) and sums the buffers of every numpy
array and torch tensor it reaches, each buffer once (views of one buffer count once). A tensor that is the
output of a graph (an explainer's tapped run) also counts the tensors its graph saved for the backward
pass, which are held for as long as the run is (not the weights it saved: those are the model's). Models, modules and anything outside the ``ic_zoo``
package are not walked: they are shared by every tab, not owned by one.
"""
from __future__ import annotations

import dataclasses
import sys

import numpy as np

#: Walk at most this many objects per call (a tab holds a few thousand; a cycle or a huge list stops here).
MAX_OBJECTS = 200_000


def _array_key(a: np.ndarray) -> tuple[int, int]:
    base = a
    while isinstance(base.base, np.ndarray):
        base = base.base
    if base.base is not None:  # a view of a buffer numpy does not own (bytes, a tensor's storage, mmap)
        return ("buffer", id(base.base))  # type: ignore[return-value]
    return ("array", id(base))  # type: ignore[return-value]


def _graph_tensors(fn, seen_fns: set, out: list) -> None:
    """The tensors a backward graph saved, from its output's ``grad_fn`` down."""
    stack = [fn]
    while stack:
        f = stack.pop()
        if f is None or id(f) in seen_fns:
            continue
        seen_fns.add(id(f))
        for name in dir(f):
            if name.startswith("_saved_"):
                try:
                    v = getattr(f, name)
                except Exception:  # noqa: BLE001 - a saved value freed by a backward pass
                    continue
                for t in (v if isinstance(v, (tuple, list)) else (v,)):
                    if _is_tensor(t) and _activation(t):
                        out.append(t)
        stack.extend(nf for nf, _ in getattr(f, "next_functions", ()) if nf is not None)


def _activation(t) -> bool:
    """A saved tensor the run owns: not a model's weight or buffer (a leaf that needs no gradient, or a
    view of one), which every tab shares."""
    base = t._base if t._base is not None else t
    return not (base.is_leaf and not base.requires_grad)


def _is_tensor(v) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(v, torch.Tensor)


def _ours(obj) -> bool:
    """The project's own objects (and a test's), but not the models, explainers and inpainters, which
    every tab shares (their classes say so with ``shared_between_tabs``)."""
    if getattr(type(obj), "shared_between_tabs", False):
        return False
    mod = type(obj).__module__ or ""
    return (mod == "ic_zoo" or mod.startswith(("ic_zoo.", "tests.")) or mod.rsplit(".", 1)[-1].startswith("test_")
            or mod == "__main__")


def nbytes(obj) -> int:
    """Bytes of the arrays and tensors ``obj`` holds (each buffer once)."""
    torch = sys.modules.get("torch")
    module_type = torch.nn.Module if torch is not None else ()
    seen: set[int] = set()
    buffers: dict = {}
    seen_fns: set[int] = set()
    stack = [obj]
    walked = 0
    while stack and walked < MAX_OBJECTS:
        o = stack.pop()
        if o is None or isinstance(o, (str, bytes, int, float, bool, complex)) or id(o) in seen:
            if isinstance(o, (bytes, bytearray)) and id(o) not in seen:
                seen.add(id(o))
                buffers[("bytes", id(o))] = len(o)
            continue
        seen.add(id(o))
        walked += 1
        if isinstance(o, np.ndarray):
            if o.dtype == object:
                stack.extend(o.ravel().tolist())
            else:
                buffers.setdefault(_array_key(o), o.nbytes if o.base is None else _base_nbytes(o))
            continue
        if torch is not None and isinstance(o, torch.Tensor):
            try:
                st = o.untyped_storage()
                buffers.setdefault(("storage", st.data_ptr(), st.device.type), st.nbytes())
            except (RuntimeError, NotImplementedError):  # a tensor without storage (meta, some subclasses)
                pass
            if o.is_leaf and o.grad is not None:
                stack.append(o.grad)
            if o.grad_fn is not None:
                saved: list = []
                _graph_tensors(o.grad_fn, seen_fns, saved)
                stack.extend(saved)
            continue
        if module_type and isinstance(o, module_type):
            continue
        if isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, (list, tuple, set, frozenset)):
            stack.extend(o)
        elif dataclasses.is_dataclass(o) and not isinstance(o, type):
            stack.extend(getattr(o, f.name, None) for f in dataclasses.fields(o))
        elif _ours(o):
            d = getattr(o, "__dict__", None)
            if d is not None:
                stack.extend(d.values())
            for cls in type(o).__mro__:
                for name in getattr(cls, "__slots__", ()):
                    stack.append(getattr(o, name, None))
    return int(sum(buffers.values()))


def _base_nbytes(a: np.ndarray) -> int:
    base = a
    while isinstance(base.base, np.ndarray):
        base = base.base
    if base.base is None:
        return base.nbytes
    b = base.base
    try:
        return memoryview(b).nbytes
    except TypeError:
        return base.nbytes
