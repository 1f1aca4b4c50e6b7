"""``python -m ic_zoo``: list | classify | edit (and the command plugins: bench, latency, flower2d, ...).

Every user-reachable failure ends as one line on stderr and exit status 2; tracebacks only with
IC_ZOO_DEBUG=1.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import warnings
from pathlib import Path

from .errors import IcZooError, IcZooWarning
from .registry import KINDS


def _at_least_one(text: str) -> int:
    """An argparse type: a whole number of at least 1 (``--top-k -1`` was accepted)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {n}")
    return n


def _models(args, image=None) -> list[str]:
    """The models named with -m (each checked by the same function the app uses), else the defaults for
    the image's domain: ImageNet models for a photo, the Flower2D trio for a Flower2D image."""
    from .zoo import default_models, image_domain, resolve_model

    pretrained = not args.no_pretrained
    if args.model:
        return [resolve_model(m, pretrained=pretrained) for m in args.model]
    domain = image_domain(image) if image is not None else "imagenet"
    return default_models(pretrained=pretrained, domain=domain)


def _emit(obj, as_json: bool) -> None:
    print(json.dumps(obj) if as_json else obj, flush=True)


# -- list ------------------------------------------------------------------------------------------
def cmd_list(args) -> int:
    from .discovery import ensure_loaded
    from .discovery import list_plugins

    report = ensure_loaded()
    specs = list_plugins(args.kind)
    if args.json:
        print(json.dumps({"plugins": [s.to_dict() for s in specs],
                          "failed": [r.to_dict() for r in report.failed]}, indent=2))
        return 0
    kind = None
    for s in specs:
        if s.kind != kind:
            kind = s.kind
            print(f"\n{kind}s:")
        reason = s.unavailable_reason()
        status = "ok" if reason is None else f"unavailable: {reason}"
        extra = f" [{s.meta['cost']}]" if s.meta.get("cost") == "slow" else ""
        print(f"  {s.name:<48} {status}{extra}\n      {s.description}  ({s.source})")
    if report.failed:
        print("\nplugins that failed to load:")
        for r in report.failed:
            print(f"  {r.source}: {r.error}")
    return 0


# -- classify --------------------------------------------------------------------------------------
def cmd_classify(args) -> int:
    from .imageio import load_image
    from .session import get_classifier, small_image_warning

    named = _models(args) if args.model else None  # checked once, before anything loads or any image is read
    status = 0
    for path in args.images:
        try:
            img = load_image(path)
        except IcZooError as exc:
            status = 2
            if args.json:
                _emit({"image": path, "error": str(exc)}, True)
            else:
                print(f"error: {exc}", file=sys.stderr)
            continue
        small = small_image_warning(img.shape)
        if small:  # what `edit` and the app say too (it was dropped here)
            warnings.warn(f"{path}: {small}", IcZooWarning, stacklevel=1)
        clfs = {m: get_classifier(m, pretrained=not args.no_pretrained, device=args.device)
                for m in (named or _models(args, img))}
        for m, clf in clfs.items():
            top = clf.predict(img).topk(args.top_k)
            if args.json:
                _emit({"image": path, "model": m, "top5": [{"label": c.label, "index": c.index, "prob": c.prob}
                                                           for c in top]}, True)
            else:
                print(f"{path}  [{m}]")
                for c in top:
                    print(f"  {100 * c.prob:6.2f}%  {c.index:5d}  {c.label}")
    return status


# -- edit ------------------------------------------------------------------------------------------
def _parse_params(items: list[str]) -> dict:
    params = {}
    for it in items or []:
        if "=" not in it:
            raise IcZooError(f"--param takes name=value, not '{it}'.")
        k, v = it.split("=", 1)
        try:
            params[k] = json.loads(v)
        except json.JSONDecodeError:
            params[k] = v
    return params


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def cmd_edit(args) -> int:

    from .presentation import present
    from .imageio import load_image, load_mask, save_png
    from .session import Session
    from .analyses.trust import map_trust
    from .presentation.viz import diverging, overlay

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise IcZooError(f"--out {out} is a file; give a folder (it is created if missing).")
    img = load_image(args.image)
    mask = load_mask(args.mask, img.shape[:2])
    models = _models(args, img)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise IcZooError(f"--out {out} cannot be created ({exc.strerror or exc}); choose a folder you can write.") from None
    sess = Session(img, pretrained=not args.no_pretrained, device=args.device, k=args.top_k)
    sess.evaluate(models, explainer=args.explainer)  # original, cached (as the app does)
    edit = sess.apply(mask, args.inpainter, **_parse_params(args.param))
    if edit is None:
        warnings.warn(f"the mask {args.mask} is empty: nothing was removed, so the modified image is the original.",
                      IcZooWarning, stacklevel=1)
    result = sess.evaluate(models, explainer=args.explainer)
    save_png(sess.modified, out / "modified.png")
    save_png(mask, out / "mask.png")
    doc = {"image": str(args.image), "mask": str(args.mask), "mask_pixels": int(mask.sum()),
           "inpainter": args.inpainter, "inpainter_params": _parse_params(args.param),
           "explainer": args.explainer, "no_op": edit is None, **result.to_dict(),
           "timings_ms": {"inpaint": round(1000 * edit.seconds, 2) if edit else 0.0,
                          "evaluate": round(1000 * result.seconds, 2)}}
    doc["models"] = {m: r.to_dict() for m, r in result.models.items()}
    blanks = []  # one line per blank map: no positive evidence, and the explainers that give one
    for m, r in result.models.items():
        clf = sess.classifier(m)
        doc["models"][m]["weights"] = {"source": clf.weights_source, "sha256_16": clf.weights_hash()}
        classes = args.class_ if args.class_ else [r.original[0].index]
        if r.note:
            continue
        try:
            maps = sess.explain(m, classes, args.explainer)
        except IcZooError as exc:
            doc["models"][m]["note"] = str(exc)
            warnings.warn(f"{m}: {exc}", IcZooWarning, stacklevel=1)
            continue
        files = {}
        for cm in maps:
            if cm.blank:
                blanks.append(f"{m}: {present.blank_text(cm, markdown=False)}")
            d = out / "maps" / _slug(m)
            d.mkdir(parents=True, exist_ok=True)
            stem = f"class{cm.index}"
            save_png(overlay(img, cm.original), d / f"{stem}_original.png")
            save_png(overlay(sess.modified, cm.modified), d / f"{stem}_modified.png")
            save_png(diverging(cm.difference, img), d / f"{stem}_difference.png")
            files[str(cm.index)] = {"label": cm.label, "scale": cm.scale,
                                    "mass_in_mask_original": cm.mass_in(mask, "original"),
                                    "mass_in_mask_modified": cm.mass_in(mask, "modified"),
                                    "original": f"maps/{_slug(m)}/{stem}_original.png",
                                    "modified": f"maps/{_slug(m)}/{stem}_modified.png",
                                    "difference": f"maps/{_slug(m)}/{stem}_difference.png",
                                    **{k: v for k, v in cm.to_dict().items() if k.startswith("blank")}}
            if args.trust or args.road:
                files[str(cm.index)]["trust"] = {
                    w: map_trust(sess, m, cm.index, args.explainer, w, road=args.road).to_dict()
                    for w in ("original", "modified")}
        doc["models"][m]["map_files"] = files
    with open(out / "result.json", "w") as f:
        json.dump(doc, f, indent=2)
    for m, r in result.models.items():
        t0 = r.tracked[0]
        flip = f"top-1 changed to '{r.modified[0].label}'" if r.top1_changed else "top-1 unchanged"
        print(f"{m}: '{t0.label}' {100 * t0.prob_original:.1f}% -> {100 * t0.prob_modified:.1f}% "
              f"({t0.delta_pp:+.1f} pp); {flip}")
    for line in blanks:
        print(line)
    print(f"wrote {out / 'result.json'}")
    return 0


# -- parser ----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ic_zoo", description="Interactive Classification: edit an "
                                "image, compare how classifiers change their minds, see where they look.")
    p.add_argument("--plugins-dir", default=None,
                   help="folder of plugin .py files (default: IC_ZOO_PLUGINS_DIR, else the app's own plugins/; "
                        "never the working directory)")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, models=True):
        if models:
            sp.add_argument("--model", "-m", action="append", help="classifier key (repeatable); see `list`")
        sp.add_argument("--no-pretrained", action="store_true", help="random weights (tests, benchmarks)")
        sp.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")

    sp = sub.add_parser("list", help="plugins with availability and reason")
    sp.add_argument("--kind", choices=list(KINDS))
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_list)

    sp = sub.add_parser("classify", help="top-k of one or more images")
    sp.add_argument("images", nargs="+")
    sp.add_argument("--top-k", type=_at_least_one, default=5)
    sp.add_argument("--json", action="store_true", help="one JSON object per line")
    common(sp)
    sp.set_defaults(func=cmd_classify)

    sp = sub.add_parser("edit", help="remove a masked region, re-classify, write result.json and maps")
    sp.add_argument("image")
    sp.add_argument("--mask", required=True, help="image whose white / opaque pixels are removed")
    sp.add_argument("--inpainter", default="telea")
    sp.add_argument("--param", action="append", help="inpainter parameter name=value (repeatable)")
    sp.add_argument("--explainer", default="gradcam")
    sp.add_argument("--class", dest="class_", type=int, action="append",
                    help="class index to map (repeatable; default the original's top-1)")
    sp.add_argument("--top-k", type=_at_least_one, default=5)
    sp.add_argument("--trust", action="store_true",
                    help="add each map's trust score: its deletion AUC by inpainting beside random maps'")
    sp.add_argument("--road", action="store_true", help="with the trust score, pytorch-grad-cam's ROADCombined too")
    sp.add_argument("--out", default="ic_zoo_out")
    common(sp)
    sp.set_defaults(func=cmd_edit)

    from .discovery import instance, list_plugins

    for spec in list_plugins("command"):  # bench, latency, flower2d, explain-bench, vebi, study, plugins' commands
        if spec.unavailable_reason() is not None:
            continue
        sp = sub.add_parser(spec.name, help=spec.description, description=spec.description)
        try:
            cmd = instance("command", spec.name)
            sp.set_defaults(func=cmd.run)  # a command with sub-commands sets func on each of them
            cmd.add_arguments(sp)
        except Exception as exc:  # noqa: BLE001 - one broken plugin command must not take the CLI down
            msg = f"the '{spec.name}' command ({spec.source}) failed to set up: {type(exc).__name__}: {exc}"
            sp.set_defaults(func=lambda args, m=msg: _fail(m))
    return p


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--plugins-dir", default=None)
    plugins_dir = pre.parse_known_args(argv)[0].plugins_dir
    if plugins_dir:  # discovery reads that folder, before the parser lists the plugins' commands
        from .discovery import ensure_loaded

        ensure_loaded(plugins_dir=plugins_dir)
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = os.environ.get("IC_ZOO_DEBUG", "") not in ("", "0")

    def show_warning(message, category, filename, lineno, file=None, line=None):
        print(f"warning: {message}", file=sys.stderr)

    warnings.showwarning = show_warning
    try:
        return int(args.func(args) or 0)
    except IcZooError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line, not a traceback
        if debug:
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"error: unexpected failure ({type(exc).__name__}: {msg}); run with IC_ZOO_DEBUG=1 for the "
              "traceback and please report it", file=sys.stderr)
        return 1


def console_main() -> None:
    sys.exit(main())
