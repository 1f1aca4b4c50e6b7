"""A tab's work, kept where any replica can rebuild it (issue 33, item 4).

A tab's session (its image, its edits, the caches) lives in one process. What is needed to rebuild it is
small: the original image, the ordered strokes (each a mask and the inpainter that filled it) and the
settings. The app keeps that in two places:

* the **browser** holds a signed *work record* (``gr.BrowserState``): the original's SHA-256, the strokes
  as 1-bit PNGs, the models and the chosen classes. It is signed with ``IC_ZOO_BROWSER_SECRET`` (the same
  on every replica), so a record is only taken back from the app that wrote it;
* the **image store** holds the originals by their hash: a folder, or a database table when
  ``IC_ZOO_IMAGE_STORE`` names one (``postgresql://...``: the deployment's PostgreSQL, where every
  replica finds them; a path: a folder, e.g. a shared volume). By default a folder of this process.

When a page opens (a reload, or a tab moved to another replica), the record is verified, the image is
fetched by its hash, and the strokes are applied again in order: the inpainters are deterministic, so the
rebuilt image is the one the person saw (tested bitwise, across two servers). Redo steps are not kept.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import IcZooError
from .jobs import create_tables
from ..imageio import image_to_png, mask_to_png, png_to_image, png_to_mask

log = logging.getLogger(__name__)

VERSION = 1
MAX_RECORD = 1_500_000  # bytes: beyond this, the browser keeps no record (say so rather than fill its storage)
KEEP_DAYS = float(os.environ.get("IC_ZOO_IMAGE_STORE_DAYS", "7"))  # stored originals older than this are dropped


class WorkError(IcZooError):
    """A work record cannot be used (tampered with, of another deployment, or its image is gone)."""


def image_hash(img: np.ndarray) -> str:
    """The SHA-256 of an image's pixels and shape (what a record names the original by)."""
    a = np.ascontiguousarray(img, dtype=np.uint8)
    return hashlib.sha256(f"{a.shape}".encode() + a.tobytes()).hexdigest()


# -- the image store ---------------------------------------------------------------------------------------
class ImageStore:
    """Originals by hash. ``put`` returns the hash; ``get`` the image, or None when it is not kept."""

    def put(self, img: np.ndarray) -> str:
        raise NotImplementedError

    def get(self, key: str) -> np.ndarray | None:
        raise NotImplementedError

    @staticmethod
    def from_env(default_dir: str | os.PathLike | None = None) -> "ImageStore":
        where = os.environ.get("IC_ZOO_IMAGE_STORE", "").strip()
        if "://" in where:
            return SqlImageStore(where)
        return FolderImageStore(where or default_dir or tempfile.mkdtemp(prefix="ic_zoo_images_"))


class FolderImageStore(ImageStore):
    """One PNG per original, named by its hash; files older than KEEP_DAYS are dropped now and then."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._pruned = 0.0

    def put(self, img: np.ndarray) -> str:
        key = image_hash(img)
        path = self.folder / f"{key}.png"
        if path.exists() and self.get(key) is not None:
            os.utime(path)  # in use: kept another KEEP_DAYS
        else:  # new, or damaged
            tmp = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
            tmp.write_bytes(image_to_png(img))
            os.replace(tmp, path)  # atomic: another replica never reads half a file
        self._prune()
        return key

    def get(self, key: str) -> np.ndarray | None:
        if not _is_hash(key):
            return None
        path = self.folder / f"{key}.png"
        try:
            img = png_to_image(path.read_bytes())
        except OSError:
            return None
        return img if image_hash(img) == key else None

    def _prune(self) -> None:
        now = time.time()
        if now - self._pruned < 3600:
            return
        self._pruned = now
        for p in self.folder.glob("*.png"):
            try:
                if now - p.stat().st_mtime > KEEP_DAYS * 86400:
                    p.unlink()
            except OSError:
                pass


class SqlImageStore(ImageStore):
    """A table ``ic_zoo_app_images`` (hash, png, stored_at) in the deployment's database."""

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa

        self.sa = sa
        self.engine = sa.create_engine(url, pool_pre_ping=True)
        meta = sa.MetaData()
        self.table = sa.Table("ic_zoo_app_images", meta, sa.Column("hash", sa.String(64), primary_key=True),
                              sa.Column("png", sa.LargeBinary, nullable=False),
                              sa.Column("stored_at", sa.Float, nullable=False))
        try:
            create_tables(self.engine, meta)
        except sa.exc.SQLAlchemyError as exc:
            raise WorkError(f"The image store {self.engine.url.render_as_string(hide_password=True)} cannot be "
                            f"opened: {type(exc).__name__}.") from None
        self._pruned = 0.0
        self._lock = threading.Lock()

    def put(self, img: np.ndarray) -> str:
        sa, t, key = self.sa, self.table, image_hash(img)
        now = time.time()
        with self.engine.begin() as conn:
            if conn.execute(sa.update(t).where(t.c.hash == key).values(stored_at=now)).rowcount == 0:
                try:
                    with conn.begin_nested():
                        conn.execute(sa.insert(t).values(hash=key, png=image_to_png(img), stored_at=now))
                except sa.exc.IntegrityError:  # another replica stored it meanwhile
                    pass
            with self._lock:
                if now - self._pruned > 3600:
                    self._pruned = now
                    conn.execute(sa.delete(t).where(t.c.stored_at < now - KEEP_DAYS * 86400))
        return key

    def get(self, key: str) -> np.ndarray | None:
        if not _is_hash(key):
            return None
        t = self.table
        with self.engine.connect() as conn:
            row = conn.execute(self.sa.select(t.c.png).where(t.c.hash == key)).first()
        if row is None:
            return None
        img = png_to_image(row[0])
        return img if image_hash(img) == key else None


def _is_hash(key) -> bool:
    return isinstance(key, str) and len(key) == 64 and all(c in "0123456789abcdef" for c in key)


# -- the record --------------------------------------------------------------------------------------------
@dataclass
class Work:
    """What a record says: the original (by hash), the strokes in order, the models and chosen classes."""

    image: str
    source: str = ""
    strokes: list[tuple[np.ndarray, str, dict]] = field(default_factory=list)  # (mask, inpainter, params)
    models: list[str] = field(default_factory=list)
    selected: dict[str, int] = field(default_factory=dict)
    uids: list[int | None] = field(default_factory=list)  # the session's edit uids (their encoded masks are kept)

    @staticmethod
    def of(image_key: str, session, source: str, models, selected) -> "Work":
        return Work(image_key, source, [(e.mask, e.inpainter, dict(e.params)) for e in session.edits],
                    list(models or []), {str(k): int(v) for k, v in (selected or {}).items()},
                    [e.uid for e in session.edits])


_ENCODED: "OrderedDict[int, str]" = OrderedDict()  # edit uid -> its mask as base64 PNG (most recent last)
_ENCODED_MAX = 4096
_encoded_lock = threading.Lock()


def _mask_text(mask: np.ndarray, uid: int | None) -> str:
    """A stroke's mask as base64 PNG, encoded once per edit: a record is written after every change, and
    re-encoding every earlier stroke made each stroke cost more than the last."""
    if uid is not None:
        with _encoded_lock:
            text = _ENCODED.get(uid)
            if text is not None:
                _ENCODED.move_to_end(uid)
                return text
    text = base64.b64encode(mask_to_png(mask)).decode()
    if uid is not None:
        with _encoded_lock:
            _ENCODED[uid] = text
            while len(_ENCODED) > _ENCODED_MAX:
                _ENCODED.popitem(last=False)
    return text


def browser_secret() -> str:
    """The key records are signed with: IC_ZOO_BROWSER_SECRET (the same on every replica), else a random
    one of this process (a record then survives a reload, not a restart or another replica)."""
    return os.environ.get("IC_ZOO_BROWSER_SECRET") or _PROCESS_SECRET


_PROCESS_SECRET = secrets.token_hex(32)


def _sign(secret: str, body: str) -> str:
    return hmac.new(secret.encode(), f"ic_zoo-work:{body}".encode(), hashlib.sha256).hexdigest()


def encode(work: Work, secret: str) -> str | None:
    """The signed record (``<base64 json>.<hmac>``), or None when it would be larger than MAX_RECORD."""
    doc = {"v": VERSION, "image": work.image, "source": work.source[:200], "models": work.models,
           "selected": work.selected,
           "strokes": [{"mask": _mask_text(m, uid), "inpainter": inp, "params": params}
                       for (m, inp, params), uid in zip(work.strokes, work.uids or [None] * len(work.strokes))]}
    body = base64.urlsafe_b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode()
    rec = f"{body}.{_sign(secret, body)}"
    return rec if len(rec) <= MAX_RECORD else None


def decode(record, secret: str) -> Work:
    """The work a record describes; WorkError when it is not one this deployment signed."""
    if not isinstance(record, str) or "." not in record or len(record) > MAX_RECORD:
        raise WorkError("The saved work in this browser is not readable.")
    body, _, sig = record.rpartition(".")
    if not hmac.compare_digest(sig.encode(), _sign(secret, body).encode()):
        raise WorkError("The saved work in this browser was not written by this app (or its secret changed).")
    try:
        doc = json.loads(base64.urlsafe_b64decode(body.encode()))
        if doc.get("v") != VERSION:
            raise ValueError("version")
        strokes = [(png_to_mask(base64.b64decode(s["mask"])), str(s["inpainter"]), dict(s.get("params") or {}))
                   for s in doc["strokes"]]
        return Work(str(doc["image"]), str(doc.get("source", "")), strokes, [str(m) for m in doc.get("models", [])],
                    {str(k): int(v) for k, v in (doc.get("selected") or {}).items()})
    except (ValueError, KeyError, TypeError, OSError):
        raise WorkError("The saved work in this browser is of another version of the app.") from None


def rebuild(work: Work, store: ImageStore, make_session):
    """The session ``work`` describes: its original from ``store``, its strokes applied again in order."""
    img = store.get(work.image)
    if img is None:
        raise WorkError("The image of the saved work is no longer kept on this server: load it again.")
    session = make_session(img)
    for mask, inpainter, params in work.strokes:
        if mask.shape != session.original.shape[:2]:
            raise WorkError("The saved work does not fit its image.")
        session.apply(mask, inpainter, **params)
    return session
