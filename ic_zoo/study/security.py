"""What keeps a public study to its participants: signed participant links, the start-up check of the
secrets, a cap on new participants, and the admin page's lockout.

A link's participant id is ``<id>.<token>``, the token an HMAC of the id under ``IC_ZOO_STUDY_SECRET``
(``python -m ic_zoo study links`` issues them), so a link is valid only as issued and ``P02`` cannot be
reached from ``P01``'s link. Without that secret (a study on this machine only) ids are not signed, as
before; a public study refuses to start without it, and without ``IC_ZOO_BROWSER_SECRET``.
"""
from __future__ import annotations

import collections
import hashlib
import hmac
import os
import secrets
import threading
import time

from ..errors import IcZooError
from .definition import valid_participant

STUDY_SECRET_ENV = "IC_ZOO_STUDY_SECRET"
BROWSER_SECRET_ENV = "IC_ZOO_BROWSER_SECRET"
MIN_SECRET = 16
HOW = 'python -c "import secrets; print(secrets.token_hex(32))"'
TOKEN_HEX = 20  # 80 bits


class SecurityError(IcZooError):
    """A study cannot start safely (a missing secret), or its links cannot be issued."""


def env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name) or default)
    except ValueError:
        raise SecurityError(f"{name} must be a whole number, not '{os.environ[name]}'.") from None


def study_secrets(public: bool) -> tuple[str | None, str]:
    """(the participant-link secret or None, the browser-state secret), from the environment. A public
    study needs both; locally a missing link secret means unsigned ids and a missing browser secret a
    random one per process (ids kept in the browser then do not survive a restart)."""
    link, browser = os.environ.get(STUDY_SECRET_ENV) or None, os.environ.get(BROWSER_SECRET_ENV) or None
    missing = [n for n, v in ((STUDY_SECRET_ENV, link), (BROWSER_SECRET_ENV, browser)) if not v]
    if public and missing:
        raise SecurityError(f"a public study needs its secrets: set {' and '.join(missing)} in the environment "
                            f"(each a random value of its own, e.g. from {HOW}) before starting it.")
    short = [n for n, v in ((STUDY_SECRET_ENV, link), (BROWSER_SECRET_ENV, browser)) if v and len(v) < MIN_SECRET]
    if short:
        raise SecurityError(f"{' and '.join(short)} must be at least {MIN_SECRET} characters long (e.g. from {HOW}).")
    return link, browser or secrets.token_hex(32)


def token(secret: str, code: str) -> str:
    return hmac.new(secret.encode(), f"ic_zoo-participant:{code}".encode(), hashlib.sha256).hexdigest()[:TOKEN_HEX]


def issue(secret: str, code: str) -> str:
    """The id to put in a link: ``<code>.<token>``."""
    if valid_participant(code) != code:
        raise SecurityError(f"'{code}' is not a participant id: use 1 to 40 letters, digits, '-' or '_'.")
    return f"{code}.{token(secret, code)}"


def verify(secret: str | None, issued: str | None) -> str | None:
    """The participant id of a link's ``<code>.<token>`` (any valid id when unsigned), else None."""
    if issued is None:
        return None
    issued = str(issued).strip()
    if secret is None:
        return valid_participant(issued)
    code, _, tok = issued.rpartition(".")
    if valid_participant(code) != code or not hmac.compare_digest(tok.encode(), token(secret, code).encode()):
        return None
    return code


def new_id(prefix: str = "anon") -> str:
    """A participant id nobody can guess (64 random bits)."""
    return f"{prefix}-{secrets.token_hex(8)}"


class RateCap:
    """At most ``limit`` events in any ``window_s`` seconds (e.g. new participants a minute)."""

    def __init__(self, limit: int, window_s: float = 60.0, clock=time.monotonic) -> None:
        self.limit, self.window_s, self.clock = limit, window_s, clock
        self._times: collections.deque = collections.deque()
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Count one event if there is room; False (nothing counted) when the cap is reached."""
        with self._lock:
            now = self.clock()
            while self._times and now - self._times[0] >= self.window_s:
                self._times.popleft()
            if len(self._times) >= self.limit:
                return False
            self._times.append(now)
            return True


class AdminLockout:
    """Wrong admin passwords: ``max_failures`` from one address lock the page for that address for
    ``lock_s`` seconds; ``4 * max_failures`` from all addresses together within ``lock_s`` lock it for
    everyone (so guessing from many addresses is bounded too). A right password clears its address."""

    def __init__(self, max_failures: int = 5, lock_s: float = 900.0, clock=time.monotonic) -> None:
        self.max_failures, self.lock_s, self.clock = max_failures, lock_s, clock
        self._fails: dict[str, list[float]] = {}
        self._all: collections.deque = collections.deque()
        self._until: dict[str, float] = {}  # address (or "*" for everyone) -> end of its lockout
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        for k in [k for k, t in self._until.items() if t <= now]:
            del self._until[k]
        for k in [k for k, v in self._fails.items() if now - v[-1] >= self.lock_s]:
            del self._fails[k]
        while self._all and now - self._all[0] >= self.lock_s:
            self._all.popleft()

    def locked_for(self, host: str) -> float:
        """Seconds until ``host`` may try again (0: it may now)."""
        with self._lock:
            now = self.clock()
            self._expire(now)
            return max(self._until.get(host, now), self._until.get("*", now)) - now

    def failed(self, host: str) -> int:
        """Count a wrong password from ``host``; returns its failures so far (the lockout starts at the last)."""
        with self._lock:
            now = self.clock()
            self._expire(now)
            fails = self._fails.setdefault(host, [])
            fails.append(now)
            self._all.append(now)
            n = len(fails)
            if n >= self.max_failures:
                self._until[host] = now + self.lock_s
                del self._fails[host]
            if len(self._all) >= 4 * self.max_failures:
                self._until["*"] = now + self.lock_s
                self._all.clear()
            return n

    def succeeded(self, host: str) -> None:
        with self._lock:
            self._fails.pop(host, None)
