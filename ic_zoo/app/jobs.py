"""Long jobs: the slow maps, the study's analysis and its export (issue 33, item 4).

A long job must not die with the replica that started it. Each job has a **key** (a digest of what it
computes), a **kind** (``slow_maps``, ``study_analysis``, ...) and JSON **arguments**; its result is a zip
(``result.json`` and files), kept with its state where every replica can read it:

* ``IC_ZOO_JOBS=postgresql://...`` (the deployment's PostgreSQL): jobs go through `procrastinate
  <https://procrastinate.readthedocs.io>`_, a maintained PostgreSQL job queue (no other server). Every
  replica runs one worker. A worker's heartbeat goes to the database every 2 s; a job whose worker has not
  been heard of for ``IC_ZOO_JOBS_STALLED_S`` (default 30 s: longer than a busy replica's pauses) is ended
  and deferred anew by the next replica that looks (each looks every 3 s). Jobs of one key run one at a time
  (procrastinate's ``lock``), and a run that finds its key done returns at once, so a job finishes once.
  A replica that is stopped (SIGTERM) hands its running job back to the queue. ``IC_ZOO_JOB_WORKERS``
  (default 1) sets how many jobs a replica runs at once; 0: it only asks.
* otherwise (one process): a worker thread of this process, the same states and results in memory.

The page that asked for a job waits for its key (``wait``), showing the job's progress; a page that asks
again for the same key (after a reload, on another replica) gets the same job, or its result at once.
"""
from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import os
import queue
import secrets
import socket
import threading
import time
import zipfile
from dataclasses import dataclass
from typing import Callable

from ..errors import IcZooError

log = logging.getLogger(__name__)

QUEUE = "ic_zoo"
KEEP_S = 7 * 86400  # finished jobs are dropped after a week
STATES = ("queued", "running", "done", "failed")


class JobError(IcZooError):
    """A job cannot be asked for or did not give a result (one sentence)."""


@dataclass
class JobStatus:
    state: str  # queued | running | done | failed
    fraction: float = 0.0
    note: str = ""
    result: bytes | None = None  # a zip (pack), when done
    error: str = ""  # one sentence, when failed
    runs: int = 0  # how many times it was started (2: its first replica died or stopped)


Handler = Callable[[dict, Callable[[float, str], None]], bytes]


def job_key(kind: str, args: dict) -> str:
    """The key of a job: what it computes, so that asking twice gets one job."""
    body = json.dumps({"kind": kind, "args": args}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()[:40]


def pack(doc: dict, files: dict[str, bytes] | None = None) -> bytes:
    """A job's result: ``result.json`` and the files it names."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("result.json", json.dumps(doc))
        for name, data in (files or {}).items():
            z.writestr(name, data)
    return buf.getvalue()


def unpack(data: bytes) -> tuple[dict, dict[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        doc = json.loads(z.read("result.json"))
        return doc, {n: z.read(n) for n in z.namelist() if n != "result.json"}


class Jobs:
    """What both kinds of queue share: the handlers, ``submit``, ``status`` and ``wait``."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}

    def handle(self, kind: str, fn: Handler) -> None:
        """``fn(args, progress) -> bytes`` computes jobs of ``kind`` (every replica registers the same)."""
        self.handlers[kind] = fn

    def submit(self, kind: str, args: dict) -> str:
        raise NotImplementedError

    def status(self, key: str) -> JobStatus | None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def wait(self, key: str, progress: Callable[[float, str], None] | None = None, poll_s: float = 0.3,
             limit_s: float | None = None) -> JobStatus:
        """Wait for a job to end, calling ``progress(fraction, note)`` as it moves; the final status. A
        job that fails raises its sentence (JobError)."""
        *_, done = self.follow(key, progress, poll_s, limit_s)
        return done

    def follow(self, key: str, progress: Callable[[float, str], None] | None = None, poll_s: float = 0.3,
               limit_s: float | None = None):
        """``wait``, giving on the way each preview the job publishes (a running status whose ``result`` is
        its result so far, in the final result's format), and last the final status."""
        t0, seen, shown = time.monotonic(), None, None
        while True:
            st = self.status(key)
            if st is None:
                raise JobError("That job is not known here (it may have been dropped): ask for it again.")
            if st.state == "done":
                yield st
                return
            if st.state == "failed":
                raise JobError(st.error or "The job failed.")
            now = (round(st.fraction, 3), st.note, st.state)
            if progress is not None and now != seen:
                seen = now
                progress(st.fraction, st.note or ("waiting for a free worker" if st.state == "queued" else ""))
            if st.state == "running" and st.result is not None and st.result != shown:
                shown = st.result
                yield st
            if limit_s is not None and time.monotonic() - t0 > limit_s:
                raise JobError(f"The job is still running after {limit_s:.0f} s: ask again later for its result.")
            time.sleep(poll_s)

    def _run(self, key: str, kind: str, args: dict, update: Callable[..., None]) -> None:
        """Run one job, reporting through ``update(state=, fraction=, note=, result=, error=)``."""
        fn = self.handlers.get(kind)
        if fn is None:
            update(state="failed", error=f"This server does not know jobs of kind {kind!r}.")
            return
        last = [0.0]

        def progress(fraction: float, note: str = "") -> None:
            now = time.monotonic()
            if now - last[0] >= 0.3:  # the database is told at most ~3 times a second
                last[0] = now
                update(fraction=max(0.0, min(1.0, float(fraction))), note=str(note)[:300])

        def preview(result: bytes) -> None:
            """The result so far (a job that shows its work before it ends: ``follow``); always written."""
            update(result=bytes(result))

        progress.preview = preview  # (a handler that has previews finds it here)
        try:
            result = fn(args, progress)
        except IcZooError as exc:
            update(state="failed", error=str(exc))
        except Exception as exc:  # noqa: BLE001 - the job fails with a sentence; the log has the rest
            log.exception("job %s (%s) failed", key, kind)
            update(state="failed", error=f"The job failed on the server ({type(exc).__name__}).")
        else:
            update(state="done", fraction=1.0, note="", result=result)

    @staticmethod
    def from_env() -> "Jobs":
        url = os.environ.get("IC_ZOO_JOBS", "").strip()
        if url:
            return PgJobs(url)
        return LocalJobs()


class LocalJobs(Jobs):
    """One process: a worker thread, states in memory (finished ones dropped after KEEP_S)."""

    def __init__(self) -> None:
        super().__init__()
        self._jobs: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._todo: queue.Queue = queue.Queue()
        threading.Thread(target=self._work, name="ic_zoo-jobs", daemon=True).start()

    def submit(self, kind: str, args: dict) -> str:
        key = job_key(kind, args)
        with self._lock:
            now = time.time()
            for k in [k for k, j in self._jobs.items() if j["state"] in ("done", "failed")
                      and now - j["at"] > KEEP_S]:
                del self._jobs[k]
            j = self._jobs.get(key)
            if j is not None and j["state"] != "failed":
                return key
            self._jobs[key] = {"state": "queued", "fraction": 0.0, "note": "", "result": None, "error": "",
                               "runs": 0, "at": now}
        self._todo.put((key, kind, args))
        return key

    def status(self, key: str) -> JobStatus | None:
        with self._lock:
            j = self._jobs.get(key)
            return None if j is None else JobStatus(j["state"], j["fraction"], j["note"], j["result"], j["error"],
                                                    j["runs"])

    def _work(self) -> None:
        while True:
            key, kind, args = self._todo.get()

            def update(key=key, **kw):
                with self._lock:
                    self._jobs[key].update(kw, at=time.time())

            update(state="running", runs=self._jobs[key]["runs"] + 1)
            self._run(key, kind, args, update)


class PgJobs(Jobs):
    """The deployment's PostgreSQL: procrastinate's queue, and a table ``ic_zoo_jobs`` of states and
    results that every replica reads."""

    def __init__(self, url: str, stalled_s: float | None = None, workers: int | None = None) -> None:
        super().__init__()
        # jobs run at once by this replica (IC_ZOO_JOB_WORKERS, default 1); 0: it asks for jobs and shows
        # their results, the other replicas run them
        self.workers = int(workers if workers is not None else os.environ.get("IC_ZOO_JOB_WORKERS", "1"))
        import sqlalchemy as sa

        self.sa = sa
        self.url = url
        self.stalled_s = float(stalled_s if stalled_s is not None else os.environ.get("IC_ZOO_JOBS_STALLED_S", "30"))
        self.engine = sa.create_engine(_sqlalchemy_url(url), pool_pre_ping=True)
        meta = sa.MetaData()
        self.table = sa.Table(
            "ic_zoo_jobs", meta, sa.Column("key", sa.String(64), primary_key=True),
            sa.Column("kind", sa.String(64), nullable=False), sa.Column("state", sa.String(16), nullable=False),
            sa.Column("fraction", sa.Float, nullable=False, default=0.0), sa.Column("note", sa.Text, default=""),
            sa.Column("result", sa.LargeBinary), sa.Column("error", sa.Text, default=""),
            sa.Column("runs", sa.Integer, nullable=False, default=0), sa.Column("run", sa.String(40)),
            sa.Column("replica", sa.String(200), default=""), sa.Column("updated_at", sa.Float, nullable=False))
        try:
            create_tables(self.engine, meta)
            self._procrastinate_schema()
        except sa.exc.SQLAlchemyError as exc:
            raise JobError(f"The job queue {self.engine.url.render_as_string(hide_password=True)} cannot be "
                           f"opened: {type(exc).__name__}.") from None
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._mine: dict[str, tuple[str, dict]] = {}  # the jobs this replica is running: key -> (kind, args)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._serve, name="ic_zoo-jobs", daemon=True)
        self._thread.start()
        if not self._ready.wait(60):
            raise JobError("The job queue's worker did not start within 60 s.")

    # -- set-up ------------------------------------------------------------------------------------------
    def _procrastinate_schema(self) -> None:
        """procrastinate's tables, once per database (an advisory lock: replicas starting together)."""
        sa = self.sa
        with self.engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(4242033)"))
            if conn.execute(sa.text("SELECT to_regclass('procrastinate_jobs')")).scalar() is None:
                from procrastinate import schema

                conn.exec_driver_sql(schema.SchemaManager.get_schema().replace("%", "%%"))

    def _app(self):
        import procrastinate

        app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=_libpq_url(self.url)))

        @app.task(name="ic_zoo.job", queue=QUEUE)
        def job(key: str, kind: str, args: dict) -> None:
            self._job(key, kind, args)

        self._task = job
        return app

    def _serve(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        app = self._app()
        async with app.open_async():
            self._procrastinate = app
            self._ready.set()
            if self.workers > 0:
                worker = asyncio.create_task(app.run_worker_async(
                    queues=[QUEUE], concurrency=self.workers, name=self.name, install_signal_handlers=False,
                    update_heartbeat_interval=2.0, stalled_worker_timeout=self.stalled_s,
                    shutdown_graceful_timeout=2.0, delete_jobs="successful"))
            else:  # no worker: only the stalled-job look-out, until closed
                worker = asyncio.create_task(asyncio.Event().wait())
            self._worker = worker
            try:
                while not worker.done():
                    await self._retry_stalled(app)
                    await asyncio.wait([worker], timeout=3.0)
            finally:
                if not worker.done():
                    worker.cancel()

    async def _retry_stalled(self, app) -> None:
        """Jobs whose worker has not been heard of for stalled_s: ended as failed (which frees their key's
        lock) and their key deferred anew, for any replica. A plain retry would put the old job back beside
        one its user deferred meanwhile (asking again after a reload), which the queueing lock refuses, and
        the old one would hold the key's lock for ever."""
        from procrastinate import exceptions
        from procrastinate.jobs import Status

        try:
            stalled = await app.job_manager.get_stalled_jobs(queue=QUEUE, seconds_since_heartbeat=self.stalled_s)
        except Exception as exc:  # noqa: BLE001 - the database is away for a moment: next time
            log.warning("the job queue cannot be read: %s", exc)
            return
        for job in stalled:
            kw = dict(job.task_kwargs)
            try:
                await app.job_manager.finish_job_by_id_async(job_id=job.id, status=Status.FAILED, delete_job=False)
            except Exception as exc:  # noqa: BLE001 - another replica ended it first
                log.info("job %s: not ended here (%s)", job.id, exc)
                continue
            log.warning("job %s (%s): its worker is silent for %.0f s; started again", job.id, kw.get("key"),
                        self.stalled_s)
            try:
                await self._task.configure(lock=kw["key"], queueing_lock=kw["key"]).defer_async(**kw)
            except exceptions.AlreadyEnqueued:
                pass  # its user asked again meanwhile: that job runs now that the lock is free
            except Exception as exc:  # noqa: BLE001
                log.warning("job %s not deferred again: %s", kw.get("key"), exc)

    # -- the queue ---------------------------------------------------------------------------------------
    def submit(self, kind: str, args: dict) -> str:
        sa, t, key = self.sa, self.table, job_key(kind, args)
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(sa.delete(t).where(t.c.updated_at < now - KEEP_S, t.c.state.in_(("done", "failed"))))
            row = conn.execute(sa.select(t.c.state).where(t.c.key == key).with_for_update()).first()
            if row is not None and row.state == "done":
                return key
            if row is None:
                try:
                    with conn.begin_nested():
                        conn.execute(sa.insert(t).values(key=key, kind=kind, state="queued", fraction=0.0, note="",
                                                         error="", runs=0, updated_at=now))
                except sa.exc.IntegrityError:  # another replica asked for it meanwhile
                    pass
            elif row.state == "failed":
                conn.execute(sa.update(t).where(t.c.key == key).values(state="queued", error="", fraction=0.0,
                                                                         note="", updated_at=now))
        self._defer(key, kind, args)
        return key

    def _defer(self, key: str, kind: str, args: dict, locked: bool = True) -> None:
        """One procrastinate job for the key: a second one while the first waits is refused by the
        queueing lock (the same job), and one while it runs waits for it (the lock), then finds it done.
        A job handed back by a stopping replica goes without the lock (its old run still holds it)."""
        from procrastinate import exceptions

        async def defer():
            try:
                await self._task.configure(lock=key if locked else None, queueing_lock=key).defer_async(
                    key=key, kind=kind, args=args)
            except exceptions.AlreadyEnqueued:
                pass

        if self._loop is None or self._loop.is_closed():
            raise JobError("This server is stopping: ask again, another server will take the job.")
        asyncio.run_coroutine_threadsafe(defer(), self._loop).result(30)

    def status(self, key: str) -> JobStatus | None:
        t = self.table
        with self.engine.connect() as conn:
            r = conn.execute(self.sa.select(t).where(t.c.key == key)).first()
        if r is None:
            return None
        return JobStatus(r.state, r.fraction, r.note or "", r.result, r.error or "", r.runs)

    def _job(self, key: str, kind: str, args: dict) -> None:
        """A run of a job (procrastinate calls it in a thread of this replica)."""
        sa, t, run = self.sa, self.table, secrets.token_hex(8)
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(t.c.state, t.c.runs).where(t.c.key == key).with_for_update()).first()
            if row is None or row.state == "done":
                return  # finished by an earlier run (or dropped)
            conn.execute(sa.update(t).where(t.c.key == key).values(state="running", runs=row.runs + 1, run=run,
                                                                     replica=self.name, updated_at=time.time()))
        self._mine[key] = (kind, args)

        def update(**kw):
            with self.engine.begin() as conn:  # only this run writes: a run started again elsewhere took over
                conn.execute(sa.update(t).where(t.c.key == key, t.c.run == run).values(**kw, updated_at=time.time()))

        try:
            self._run(key, kind, args, update)
        finally:
            self._mine.pop(key, None)

    def close(self) -> None:
        """Stop taking jobs; a job still running here goes back to the queue at once, for another replica
        (this run's late writes are ignored: its run token is gone)."""
        if self._stopped:
            return
        self._stopped = True
        if self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._worker.cancel)  # first: this replica takes nothing more
        t = self.table
        for key, (kind, args) in dict(self._mine).items():
            try:
                with self.engine.begin() as conn:
                    conn.execute(self.sa.update(t).where(t.c.key == key, t.c.state == "running")
                                 .values(state="queued", run=None, note="handed to another server",
                                         updated_at=time.time()))
                self._defer(key, kind, args, locked=False)
                log.info("job %s handed back to the queue", key)
            except Exception as exc:  # noqa: BLE001 - left to the stalled-job retry
                log.warning("job %s not handed back: %s", key, exc)
        self._thread.join(3)  # a sync run still going is not waited for (the process exits; its writes are ignored)
        self.engine.dispose()


def create_tables(engine, meta) -> None:
    """``meta.create_all`` that replicas starting together can all run: on PostgreSQL under one advisory
    lock (two concurrent CREATE TABLEs of the same name fail with an IntegrityError on pg_type)."""
    import sqlalchemy as sa

    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(4242034)"))
        meta.create_all(conn)


def _libpq_url(url: str) -> str:
    """A libpq connection string from an SQLAlchemy URL (postgresql+psycopg://... -> postgresql://...)."""
    scheme, sep, rest = url.partition("://")
    return f"postgresql://{rest}" if sep and scheme.startswith("postgres") else url


def _sqlalchemy_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"
    return url
