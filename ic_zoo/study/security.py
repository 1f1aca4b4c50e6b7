"""What keeps a public study to its participants: signed participant links, the start-up check of the
secrets, a cap on new participants, and the admin page's throttle.

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


class ClientRateCap:
    """:class:`RateCap` per client address: at most ``limit`` events from one address in any ``window_s``
    seconds (the global cap alone let one script keep every real newcomer out for a minute). Addresses with
    nothing in the window are forgotten."""

    def __init__(self, limit: int, window_s: float = 60.0, clock=time.monotonic) -> None:
        self.limit, self.window_s, self.clock = limit, window_s, clock
        self._times: dict[str, collections.deque] = {}
        self._lock = threading.Lock()

    def take(self, host: str) -> bool:
        with self._lock:
            now = self.clock()
            for k in [k for k, q in self._times.items() if not q or now - q[-1] >= self.window_s]:
                del self._times[k]
            q = self._times.setdefault(host, collections.deque())
            while q and now - q[0] >= self.window_s:
                q.popleft()
            if len(q) >= self.limit:
                return False
            q.append(now)
            return True

    def give_back(self, host: str) -> None:
        """Undo the last :meth:`take` of ``host`` (the global cap refused the event after all)."""
        with self._lock:
            q = self._times.get(host)
            if q:
                q.pop()


class AdminThrottle:
    """Wrong admin passwords slow guessing down; they never lock the right password out for long.

    The first ``free`` wrong passwords from an address cost nothing; after that, the address must wait
    ``2 ** (n - free)`` seconds (at most ``max_delay_s``) after its n-th failure before its next password is
    even looked at. Guessing from many addresses is bounded too: after ``4 * free`` failures from all
    addresses together, every address waits ``global_delay_s`` after the last failure anywhere. Failures
    are forgotten ``window_s`` after the last one; a right password clears its address. So a guesser gets
    at most about one try per ``max_delay_s`` per address (and one per ``global_delay_s`` in all), while
    the researcher, even from the guesser's address, waits seconds, never a quarter of an hour (what the
    lockout this replaced did: 5 wrong passwords, or 20 from anyone, refused even the right one for 15
    minutes)."""

    def __init__(self, free: int = 5, window_s: float = 900.0, max_delay_s: float = 60.0,
                 global_delay_s: float = 2.0, clock=time.monotonic) -> None:
        self.free, self.window_s, self.max_delay_s = max(1, free), window_s, max_delay_s
        self.global_delay_s, self.clock = global_delay_s, clock
        self._fails: dict[str, list[float]] = {}
        self._all: collections.deque = collections.deque()
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        for k in [k for k, v in self._fails.items() if now - v[-1] >= self.window_s]:
            del self._fails[k]
        while self._all and now - self._all[0] >= self.window_s:
            self._all.popleft()

    def delay(self, n: int) -> float:
        """The wait after an address's ``n``-th wrong password."""
        return 0.0 if n < self.free else min(self.max_delay_s, 2.0 ** (n - self.free))

    def wait_for(self, host: str) -> float:
        """Seconds until ``host`` may try a password (0: now)."""
        with self._lock:
            now = self.clock()
            self._expire(now)
            fails = self._fails.get(host) or []
            wait = (fails[-1] + self.delay(len(fails)) - now) if fails else 0.0
            if len(self._all) >= 4 * self.free:
                wait = max(wait, self._all[-1] + self.global_delay_s - now)
            return max(0.0, wait)

    def failed(self, host: str) -> int:
        """Count a wrong password from ``host``; returns its failures in the window."""
        with self._lock:
            now = self.clock()
            self._expire(now)
            fails = self._fails.setdefault(host, [])
            fails.append(now)
            self._all.append(now)
            return len(fails)

    def succeeded(self, host: str) -> None:
        with self._lock:
            self._fails.pop(host, None)
