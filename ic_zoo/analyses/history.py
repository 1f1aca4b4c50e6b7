"""How a model's confidence moved over the edits: the history plot's data."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence


@dataclass(frozen=True)
class Step:
    """One image of the edit stack (0: the original): the tracked classes' probabilities and the top-1."""

    step: int
    probs: list[float]
    top1: int
    top1_label: str


@dataclass(frozen=True)
class History:
    """The probability of ``classes`` after every edit of the stack (``steps``), with the steps at which the
    top-1 class changed (``flips``); ``skipped`` counts strokes past the undo depth whose image is gone and
    whose prediction this model never made."""

    model: str
    classes: list[int]
    labels: list[str]
    steps: list[Step]
    flips: list[int]
    skipped: int

    def to_dict(self) -> dict:
        return asdict(self)


def history(session, name: str, classes: Sequence[int] | None = None) -> History:
    """The probability of ``classes`` (default: the original's top-k) after every edit of ``session``'s stack,
    with the steps at which the top-1 class changed. Strokes past the undo depth whose image is gone and that
    this model never saw are left out (``skipped`` counts them)."""
    with session.lock:
        p0 = session.state(name, 0, need_x=False).prediction
        cls = [int(c) for c in classes] if classes is not None else [c.index for c in p0.topk(session.k)]
        steps, flips, prev, skipped = [], [], None, 0
        for step, v in enumerate([0] + [e.uid for e in session.edits]):
            if not session.can_predict(name, v):
                skipped += 1
                continue
            p = session.state(name, v, need_x=False).prediction
            steps.append(Step(step, [float(p.probs[c]) for c in cls], p.top1, p.labels[p.top1]))
            if prev is not None and p.top1 != prev:
                flips.append(step)
            prev = p.top1
        return History(name, cls, [p0.labels[c] for c in cls], steps, flips, skipped)
