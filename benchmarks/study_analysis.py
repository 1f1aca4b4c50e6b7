"""How long ``study analyze`` takes on a study of 30 participants, and what batching the removal-effect step
saves (issue 39 item 6).

The example study (``examples/study/predict_study.yaml``: six tasks on real photos, the three embedded
EfficientNet-Lite models, three conditions) is run by ``--participants`` Prolific participants through the
study app's own handlers (consent, the prepared edits, a stroke each on the painted task at its own place,
the predictions, the submits), into a fresh SQLite log. Only the painted task has participants' strokes
(the others show the researcher's edit), so its removals are the ones scored. The log is then analysed twice with the same
settings: as the analysis runs (``removal_effects``: each removal and its random placements inpainted once for
the task's models, each model's passes in one batch, and a removal identical to an earlier participant's, a
prepared edit, scored once), and with the step computed one model at a time (one inpaint and one forward
pass per image, model and participant, as it was). Reported: the whole analysis's seconds, the
removal-effect step's, their ratio, and the largest difference between the two runs' drops of the
participants' own removals (they must agree; the random baselines of a repeated removal are its first
scoring's, so they are not compared).

    python benchmarks/study_analysis.py --json benchmarks/study_analysis.json
    python benchmarks/study_analysis.py --table benchmarks/study_analysis.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
EXAMPLE = ROOT / "examples" / "study" / "predict_study.yaml"


def run_participants(db: str, n: int, log=print) -> None:
    """``n`` participants through the example study's handlers (as tests/test_predict.py drives it)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("IC_ZOO_STUDY_NEW_PER_CLIENT_PER_MIN", "1000")  # every participant from one address
    from ic_zoo.app.study.ui import build_study_demo
    from ic_zoo.study import load_study

    study = load_study(EXAMPLE)
    demo = build_study_demo(study, db)
    app = demo.ic_zoo_study_app
    fn = {f.name: f.fn for f in demo.fns.values()}
    rng = np.random.default_rng(0)
    try:
        for k in range(n):
            pid = f"5f0c0ffee{k:015d}"
            req = SimpleNamespace(query_params={"PROLIFIC_PID": pid, "STUDY_ID": "S1", "SESSION_ID": f"X{k}"},
                                  session_hash=f"h{k}", client=None)
            st = fn["on_load"](None, req)[app.ui.state]
            fn["on_consent"](1.7e12, pid, st, req)
            for task in study.tasks:
                if task.edit is None:
                    x, y = (int(v) for v in rng.integers([60, 60], [540, 340]))
                    fn["on_stroke"](0, {"w": 600, "h": 400, "strokes": [
                        {"id": 1, "r": 20, "pts": [x, y, x + 80, y + int(rng.integers(-30, 30))]}]}, st.base, st, req)
                m = len(st.pending["models"])
                asked = task.predict.ask
                flips = (["yes"] * m if "flip" in asked else [None] * m) + [None] * (4 - m)
                classes = (["something else"] * m if "class" in asked else [None] * m) + [None] * (4 - m)
                fn["on_predict"](0, *flips, *classes, "3", 1, st.base, st)
                fn["on_submit"](0, *[None] * 6, *[""] * 6, st.base, st)
            log(f"participant {k + 1} of {n} done")
    finally:
        demo.close()


def one_at_a_time(models: dict, image, finals, fill, n_random: int, seed: int) -> dict:
    """The removal-effect step as it was: per model, one inpaint and one forward pass per image."""
    from ic_zoo.errors import MaskError

    out = {}
    for name, (clf, cls) in models.items():
        rng, p0 = np.random.default_rng(seed), float(clf.predict(image).probs[cls])
        human, rand = [], []
        for m in finals:
            try:
                human.append(100 * (p0 - float(clf.predict(fill.inpaint(image, m)).probs[cls])))
            except MaskError:
                human.append(float("nan"))
                rand.append(float("nan"))
                continue
            drops = []
            for _ in range(n_random):
                dy, dx = rng.integers(0, m.shape[0]), rng.integers(0, m.shape[1])
                moved = np.roll(m, (int(dy), int(dx)), axis=(0, 1))
                drops.append(100 * (p0 - float(clf.predict(fill.inpaint(image, moved)).probs[cls])))
            rand.append(float(np.mean(drops)))
        out[name] = (np.asarray(human, float), np.asarray(rand, float))
    return out


def timed_analysis(db: str, step, explainers, n_boot: int, n_random: int) -> tuple[float, float, list]:
    """(the analysis's seconds, the removal-effect step's seconds, the per-participant drops, the number of
    removals scored per task that has strokes)."""
    from ic_zoo.study import analysis as A
    from ic_zoo.study import db as D

    spent, drops, scored = [0.0], [], []

    def measured(models, image, finals, *a, **k):
        t = time.perf_counter()
        r = step(models, image, finals, *a, **k)
        spent[0] += time.perf_counter() - t
        scored.append(len(finals))
        drops.extend(np.concatenate([v[0] for _, v in sorted(r.items())]).tolist())  # their own removals
        return r

    real = A.removal_effects
    A.removal_effects = measured
    try:
        eng = D.engine_for(db)
        t = time.perf_counter()
        A.analyze(eng, None, explainers=explainers, n_boot=n_boot, n_random=n_random, log=lambda s: None)
        total = time.perf_counter() - t
        eng.dispose()
    finally:
        A.removal_effects = real
    return total, spent[0], drops, scored


def run(n: int, explainers, n_boot: int, n_random: int, log=print) -> dict:
    import torch

    from ic_zoo.study import analysis as A

    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{Path(tmp) / 'study.sqlite'}"
        t = time.perf_counter()
        run_participants(db, n, log)
        log(f"{n} participants in {time.perf_counter() - t:.0f} s")
        rows = []
        for label, step in (("batched (removal_effects)", A.removal_effects), ("one model at a time", one_at_a_time)):
            total, step_s, drops, scored = timed_analysis(db, step, explainers, n_boot, n_random)
            log(f"{label}: analysis {total:.1f} s, removal-effect step {step_s:.1f} s")
            rows.append({"how": label, "analysis_s": total, "removal_step_s": step_s, "drops": drops})
    a, b = (np.asarray(r.pop("drops")) for r in rows)
    same = np.isfinite(a) == np.isfinite(b)
    return {"participants": n, "tasks": 6, "tasks_with_strokes": len(scored), "removals_scored": int(sum(scored)),
            "models": 3, "explainers": list(explainers), "bootstrap": n_boot,
            "random": n_random, "rows": rows, "removal_step_ratio": rows[1]["removal_step_s"] / rows[0]["removal_step_s"],
            "analysis_ratio": rows[1]["analysis_s"] / rows[0]["analysis_s"],
            "max_drop_difference_pp": float(np.nanmax(np.abs(a - b))) if same.all() else float("inf"),
            "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                        "python": platform.python_version(), "torch": torch.__version__}}


def table(doc: dict) -> str:
    lines = [f"| {doc['participants']} participants, {doc['tasks']} tasks ({doc['tasks_with_strokes']} with strokes: "
             f"{doc['removals_scored']} removals scored) x {doc['models']} models, {doc['random']} random placements "
             f"each; explainers {', '.join(doc['explainers'])}, {doc['bootstrap']} bootstrap resamples | whole analysis "
             "| removal-effect step |", "|---|---:|---:|"]
    for r in doc["rows"]:
        lines.append(f"| {r['how']} | {r['analysis_s']:.0f} s | {r['removal_step_s']:.0f} s |")
    lines.append(f"| ratio (one at a time / batched) | {doc['analysis_ratio']:.2f}x | {doc['removal_step_ratio']:.2f}x |")
    lines.append(f"| largest difference of a participant's own removal's drop between the two | "
                 f"{doc['max_drop_difference_pp']:.2g} pp | |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--participants", type=int, default=30)
    p.add_argument("--explainers", nargs="+", default=["gradcam"])
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--random", type=int, default=8)
    p.add_argument("--json", default=None)
    p.add_argument("--table", default=None, metavar="JSON", help="print the table of a JSON and exit")
    args = p.parse_args(argv)
    if args.table:
        print(table(json.loads(Path(args.table).read_text())))
        return 0
    doc = run(args.participants, args.explainers, args.bootstrap, args.random,
              log=lambda s: print(s, file=sys.stderr, flush=True))
    print(table(doc))
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1))
        Path(args.json).with_suffix(".md").write_text(table(doc) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
