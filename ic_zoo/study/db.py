"""The study log: every interaction a row, committed before the UI answers.

SQLite (WAL, synchronous=FULL: a committed row survives kill -9) by default, embedded and zero set-up;
PostgreSQL by URL, so several app replicas behind a load balancer share one log. The schema is created
and migrated by the app (a ``meta`` table holds the schema version; each migration runs in one
transaction).

Fencing (issue 33): a participant's event counter (``participants.n_events``, which numbers their rows
1, 2, 3, ...) is the version of their place in the study. A tab knows the number of the last row its page
shows (its *base*); every change it logs is a compare-and-set on that number (``record(..., base=)``,
``answer(..., base=)``): the first statement of the transaction is ``UPDATE participants SET n_events =
n_events + 1 WHERE id = :pid AND n_events = :base``, which PostgreSQL re-checks after waiting for the
row's lock and SQLite runs under its one write lock, so of two writers with the same base exactly one
wins and the other writes nothing (``StaleBase``). A resume is such a write too (the ``task_resumed``
row, based on the number its rebuild read up to), so it fences every event still running for that
participant on another replica or in another tab: they are refused at commit, never logged after the
page was rebuilt without them. No schema change: the counter was already there.
"""
from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from ..errors import DatabaseError
from ..imageio import image_to_png, mask_to_png, png_to_image, png_to_mask  # noqa: F401  (the log's PNGs)

SCHEMA_VERSION = 3
metadata = sa.MetaData()

meta_t = sa.Table("meta", metadata, sa.Column("key", sa.String(64), primary_key=True),
                  sa.Column("value", sa.Text, nullable=False))
studies_t = sa.Table(
    "studies", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(32), nullable=False, unique=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("definition", sa.Text, nullable=False),
    sa.Column("n_participants", sa.Integer, nullable=False, default=0),  # hands out the ordinals
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False))
images_t = sa.Table(
    "task_images", metadata,
    sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.id"), primary_key=True),
    sa.Column("task_id", sa.String(80), primary_key=True),  # a task id, or upload:<sha256[:16]>
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("png", sa.LargeBinary, nullable=False))
participants_t = sa.Table(
    "participants", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.id"), nullable=False),
    sa.Column("code", sa.String(40), nullable=False),
    sa.Column("ordinal", sa.Integer, nullable=False),  # 0, 1, 2... in order of consent: the Latin-square row
    sa.Column("consented_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("task_index", sa.Integer, nullable=False, default=0),
    sa.Column("n_events", sa.Integer, nullable=False, default=0),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("ip", sa.String(64)),
    # set when the participant withdrew and the study keeps their rows flagged (schema version 3)
    sa.Column("withdrawn_at", sa.DateTime(timezone=True)),
    sa.UniqueConstraint("study_id", "code", name="uq_participant"))
interactions_t = sa.Table(
    "interactions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("participant_id", sa.Integer, sa.ForeignKey("participants.id"), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("task_id", sa.String(64)),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("client_time", sa.Float),  # ms since the epoch, from the browser
    sa.Column("server_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("session", sa.String(64)),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("mask_png", sa.LargeBinary),
    sa.UniqueConstraint("participant_id", "seq", name="uq_interaction_seq"))
answers_t = sa.Table(
    "answers", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("participant_id", sa.Integer, sa.ForeignKey("participants.id"), nullable=False),
    sa.Column("interaction_id", sa.Integer, sa.ForeignKey("interactions.id"), nullable=False),
    sa.Column("task_id", sa.String(64), nullable=False),
    sa.Column("question_id", sa.String(64), nullable=False),
    sa.Column("answer", sa.Text),
    sa.Column("correct", sa.Boolean),  # attention checks
    sa.Column("late", sa.Boolean, nullable=False, default=False))

withdrawals_t = sa.Table(  # the audit of withdrawals: that one happened, when and how; nothing of the participant
    "withdrawals", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.id"), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),  # "delete" or "flag"
    sa.Column("how", sa.String(16), nullable=False))  # "page" (the participant) or "cli" (the researcher)
V1_TABLES = [meta_t, studies_t, images_t, participants_t, interactions_t, answers_t]


def _v2(conn) -> None:
    """Version 2: an index for the per-participant timelines that resuming and exporting read.
    (Plain DDL, so the v1 tables in ``metadata`` stay exactly what version 1 created.)"""
    conn.execute(sa.text("CREATE INDEX IF NOT EXISTS ix_interactions_participant_task "
                         "ON interactions (participant_id, task_id)"))


def _v3(conn) -> None:
    """Version 3: withdrawal (issue 38): the audit table, and ``participants.withdrawn_at`` for studies that keep
    a withdrawn participant's rows flagged (a log created at version 3 has the column from version 1's
    tables already)."""
    withdrawals_t.create(conn, checkfirst=True)
    if "withdrawn_at" not in {c["name"] for c in sa.inspect(conn).get_columns("participants")}:
        conn.execute(sa.text("ALTER TABLE participants ADD COLUMN withdrawn_at TIMESTAMP WITH TIME ZONE"
                             if conn.dialect.name == "postgresql" else
                             "ALTER TABLE participants ADD COLUMN withdrawn_at DATETIME"))


MIGRATIONS = {1: lambda conn: metadata.create_all(conn, tables=V1_TABLES), 2: _v2, 3: _v3}


def active(study_id: int):
    """The condition on ``participants`` of a study's participants who did not withdraw: every export,
    analysis and progress view reads only them."""
    return (participants_t.c.study_id == study_id) & participants_t.c.withdrawn_at.is_(None)


class StaleBase(Exception):
    """A change based on an older state of the participant's log than the log now holds (another tab or
    replica logged something meanwhile): nothing of it was written."""

    def __init__(self, base: int | None, current: int | None) -> None:
        super().__init__(f"the page was based on event {base} but the log is at event {current}")
        self.base, self.current = base, current


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def aware(t: datetime.datetime) -> datetime.datetime:
    """SQLite gives back naive datetimes: they were written in UTC."""
    return t if t.tzinfo is not None else t.replace(tzinfo=datetime.timezone.utc)


#: a --db value without "://" is an SQLite file when its name ends so (or the file exists): "localhost:5432/x"
#: or "postgres:/host/db" silently became an SQLite file of that name (issue 36 item 9)
SQLITE_SUFFIXES = (".sqlite", ".sqlite3", ".db")


def engine_for(url: str | None, default_path: str | Path = "study.sqlite") -> sa.Engine:
    """An engine for ``url`` (a SQLAlchemy URL, ``postgresql://...`` accepted as is) or a SQLite file."""
    if not url:
        url = f"sqlite:///{Path(default_path).resolve()}"
    elif "://" not in url:  # a plain file path: an SQLite file by its name, or one that exists
        if not (Path(url).suffix.lower() in SQLITE_SUFFIXES or Path(url).is_file()):
            raise DatabaseError(f"'{url}' is neither a database URL nor an SQLite file (a name ending in "
                                f"{', '.join(SQLITE_SUFFIXES)}); use sqlite:///file.sqlite or "
                                "postgresql://user:password@host/dbname.")
        url = f"sqlite:///{Path(url).resolve()}"
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    wait = busy_timeout_s()
    if url.startswith("sqlite"):
        eng = sa.create_engine(url, connect_args={"timeout": wait, "check_same_thread": False}, pool_pre_ping=True)

        @sa.event.listens_for(eng, "connect")
        def _pragmas(dbapi_conn, _):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(wait * 1000)}")  # a locked log fails a write in `wait` s
            cur.close()

        return eng
    # connect_timeout: a server that is down, or a port that accepts but never answers, fails in ~10 s;
    # lock_timeout: a write waiting on a lock fails in `wait` s; statement_timeout bounds everything else
    ms = int(wait * 1000)
    return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20,
                            connect_args={"connect_timeout": CONNECT_TIMEOUT_S,
                                          "options": f"-c lock_timeout={ms} -c statement_timeout={max(30_000, 6 * ms)}"})


CONNECT_TIMEOUT_S = 10
BUSY_TIMEOUT_ENV = "IC_ZOO_DB_BUSY_TIMEOUT_S"


def busy_timeout_s() -> float:
    """How long a write waits for a locked log before it fails (IC_ZOO_DB_BUSY_TIMEOUT_S, default 5 s):
    bounded, so a stuck database costs a participant one repeated change, not a frozen page."""
    try:
        return max(0.1, float(os.environ.get(BUSY_TIMEOUT_ENV) or 5))
    except ValueError:
        raise DatabaseError(f"{BUSY_TIMEOUT_ENV} must be a number of seconds, not "
                            f"'{os.environ[BUSY_TIMEOUT_ENV]}'.") from None


def masked_url(engine_or_url) -> str:
    url = engine_or_url.url if hasattr(engine_or_url, "url") else sa.engine.make_url(str(engine_or_url))
    return url.render_as_string(hide_password=True)


def _database_problem(url: str, exc: BaseException) -> DatabaseError:
    """One sentence for a log that cannot be opened: what is wrong with which URL, and what to do."""
    orig = getattr(exc, "orig", None) or exc
    text = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    low = text.lower()
    if "not a database" in low or "malformed" in low or "corrupt" in low:
        fix = "the file is damaged: move it aside (a new log is then started) or restore it from a backup"
    elif "unable to open" in low or "readonly" in low or "read-only" in low or "permission" in low:
        fix = "check that its folder exists and is writable, or give another --db"
    elif "timeout" in low or "timed out" in low:
        fix = (f"the server did not answer within {CONNECT_TIMEOUT_S} s: check the host and port, and that "
               "PostgreSQL (not another service) listens there")
    elif "refused" in low or "could not connect" in low or "connection" in low or "resolve" in low:
        fix = "check that PostgreSQL runs and listens there, and the host and port in the URL"
    elif "password" in low or "authentication" in low or "role" in low:
        fix = "check the user name and password in the URL (or the server's pg_hba.conf)"
    elif "does not exist" in low:
        fix = "create the database first (createdb), or fix its name in the URL"
    else:
        fix = "check the URL, and that the database is reachable and writable"
    text = text.rstrip(".")
    return DatabaseError(f"The study log {url} cannot be opened ({text}); {fix}.")


def open_engine(url: str | None, default_path: str | Path = "study.sqlite") -> sa.Engine:
    """``engine_for`` + ``migrate``, with every start-up problem as one DatabaseError sentence."""
    try:
        eng = engine_for(url, default_path)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ValueError) as exc:
        raise DatabaseError(f"'{url}' is not a database URL ({exc}); use sqlite:///file.sqlite or "
                            "postgresql://user:password@host/dbname.") from None
    shown = masked_url(eng)
    try:
        check_integrity(eng)
        migrate(eng)
    except (sa.exc.SQLAlchemyError, OSError) as exc:
        eng.dispose()
        raise _database_problem(shown, exc) from None
    return eng


def check_integrity(engine: sa.Engine) -> None:
    """An SQLite log damaged in part opens, and answers its first queries: every participant then met
    "database disk image is malformed" (issue 36 item 3). ``PRAGMA quick_check`` reads every page at
    start-up (milliseconds for a study's log) and a damaged file stops the start with the same sentence
    as one that cannot be opened at all. PostgreSQL checks its own pages."""
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as conn:
        rows = [r[0] for r in conn.execute(sa.text("PRAGMA quick_check")).all()]
    if rows != ["ok"]:
        raise sa.exc.DatabaseError("PRAGMA quick_check", None,
                                   Exception(f"database disk image is malformed: {'; '.join(rows[:2])}"))


def schema_version(conn) -> int:
    if not sa.inspect(conn).has_table("meta"):
        return 0
    row = conn.execute(sa.select(meta_t.c.value).where(meta_t.c.key == "schema_version")).first()
    return int(row[0]) if row else 0


def migrate(engine: sa.Engine, target: int = SCHEMA_VERSION) -> int:
    """Bring the schema to ``target``, one transaction per step; safe to call from many processes
    (PostgreSQL: an advisory lock; SQLite: a step that lost a race is re-read and skipped)."""
    def locked(conn):
        if engine.dialect.name == "postgresql":  # serialise concurrent migrators
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(4242424)"))
        return schema_version(conn)

    with engine.begin() as conn:
        v = locked(conn)
    attempts = 0
    while v < target:
        try:
            with engine.begin() as conn:
                v = locked(conn)
                if v >= target:
                    break
                MIGRATIONS[v + 1](conn)
                if v == 0:
                    conn.execute(meta_t.insert().values(key="schema_version", value="1"))
                else:
                    conn.execute(meta_t.update().where(meta_t.c.key == "schema_version").values(value=str(v + 1)))
                v += 1
        except (sa.exc.OperationalError, sa.exc.IntegrityError, sa.exc.ProgrammingError):
            attempts += 1
            if attempts > 5:
                raise
            with engine.begin() as conn:  # another process migrated meanwhile: start from where it got
                v = locked(conn)
    return v


def stored_image(conn, study_id: int, key: str) -> np.ndarray:
    """A stored image (a task's, or an upload's ``upload:<sha>`` key) as RGB."""
    png = conn.execute(sa.select(images_t.c.png).where(
        (images_t.c.study_id == study_id) & (images_t.c.task_id == key))).scalar_one()
    return png_to_image(png)


def withdraw_participant(engine: sa.Engine, study_id: int, mode: str, code: str, how: str = "cli") -> dict:
    """The participant ``code`` withdraws: as the study file says (``mode``: its ``withdrawal``), their rows, masks and
    the images they uploaded are deleted (an upload another participant also used is kept), or kept and
    flagged (left out of every export, analysis and progress view); either way an audit row records that a
    withdrawal happened, when and how, and nothing of the participant. One transaction. Returns what was
    removed; StudyError (one sentence) for an id the study does not have, or one that withdrew already."""
    from .errors import StudyError

    with engine.begin() as conn:
        row = conn.execute(sa.select(participants_t.c.id, participants_t.c.withdrawn_at).where(
            (participants_t.c.study_id == study_id) & (participants_t.c.code == str(code)))).first()
        if row is None:
            raise StudyError(f"there is no participant '{str(code)[:40]}' in this study (nothing was changed).")
        pid, withdrawn = row
        if withdrawn is not None:
            raise StudyError(f"participant '{code}' withdrew already, on {str(withdrawn)[:19]}.")
        n_int = conn.execute(sa.select(sa.func.count()).select_from(interactions_t)
                             .where(interactions_t.c.participant_id == pid)).scalar_one()
        n_ans = conn.execute(sa.select(sa.func.count()).select_from(answers_t)
                             .where(answers_t.c.participant_id == pid)).scalar_one()
        images = 0
        if mode == "delete":
            uploads = {json.loads(p).get("image_key") for p in conn.execute(
                sa.select(interactions_t.c.payload).where((interactions_t.c.participant_id == pid)
                                                          & (interactions_t.c.kind == "upload"))).scalars()}
            conn.execute(answers_t.delete().where(answers_t.c.participant_id == pid))
            conn.execute(interactions_t.delete().where(interactions_t.c.participant_id == pid))
            conn.execute(participants_t.delete().where(participants_t.c.id == pid))
            for key in sorted(k for k in uploads if k):
                used = conn.execute(sa.select(sa.func.count()).select_from(interactions_t).join(participants_t)
                                    .where((participants_t.c.study_id == study_id)
                                           & (interactions_t.c.kind == "upload")
                                           & interactions_t.c.payload.contains(json.dumps(key)))).scalar_one()
                if not used:
                    images += conn.execute(images_t.delete().where((images_t.c.study_id == study_id)
                                                                   & (images_t.c.task_id == key))).rowcount
        else:
            conn.execute(participants_t.update().where(participants_t.c.id == pid).values(withdrawn_at=now()))
        conn.execute(withdrawals_t.insert().values(study_id=study_id, at=now(), mode=mode, how=how))
    return {"mode": mode, "interactions": int(n_int), "answers": int(n_ans), "images": images}


def participant_progress(conn, study_id: int, n_tasks: int) -> list[dict]:
    """One row per participant, in order of consent: tasks done, events, consent and finish times."""
    rows = conn.execute(sa.select(
        participants_t.c.code, participants_t.c.ordinal, participants_t.c.task_index,
        participants_t.c.n_events, participants_t.c.consented_at, participants_t.c.finished_at)
        .where(active(study_id)).order_by(participants_t.c.ordinal)).mappings().all()
    return [{"participant": r["code"], "order": r["ordinal"], "tasks_done": f"{min(r['task_index'], n_tasks)}/{n_tasks}",
             "events": r["n_events"], "consented": str(r["consented_at"])[:19],
             "finished": str(r["finished_at"])[:19] if r["finished_at"] else ""} for r in rows]


def ground_truth(path: str, shape) -> np.ndarray:
    """A part map or truth mask of a task, checked against the task image's size, as an RGB image."""
    from PIL import Image

    from .definition import StudyError

    with Image.open(path) as im:
        a = np.asarray(im.convert("L"))
    if a.shape != tuple(shape[:2]):
        raise StudyError(f"{Path(path).name} is {a.shape[1]}x{a.shape[0]} but its task image is "
                         f"{shape[1]}x{shape[0]}; give the part map or mask at the image's size.")
    return np.repeat(a[:, :, None], 3, axis=2)


class StudyStore:
    """All reads and writes of one study's log. Thread-safe (no shared state but the engine); each write
    is one transaction, committed when the method returns."""

    def __init__(self, engine: sa.Engine, study) -> None:
        from ..imageio import load_image

        self.engine = engine
        self.study = study
        self.images: dict[str, np.ndarray] = {t.id: load_image(t.image) for t in study.tasks}
        try:  # the first writes: a log that opened but cannot take them (read-only, damaged) is one sentence too
            migrate(engine)
            self.study_id = self._register(engine, study)
            for t in study.tasks:
                self.store_image(t.id, self.images[t.id])
                for key in ("parts", "truth"):  # the analysis's ground truth, kept in the log too
                    if getattr(t, key, None):
                        self.store_image(f"{key}:{t.id}", ground_truth(getattr(t, key), self.images[t.id].shape))
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            raise _database_problem(masked_url(engine), exc) from None

    @staticmethod
    def _register(engine: sa.Engine, study) -> int:
        with engine.connect() as conn:
            sid = conn.execute(sa.select(studies_t.c.id).where(studies_t.c.key == study.key)).scalar()
        if sid is None:
            try:
                with engine.begin() as conn:
                    sid = conn.execute(studies_t.insert().values(
                        key=study.key, title=study.title, definition=study.to_json(), n_participants=0,
                        created_at=now())).inserted_primary_key[0]
            except sa.exc.IntegrityError:  # another replica registered it first
                with engine.connect() as conn:
                    sid = conn.execute(sa.select(studies_t.c.id).where(studies_t.c.key == study.key)).scalar_one()
        return int(sid)

    def store_image(self, key: str, img: np.ndarray) -> str:
        """Keep an image in the log (task images, uploads) so that exports and replays need nothing else."""
        import hashlib

        png = image_to_png(img)
        sha = hashlib.sha256(png).hexdigest()
        with self.engine.connect() as conn:
            if conn.execute(sa.select(images_t.c.sha256).where(
                    (images_t.c.study_id == self.study_id) & (images_t.c.task_id == key))).first() is not None:
                return sha
        try:
            with self.engine.begin() as conn:
                conn.execute(images_t.insert().values(study_id=self.study_id, task_id=key, sha256=sha, png=png))
        except sa.exc.IntegrityError:  # stored meanwhile by another session or replica
            pass
        return sha

    def image(self, key: str) -> np.ndarray:
        """A stored image (a task's, or an upload's ``upload:<sha>`` key)."""
        with self.engine.connect() as conn:
            return stored_image(conn, self.study_id, key)

    # -- participants ------------------------------------------------------------------------------------
    def participant(self, code: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(participants_t).where(
                (participants_t.c.study_id == self.study_id) & (participants_t.c.code == code))).mappings().first()
        return dict(row) if row else None

    def consent(self, code: str, ip: str | None = None, client_time: float | None = None,
                session: str | None = None, extra: dict | None = None) -> dict:
        """Create the participant on consent (idempotent) and log the consent; returns the participant.
        Ordinals (the participant's row of the Latin square) come from a counter row, so two
        participants consenting at the same moment never share one."""
        row = self.participant(code)
        if row is not None:
            return row
        try:
            with self.engine.begin() as conn:
                ordinal = conn.execute(studies_t.update().where(studies_t.c.id == self.study_id)
                                       .values(n_participants=studies_t.c.n_participants + 1)
                                       .returning(studies_t.c.n_participants)).scalar_one() - 1
                pid = conn.execute(participants_t.insert().values(
                    study_id=self.study_id, code=code, ordinal=int(ordinal), consented_at=now(), task_index=0,
                    n_events=0, ip=ip if self.study.log_ip else None)).inserted_primary_key[0]
                cond = self.study.condition_of(int(ordinal))  # the conditions in turn, by the same counter
                self._record(conn, pid, "consent", None, {"consent": True, "ordinal": int(ordinal), **(extra or {}),
                                                          **({"condition": cond.name} if cond else {})},
                             client_time=client_time, session=session)
        except sa.exc.IntegrityError:  # two tabs consenting at once: the other one won, nothing was written here
            pass
        return self.participant(code)

    def withdraw(self, code: str, how: str = "cli") -> dict:
        """The participant ``code`` withdraws, as the study file says (``withdraw_participant``)."""
        return withdraw_participant(self.engine, self.study_id, self.study.withdrawal, code, how)

    def failed_checks(self, pid: int) -> int:
        """The participant's attention-check answers that were wrong (a recruitment platform's screen-out)."""
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(answers_t).where(
                (answers_t.c.participant_id == pid) & answers_t.c.correct.is_(False))).scalar_one())

    def withdrawals(self) -> list[dict]:
        """The audit of withdrawals: when and how each happened (nothing of the participant)."""
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.select(withdrawals_t.c.at, withdrawals_t.c.mode, withdrawals_t.c.how)
                                                  .where(withdrawals_t.c.study_id == self.study_id)
                                                  .order_by(withdrawals_t.c.id)).mappings()]

    # -- interactions ---------------------------------------------------------------------------------------
    def version(self, pid: int) -> int:
        """The number of the participant's last logged event: the state a new change must be based on."""
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(participants_t.c.n_events).where(participants_t.c.id == pid)).scalar_one())

    @staticmethod
    def _next_seq(conn, pid: int, base: int | None) -> int:
        """Take the participant's next event number; with ``base``, only if the log is still at ``base``
        (compare-and-set; the transaction's first write, so nothing is written when it fails)."""
        cond = participants_t.c.id == pid
        if base is not None:
            cond = cond & (participants_t.c.n_events == int(base))
        seq = conn.execute(participants_t.update().where(cond).values(n_events=participants_t.c.n_events + 1)
                           .returning(participants_t.c.n_events)).scalar()
        if seq is None:
            current = conn.execute(sa.select(participants_t.c.n_events).where(participants_t.c.id == pid)).scalar()
            raise StaleBase(base, current)
        return int(seq)

    def _record(self, conn, pid: int, kind: str, task_id: str | None, payload: dict, mask=None,
                client_time: float | None = None, session: str | None = None, base: int | None = None) -> int:
        """Insert one row; returns its event number (``StaleBase`` when ``base`` is not the log's)."""
        seq = self._next_seq(conn, pid, base)
        conn.execute(interactions_t.insert().values(
            participant_id=pid, seq=seq, task_id=task_id, kind=kind, client_time=client_time,
            server_time=now(), session=session, payload=json.dumps(payload, default=_jsonable),
            mask_png=None if mask is None else mask_to_png(mask)))
        return seq

    def record(self, pid: int, kind: str, task_id: str | None, payload: dict, mask=None,
               client_time: float | None = None, session: str | None = None, base: int | None = None) -> int:
        """One interaction, committed when this returns; returns its event number. With ``base`` (the
        number of the last event the page shows) it is logged only if the log is still there, else
        ``StaleBase`` and nothing is written."""
        with self.engine.begin() as conn:
            return self._record(conn, pid, kind, task_id, payload, mask, client_time, session, base)

    def answer(self, pid: int, task_index: int, answers: dict[str, Any], payload: dict,
               client_time: float | None = None, session: str | None = None, base: int | None = None) -> dict:
        """Log the answers of one task and move the participant to the next task, in one transaction.
        Returns ``advanced``, ``task_index`` and ``seq`` (the participant's last event number). A task
        already submitted is not advanced again; with ``base``, answers from a page behind the log are
        refused (``StaleBase``, nothing written)."""
        task = self.study.tasks[task_index]
        nxt = task_index + 1
        done = nxt >= len(self.study.tasks)
        with self.engine.begin() as conn:
            # the first statement writes (and so locks): two submits of one task cannot both advance
            cond = (participants_t.c.id == pid) & (participants_t.c.task_index == task_index)
            if base is not None:
                cond = cond & (participants_t.c.n_events == int(base))
            moved = conn.execute(participants_t.update().where(cond)
                                 .values(task_index=nxt, **({"finished_at": now()} if done else {}))).rowcount
            if moved != 1:  # a double click, a stale tab, or a page behind the log: nothing to do
                cur, n = conn.execute(sa.select(participants_t.c.task_index, participants_t.c.n_events)
                                      .where(participants_t.c.id == pid)).one()
                if cur != task_index:
                    return {"advanced": False, "task_index": cur, "seq": int(n)}
                raise StaleBase(base, n)
            skipped = bool(payload.get("skipped"))  # a task the participant's condition leaves out: no answers
            seq = self._record(conn, pid, "skipped" if skipped else "answer", task.id, payload,
                               client_time=client_time, session=session)
            iid = conn.execute(sa.select(interactions_t.c.id).where(
                (interactions_t.c.participant_id == pid) & (interactions_t.c.seq == seq))).scalar_one()
            late = bool(payload.get("late"))
            for q in [] if skipped else task.questions:
                a = answers.get(q.id)
                correct = q.kind.correct(q, None if a is None else str(a))
                conn.execute(answers_t.insert().values(participant_id=pid, interaction_id=iid, task_id=task.id,
                                                       question_id=q.id, answer=None if a is None else str(a),
                                                       correct=correct, late=late))
            if done:
                seq = self._record(conn, pid, "finish", None, {}, client_time=client_time, session=session)
        return {"advanced": True, "task_index": nxt, "seq": seq}

    def timeline(self, pid: int, task_id: str | None = None, upto: int | None = None) -> list[dict]:
        """The participant's rows in order (of one task; up to event number ``upto``)."""
        q = sa.select(interactions_t).where(interactions_t.c.participant_id == pid)
        if task_id is not None:
            q = q.where(interactions_t.c.task_id == task_id)
        if upto is not None:
            q = q.where(interactions_t.c.seq <= int(upto))
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q.order_by(interactions_t.c.seq)).mappings()]

    # -- researchers ---------------------------------------------------------------------------------------
    def log_version(self) -> str:
        """What the log holds now, in a few numbers (rows and highest ids of its tables, finished
        participants): two equal versions describe the same log, so a job computed from it can be reused."""
        with self.engine.connect() as conn:
            parts = []
            for t in (participants_t, interactions_t, answers_t):
                n, top = conn.execute(sa.select(sa.func.count(), sa.func.max(t.c.id))).one()
                parts += [n, top or 0]
            parts.append(conn.execute(sa.select(sa.func.count()).select_from(participants_t)
                                      .where(participants_t.c.finished_at.is_not(None))).scalar_one())
        return ":".join(str(x) for x in parts)

    def progress(self) -> list[dict]:
        with self.engine.connect() as conn:
            return participant_progress(conn, self.study_id, len(self.study.tasks))

    def condition_counts(self) -> list[dict]:
        """Per condition (the study's order): its participants (who did not withdraw) and how many finished.
        Empty for a study without conditions."""
        if not self.study.conditions:
            return []
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(participants_t.c.ordinal, participants_t.c.finished_at)
                                .where(active(self.study_id))).all()
        out = {c.name: {"condition": c.name, "participants": 0, "finished": 0} for c in self.study.conditions}
        for ordinal, finished in rows:
            c = out[self.study.condition_of(ordinal).name]
            c["participants"] += 1
            c["finished"] += finished is not None
        return list(out.values())

    def task_progress(self) -> list[dict]:
        with self.engine.connect() as conn:
            n_part = conn.execute(sa.select(sa.func.count()).select_from(participants_t).where(
                active(self.study_id))).scalar_one()
            out = []
            for i, t in enumerate(self.study.tasks):
                strokes = conn.execute(sa.select(sa.func.count()).select_from(interactions_t).join(participants_t).where(
                    active(self.study_id) & (interactions_t.c.task_id == t.id)
                    & (interactions_t.c.kind == "stroke"))).scalar_one()
                done = conn.execute(sa.select(sa.func.count()).select_from(participants_t).where(
                    active(self.study_id) & (participants_t.c.task_index > i))).scalar_one()
                correct = conn.execute(sa.select(sa.func.count()).select_from(answers_t).join(participants_t).where(
                    active(self.study_id) & (answers_t.c.task_id == t.id)
                    & (answers_t.c.correct.is_(True)))).scalar_one() if t.attention_check else None
                out.append({"task": t.id, "completed": f"{done}/{n_part}", "strokes": strokes,
                            "attention_passed": "" if correct is None else f"{correct}/{done}"})
        return out


def _jsonable(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (datetime.datetime, datetime.date)):
        return o.isoformat()
    return str(o)
