"""Study question types, each one registered object: how the study file declares it, how the task page
shows it, which answers it takes, whether an answer is correct, and what the export and the analysis read
of it. The study file names a type by ``type:``; every other part of study mode asks the type.

A new type is a subclass of ``QuestionType`` registered with ``register_question_type`` (one file; see
``docs/architecture.md``)::

    @register_question_type
    class YesNo(QuestionType):
        name = "yesno"
        def choices(self, q):
            return ["yes", "no"]

Answers are kept as text in the log, whatever their type; ``value`` reads one back as the type's value
(a number for a scale) for the export and the analysis.
"""
from __future__ import annotations

import math
from typing import Any

from .errors import StudyError


class QuestionType:
    """A kind of question. Subclasses set ``name`` and override what differs from a free-text question."""

    #: the name a study file gives in ``type:``
    name: str = ""
    #: the task page's component that shows it: "radio" (one of ``choices``) or "text" (a text box)
    widget: str = "radio"
    #: the longest answer kept (characters)
    max_chars: int = 5000

    def parse(self, raw: dict, where: str) -> dict:
        """The type's own fields of a question from the study file (``raw``: the question's mapping;
        ``where``: "question 'q1' of task 't1'", for the sentence). Returns ``Question`` fields; raises
        ``StudyError`` with one sentence."""
        return {}

    def choices(self, q) -> list[str]:
        """The answers offered (a "radio" type's options)."""
        return list(q.choices)

    def label(self, q) -> str:
        """What the page writes above the question."""
        return q.text + ("" if q.required else " (optional)")

    def refusal(self, q, answer: str) -> str | None:
        """None when ``answer`` (stripped, not empty) is a valid answer; else the sentence the participant
        reads (the answer is not logged)."""
        if len(answer) > self.max_chars:
            return f"Please keep the answer to '{q.text}' under {self.max_chars} characters."
        return None

    def correct(self, q, answer: str | None) -> bool | None:
        """Whether ``answer`` is the expected one (attention checks); None when nothing is expected."""
        return None if q.expected is None else (answer is not None and str(answer) == q.expected)

    def value(self, q, answer: str | None) -> Any:
        """The answer as the type's value, for the export and the analysis (text: the text itself)."""
        return answer

    def summary(self, q, answers: list[str | None]) -> dict:
        """What the analysis reports of one question over the participants' answers: ``n`` answered, and
        the type's own figures."""
        given = [a for a in answers if a is not None]
        return {"type": self.name, "n": len(given)}


class Choice(QuestionType):
    """One of the listed ``choices``; the analysis counts each choice."""

    name = "choice"

    def parse(self, raw: dict, where: str) -> dict:
        choices = [str(c) for c in raw.get("choices") or []]
        if not choices:
            raise StudyError(f"{where} is a choice without 'choices'.")
        if len(set(choices)) != len(choices):
            raise StudyError(f"{where} lists a choice twice.")
        return {"choices": choices}

    def refusal(self, q, answer: str) -> str | None:
        return None if answer in q.choices else f"'{answer[:60]}' is not one of the choices for: {q.text}"

    def summary(self, q, answers: list[str | None]) -> dict:
        out = super().summary(q, answers)
        out["counts"] = {c: sum(a == c for a in answers) for c in q.choices}
        return out


class Scale(QuestionType):
    """A whole number from ``min`` to ``max`` (a Likert item); the analysis gives the mean and median with
    a 95 % interval of the mean (t distribution) and the count of each point."""

    name = "scale"

    def parse(self, raw: dict, where: str) -> dict:
        try:
            lo, hi = int(raw.get("min", 1)), int(raw.get("max", 5))
        except (TypeError, ValueError):
            raise StudyError(f"{where}: 'min' and 'max' of a scale are whole numbers.") from None
        if not lo < hi or hi - lo > 100:
            raise StudyError(f"{where}: a scale goes from 'min' up to 'max' (at most 101 points), not {lo} to {hi}.")
        return {"min": lo, "max": hi}

    def choices(self, q) -> list[str]:
        return [str(v) for v in range(q.min, q.max + 1)]

    def label(self, q) -> str:
        return super().label(q) + f" ({q.min} = lowest, {q.max} = highest)"

    def refusal(self, q, answer: str) -> str | None:
        if answer.lstrip("-").isdigit() and q.min <= int(answer) <= q.max:
            return None
        return f"Please choose a number from {q.min} to {q.max} for: {q.text}"

    def value(self, q, answer: str | None) -> int | None:
        return None if answer is None else int(answer)

    def summary(self, q, answers: list[str | None]) -> dict:
        out = super().summary(q, answers)
        vals = [self.value(q, a) for a in answers if a is not None]
        out["counts"] = {str(v): vals.count(v) for v in range(q.min, q.max + 1)}
        if vals:
            import numpy as np
            from scipy import stats

            m = float(np.mean(vals))
            out.update(mean=m, median=float(np.median(vals)))
            if len(vals) > 1:
                se = float(np.std(vals, ddof=1)) / math.sqrt(len(vals))
                t = float(stats.t.ppf(0.975, len(vals) - 1))
                out["mean_ci95"] = [m - t * se, m + t * se]
        return out


class Text(QuestionType):
    """Free text of at most ``max_chars`` characters; the analysis counts the answers."""

    name = "text"
    widget = "text"


#: the types a study file may name, by name
QUESTION_TYPES: dict[str, QuestionType] = {}


def register_question_type(cls: type[QuestionType]) -> type[QuestionType]:
    """Make ``cls`` (a ``QuestionType`` subclass with a new ``name``) available to study files; returns it,
    so it can decorate the class."""
    if not (isinstance(cls, type) and issubclass(cls, QuestionType)) or not cls.name:
        raise TypeError("a question type is a QuestionType subclass with a name")
    if cls.widget not in ("radio", "text"):
        raise TypeError(f"question type '{cls.name}': widget is 'radio' or 'text', not {cls.widget!r}")
    if cls.name in QUESTION_TYPES and type(QUESTION_TYPES[cls.name]) is not cls:
        raise TypeError(f"there is a question type called '{cls.name}' already")
    QUESTION_TYPES[cls.name] = cls()
    return cls


for _cls in (Choice, Scale, Text):
    register_question_type(_cls)


def question_type(name: str) -> QuestionType:
    """The registered type called ``name`` (KeyError if none)."""
    return QUESTION_TYPES[name]
