"""Side by side with TorchCAM and pytorch-grad-cam, in one process (issue 40 item 3).

For each model (torchvision's resnet18 and mobilenet_v3_large and timm's ViT-S/16, random weights: time does
not depend on them) and each method the three libraries share (Grad-CAM, Grad-CAM++, Layer-CAM), on the same
target layer (ic_zoo's choice for the model) and the same 224 x 224 input:

* **time**, as a multiple of one forward pass of the model measured in the same process (no gradients), the
  median of ``--repeats``: the map of one class from the image, and the maps of the image's top-5 classes.
  ic_zoo: ``explainer.explain(clf, x, classes)`` (one tapped forward pass, the classes' gradients in one
  sweep); pytorch-grad-cam: ``CAM(input_tensor=x, targets=[...])`` (for the top-5, the image repeated five
  times in one call, the library's batched use); TorchCAM: a forward pass, then ``extractor(class, scores)``
  per class (``retain_graph`` between them, its documented use).
* **agreement**: the largest absolute difference between two libraries' maps of the top-1 class, each
  min-max normalised at the layer's resolution and resized to the input as pytorch-grad-cam resizes
  (bilinear); the same method should agree to 1e-4.
* **TorchCAM's Average Drop and Increase in Confidence** (Grad-CAM++ paper; ``torchcam.metrics``) of ic_zoo's
  maps on the real photos of ``explain-bench --protocol photos``, on the embedded EfficientNet-Lite models, by
  ``avg_drop_incr`` (the same formula; checked against ``ClassificationMetric`` on TorchCAM's own map).

    python benchmarks/cam_libraries.py --json benchmarks/cam_libraries.json
    python benchmarks/cam_libraries.py --table benchmarks/cam_libraries.json
    python benchmarks/cam_libraries.py --small        # one model, one method (the suite runs this)

Installs nothing: TorchCAM is pinned in requirements-dev.txt.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = ("torchvision:resnet18", "torchvision:mobilenet_v3_large", "vit_small_patch16_224.augreg_in21k_ft_in1k")
#: ic_zoo name -> (pytorch-grad-cam class, TorchCAM class)
METHODS = {"gradcam": ("GradCAM", "GradCAM"), "gradcam++": ("GradCAMPlusPlus", "GradCAMpp"),
           "layercam": ("LayerCAM", "LayerCAM")}
PHOTO_METHODS = ("gradcam", "gradcam++", "layercam", "occlusion")


def median_time(fn, repeats: int) -> float:
    """The median seconds of ``repeats`` calls after one to warm up (latency's own timer)."""
    from ic_zoo.research.latency import _median_s

    fn()
    return _median_s(fn, repeats)


def layer_name(model, layer) -> str:
    return next(n for n, m in model.named_modules() if m is layer)


def minmax_resized(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A layer-resolution map as pytorch-grad-cam finishes one: min-max normalised, resized (cv2, bilinear),
    and min-max normalised again (``aggregate_multi_layers``: the resized map's peak falls between samples)."""
    import cv2

    def minmax(c):
        c = c - c.min()
        return c / (1e-7 + c.max())

    return minmax(cv2.resize(minmax(np.maximum(np.asarray(cam, np.float32), 0)), size))


class Libraries:
    """One model's three implementations of one method, on the same layer."""

    def __init__(self, clf, method: str) -> None:
        import pytorch_grad_cam
        import torchcam.methods

        from ic_zoo.session import get_explainer

        self.clf, self.method = clf, method
        self.model = clf.logits_module()
        self.layer = clf.target_layers[0]
        pgc_name, tc_name = METHODS[method]
        self.ours = get_explainer(method)
        self.pgc = getattr(pytorch_grad_cam, pgc_name)(model=self.model, target_layers=[self.layer],
                                                        reshape_transform=clf.reshape_transform)
        self.tc = getattr(torchcam.methods, tc_name)(self.model, layer_name(self.model, self.layer),
                                                     reshape_transform=clf.reshape_transform)

    def close(self) -> None:
        self.pgc.activations_and_grads.release()
        self.tc.remove_hooks()

    def ours_maps(self, x, classes):
        with self.tc._hooks_off():  # noqa: SLF001 - TorchCAM's hooks idle while the others run
            return self.ours.explain(self.clf, x, list(classes)).normalized

    def pgc_maps(self, x, classes):
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        # the libraries backprop through the parameters, as a user's model would
        with self.tc._hooks_off(), self.clf.unfrozen():  # noqa: SLF001
            return self.pgc(input_tensor=x.repeat(len(classes), 1, 1, 1),
                            targets=[ClassifierOutputTarget(int(c)) for c in classes])

    def tc_maps(self, x, classes):
        import torch

        with torch.enable_grad(), self.clf.unfrozen():
            scores = self.model(x)
            return [self.tc(int(c), scores, retain_graph=i < len(classes) - 1)[0].detach().cpu().numpy()[0]
                    for i, c in enumerate(classes)]


def compare_model(name: str, methods, repeats: int, log=print) -> list[dict]:
    import torch

    import ic_zoo

    clf = ic_zoo.get_classifier(name, pretrained=False, device="cpu")
    torch.manual_seed(0)
    x = torch.randn(1, 3, *clf.input_size)
    with torch.no_grad():
        top5 = [int(c) for c in clf.model(x)[0].topk(5).indices]

    def fwd():
        with torch.no_grad():
            clf.logits_module()(x)

    t_fwd = median_time(fwd, repeats)
    rows = []
    for method in methods:
        try:
            libs = Libraries(clf, method)
        except Exception as exc:  # noqa: BLE001 - a library that cannot take this model: its sentence in the table
            rows.append({"model": name, "method": method, "forward_ms": 1000 * t_fwd, "error": f"{type(exc).__name__}: {exc}"[:200]})
            log(f"{name} {method}: {rows[-1]['error']}")
            continue
        try:
            size = tuple(int(v) for v in x.shape[-1:-3:-1])
            ours = libs.ours_maps(x, top5[:1])[0]
            pgc = libs.pgc_maps(x, top5[:1])[0]
            tc = minmax_resized(libs.tc_maps(x, top5[:1])[0], size)
            row = {"model": name, "method": method, "forward_ms": 1000 * t_fwd, "layer": layer_name(libs.model, libs.layer),
                   "max_diff_ours_pgc": float(np.abs(ours - pgc).max()),
                   "max_diff_ours_torchcam": float(np.abs(ours - tc).max()),
                   "max_diff_pgc_torchcam": float(np.abs(pgc - tc).max())}
            for lib, fn in (("ic_zoo", libs.ours_maps), ("pytorch-grad-cam", libs.pgc_maps), ("torchcam", libs.tc_maps)):
                for what, classes in (("one class", top5[:1]), ("top-5", top5)):
                    row[f"{lib} {what}"] = median_time(lambda fn=fn, classes=classes: fn(x, classes), repeats) / t_fwd
        finally:
            libs.close()
        log(f"{name} {method}: " + ", ".join(f"{k} {v:.3g}" for k, v in row.items() if isinstance(v, float)))
        rows.append(row)
    return rows


def avg_drop_incr(clf, x, cam01: np.ndarray, cls: int) -> tuple[float, float]:
    """TorchCAM's Average Drop and Increase in Confidence of one map (``cam01``, in [0, 1] at the input's
    size): the softmax score of ``cls`` on the input and on the input times the map."""
    import torch

    with clf.lock, torch.inference_mode():
        m = torch.as_tensor(np.asarray(cam01, np.float32))[None, None]
        p = torch.softmax(clf.forward(torch.cat([x, x * m])).float(), dim=-1)[:, cls]
    drop = float(torch.relu(p[0] - p[1]) / (p[0] + 1e-7))
    return drop, float(p[0] < p[1])


def check_against_torchcam() -> float:
    """|ours - torchcam.metrics.ClassificationMetric| of Average Drop on TorchCAM's own Grad-CAM map."""
    from functools import partial

    import torch
    from torchcam.methods import GradCAM
    from torchcam.metrics import ClassificationMetric, _resize_cam

    import ic_zoo

    clf = ic_zoo.get_classifier("torchvision:resnet18", pretrained=False, device="cpu")
    torch.manual_seed(1)
    x = torch.randn(1, 3, 224, 224)
    model = clf.logits_module()
    with clf.unfrozen(), GradCAM(model, layer_name(model, clf.target_layers[0])) as ext:
        metric = ClassificationMetric(ext, partial(torch.softmax, dim=-1))
        metric.update(x)
        theirs = metric.summary()
        scores = torch.softmax(model(x), dim=-1)  # the metric's map is of the softmax score, as it scores
        c = int(scores.argmax())
        cam = _resize_cam(ext.fuse_cams(ext(c, scores)), (224, 224))[0].detach().numpy()
    drop, incr = avg_drop_incr(clf, x, cam, c)
    return max(abs(drop - theirs["avg_drop"]), abs(incr - theirs["conf_increase"]))


def photo_rows(log=print) -> list[dict]:
    """Average Drop / Increase in Confidence of ic_zoo's maps (and a random map) on the benchmark's photos."""
    from ic_zoo.analyses.trust import random_map
    from ic_zoo.research import explain_photos as P
    from ic_zoo.session import get_classifier, get_explainer

    rows = []
    cases = [(p, *P.load(p)) for p in P.PHOTOS]
    cases = [c for c in cases if c[1] is not None]
    for key in P.MODELS:
        clf = get_classifier(key)
        for method in PHOTO_METHODS + ("random",):
            drops, incs = [], []
            for p, img, _ in cases:
                x = clf.preprocess(img)
                if method == "random":
                    cam = random_map(tuple(x.shape[-2:]), np.random.default_rng(p.label))
                else:
                    cam = get_explainer(method).explain(clf, x, [p.label]).normalized[0]
                d, i = avg_drop_incr(clf, x, cam, p.label)
                drops.append(d)
                incs.append(i)
            rows.append({"model": key, "method": method, "photos": len(cases), "avg_drop": float(np.mean(drops)),
                         "conf_increase": float(np.mean(incs))})
            log(f"photos {key} {method}: Average Drop {rows[-1]['avg_drop']:.3f}, "
                f"Increase in Confidence {rows[-1]['conf_increase']:.2f}")
    return rows


def run(models=MODELS, methods=tuple(METHODS), repeats: int = 5, photos: bool = True, log=print) -> dict:
    import pytorch_grad_cam
    import torch
    import torchcam

    t0 = time.perf_counter()
    rows = [r for m in models for r in compare_model(m, methods, repeats, log)]
    doc = {"rows": rows, "repeats": repeats, "metric_check": check_against_torchcam(),
           "photos": photo_rows(log) if photos else [],
           "versions": {"torchcam": torchcam.__version__, "pytorch-grad-cam": getattr(pytorch_grad_cam, "__version__", "1.5.7"),
                        "torch": torch.__version__, "python": platform.python_version()},
           "threads": torch.get_num_threads(), "seconds": round(time.perf_counter() - t0, 1)}
    return doc


def table(doc: dict) -> str:
    lines = ["| model | method | forward | ic_zoo one / top-5 | pytorch-grad-cam one / top-5 | TorchCAM one / top-5 | "
             "top-5: ic_zoo / TorchCAM | largest difference of the maps (ic_zoo-pgc, ic_zoo-TorchCAM) |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in doc["rows"]:
        short = r["model"].replace("torchvision:", "").split(".")[0]
        if "error" in r:
            lines.append(f"| {short} | {r['method']} | {r['forward_ms']:.0f} ms | {r['error']} | | | | |")
            continue
        lines.append(f"| {short} | {r['method']} | {r['forward_ms']:.0f} ms | {r['ic_zoo one class']:.1f}x / "
                     f"{r['ic_zoo top-5']:.1f}x | {r['pytorch-grad-cam one class']:.1f}x / {r['pytorch-grad-cam top-5']:.1f}x | "
                     f"{r['torchcam one class']:.1f}x / {r['torchcam top-5']:.1f}x | "
                     f"{r['ic_zoo top-5'] / r['torchcam top-5']:.2f} | "
                     f"{r['max_diff_ours_pgc']:.1e}, {r['max_diff_ours_torchcam']:.1e} |")
    if doc.get("photos"):
        lines += ["", "| model | map | Average Drop (lower is better) | Increase in Confidence (higher is better) |",
                  "|---|---|---:|---:|"]
        for r in doc["photos"]:
            lines.append(f"| {r['model'].replace('tf_efficientnet_', '').replace('.in1k', '')} | {r['method']} | "
                         f"{r['avg_drop']:.3f} | {r['conf_increase']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--small", action="store_true", help="resnet18 and Grad-CAM only, no photos")
    ap.add_argument("--json", default=None)
    ap.add_argument("--table", default=None, metavar="JSON")
    args = ap.parse_args(argv)
    if args.table:
        print(table(json.loads(Path(args.table).read_text())), end="")
        return 0
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    doc = (run(MODELS[:1], ("gradcam",), args.repeats, photos=False, log=log) if args.small
           else run(repeats=args.repeats, log=log))
    print(table(doc), end="")
    print(f"Average Drop as torchcam.metrics computes it, against ours: largest difference {doc['metric_check']:.1e}")
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1))
        Path(args.json).with_suffix(".md").write_text(table(doc))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
