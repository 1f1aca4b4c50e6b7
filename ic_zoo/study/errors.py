"""Study mode's error: a study file, or a part of one, that cannot be used (one sentence)."""
from __future__ import annotations

from ..errors import InputError


class StudyError(InputError):
    """A study file that cannot be used."""
