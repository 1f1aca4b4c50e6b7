"""Recruitment platforms (a study file's ``recruitment:`` block): the platform sends each participant with its
own id in the URL, and expects a completion code, or a redirect, at the end; participants screened out (an
attention check failed) get another code.

* ``prolific``: ``?PROLIFIC_PID=...&STUDY_ID=...&SESSION_ID=...``; ``completion_code`` (required) and
  ``screen_out_code``; the finish page redirects to ``https://app.prolific.com/submissions/complete?cc=<code>``.
* ``mturk``: ``?workerId=...&assignmentId=...&hitId=...``; a preview (``assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE``)
  shows the consent text only and records nothing; the finish page shows ``completion_code`` for the worker to
  paste into the HIT (the survey-link design), and in an ExternalQuestion HIT (``turkSubmitTo`` in the URL, the
  live or the sandbox site) submits the assignment there with the code.
* ``sona``: ``?id=...``; ``credit_url`` (required, Sona's "client-side" completion URL, ending in
  ``survey_code=``), to which the id is appended.
* ``generic``: ``id_param`` (required) names the parameter; ``completion_url`` (``{id}`` and ``{code}`` are
  filled in) and ``completion_code`` are optional.

``store_id: hashed`` keeps a keyed hash of the platform id instead of the id (for boards that forbid storing
platform ids): the same id always gives the same participant, so a participant resumes and never starts a
second counterbalancing row.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from urllib.parse import quote

from .errors import StudyError

PLATFORMS = {
    "prolific": ("PROLIFIC_PID", ("STUDY_ID", "SESSION_ID")),
    "mturk": ("workerId", ("assignmentId", "hitId")),
    "sona": ("id", ()),
    "generic": (None, ()),
}
MTURK_PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE"
#: the MTurk sites an ExternalQuestion HIT may name as ``turkSubmitTo`` (live and sandbox); any other is ignored,
#: so a crafted link cannot make the finish page send a worker elsewhere
MTURK_SUBMIT_HOSTS = ("https://www.mturk.com", "https://workersandbox.mturk.com")
STORE_ID = ("as_given", "hashed")
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass
class Recruitment:
    platform: str
    id_param: str
    completion_code: str = ""
    completion_url: str = ""
    screen_out_code: str = ""
    screen_out_url: str = ""
    store_id: str = "as_given"
    extra: list[str] = field(default_factory=list)

    def participant_code(self, platform_id: str | None, secret: str) -> str | None:
        """The participant id the log keeps for ``platform_id`` (as given, or ``h-`` and a keyed hash); None
        when the platform's id is missing or malformed."""
        pid = (platform_id or "").strip()
        if not _ID.fullmatch(pid):
            return None
        if self.store_id == "hashed":
            return "h-" + hmac.new(secret.encode(), f"{self.platform}:{pid}".encode(), hashlib.sha256).hexdigest()[:24]
        return pid[:40] if len(pid) <= 40 else None

    def is_preview(self, params: dict) -> bool:
        return self.platform == "mturk" and params.get("assignmentId") == MTURK_PREVIEW

    def submit_to(self, query: dict) -> str:
        """MTurk's ExternalQuestion HIT: where the finish page submits the assignment (``turkSubmitTo`` +
        ``/mturk/externalSubmit``, with its ``assignmentId``; MTurk takes GET or POST), when the HIT passed the
        live or the sandbox site; "" otherwise (the worker pastes the completion code into the HIT)."""
        if self.platform != "mturk":
            return ""
        host, aid = str(query.get("turkSubmitTo", "")).rstrip("/"), str(query.get("assignmentId", ""))
        if host not in MTURK_SUBMIT_HOSTS or not _ID.fullmatch(aid) or aid == MTURK_PREVIEW:
            return ""
        return f"{host}/mturk/externalSubmit?assignmentId={quote(aid)}"

    def finish(self, platform_id: str, screened_out: bool, submit_to: str = "") -> tuple[str, str]:
        """(the code the participant is shown, the URL the page sends them to) at the end of the study;
        ``submit_to``: an MTurk HIT's submission URL (``submit_to``), to which the code is added."""
        code = self.screen_out_code if screened_out and self.screen_out_code else self.completion_code
        if submit_to:
            return code, f"{submit_to}&completion_code={quote(code)}"
        url = self.screen_out_url if screened_out and self.screen_out_url else self.completion_url
        return code, url.replace("{code}", quote(code)).replace("{id}", quote(platform_id or ""))

    def params(self, query: dict) -> dict:
        """What the log keeps of the platform's parameters at consent (none of the ids when they are hashed)."""
        if self.store_id == "hashed":
            return {"platform": self.platform}
        return {"platform": self.platform, **{k: str(query[k])[:80] for k in self.extra if query.get(k)}}


def parse_recruitment(raw, where: str) -> Recruitment | None:
    """The ``recruitment:`` block of a study file (``where``: the file's name), checked: one sentence for a
    block without the fields its platform needs."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise StudyError(f"recruitment in {where} is a mapping (platform: prolific, mturk, sona or generic).")
    known = {"platform", "id_param", "completion_code", "completion_url", "screen_out_code", "screen_out_url",
             "store_id", "credit_url"}
    extra = set(raw) - known
    if extra:
        raise StudyError(f"unknown field(s) {', '.join(sorted(extra))} in the recruitment block of {where}.")
    platform = str(raw.get("platform", ""))
    if platform not in PLATFORMS:
        raise StudyError(f"recruitment's platform in {where} is prolific, mturk, sona or generic, not '{platform}'.")
    store_id = str(raw.get("store_id", "as_given"))
    if store_id not in STORE_ID:
        raise StudyError(f"recruitment's store_id in {where} is as_given or hashed, not '{store_id}'.")
    id_param, extra_params = PLATFORMS[platform]
    code, url = str(raw.get("completion_code", "")), str(raw.get("completion_url", ""))
    out_code, out_url = str(raw.get("screen_out_code", "")), str(raw.get("screen_out_url", ""))
    if platform == "prolific":
        if not code:
            raise StudyError(f"a Prolific study needs its completion_code (recruitment in {where}).")
        url = url or "https://app.prolific.com/submissions/complete?cc={code}"
        out_url = out_url or ("https://app.prolific.com/submissions/complete?cc={code}" if out_code else "")
    elif platform == "mturk":
        if not code:
            raise StudyError(f"an MTurk study needs the completion_code workers paste into the HIT (recruitment in "
                             f"{where}).")
    elif platform == "sona":
        credit = str(raw.get("credit_url", ""))
        if not credit.startswith("https://"):
            raise StudyError(f"a Sona study needs its credit_url (https://..., ending in survey_code=) "
                             f"(recruitment in {where}).")
        url = credit + ("{id}" if "{id}" not in credit else "")
    else:
        id_param = str(raw.get("id_param", ""))
        if not _ID.fullmatch(id_param):
            raise StudyError(f"a generic recruitment needs id_param, the URL parameter that carries the id "
                             f"(recruitment in {where}).")
    for name, u in (("completion_url", url), ("screen_out_url", out_url)):
        if u and not u.startswith(("https://", "http://")):
            raise StudyError(f"recruitment's {name} in {where} is a web address (https://...), not '{u[:60]}'.")
    return Recruitment(platform, id_param, code, url, out_code, out_url, store_id, list(extra_params))
