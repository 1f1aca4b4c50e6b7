"""Is the change the model's or the filler's? The last edit re-run with every inpainter."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

import numpy as np

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class Filled:
    """One model on the last edit's region filled by one inpainter: the probability of the class it gave
    before the edit, the change in percentage points, and its top-1 (``flipped``: not that class)."""

    prob: float
    delta_pp: float
    top1: int
    top1_label: str
    flipped: bool


@dataclass(frozen=True)
class ModelCheck:
    """One model over every inpainter: the class it gave before the edit (``cls``), each filler's answer,
    the spread (max - min) and standard deviation of the change, and how many fillers flipped the top-1."""

    cls: int
    label: str
    prob_before: float
    by_inpainter: dict[str, Filled]
    spread_pp: float
    std_pp: float
    flip_votes: int

    def to_dict(self) -> dict:
        d = asdict(self)
        d["class"] = d.pop("cls")
        return d


@dataclass(frozen=True)
class InpainterCheck:
    """The last edit (``mask_pixels`` pixels, filled by ``used``) re-run with every inpainter; ``skipped``:
    the fillers that could not run here, each with its reason."""

    mask_pixels: int
    used: str
    skipped: dict[str, str]
    models: dict[str, ModelCheck] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"mask_pixels": self.mask_pixels, "used": self.used, "skipped": dict(self.skipped),
                "models": {m: r.to_dict() for m, r in self.models.items()}}


def inpainter_check(session, models: Iterable[str], inpainters: Iterable[str] | None = None,
                    progress: Progress | None = None) -> InpainterCheck:
    """Re-run ``session``'s last edit with every inpainter (default: every registered one): the spread of the
    confidence change tells an effect of the model from an artefact of the filler. NoEditError before any
    edit; a filler that cannot run here is reported in ``skipped``, not fatal."""
    from ..discovery import list_plugins
    from ..errors import NoEditError
    from ..session import get_inpainter

    with session.lock:
        if not session.edits:
            raise NoEditError("There is no edit to check yet: paint over a region first.")
        edit = session.edits[-1]
        before_v, before_img = session.before_last()
        names = list(inpainters) if inpainters is not None else [s.name for s in list_plugins("inpainter")]
        filled, skipped = {}, {}
        for i, name in enumerate(names):
            if progress is not None:
                progress(i / max(len(names), 1), f"inpainting with {name}")
            try:
                params = edit.params if name == edit.inpainter else {}
                filled[name] = get_inpainter(name, **params).inpaint(before_img, edit.mask)
            except Exception as exc:  # an unavailable filler is reported, not fatal
                skipped[name] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        result = InpainterCheck(edit.area, edit.inpainter, skipped)
        for m in models:
            clf = session.classifier(m)
            pb = session.state(m, before_v, need_x=False).prediction
            c = pb.top1
            rows = {}
            for name, img in filled.items():
                p = clf.predict(img)
                rows[name] = Filled(float(p.probs[c]), 100.0 * float(p.probs[c] - pb.probs[c]), p.top1,
                                    clf.labels[p.top1], p.top1 != c)
            deltas = np.array([r.delta_pp for r in rows.values()]) if rows else np.zeros(0)
            result.models[m] = ModelCheck(c, clf.labels[c], float(pb.probs[c]), rows,
                                          float(deltas.max() - deltas.min()) if len(deltas) else 0.0,
                                          float(deltas.std()) if len(deltas) else 0.0,
                                          int(sum(r.flipped for r in rows.values())))
        if progress is not None:
            progress(1.0, "done")
        return result
