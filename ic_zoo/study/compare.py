"""Several studies of the same task images in one humans-vs-models analysis (``python -m ic_zoo study
compare``): each study analysed (``analysis.analyze``), then their per-participant tables compared by study
(``groups``: the statistics and how to read them)."""
from __future__ import annotations

from pathlib import Path

from . import analysis, groups
from . import db as D
from .errors import StudyError


def compare_studies(dbs: list[str], out: str | Path, names: list[str] | None = None, study_keys=None,
                    log=print, **analyze_args) -> dict:
    """Several studies of the same task images in one analysis: each is analysed (``analysis.analyze``, its
    report in ``out/<name>``), then their long tables are compared by study (``groups``). A task id
    that shows another image in one of the studies is one sentence, before any comparison."""
    names = list(names or [])
    if names and len(names) != len(dbs):
        raise StudyError(f"Give one --name per --db ({len(dbs)} database(s), {len(names)} name(s)).")
    keys = list(study_keys or [None] * len(dbs))
    if len(keys) != len(dbs):
        raise StudyError(f"Give one --study-key per --db, or none ({len(dbs)} database(s), {len(keys)} key(s)).")
    out = Path(out)
    docs, rows, seen = [], [], {}
    for i, (url, key) in enumerate(zip(dbs, keys)):
        eng = D.open_engine(url)
        try:
            doc = analysis.analyze(eng, out / f"study_{i + 1}", key, log=log, **analyze_args)
        finally:
            eng.dispose()
        name = names[i] if names else doc["title"] or doc["study"]
        if any(name == d["name"] for d in docs):
            name = f"{name} ({i + 1})"
        doc["name"] = name
        for t in doc["tasks"]:
            first = seen.setdefault(t["task"], (name, t.get("image_sha")))
            if first[1] != t.get("image_sha"):
                raise StudyError(f"Task {t['task']} shows another image in {name} than in {first[0]}: compare "
                                 "studies of the same task images (the same task ids and pictures).")
        docs.append(doc)
        rows += [{**r, "group": name} for r in doc.get("long", [])]
    settings = docs[0]["plan"]["settings"]  # the first study's (or the caller's) bootstrap count and seed
    result = groups.compare(rows, [d["name"] for d in docs], n_boot=int(settings["bootstrap"]), seed=int(settings["seed"]))
    result["studies"] = [{"name": d["name"], "study": d["study"], "title": d["title"], "report": f"study_{i + 1}/report.html",
                          "participants": len({r["participant"] for r in d.get("long", [])})}
                         for i, d in enumerate(docs)]
    write(result, out)
    return result


def write(result: dict, out: Path) -> None:
    """compare_by_group.csv, compare_differences.csv, compare.json and compare.html in ``out``."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    analysis._csv(out / "compare_by_group.csv", result["by_group"], groups.BY_GROUP_COLUMNS)
    analysis._csv(out / "compare_differences.csv", result["differences"], groups.DIFFERENCE_COLUMNS)
    (out / "compare.json").write_text(json.dumps(analysis.jsonable(result), indent=1))
    studies = "".join(f"<li>{s['name']}: study {s['study']}, {s['participants']} participant(s) with strokes "
                      f"(<a href=\"{s['report']}\">its report</a>)</li>" for s in result.get("studies", []))
    (out / "compare.html").write_text(
        "<!doctype html><meta charset=utf-8><title>Studies compared</title>"
        f"<style>{analysis.REPORT_STYLE}</style><div class=ic-report><h1>Studies compared</h1><ul>{studies}</ul>"
        + analysis.groups_html(result) + analysis.model_tables_html(result.get("models", []), "The groups' models")
        + "</div>")
