"""Export an experiment as one zip: images, masks, maps, tables (CSV + JSON) and provenance.

    original.png, modified.png, combined_mask.png, masks/edit_NN.png
    maps/<model>/class<i>_{original,modified,difference}.png   (overlays, one shared scale)
    maps/<model>/raw.npz                                        (the maps as float arrays, model-input size)
    results.json, results.csv, history.csv
    meta.json: model keys, weight sources and hashes, inpainters with parameters, explainer, versions
"""
from __future__ import annotations

import csv
import datetime
import io
import json
import platform
import re
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np

from ..analyses.history import history
from .viz import diverging, overlay

PACKAGES = ("ic-zoo", "torch", "torchvision", "timm", "transformers", "grad-cam", "gradio", "opencv-python-headless",
            "numpy", "pillow", "PyPatchMatch", "scikit-image", "safetensors")


def versions() -> dict[str, str | None]:
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    if out.get("ic-zoo") is None:
        from .. import __version__

        out["ic-zoo"] = __version__
    return out


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    a = np.asarray(arr)
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s)


def export_zip(session, models: list[str], explainer: str | None, path: str | Path, extra: dict | None = None,
               map_classes: dict[str, list[int]] | None = None) -> Path:
    """Write the experiment held by ``session`` (for ``models``) to ``path`` and return it: the maps of
    each model's tracked classes, and of the classes in ``map_classes`` (those chosen in the app)."""
    path = Path(path)
    result = session.evaluate(models, explainer=explainer)
    for m, classes in (map_classes or {}).items():
        if explainer and m in result.models and result.models[m].note is None:
            for c in classes:
                if c not in result.models[m].maps:
                    result.models[m].maps[c] = session.explain(m, int(c), explainer)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("original.png", _png(session.original))
        z.writestr("modified.png", _png(session.modified))
        z.writestr("combined_mask.png", _png(session.combined_mask))
        for i, e in enumerate(session.edits, 1):
            z.writestr(f"masks/edit_{i:02d}.png", _png(e.mask))
        csv_rows, hist_rows = [], []
        models_meta = {}
        for m, r in result.models.items():
            clf = session.classifier(m)
            models_meta[m] = {"weights": clf.weights_source, "sha256_16": clf.weights_hash(),
                              "pretrained": clf.pretrained, "input_box": list(r.box)}
            raw = {}
            for idx, cm in r.maps.items():
                d = f"maps/{_slug(m)}/class{idx}"
                z.writestr(f"{d}_original.png", _png(overlay(session.original, cm.original)))
                z.writestr(f"{d}_modified.png", _png(overlay(session.modified, cm.modified)))
                z.writestr(f"{d}_difference.png", _png(diverging(cm.difference, session.modified)))
                raw[f"class{idx}_original"] = cm.raw_original
                raw[f"class{idx}_modified"] = cm.raw_modified
            if raw:
                buf = io.BytesIO()
                np.savez_compressed(buf, **raw)
                z.writestr(f"maps/{_slug(m)}/raw.npz", buf.getvalue())
            for t in r.tracked:
                csv_rows.append({"model": m, **t.to_dict()})
            h = history(session, m)
            for s in h.steps:
                for c, lab, pr in zip(h.classes, h.labels, s.probs):
                    hist_rows.append({"model": m, "step": s.step, "class": c, "label": lab, "prob": pr,
                                      "top1": s.top1, "top1_label": s.top1_label})
        for name, rows in (("results.csv", csv_rows), ("history.csv", hist_rows)):
            buf = io.StringIO()
            if rows:
                w = csv.DictWriter(buf, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)
            z.writestr(name, buf.getvalue())
        doc = result.to_dict()
        doc["edits"] = [e.to_dict() for e in session.edits]
        z.writestr("results.json", json.dumps(doc, indent=2))
        meta = {"created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "image_shape": list(session.original.shape), "explainer": explainer, "models": models_meta,
                "inpainters": [{"name": e.inpainter, "params": e.params} for e in session.edits],
                "map_classes": {m: [int(c) for c in cs] for m, cs in (map_classes or {}).items()},
                "versions": versions(), **(extra or {})}
        z.writestr("meta.json", json.dumps(meta, indent=2))
    return path
