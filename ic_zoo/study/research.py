"""The researcher's side of a study log: export to CSV/JSON with the masks, and replay (re-run every
logged edit and check that the logged predictions reproduce). Both read only the database: the
definition, the task images and uploads are stored in it."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Callable

import numpy as np
import sqlalchemy as sa

from .db import active, answers_t, images_t, interactions_t, participants_t, png_to_mask, stored_image, studies_t
from .definition import questions_of


def answer_value(q, answer):
    """An answer as its question type's value (a scale's number; the text otherwise), None when it cannot be
    read as one (an answer logged before its question's type changed)."""
    if q is None:
        return answer
    try:
        return q.kind.value(q, answer)
    except (TypeError, ValueError):
        return None


def studies(engine: sa.Engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(studies_t).order_by(studies_t.c.id)).mappings()]


def pick_study(engine: sa.Engine, key: str | None) -> dict:
    from .definition import StudyError

    rows = studies(engine)
    if not rows:
        raise StudyError("this database holds no study yet.")
    if key is None:
        if len(rows) > 1:
            raise StudyError("this database holds several studies (" + ", ".join(
                f"{r['key']} '{r['title']}'" for r in rows) + "); choose one with --study-key.")
        return rows[0]
    for r in rows:
        if r["key"] == key or r["title"] == key:
            return r
    raise StudyError(f"no study '{key}' in this database; it holds " + ", ".join(r["key"] for r in rows) + ".")


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})


#: the columns of trials.csv (docs/study.md defines each measure)
TRIAL_COLUMNS = ["participant", "condition", "task", "trial", "phase", "prediction", "model", "explainer", "measure",
                 "value", "correct", "response_time_s", "late"]


def trials(inter: list[dict], answers: list[dict], definition: dict) -> list[dict]:
    """The tidy per-trial table (``trials.csv``): one row per participant x trial x measure, a trial being one
    task as the participant met it (``trial``: its position in their order, from 0). Model measures are read
    from the last change logged on the task (what the participant saw when they answered); answer measures
    from the answers, with the question type's value. ``condition`` and ``phase`` are empty for a study
    without conditions and phases."""
    explainer = {t["id"]: t.get("explainer", "") for t in definition.get("tasks", [])}
    phase = {t["id"]: t.get("phase", "") for t in definition.get("tasks", [])}
    condition = {r["participant"]: (r["payload"] or {}).get("condition") or "" for r in inter if r["kind"] == "consent"}
    by_trial: dict[tuple[str, str], dict] = {}
    order: dict[str, list[str]] = {}
    predicted: list[dict] = []
    for r in inter:
        tid = r["task_id"]
        if tid is None or r["kind"] == "skipped":
            continue
        if r["kind"] == "prediction":
            predicted.append(r)
        key = (r["participant"], tid)
        if key not in by_trial:
            by_trial[key] = {"last": None, "strokes": 0, "answer": None}
            order.setdefault(r["participant"], []).append(tid)
        t = by_trial[key]
        if r["kind"] == "stroke":
            t["strokes"] += 1
        if (r["payload"] or {}).get("models") and r["kind"] in ("stroke", "undo", "reset", "upload"):
            t["last"] = r
        if r["kind"] == "answer":
            t["answer"] = r
    rows = []
    for (code, tid), t in by_trial.items():
        trial = order[code].index(tid)
        ans = (t["answer"] or {}).get("payload") or {}
        rt, late = ans.get("seconds_on_task"), ans.get("late")
        base = {"participant": code, "condition": condition.get(code, ""), "task": tid, "trial": trial,
                "phase": phase.get(tid, ""), "response_time_s": rt, "late": late}
        rows.append({**base, "model": "", "explainer": "", "measure": "strokes", "value": t["strokes"]})
        last = (t["last"] or {}).get("payload") or {}
        for m, e in (last.get("models") or {}).items():
            tracked = (e.get("tracked") or [{}])[0]
            mm = {"model": m, "explainer": (e.get("map") or {}).get("explainer", explainer.get(tid, ""))}
            rows.append({**base, **mm, "measure": "flipped", "value": int(bool(e.get("top1_changed")))})
            if "delta_pp" in tracked:
                rows.append({**base, **mm, "measure": "delta_pp", "value": round(float(tracked["delta_pp"]), 4)})
            mass = (e.get("map") or {}).get("mass_in_mask_original")
            if mass is not None and t["last"]["kind"] == "stroke":
                rows.append({**base, **mm, "measure": "mass_in_last_stroke", "value": round(float(mass), 4)})
    n_pred: dict[tuple[str, str], int] = {}
    for r in predicted:  # predict-then-see: each model's prediction, what it did, and whether it was right
        pl, code, tid = r["payload"] or {}, r["participant"], r["task_id"]
        n_pred[(code, tid)] = n_pred.get((code, tid), 0) + 1
        base = {"participant": code, "condition": condition.get(code, ""), "task": tid,
                "trial": order.get(code, []).index(tid) if tid in order.get(code, []) else None,
                "phase": pl.get("phase") or phase.get(tid, ""), "prediction": n_pred[(code, tid)],
                "explainer": explainer.get(tid, ""), "response_time_s": pl.get("response_time_s"), "late": None}
        for m, o in (pl.get("outcome") or {}).items():
            said = (pl.get("predictions") or {}).get(m, {})
            if "flip" in said:
                rows.append({**base, "model": m, "measure": "predicted_flip", "value": said["flip"],
                             "correct": o.get("flip_correct")})
            if "class" in said:
                rows.append({**base, "model": m, "measure": "predicted_class", "value": said["class"],
                             "correct": o.get("class_correct")})
            rows.append({**base, "model": m, "measure": "model_flipped", "value": int(bool(o.get("flipped"))),
                         "correct": o.get("correct")})
        if pl.get("confidence") is not None:
            rows.append({**base, "model": "", "measure": "prediction_confidence", "value": pl["confidence"]})
    for a in answers:  # ``value``: the export's, the question type's value (the answer itself without a type)
        seen = order.get(a["participant"], [])
        trial = seen.index(a["task_id"]) if a["task_id"] in seen else None
        rows.append({"participant": a["participant"], "condition": condition.get(a["participant"], ""),
                     "task": a["task_id"], "trial": trial,
                     "phase": phase.get(a["task_id"], ""), "model": "", "explainer": "", "measure": f"answer:{a['question_id']}",
                     "value": a["value"], "correct": a["correct"],
                     "response_time_s": a.get("seconds_on_task"), "late": a["late"]})
    rows.sort(key=lambda r: (r["participant"], r["trial"] if r["trial"] is not None else -1, r.get("prediction") or 0,
                             r["model"], r["measure"]))
    return rows


def export(engine: sa.Engine, out: str | Path, study_key: str | None = None) -> dict:
    """Write ``interactions.csv/.json`` (one row per interaction), ``answers.csv/.json`` (one row per
    answer), ``trials.csv`` (one row per participant x trial x measure, see ``trials``), ``participants.csv``,
    ``study.json``, the stroke masks (``masks/<participant>/<seq>.png``)
    and the images (``images/<task or upload>.png``) into ``out``. Returns counts."""
    out = Path(out)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir(exist_ok=True)
    st = pick_study(engine, study_key)
    sid = st["id"]
    with engine.connect() as conn:
        parts = [dict(r) for r in conn.execute(sa.select(participants_t).where(
            active(sid)).order_by(participants_t.c.ordinal)).mappings()]
        code = {p["id"]: p["code"] for p in parts}
        inter = []
        for r in conn.execute(sa.select(interactions_t).join(participants_t).where(active(sid))
                              .order_by(participants_t.c.ordinal, interactions_t.c.seq)).mappings():
            r = dict(r)
            payload = json.loads(r["payload"])
            row = {"interaction_id": r["id"], "participant": code[r["participant_id"]], "seq": r["seq"],
                   "task_id": r["task_id"], "kind": r["kind"], "server_time": r["server_time"].isoformat(),
                   "client_time": r["client_time"], "session": r["session"], "mask_file": None,
                   "mask_pixels": payload.get("mask_pixels"), "inpainter": payload.get("inpainter"),
                   "payload": payload}
            if r["mask_png"] is not None:
                rel = Path("masks") / row["participant"] / f"{r['seq']:05d}.png"
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                (out / rel).write_bytes(r["mask_png"])
                row["mask_file"] = str(rel)
            inter.append(row)
        answers = []
        when = {r["interaction_id"]: r for r in inter}
        questions = questions_of(json.loads(st["definition"]))
        for r in conn.execute(sa.select(answers_t).join(participants_t).where(active(sid))
                              .order_by(participants_t.c.ordinal, answers_t.c.id)).mappings():
            src = when.get(r["interaction_id"], {})
            q = questions.get((r["task_id"], r["question_id"]))
            answers.append({"participant": code[r["participant_id"]], "task_id": r["task_id"],
                            "question_id": r["question_id"], "type": q.type if q else None, "answer": r["answer"],
                            "value": answer_value(q, r["answer"]), "correct": r["correct"],
                            "late": r["late"], "interaction_id": r["interaction_id"],
                            "server_time": src.get("server_time"), "client_time": src.get("client_time"),
                            "seconds_on_task": (src.get("payload") or {}).get("seconds_on_task")})
        for r in conn.execute(sa.select(images_t.c.task_id, images_t.c.png).where(images_t.c.study_id == sid)):
            (out / "images" / f"{r[0].replace(':', '_')}.png").write_bytes(r[1])
    prow = [{"participant": p["code"], "ordinal": p["ordinal"], "tasks_done": p["task_index"],
             "events": p["n_events"], "consented_at": p["consented_at"].isoformat(),
             "finished_at": p["finished_at"].isoformat() if p["finished_at"] else None, "ip": p["ip"]} for p in parts]
    (out / "study.json").write_text(json.dumps({"key": st["key"], "title": st["title"],
                                                "definition": json.loads(st["definition"])}, indent=1))
    (out / "interactions.json").write_text(json.dumps(inter, indent=1, default=str))
    (out / "answers.json").write_text(json.dumps(answers, indent=1, default=str))
    flat = [{**r, "payload": json.dumps(r["payload"], sort_keys=True)} for r in inter]
    _write_csv(out / "interactions.csv", flat, ["interaction_id", "participant", "seq", "task_id", "kind",
                                                "server_time", "client_time", "session", "inpainter",
                                                "mask_pixels", "mask_file", "payload"])
    _write_csv(out / "answers.csv", answers, ["participant", "task_id", "question_id", "type", "answer", "value",
                                             "correct", "late",
                                             "seconds_on_task", "server_time", "client_time", "interaction_id"])
    _write_csv(out / "trials.csv", trials(inter, answers, json.loads(st["definition"])), TRIAL_COLUMNS)
    _write_csv(out / "participants.csv", prow, ["participant", "ordinal", "tasks_done", "events", "consented_at",
                                               "finished_at", "ip"])
    return {"study": st["key"], "participants": len(parts), "interactions": len(inter), "answers": len(answers),
            "masks": sum(1 for r in inter if r["mask_file"])}


CHANGES = ("stroke", "undo", "redo", "reset", "upload")  # the logged events that change the image


def rebuild(session_factory: Callable[[np.ndarray], object], base: np.ndarray, events: list[dict],
            load_upload: Callable[[str], np.ndarray], on_stroke: Callable | None = None,
            on_change: Callable | None = None, on_other: Callable | None = None):
    """Re-apply a task's logged events (stroke, undo, redo, reset, upload) in order, from ``base``.
    ``on_change(session, event, payload)`` is called after each of them, ``on_stroke(...)`` after each
    stroke (after ``on_change``), ``on_other(...)`` at every other event (task_shown, task_resumed, ...).
    Returns the session."""
    session = session_factory(base)
    for ev in events:
        kind, payload = ev["kind"], ev["payload"] if isinstance(ev["payload"], dict) else json.loads(ev["payload"])
        if kind == "stroke":
            session.apply(png_to_mask(ev["mask_png"]), payload["inpainter"], **(payload.get("params") or {}))
        elif kind == "undo":
            session.undo()
        elif kind == "redo":
            session.redo()
        elif kind == "reset":
            session.reset()
        elif kind == "upload":
            session = session_factory(load_upload(payload["image_key"]))
        if kind in CHANGES and on_change is not None:
            on_change(session, ev, payload)
        if kind == "stroke" and on_stroke is not None:
            on_stroke(session, ev, payload)
        if kind not in CHANGES and on_other is not None:
            on_other(session, ev, payload)
    return session


def seq_gaps(seqs: list[int]) -> list[int]:
    """The event numbers missing from a participant's 1, 2, 3, ... sequence."""
    have = set(seqs)
    return [n for n in range(1, max(seqs, default=0) + 1) if n not in have]


def replay(engine: sa.Engine, participant: str | None = None, study_key: str | None = None,
           device: str | None = None, tol: float = 1e-4, log: Callable[[str], None] = print) -> dict:
    """Re-run every logged edit of one participant (or all) and compare each model's top-5 on the
    modified image with the logged one: same classes in the same order, probabilities within ``tol``.
    Gaps are reported too (``report["gaps"]``): event numbers missing from a participant's sequence, and
    the first place in a task where the log stops describing the participant's page, with its ``cause``:

    - ``after_reload``: a change committed after the page had been reloaded (``reloaded_at``, a
      task_shown/task_resumed row of another browser session) and so never shown there: a stroke still
      running on the old replica (issue 33). The log's images from it on hold a change the page did not.
    - ``during_reload``: a reload whose page was rebuilt with fewer edits than the log has at its row:
      the change(s) just before it (``late_seq``) were committed while it was being rebuilt.
    - ``missing``: a change made with more edits on the page than the log rebuilds: a change before it
      was applied on the page but never logged.
    - ``unseen``: a change made with fewer edits on the page than the log rebuilds, otherwise unexplained.

    Logs written with fencing (db.py) cannot have the first two: such a change is refused, not logged."""
    from ..session import Session

    st = pick_study(engine, study_key)
    sid = st["id"]
    report = {"study": st["key"], "participants": 0, "strokes": 0, "reproduced": 0, "max_prob_diff": 0.0,
              "mismatches": [], "gaps": []}
    with engine.connect() as conn:
        q = sa.select(participants_t).where(active(sid))
        if participant:
            q = q.where(participants_t.c.code == participant)
        parts = [dict(r) for r in conn.execute(q.order_by(participants_t.c.ordinal)).mappings()]
        if participant and not parts:
            from .definition import StudyError

            raise StudyError(f"no participant '{participant}' in study {st['key']}.")
        for p in parts:
            report["participants"] += 1
            rows = [dict(r) for r in conn.execute(sa.select(interactions_t).where(
                interactions_t.c.participant_id == p["id"]).order_by(interactions_t.c.seq)).mappings()]
            missing = seq_gaps([r["seq"] for r in rows])
            if missing:
                report["gaps"].append({"participant": p["code"], "task": None, "missing_seq": missing})
            tasks: dict[str, list[dict]] = {}
            for r in rows:
                if r["task_id"] is not None:
                    tasks.setdefault(r["task_id"], []).append(r)
            for task_id, events in tasks.items():
                changes = [e for e in events if e["kind"] in CHANGES]
                if not changes:
                    continue
                pretrained = bool(json.loads(changes[0]["payload"]).get("pretrained", True))
                gapped = []
                page = {}  # the row that last opened this task's page (task_shown / task_resumed)
                since = []  # the changes logged since it

                def gap(ev, cause, logged, rebuilt, p=p, task_id=task_id, gapped=gapped, **more):
                    if gapped:  # only the first one of the task: everything after it follows from it
                        return
                    gapped.append(ev["seq"])
                    report["gaps"].append({"participant": p["code"], "task": task_id, "seq": ev["seq"],
                                           "kind": ev["kind"], "cause": cause, "logged_n_edits": logged,
                                           "rebuilt_n_edits": rebuilt, **more})

                def opened(session, ev, payload, page=page, since=since):
                    if ev["kind"] not in ("task_shown", "task_resumed"):
                        return
                    replayed, rebuilt = payload.get("replayed_edits"), len(session.edits)
                    if replayed is not None and replayed != rebuilt:  # the last changes before it came too late
                        late = [e["seq"] for e in since][-abs(rebuilt - replayed):]
                        gap(ev, "during_reload", replayed, rebuilt, late_seq=late)
                    page.update(seq=ev["seq"], session=ev["session"])
                    since.clear()

                def count(session, ev, payload, page=page, since=since):
                    logged, rebuilt = payload.get("n_edits"), len(session.edits)
                    if page.get("session") and ev["session"] and ev["session"] != page["session"]:
                        gap(ev, "after_reload", logged, rebuilt, reloaded_at=page["seq"])
                    elif logged is not None and logged != rebuilt:
                        gap(ev, "missing" if logged > rebuilt else "unseen", logged, rebuilt)
                    since.append(ev)

                def check(session, ev, payload, p=p, task_id=task_id):
                    report["strokes"] += 1
                    ok = True
                    res = session.evaluate(list(payload["models"]))
                    for m, logged in payload["models"].items():
                        now_top = res.models[m].modified
                        was = logged["modified"]["top5"]
                        diff = max(abs(a.prob - b["prob"]) for a, b in zip(now_top, was))
                        same = [a.index for a in now_top] == [b["index"] for b in was]
                        report["max_prob_diff"] = max(report["max_prob_diff"], float(diff))
                        if not same or diff > tol:
                            ok = False
                            report["mismatches"].append({"participant": p["code"], "task": task_id,
                                                         "seq": ev["seq"], "model": m, "prob_diff": float(diff),
                                                         "same_classes": same})
                    report["reproduced"] += int(ok)

                rebuild(lambda img: Session(img, pretrained=pretrained, device=device), stored_image(conn, sid, task_id),
                        events, lambda key: stored_image(conn, sid, key), check, count, opened)
            log(f"{p['code']}: {sum(len([e for e in ev if e['kind'] == 'stroke']) for ev in tasks.values())} "
                "stroke(s) replayed")
    return report
