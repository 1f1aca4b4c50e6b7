"""Humans vs models (``study analyze``): a study simulated through gradio_client against the study app,
participants painting the flower's discriminative part or a leaf, then the analysis read back from the
log: the human map lies where they painted, the flip rates are the log's, a model whose map is on the
discriminative part agrees more with the group that painted it, and the report renders. The bootstrap
intervals (BCa, as scipy's) hold an unbiased point and shrink with more participants; a participant with no strokes, a task
with one participant and a log of an older schema are handled with a sentence."""
from __future__ import annotations

import json
import re
import os

import numpy as np
import pytest
import sqlalchemy as sa

os.environ["IC_ZOO_APP_NO_DEMO"] = "1"
from gradio_client import Client  # noqa: E402
from ic_zoo.flower2d import generator as g  # noqa: E402
from ic_zoo.study import analysis as A  # noqa: E402
from ic_zoo.study import db as D  # noqa: E402
from ic_zoo.study import load_study  # noqa: E402
from test_study import _edit, _layer, _mini_study  # noqa: E402

MODEL = "flower2d/resnet"
SIZE = 128


def _task_parts():
    p = g.sample_params("double-12c", 0, "test", 8100)  # the image _mini_study writes for task t0
    img, parts = g.render(p, SIZE)
    return img, g.disc_mask(p, parts), g.part_mask(parts, "leaf")


def _halves(mask):
    ys, xs = np.nonzero(mask)
    mid = int(np.median(xs))
    a, b = mask.copy(), mask.copy()
    a[:, mid:] = False
    b[:, :mid] = False
    return [m for m in (a, b) if m.any()]


def _simulate(tmp_path, name, groups, answer="petals", admin=None, extra=""):
    """Run the study app (the task with its part map and truth mask) and let each participant paint its
    strokes and answer; returns the log's URL."""
    from PIL import Image

    from ic_zoo.app.study.ui import build_study_demo

    (tmp_path / name).mkdir(parents=True, exist_ok=True)
    path = _mini_study(tmp_path / name, models=(MODEL,), size=SIZE)
    p = g.sample_params("double-12c", 0, "test", 8100)
    _, parts = g.render(p, SIZE)
    Image.fromarray(parts.astype(np.uint8)).save(path.parent / "p0.png")
    Image.fromarray((g.disc_mask(p, parts) * 255).astype(np.uint8)).save(path.parent / "m0.png")
    path.write_text(path.read_text().replace("    image: f0.png\n", "    image: f0.png\n    parts: p0.png\n    truth: m0.png\n")
                    + extra)
    study = load_study(path)
    url_db = f"sqlite:///{tmp_path / f'{name}.sqlite'}"
    demo = build_study_demo(study, url_db, concurrency=2)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        for code, strokes in groups:
            c = Client(url, verbose=False)
            c.predict(0, code, api_name="/consent")
            bg = study.tasks[0].image
            for i, m in enumerate(strokes):
                e = _edit(c, bg, _layer((SIZE, SIZE), m, tmp_path / f"{name}_{code}_{i}.png"))
                bg = e[0]["background"]
            c.predict(0, answer, None, None, None, None, None, "", "", "", "", "", "", api_name="/submit")
        if admin is not None:  # the researcher opens the live report on /admin, twice
            c = Client(url, verbose=False)
            admin["first"] = c.predict(admin["password"], api_name="/admin_analysis")
            admin["again"] = c.predict(admin["password"], api_name="/admin_analysis")
            with pytest.raises(Exception, match="Wrong password"):
                c.predict("guess", api_name="/admin_analysis")
    finally:
        demo.close()
    return url_db


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("analysis")
    img, disc, leaf = _task_parts()
    # disc painters remove the discriminative part in two strokes; leaf painters a leaf; one does nothing
    disc_db = _simulate(tmp, "disc", [(f"D{k}", _halves(disc)) for k in range(4)] + [("D9", [])])
    leaf_db = _simulate(tmp, "leaf", [(f"L{k}", _halves(leaf)) for k in range(4)], answer="leaf")
    # random painters: one disc each, of the discriminative part's area, at a random place
    rng = np.random.default_rng(5)
    radius = int(np.sqrt(disc.sum() / np.pi))
    yy, xx = np.mgrid[:SIZE, :SIZE]
    spots = [((yy - y) ** 2 + (xx - x) ** 2 <= radius ** 2) for y, x in rng.integers(radius, SIZE - radius, (8, 2))]
    rand_db = _simulate(tmp, "rand", [(f"R{k}", [spot]) for k, spot in enumerate(spots)])
    # saliency painters: what stands out of the picture, no model (the spectral residual's top, the part's area)
    from ic_zoo.study.saliency import spectral_residual

    top = A.top_k(spectral_residual(img), float(disc.mean()))
    sal_db = _simulate(tmp, "sal", [(f"S{k}", _halves(top)) for k in range(4)])
    out = {}
    for name, db in (("disc", disc_db), ("leaf", leaf_db), ("rand", rand_db), ("sal", sal_db)):
        eng = D.open_engine(db)
        out[name] = (db, A.analyze(eng, tmp / f"out_{name}", explainers=["occlusion"], n_boot=200, n_random=4,
                                   log=lambda s: None), tmp / f"out_{name}")
        eng.dispose()
    return img, disc, leaf, out


def test_the_human_map_lies_on_what_the_participants_painted(simulated):
    img, disc, leaf, out = simulated
    for name, region in (("disc", disc), ("leaf", leaf)):
        task = out[name][1]["tasks"][0]
        h = task["human_map"]
        grid = A.to_grid(region, h.shape[0]) > 0
        assert h.max() == pytest.approx(1.0)  # every participant removed it
        assert h[grid].sum() / h.sum() > 0.97, name  # the mass is inside the painted region
        assert task["mean_removed"] == pytest.approx(region.mean(), rel=0.05)
    assert out["disc"][1]["tasks"][0]["with_strokes"] == 4 and out["disc"][1]["tasks"][0]["participants"] == 5
    assert any("made no stroke" in n for n in out["disc"][1]["tasks"][0]["notes"])


def test_flip_rates_are_what_the_log_says(simulated):
    *_, out = simulated
    for name in ("disc", "leaf"):
        db, doc, _ = out[name]
        eng = D.engine_for(db)
        with eng.connect() as conn:
            rows = conn.execute(sa.select(D.interactions_t.c.participant_id, D.interactions_t.c.payload)
                                .where(D.interactions_t.c.kind == "stroke")).all()
        eng.dispose()
        flipped = {}
        for pid, payload in rows:
            flipped[pid] = flipped.get(pid, False) or json.loads(payload)["models"][MODEL]["top1_changed"]
        effect = doc["tasks"][0]["effects"][0]
        assert effect["flip_rate"][0] == pytest.approx(np.mean(list(flipped.values())))
    # removing the discriminative part flips the model; a leaf does not
    assert out["disc"][1]["tasks"][0]["effects"][0]["flip_rate"][0] == 1.0
    assert out["leaf"][1]["tasks"][0]["effects"][0]["flip_rate"][0] == 0.0


def test_a_model_looking_at_the_part_agrees_more_with_those_who_removed_it(simulated):
    *_, out = simulated
    iou = {n: out[n][1]["tasks"][0]["agreement"][0]["iou"][0] for n in ("disc", "leaf")}
    assert iou["disc"] > iou["leaf"] + 0.3, iou
    effect = {n: out[n][1]["tasks"][0]["effects"][0] for n in ("disc", "leaf")}
    assert effect["disc"]["human_minus_random_pp"][0] > 20  # people removed what the model uses
    assert effect["disc"]["human_drop_pp"][0] > effect["leaf"]["human_drop_pp"][0]
    assert out["disc"][1]["ranking"][0]["model"] == MODEL


def test_humans_and_models_against_the_ground_truth_and_the_answers(simulated):
    *_, out = simulated
    disc, leaf = out["disc"][1]["tasks"][0], out["leaf"][1]["tasks"][0]
    assert disc["truth"]["human_iou"][0] > 0.95 and disc["truth"]["human_pointing"][0] == 1.0  # they removed it
    assert leaf["truth"]["human_iou"][0] < 0.05 and leaf["truth"]["human_pointing"][0] == 0.0
    model = disc["truth"]["models"][0]
    assert model["model"] == MODEL and model["iou"] > 0.6 and model["pointing"] == 1.0  # occlusion finds it
    assert leaf["parts"]["human_top_part"] == "leaf"
    q = leaf["parts"]["questions"][0]
    assert q["answers"] == {"leaf": 4} and q["agree_with_their_removals"] == 1.0
    top = disc["parts"]["models"][0]["top_part"]
    assert top in ("petal", "centre")  # the model's map is on the discriminative parts
    q = disc["parts"]["questions"][0]
    assert q["answers"] == {"petal": 5}  # everyone answered, the one who did not paint too
    assert q["agree_with_model"][f"{MODEL} (occlusion)"] == float(top == "petal")
    assert disc["parts"]["flip_top_part"][MODEL] in ("petal", "centre")
    assert q["agree_with_flips"][MODEL] == float(disc["parts"]["flip_top_part"][MODEL] == "petal")
    # across tasks (one here): the ranking carries the model's truth IoU and the answers naming its part
    r = out["disc"][1]["ranking"][0]
    assert r["truth_iou"] == pytest.approx(model["iou"])
    assert r["answers_naming_its_part"] == q["agree_with_model"][f"{MODEL} (occlusion)"]
    assert r["pointing_model_in_human"] == disc["agreement"][0]["pointing_model_in_human"][0]
    assert out["disc"][1]["humans_vs_truth"] == {"tasks": 1, "iou": disc["truth"]["human_iou"][0]}


def test_the_ranking_across_tasks_keeps_each_model_to_its_own_rows():
    """Two tasks, two models (one with no map on the second task, one task without ground truth): each
    ranking row averages only its own model's values, over the tasks where it has them."""
    a, b = ("m/a", "occlusion"), ("m/b", "gradcam")

    def agree(key, pm, ph):
        return {"model": key[0], "explainer": key[1], "pointing_model_in_human": [pm, pm - 0.1, pm + 0.1],
                "pointing_human_in_model": [ph, ph - 0.1, ph + 0.1]}

    doc = {"ranking": [{"model": k[0], "explainer": k[1]} for k in (a, b)], "tasks": [
        {"agreement": [agree(a, 1.0, 0.8), agree(b, 0.0, 0.2)],
         "truth": {"human_iou": [0.9, 0.8, 1.0], "models": [{"model": "m/a", "explainer": "occlusion", "iou": 0.7},
                                                             {"model": "m/b", "explainer": "gradcam", "iou": 0.1}]},
         "parts": {"questions": [{"agree_with_model": {"m/a (occlusion)": 1.0, "m/b (gradcam)": 0.0}}]}},
        {"agreement": [agree(a, 0.5, 0.4)],
         "truth": {"human_iou": [0.5, 0.4, 0.6], "models": [{"model": "m/a", "explainer": "occlusion", "iou": 0.3}]},
         "parts": {"questions": [{"agree_with_model": {"m/a (occlusion)": 0.5}}]}},
        {"agreement": [agree(a, 0.0, 0.0), agree(b, 1.0, 1.0)]}]}  # no ground truth, no part question
    A.across_tasks(doc)
    ra, rb = doc["ranking"]
    assert ra["pointing_model_in_human"] == pytest.approx(0.5) and ra["pointing_human_in_model"] == pytest.approx(0.4)
    assert rb["pointing_model_in_human"] == pytest.approx(0.5) and rb["pointing_human_in_model"] == pytest.approx(0.6)
    assert ra["truth_iou"] == pytest.approx(0.5) and rb["truth_iou"] == pytest.approx(0.1)
    assert ra["answers_naming_its_part"] == pytest.approx(0.75) and rb["answers_naming_its_part"] == 0.0
    assert doc["humans_vs_truth"] == {"tasks": 2, "iou": pytest.approx(0.7)}
    doc["ranking"].append({"model": "m/c", "explainer": "cam"})  # a model with no rows at all
    A.across_tasks(doc)
    assert np.isnan(doc["ranking"][2]["truth_iou"]) and np.isnan(doc["ranking"][2]["pointing_model_in_human"])


def test_the_report_renders_with_its_tables_and_figures(simulated):
    *_, out = simulated
    folder = out["disc"][2]
    page = (folder / "report.html").read_text()
    assert page.startswith("<!doctype html>") and "data:image/png;base64," in page and "How to read it" in page
    assert (folder / "figures" / "t0.png").stat().st_size > 5000
    if os.environ.get("IC_ZOO_SCREENSHOT"):  # the README's example figure
        import shutil
        from pathlib import Path

        shutil.copy(folder / "figures" / "t0.png", Path(__file__).resolve().parents[1] / "docs" / "study_analysis.png")
    import csv

    rows = list(csv.DictReader(open(folder / "agreement.csv")))
    assert rows[0]["model"] == MODEL and {"iou", "iou_lo", "iou_hi"} <= set(rows[0])
    effects = list(csv.DictReader(open(folder / "effects.csv")))
    assert float(effects[0]["flip_rate"]) == 1.0
    doc = json.loads((folder / "analysis.json").read_text())
    assert doc["tasks"][0]["with_strokes"] == 4 and doc["answers"][0]["answer"] == "petals"
    assert "Against the ground truth" in page and "the part people named" in page
    assert f"the removals that flipped {MODEL}" in page and "truth iou" in page
    ranking = list(csv.DictReader(open(folder / "ranking.csv")))
    assert ranking[0]["model"] == MODEL and float(ranking[0]["truth_iou"]) > 0.6
    truth = list(csv.DictReader(open(folder / "truth.csv")))
    assert truth[0]["who"].startswith("humans") and float(truth[0]["iou"]) > 0.95


def test_bootstrap_intervals_hold_the_point_and_shrink_with_more_participants():
    rng = np.random.default_rng(0)
    model = np.zeros((32, 32), np.float32)
    model[8:20, 8:20] = 1
    widths = {}
    for n in (5, 40):
        finals = []
        for _ in range(n):
            m = np.zeros((32, 32), np.float32)
            y, x = rng.integers(4, 16, 2)  # each participant's removal lands somewhere near the model's region
            m[y:y + 10, x:x + 10] = 1
            finals.append(m)
        finals = np.stack(finals)
        W = A.bootstrap_weights(n, 300, 1)
        point = A.agreement(finals.mean(0), model, 0.12)["iou"]
        jack = [A.agreement(h, model, 0.12)["iou"] for h in A.leave_one_out(finals)]
        p, lo, hi = A.interval([A.agreement(h, model, 0.12)["iou"] for h in np.tensordot(W, finals, axes=1)],
                               point, jack)
        assert lo <= p <= hi
        widths[n] = hi - lo
    assert widths[40] < widths[5], widths


def test_the_interval_of_a_mean_is_scipys_bca_interval():
    """The same interval as the maintained implementation, up to the resampling: a skewed sample, where
    BCa and the plain percentile interval differ."""
    from scipy.stats import bootstrap

    x = np.random.default_rng(3).exponential(1.0, 30)
    W = A.bootstrap_weights(len(x), 20000, 5)
    _, lo, hi = A.mean_interval(x, W)
    ref = bootstrap((x,), np.mean, n_resamples=20000, method="BCa", random_state=7).confidence_interval
    width = ref.high - ref.low
    assert abs(lo - ref.low) < 0.03 * width and abs(hi - ref.high) < 0.03 * width, (lo, hi, ref)
    plain = np.percentile(W @ x, [2.5, 97.5])
    assert hi - plain[1] > 0.05 * width  # the skew moves BCa's upper bound up: it is not the percentile interval


def test_a_biased_statistic_moves_its_interval_instead_of_stretching_it_to_the_point():
    boots = np.random.default_rng(0).normal(0.0, 1.0, 2000)  # resampling pulls the statistic far below its value
    p, lo, hi = A.interval(boots, 5.0)
    assert p == 5.0 and hi < 5.0 and lo > 1.5  # not [-1.96, 5.0]: the bias-corrected bounds, reported as they are
    p, lo, hi = A.interval(boots, float(np.median(boots)))  # unbiased: the usual 2.5 and 97.5 percentiles
    assert (lo, hi) == pytest.approx(tuple(np.percentile(boots, [2.5, 97.5])))
    assert A.interval(np.ones(50), 1.0) == [1.0, 1.0, 1.0]


def test_one_participant_an_empty_study_and_an_older_log_are_sentences(tmp_path, capsys):
    from ic_zoo.cli import main

    img, disc, leaf = _task_parts()
    db = _simulate(tmp_path, "one", [("S1", _halves(disc)[:1]), ("S2", [])])
    eng = D.engine_for(db)  # make it a version-1 log: the index of version 2 gone, the version set back
    with eng.begin() as conn:
        conn.execute(sa.text("DROP INDEX IF EXISTS ix_interactions_participant_task"))
        conn.execute(D.meta_t.update().where(D.meta_t.c.key == "schema_version").values(value="1"))
    eng.dispose()
    code = main(["study", "analyze", "--db", db, "--out", str(tmp_path / "out"), "--explainers", "gradcam",
                 "--bootstrap", "50", "--random", "2"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "One participant only: the intervals are not defined." in text
    assert "1 participant(s) made no stroke" in text
    doc = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert doc["tasks"][0]["agreement"][0]["iou"][1] is None  # no interval, not a made-up one
    report = (tmp_path / "out" / "report.html").read_text()
    # nowhere an interval of one value right after the sentence saying there is none (was "[0.71, 0.71]")
    assert not re.search(r"\[(-?\d+\.\d+), \1\]", report + text), re.search(r"\[(-?\d+\.\d+), \1\]", report + text)
    eng = D.engine_for(db)
    with eng.connect() as conn:
        assert D.schema_version(conn) == D.SCHEMA_VERSION  # brought up to date before it was read
    eng.dispose()
    # an unknown explainer or a bad count: one sentence (the CLI prints it, exit status 2)
    assert main(["study", "analyze", "--db", db, "--out", str(tmp_path / "o3"), "--explainers", "nosuch"]) == 2
    assert "there is no explainer called 'nosuch'" in capsys.readouterr().err
    assert main(["study", "analyze", "--db", db, "--out", str(tmp_path / "o3"), "--random", "0"]) == 2
    assert "--random 1 or more" in capsys.readouterr().err
    # a study nobody painted in: said, not a crash
    empty = _simulate(tmp_path, "empty", [("E1", [])])
    code = main(["study", "analyze", "--db", empty, "--out", str(tmp_path / "out2"), "--explainers", "gradcam"])
    assert code == 0 and "No participant removed anything on this task" in capsys.readouterr().out
    assert (tmp_path / "out2" / "report.html").exists()


def test_the_admin_page_shows_the_live_report(tmp_path, monkeypatch):
    monkeypatch.setenv("IC_ZOO_ADMIN_PASSWORD", "s3cret")
    _, disc, _ = _task_parts()
    admin = {"password": "s3cret"}
    _simulate(tmp_path, "admin", [("A1", _halves(disc)), ("A2", _halves(disc)[:1])], admin=admin)
    for key in ("first", "again"):  # the second call reuses the model maps
        body, archive = admin[key]
        assert "Computed at" in body and "data:image/png;base64," in body and "humans (removal map)" in body
        import zipfile

        names = zipfile.ZipFile(archive).namelist()
        assert "report.html" in names and "agreement.csv" in names


def test_the_noise_ceiling_and_the_published_metrics(simulated):
    """Issue 39 items 1-2 on cohorts driven through the app: people who all removed the same part agree with
    each other as well as can be (ceiling near 1); people who removed random places do not (near 0); the
    published metrics (Harmonization's) sit beside ours, and a model's alignment is its agreement over the
    ceiling."""
    img, disc, leaf, out = simulated
    entry = {name: out[name][1]["tasks"][0] for name in ("disc", "leaf", "rand")}
    assert entry["disc"]["ceiling"]["ceiling"][0] > 0.9 and entry["leaf"]["ceiling"]["ceiling"][0] > 0.9
    c = entry["rand"]["ceiling"]["ceiling"]
    assert abs(c[0]) < 0.3 and c[1] <= c[0] <= c[2], c
    for name in ("disc", "rand"):
        for row in entry[name]["agreement"]:
            assert -1 <= row["spearman_blurred"][0] <= 1 and 0 <= row["iou_top10"][0] <= 1
            assert 0 <= row["dice_top10"][0] <= 1 and len(row["alignment"]) == 3
    d = next(r for r in entry["disc"]["agreement"] if r["model"] == MODEL)
    r = next(r for r in entry["rand"]["agreement"] if r["model"] == MODEL)
    assert d["spearman_blurred"][0] > r["spearman_blurred"][0] and d["dice_top10"][0] > r["dice_top10"][0]
    html = (out["disc"][2] / "report.html").read_text()
    assert "Human noise ceiling" in html and "dice top10" in html


def test_the_saliency_control_takes_the_agreement_of_those_who_removed_what_stands_out(simulated):
    """Issue 39 item 3: a cohort that removed the most salient region (no model involved) agrees best with the
    saliency control, and the control explains more of its agreement with a model than of the agreement of
    those who removed the part that decides the class."""
    img, disc, leaf, out = simulated
    sal, dsc = out["sal"][1]["tasks"][0], out["disc"][1]["tasks"][0]
    best = max(sal["agreement"], key=lambda r: r["iou"][0])
    assert best["model"] == A.SALIENCY and best["iou"][0] > 0.9, best
    control = next(r for r in dsc["agreement"] if r["model"] == A.SALIENCY)
    model = next(r for r in dsc["agreement"] if r["model"] == MODEL)
    assert model["iou"][0] > control["iou"][0]  # those who removed the part agree with the model, not saliency
    share = {name: next(r for r in e["agreement"] if r["model"] == MODEL)["explained_by_saliency"]
             for name, e in (("sal", sal), ("disc", dsc))}
    print("explained by saliency", share)
    assert share["sal"] > share["disc"], share
    assert all("saliency_flip_fraction" in e for e in dsc["effects"])


def test_the_per_participant_long_table_and_its_models(simulated):
    """Issue 39 item 4 end to end: the long table has a row per participant x task x model x measure, with the
    values the log gives; a model the data cannot support is a sentence in the report."""
    import pandas as pd

    img, disc, leaf, out = simulated
    d = pd.read_csv(out["disc"][2] / "participants_long.csv")
    assert list(d.columns) == ["participant", "condition", "task", "model", "explainer", "measure", "value"]
    assert set(d.participant) == {f"D{k}" for k in range(4)}  # D9 made no stroke
    flips = d[d.measure == "flipped"].set_index("participant").value
    log = out["disc"][1]["tasks"][0]["effects"][0]["flip_rate"][0]
    assert flips.mean() == pytest.approx(log)  # the same flips as the effect table's rate
    iou = d[(d.measure == "iou") & (d.model == MODEL)]
    assert len(iou) == 4 and (iou.value > 0.5).all()  # each removed the part the model's map is on
    fits = {f["analysis"]: f for f in out["disc"][1]["models"]}
    assert fits["agreement"]["note"].startswith("Not fitted")  # one model: nothing to compare
    html = (out["disc"][2] / "report.html").read_text()
    assert "Models of the per-participant table" in html and "Not fitted" in html


def test_the_analysis_plan_fixed_in_the_study_file_is_followed_and_deviations_are_said(tmp_path, capsys):
    """Issue 39 item 7: the study file's analysis plan (part of the study's key) sets the run's settings; the
    report prints it with its hash, and a run asked otherwise says how it deviates."""
    from ic_zoo.cli import main
    from ic_zoo.study.definition import parse_analysis

    img, disc, leaf = _task_parts()
    plan = "analysis: {explainers: [gradcam], bootstrap: 40, random: 1, seed: 3, blur: {size: 6, sigma: 4}}\n"
    db = _simulate(tmp_path, "plan", [(f"P{k}", _halves(disc)) for k in range(4)], extra=plan)
    assert main(["study", "analyze", "--db", db, "--out", str(tmp_path / "a")]) == 0
    text = capsys.readouterr().out
    doc = json.loads((tmp_path / "a" / "analysis.json").read_text())
    assert doc["plan"]["from_study_file"] and doc["plan"]["deviations"] == [] and "deviations" not in text
    assert doc["explainers"] == ["gradcam"] and doc["bootstrap"] == 40 and doc["random_placements"] == 1
    assert doc["tasks"][0]["ceiling"]["blur"] == {"size": 6, "sigma": 4.0}
    report = (tmp_path / "a" / "report.html").read_text()
    assert f"hash <code>{doc['plan']['hash']}</code>" in report and "deviates" not in report
    assert main(["study", "analyze", "--db", db, "--out", str(tmp_path / "b"), "--bootstrap", "30"]) == 0
    assert "deviations: bootstrap 30 (the plan says 40)" in capsys.readouterr().out
    assert "This run deviates from the plan:</b> bootstrap 30 (the plan says 40)" in (tmp_path / "b" / "report.html").read_text()
    for bad, msg in (({"bootstrap": -1}, "bootstrap in s.yaml is a whole number of at least 0"),
                     ({"colour": 1}, "unknown field(s) colour in the analysis plan of s.yaml"),
                     ({"blur": {"size": 3, "radius": 2}}, "blur in s.yaml is {size: taps, sigma: pixels}"),
                     ({"explainers": []}, "explainers in s.yaml is a list of explainer names")):
        with pytest.raises(Exception, match=re.escape(msg)):
            parse_analysis(bad, "s.yaml")


def test_the_planner_reads_a_pilot_log(simulated, tmp_path, capsys):
    """``study plan`` on a pilot's log: each headline figure's expected interval width at each N, narrowing
    as N grows; a bad N is one sentence."""
    from ic_zoo.cli import main

    db = simulated[3]["disc"][0]
    assert main(["study", "plan", "--db", db, "--n", "10", "40", "--resamples", "100", "--explainers", "occlusion",
                 "--json", str(tmp_path / "plan.json")]) == 0
    text = capsys.readouterr().out
    assert "expected width of the 95 % interval" in text and f"iou: {MODEL} (occlusion)" in text
    doc = json.loads((tmp_path / "plan.json").read_text())
    fig = next(f for f in doc["figures"] if f["figure"] == f"iou: {MODEL} (occlusion)")
    assert fig["pilot_participants"] == 4 and fig["width"]["40"] < fig["width"]["10"]
    assert main(["study", "plan", "--db", db, "--n", "2"]) == 2
    assert "--n of 3 or more participants" in capsys.readouterr().err


def test_the_batched_removal_effect_is_the_one_model_at_a_time_computation():
    """removal_effects inpaints each removal and its random placements once for all the task's models and
    passes them in batches; it gives what the straightforward computation gives (one predict per image,
    each model drawing its own placements from the same seed), a refused mask included."""
    import sys
    from pathlib import Path

    import ic_zoo

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from study_analysis import one_at_a_time  # the straightforward computation, the benchmark's reference

    img, disc, leaf = _task_parts()
    everything = np.ones_like(disc, bool)  # nothing left to fill from: refused, NaN
    finals = [disc, leaf, everything, np.roll(disc, 20, axis=1)]
    fill = ic_zoo.create("inpainter", "telea")
    models = {m: (ic_zoo.get_classifier(m, device="cpu"), c) for m, c in
              (("flower2d/resnet", 3), ("flower2d/squeezenet", 5))}
    got = A.removal_effects(models, img, finals, fill, n_random=3, seed=7)
    want = one_at_a_time(models, img, finals, fill, n_random=3, seed=7)  # one predict per image and model
    for name in models:
        (h, r), (want_h, want_r) = got[name], want[name]
        assert np.isnan(h[2]) and np.isnan(r[2]) and np.isfinite(h[[0, 1, 3]]).all()
        np.testing.assert_allclose(h, want_h, atol=1e-3, equal_nan=True)
        np.testing.assert_allclose(r, want_r, atol=1e-3, equal_nan=True)
    assert got["flower2d/resnet"][0][0] != got["flower2d/squeezenet"][0][0]
    # a removal made again (a prepared edit everyone got) takes the first one's scores and costs no pass
    calls = []
    clf_type = type(models["flower2d/resnet"][0])
    real = clf_type.probabilities
    try:
        clf_type.probabilities = lambda self, ims, **k: calls.append(len(ims)) or real(self, ims, **k)
        again = A.removal_effects(models, img, finals + [disc.copy(), leaf.copy()], fill, n_random=3, seed=7)
    finally:
        clf_type.probabilities = real
    for name in models:
        np.testing.assert_array_equal(again[name][0][:4], got[name][0])
        assert again[name][0][4] == got[name][0][0] and again[name][1][5] == got[name][1][1]
    assert sum(calls) == 2 * (1 + 3 * 4)  # per model: the image, and 3 scored removals of 1 + 3 images each


def test_two_studies_compared_in_one_analysis(simulated, tmp_path, capsys):
    """``study compare``: the disc painters' and the random painters' studies (the same task image) in one
    analysis: the disc group agrees more with the model's map and flips it more, with intervals and tests."""
    from ic_zoo.cli import main as cli

    _, _, _, out = simulated
    cli(["study", "compare", "--db", out["disc"][0], "--db", out["rand"][0], "--name", "disc", "--name", "rand",
         "--out", str(tmp_path / "cmp"), "--explainers", "occlusion", "--bootstrap", "200", "--random", "2"])
    printed = capsys.readouterr().out
    res = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert res["groups"] == ["disc", "rand"] and [s["participants"] for s in res["studies"]] == [4, 8]
    d = {(r["model"], r["explainer"], r["measure"]): r for r in res["differences"]}
    iou = d[(MODEL, "occlusion", "iou")]
    assert iou["groups"] == "disc - rand" and iou["n"] == [4, 8] and iou["difference"][1] > 0.2
    assert iou["p_permutation"] < 0.05 and iou["hedges_g"] > 1
    assert d[(MODEL, "", "flipped")]["difference"][0] == pytest.approx(1.0)
    assert d[(MODEL, "", "human_minus_random_pp")]["difference"][0] > 0
    page = (tmp_path / "cmp" / "compare.html").read_text()
    assert "Groups compared" in page and "disc - rand" in page and "study_1/report.html" in page
    assert (tmp_path / "cmp" / "study_2" / "report.html").is_file()
    assert "iou, flower2d/resnet (occlusion), disc - rand: +" in printed
