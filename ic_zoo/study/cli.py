"""``python -m ic_zoo study export|replay|analyze|progress|links|check``: the researcher's side of a study log."""
from __future__ import annotations

import json

from ..command import Command
from ..registry import register


def _engine(args):
    from .db import open_engine

    return open_engine(args.db)  # an old log is brought to the current schema before it is read


def cmd_export(args) -> int:
    from .research import export

    counts = export(_engine(args), args.out, args.study_key)
    print(f"study {counts['study']}: {counts['participants']} participants, {counts['interactions']} interactions, "
          f"{counts['answers']} answers, {counts['masks']} masks -> {args.out}")
    return 0


def gap_text(gap: dict) -> str:
    """What happened at a GAP of ``replay``, in the order it happened."""
    logged, rebuilt, cause = gap["logged_n_edits"], gap["rebuilt_n_edits"], gap.get("cause")
    if cause == "after_reload":
        return (f"it came from the participant's page as it was before the reload at event {gap['reloaded_at']} "
                "and was committed after that reload had rebuilt the task from the log, so the reloaded page never "
                "showed it; the log's images of this task from this event on hold a change the participant did "
                "not see (a change still running on the old server)")
    if cause == "during_reload":
        late = ", ".join(map(str, gap.get("late_seq") or [])) or "a change before it"
        return (f"the page was rebuilt with {logged} edit(s) but the log has {rebuilt} here: event(s) {late} "
                "were committed while the page was being rebuilt, so the participant never saw them and this "
                "task's later images in the log hold a change the participant did not see")
    if logged < rebuilt:
        return (f"it was made with {logged} edit(s) on the image but the log rebuilds {rebuilt}: the log holds "
                "a change that the page never showed, so this task's later images are not what the participant saw")
    return (f"it was made with {logged} edit(s) on the image but the log rebuilds {rebuilt}; a change before it "
            "was not logged, so this task's later images are not what the participant saw")


def cmd_replay(args) -> int:
    from .research import replay

    rep = replay(_engine(args), args.participant, args.study_key, device=args.device, tol=args.tol)
    print(f"replayed {rep['strokes']} stroke(s) of {rep['participants']} participant(s): {rep['reproduced']} reproduced "
          f"(max probability difference {rep['max_prob_diff']:.2e}, tolerance {args.tol:g})")
    for m in rep["mismatches"][:20]:
        print(f"  MISMATCH {m['participant']} task {m['task']} event {m['seq']} {m['model']}: "
              f"classes {'same' if m['same_classes'] else 'differ'}, probability difference {m['prob_diff']:.2e}")
    for gap in rep["gaps"]:
        if gap["task"] is None:
            print(f"  GAP {gap['participant']}: event number(s) {', '.join(map(str, gap['missing_seq']))} "
                  "missing from the log")
        else:
            print(f"  GAP {gap['participant']} task {gap['task']} event {gap['seq']} ({gap['kind']}): {gap_text(gap)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rep, f, indent=1)
    return 0 if rep["reproduced"] == rep["strokes"] and not rep["gaps"] else 1


def cmd_analyze(args) -> int:
    from .analysis import analyze

    doc = analyze(_engine(args), args.out, args.study_key, explainers=args.explainers, n_boot=args.bootstrap,
                  n_random=args.random, seed=args.seed, device=args.device, log=lambda s: print(s, flush=True))
    plan = doc["plan"]
    print(f"  analysis plan {plan['hash']} ({'from the study file' if plan['from_study_file'] else 'defaults'})"
          + (f"; deviations: {'; '.join(plan['deviations'])}" if plan["deviations"] else ""))
    for r in doc["ranking"]:
        p, lo, hi = r["iou"]
        print(f"  {r['rank']}. {r['model']} ({r['explainer']}): IoU with the human removal map {p:.2f}"
              + (f" [{lo:.2f}, {hi:.2f}]" if hi == hi else "") + f" over {r['tasks']} task(s)")
    if doc.get("ranking_note"):
        print(f"  {doc['ranking_note']}")
    for t in doc["tasks"]:
        for n in t["notes"]:
            print(f"  task {t['task']}: {n}")
    sim = doc.get("simulation")
    for r in (sim or {}).get("by_condition", []):
        if r["measure"] == "correct" and r["phase"] == "all":
            p, lo, hi = r["accuracy"]
            who = f"condition {r['condition']}" if r["condition"] else "all participants"
            print(f"  simulation accuracy, {who} (n={r['participants']}): {p:.2f} [{lo:.2f}, {hi:.2f}]")
    for r in (sim or {}).get("differences", []):
        if r["measure"] == "correct" and r["phase"] == "all":
            d, lo, hi = r["difference"]
            print(f"  {r['conditions']}: {d:+.2f} [{lo:.2f}, {hi:.2f}], permutation p = {r['p_permutation']:.3g}")
    print(f"study {doc['study']}: {len(doc['tasks'])} task(s) analysed -> {args.out}/report.html")
    return 0


def cmd_compare(args) -> int:
    from .compare import compare_studies

    res = compare_studies(args.db, args.out, names=args.name, study_keys=args.study_key, explainers=args.explainers,
                          n_boot=args.bootstrap, n_random=args.random, seed=args.seed, device=args.device,
                          log=lambda s: print(s, flush=True))
    for r in res["differences"]:
        if r["task"] == "all" or len({x["task"] for x in res["differences"]}) == 1:
            d, lo, hi = r["difference"]
            what = f"{r['model']} ({r['explainer']})" if r["explainer"] else r["model"]
            print(f"  {r['measure']}, {what}, {r['groups']}: {d:+.3f} [{lo:.3f}, {hi:.3f}], g = {r['hedges_g']:.2f}, "
                  f"p = {r['p_permutation']:.3g} (Holm {r['p_holm']:.3g})")
    print(f"{len(res['groups'])} studies compared -> {args.out}/compare.html")
    return 0


def cmd_links(args) -> int:
    import os
    import urllib.parse

    from .security import STUDY_SECRET_ENV, SecurityError, issue, new_id

    secret = os.environ.get(STUDY_SECRET_ENV)
    if not secret:
        raise SecurityError(f"set {STUDY_SECRET_ENV} to the secret the app runs with (the links are signed "
                            "with it); a study on this machine without it takes plain ?participant=P01 links.")
    ids = [i.strip() for i in (args.ids or "").split(",") if i.strip()] + [new_id("p") for _ in range(args.n)]
    if not ids:
        raise SecurityError("give the participant ids with --ids P01,P02 or a number of random ones with --n 20.")
    sep = "&" if "?" in args.base_url else "?"
    for code in ids:
        print(f"{code}\t{args.base_url}{sep}participant={urllib.parse.quote(issue(secret, code))}")
    return 0


def cmd_progress(args) -> int:
    from .db import participant_progress
    from .research import pick_study

    eng = _engine(args)
    st = pick_study(eng, args.study_key)
    n = len(json.loads(st["definition"])["tasks"])
    with eng.connect() as conn:
        rows = participant_progress(conn, st["id"], n)
    print(f"{st['title']} ({st['key']}): {len(rows)} participant(s); {n} task(s)")
    for r in rows:
        print(f"  {r['participant']:<20} order {r['order']:>3}  tasks {r['tasks_done']:>5}  events {r['events']:>5}"
              f"  {'finished ' + r['finished'] if r['finished'] else ''}")
    return 0


def cmd_withdraw(args) -> int:
    from .db import withdraw_participant
    from .research import pick_study

    eng = _engine(args)
    st = pick_study(eng, args.study_key)
    mode = json.loads(st["definition"]).get("withdrawal", "delete")
    r = withdraw_participant(eng, st["id"], mode, args.participant, how="cli")
    what = ("deleted" if mode == "delete" else "kept, flagged as withdrawn and left out of exports and analyses")
    print(f"participant {args.participant} withdrew from {st['title']} ({st['key']}): {r['interactions']} "
          f"interaction(s) and {r['answers']} answer(s) {what}" + (f", {r['images']} upload(s) deleted" if r["images"]
                                                                   else "") + "; an audit row records when.")
    return 0


def cmd_plan(args) -> int:
    import json

    from ..errors import InputError
    from .analysis import analyze
    from .planning import format_text, plan

    if any(n < 3 for n in args.n) or args.resamples < 10:
        raise InputError("the planner takes --n of 3 or more participants and --resamples of 10 or more.")
    # the pilot's per-participant table (its analysis, without intervals: the planner resamples)
    doc = analyze(_engine(args), None, args.study_key, explainers=args.explainers, n_boot=0, n_random=1,
                  device=args.device, log=lambda s: None)
    out = plan(doc["long"], args.n, args.difference, args.resamples, args.seed)
    print(format_text(out))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    if not out["figures"]:
        print("The pilot has no participant with strokes or predictions: there is nothing to plan from.")
    return 0


def cmd_check(args) -> int:
    from .definition import check_models, load_study

    study = load_study(args.study)
    problems = check_models(study)
    for p in problems:
        print(f"  {p}")
    print(f"{args.study}: {len(study.tasks)} task(s), key {study.key}: " + ("OK" if not problems else
                                                                          f"{len(problems)} problem(s)"))
    return 1 if problems else 0


def add_args(p) -> None:
    sub = p.add_subparsers(dest="study_command", required=True)

    def db(sp):
        sp.add_argument("--db", required=True, help="sqlite:///study.sqlite, postgresql://user@host/db, or a file path")
        sp.add_argument("--study-key", default=None, help="which study, when the database holds several")

    e = sub.add_parser("export", help="CSV + JSON (one row per interaction, one per answer) and the masks")
    db(e)
    e.add_argument("--out", required=True)
    e.set_defaults(func=cmd_export)
    r = sub.add_parser("replay", help="re-run logged edits and check that the logged predictions reproduce",
                       description="Re-run every logged edit and check that each model's logged top-5 reproduces, "
                       "and that the log has no gap (a missing event number, or a change whose n_edits the log "
                       "cannot rebuild: a change made on the page but never logged). Exit status 0 when all "
                       "reproduces, 1 with a MISMATCH or GAP line for each problem, 2 when the log cannot be read.")
    db(r)
    r.add_argument("--participant", default=None, help="one participant (default: all)")
    r.add_argument("--device", default=None)
    r.add_argument("--tol", type=float, default=1e-4, help="largest accepted probability difference")
    r.add_argument("--json", default=None, help="write the report here")
    r.set_defaults(func=cmd_replay)
    w = sub.add_parser("withdraw", help="a participant withdraws: their data deleted (or flagged, as the study "
                       "file says), an audit row without content")
    db(w)
    w.add_argument("--participant", required=True, help="the participant id (as in the export)")
    w.set_defaults(func=cmd_withdraw)
    g = sub.add_parser("progress", help="per-participant progress")
    db(g)
    g.set_defaults(func=cmd_progress)
    a = sub.add_parser("analyze", help="humans vs models: removal maps, agreement, effects, an HTML report",
                       description="Per task image: the participants' removal map (and first strokes, and what "
                       "flipped each model), each model's class maps and flip region, their agreement (IoU at "
                       "matched area, Spearman, pointing both ways), the effect of the participants' removals "
                       "against random regions of the same area, bootstrap intervals over participants, and a "
                       "ranking of the models across tasks. Writes CSV, JSON, PNG figures and report.html.")
    db(a)
    a.add_argument("--out", required=True)
    a.add_argument("--explainers", nargs="+", default=None,
                   help="default: the study file's analysis plan, else gradcam occlusion")
    a.add_argument("--bootstrap", type=int, default=None,
                   help="bootstrap resamples of the participants (default: the plan's, else 1000)")
    a.add_argument("--random", type=int, default=None,
                   help="random placements of each removal, the baseline (default: the plan's, else 8)")
    a.add_argument("--seed", type=int, default=None, help="default: the plan's, else 0")
    a.add_argument("--device", default=None)
    a.set_defaults(func=cmd_analyze)
    cp = sub.add_parser("compare", help="several studies of the same task images in one analysis",
                        description="Analyses each study (its report in OUT/study_N) and compares them: per task, "
                        "model map and measure (IoU, Spearman, flips, drop per removed %%, human minus random), "
                        "each study's mean with its BCa interval, every pair's difference with its BCa interval, "
                        "Hedges' g and a permutation p, Holm-adjusted over the whole table, and the mixed model "
                        "with the study as a fixed effect. Writes compare.html, CSV and JSON. (The conditions of "
                        "one study are compared in its own report by 'study analyze'.)")
    cp.add_argument("--db", action="append", required=True, help="a study's log (give --db once per study)")
    cp.add_argument("--study-key", action="append", default=None, help="which study of each database (once per --db)")
    cp.add_argument("--name", action="append", default=None, help="each study's name in the tables (once per --db; "
                    "default: its title)")
    cp.add_argument("--out", required=True)
    cp.add_argument("--explainers", nargs="+", default=None)
    cp.add_argument("--bootstrap", type=int, default=None)
    cp.add_argument("--random", type=int, default=None)
    cp.add_argument("--seed", type=int, default=None)
    cp.add_argument("--device", default=None)
    cp.set_defaults(func=cmd_compare)
    pl = sub.add_parser("plan", help="sample-size planning from a pilot: interval widths and power at N",
                        description="Resamples the pilot's participants (their per-participant values from the "
                        "analysis) into studies of N participants and reports, for each headline figure, the "
                        "expected width of its 95 %% interval, and the power to detect --difference between two "
                        "model maps (paired) or two conditions.")
    db(pl)
    pl.add_argument("--n", type=int, nargs="+", default=[10, 20, 40, 80], help="planned numbers of participants")
    pl.add_argument("--difference", type=float, default=0.1, help="the difference to detect, in the measure's units")
    pl.add_argument("--resamples", type=int, default=1000, help="simulated studies per N")
    pl.add_argument("--seed", type=int, default=0)
    pl.add_argument("--explainers", nargs="+", default=None, help="default: the study's analysis plan, else gradcam occlusion")
    pl.add_argument("--device", default=None)
    pl.add_argument("--json", default=None, help="also write the tables as JSON")
    pl.set_defaults(func=cmd_plan)
    k = sub.add_parser("links", help="issue signed participant links (needs IC_ZOO_STUDY_SECRET)",
                       description="Print one line per participant: the id, a tab, and the link to send. Each link "
                       "is signed with IC_ZOO_STUDY_SECRET (the app must run with the same value): it is valid "
                       "only as issued, so a participant's id cannot be guessed or changed in the link.")
    k.add_argument("--ids", default=None, help="participant ids, comma separated (P01,P02,...)")
    k.add_argument("--n", type=int, default=0, help="this many random ids (p-<16 hex digits>) as well")
    k.add_argument("--base-url", required=True, help="the study's address, e.g. https://study.example.org/")
    k.set_defaults(func=cmd_links)
    c = sub.add_parser("check", help="validate a study file (fields, images, models)")
    c.add_argument("study")
    c.set_defaults(func=cmd_check)


@register("command", "study", description="user studies: analyze, compare, plan, export, replay, links, withdraw")
class StudyCommand(Command):
    def add_arguments(self, parser) -> None:
        add_args(parser)
