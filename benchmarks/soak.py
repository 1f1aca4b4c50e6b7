"""Soak: many API clients painting at once, round after round, against a started app on loopback.

    python benchmarks/soak.py --clients 16 --edits 20 --rounds 3 --json benchmarks/soak_cpu.json
    python benchmarks/soak.py --table benchmarks/soak_cpu.json          # the README's table, from the JSON

Starts ``python app.py`` in a subprocess on 127.0.0.1 (the Flower2D trio, 256 px flowers; ``--preset
lite`` for the EfficientNet-Lite trio on 256 px photos), then runs each round with new gradio_client
clients, as a public link sees them (an API client never closes its session): each loads its own image
through ``/load`` and sends ``--edits`` strokes through ``/edit``, sending back the canvas the previous
answer gave. It counts errors and crossed results (an answer whose stroke count or original top-1 is
not this client's), and samples the server's RSS every 0.1 s: before, peak and after each round (after
``--settle`` idle seconds). The app runs with its default bounds on the tabs' memory (``IC_ZOO_SESSIONS_MB``,
``IC_ZOO_MAX_SESSIONS``) unless ``--max-sessions`` / ``--sessions-mb`` set them. Prints a table and writes JSON.

    python benchmarks/soak.py --preset lite --side 768 --rounds 1 --json benchmarks/soak_768_cpu.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

PRESETS = {"flower2d": ["flower2d/squeezenet", "flower2d/resnet", "flower2d/vit"],
           "lite": ["tf_efficientnet_lite0.in1k", "tf_efficientnet_lite1.in1k", "tf_efficientnet_lite2.in1k"]}


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def images(preset: str, n: int, side: int, out: Path) -> list[Path]:
    """One image per client, each different (so a crossed answer shows)."""
    from PIL import Image

    paths = []
    if preset == "flower2d":
        from ic_zoo.flower2d import generator as g

        for i in range(n):
            img, _ = g.render(g.sample_params("double-12c", i % 12, "test", 8100 + i), side)
            paths.append(out / f"client{i:02d}.png")
            Image.fromarray(img).save(paths[-1])
    else:
        photos = sorted((ROOT / "examples").glob("*.jpg"))
        for i in range(n):
            im = Image.open(photos[i % len(photos)]).convert("RGB")
            im = im.resize((side, side)).rotate(7 * (i // len(photos)))
            paths.append(out / f"client{i:02d}.png")
            im.save(paths[-1])
    return paths


def stroke(shape, i: int, out: Path) -> Path:
    import cv2
    from PIL import Image

    h, w = shape
    layer = np.zeros((h, w, 4), np.uint8)
    rng = np.random.default_rng(i)
    x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
    cv2.line(layer, (x0, y0), (x0 + 16, y0 + 12), (255, 0, 0, 255), 5)
    Image.fromarray(layer).save(out)
    return out


def start_app(models: list[str], max_sessions: int | None = None, extra_env: dict | None = None,
              sessions_mb: int | None = None):
    port = _free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", **(extra_env or {}))
    for k in ("IC_ZOO_MAX_SESSIONS", "IC_ZOO_SESSIONS_MB"):
        env.pop(k, None)  # the defaults, unless asked
    if max_sessions:
        env["IC_ZOO_MAX_SESSIONS"] = str(max_sessions)
    if sessions_mb:
        env["IC_ZOO_SESSIONS_MB"] = str(sessions_mb)
    cmd = [sys.executable, str(ROOT / "app.py"), "--port", str(port)]
    for m in models:
        cmd += ["-m", m]
    # its log goes to a file: a pipe nobody reads fills at 64 KB and then blocks the app's next log line
    log = tempfile.NamedTemporaryFile(prefix="ic_zoo_soak_app_", suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, cwd=str(ROOT), env=env, stdout=subprocess.DEVNULL, stderr=log)
    proc.log_path = log.name
    url = f"http://127.0.0.1:{port}/"
    t0 = time.time()
    while time.time() - t0 < 180:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited: {Path(log.name).read_text(errors='replace')[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the app did not start within 180 s")


def client_run(url: str, models: list[str], image: Path, edits: int, work: Path, seed: int, report: dict) -> None:
    from gradio_client import Client, handle_file
    from PIL import Image

    rows = ("original top-5 (tracked)",)
    errors, crossed = [], 0
    try:
        c = Client(url, verbose=False)
        out = c.predict(handle_file(str(image)), models, "gradcam", rows[0], api_name="/load")
        doc = out[-1]
        own = {m: doc["models"][m]["original"]["top5"][0]["index"] for m in models}
        canvas = out[0]["background"]
        shape = np.asarray(Image.open(canvas)).shape[:2]
    except Exception as exc:  # noqa: BLE001 - counted, not fatal
        report.update(errors=[f"load: {exc}"], crossed=0, edits=0, latencies=[])
        return
    lat = []
    done = 0
    for i in range(edits):
        layer = stroke(shape, seed * 1000 + i, work / f"s{seed}_{i}.png")
        t0 = time.perf_counter()
        try:
            out = c.predict({"background": handle_file(canvas), "layers": [handle_file(str(layer))],
                             "composite": None}, models, "telea", "gradcam", rows[0], api_name="/edit")
        except Exception as exc:  # noqa: BLE001
            errors.append(f"edit {i}: {str(exc).splitlines()[0][:200]}")
            continue
        lat.append(time.perf_counter() - t0)
        doc = out[-1]
        done += 1
        if doc["n_edits"] != done or any(doc["models"][m]["original"]["top5"][0]["index"] != own[m] for m in models):
            crossed += 1
        canvas = out[0]["background"]
    report.update(errors=errors, crossed=crossed, edits=done, latencies=lat)


def tab_bytes(preset: str, image: Path, edits: int) -> dict:
    """What one tab's session holds after ``edits`` strokes (each evaluated with Grad-CAM, as /edit does),
    by ``ic_zoo.memsize.nbytes``, the measure the app's bound uses; in this process, not the app's."""
    import ic_zoo
    from ic_zoo.memsize import nbytes
    from PIL import Image

    s = ic_zoo.Session(np.asarray(Image.open(image).convert("RGB")))
    h, w = s.original.shape[:2]
    out = {"image_mb": round(s.original.nbytes / 1e6, 2)}
    for i in range(edits):
        m = np.zeros((h, w), bool)
        rng = np.random.default_rng(i)
        y, x = int(rng.integers(0, h - h // 8)), int(rng.integers(0, w - w // 8))
        m[y:y + h // 16 + 4, x:x + w // 8] = True
        s.apply(m, "telea")
        s.evaluate(PRESETS[preset], explainer="gradcam")
        if i == 0:
            out["after_1_stroke_mb"] = round(nbytes(s) / 1e6, 1)
    out[f"after_{edits}_strokes_mb"] = round(nbytes(s) / 1e6, 1)
    return out


def run(clients: int, edits: int, rounds: int, preset: str = "flower2d", side: int = 256,
        max_sessions: int | None = None, settle: float = 3.0, extra_env: dict | None = None,
        sessions_mb: int | None = None) -> dict:
    from ic_zoo.app.tab_store import Tabs

    models = PRESETS[preset]
    work = Path(tempfile.mkdtemp(prefix="ic_zoo_soak_"))
    proc, url = start_app(models, max_sessions, extra_env, sessions_mb)
    try:
        imgs = images(preset, clients, side, work)
        time.sleep(settle)
        out_rounds = []
        for r in range(rounds):
            before = _rss_mb(proc.pid)
            peak = [before]
            stop = threading.Event()

            def sample():
                while not stop.wait(0.1):
                    peak[0] = max(peak[0], _rss_mb(proc.pid))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            reports = [dict() for _ in range(clients)]
            t0 = time.perf_counter()
            threads = [threading.Thread(target=client_run, args=(url, models, imgs[i], edits, work,
                                                                 r * clients + i, reports[i]))
                       for i in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
            time.sleep(settle)
            stop.set()
            sampler.join()
            after = _rss_mb(proc.pid)
            lat = [x for rep in reports for x in rep.get("latencies", [])]
            errs = [e for rep in reports for e in rep.get("errors", [])]
            out_rounds.append({"round": r + 1, "rss_before_mb": round(before, 1), "rss_peak_mb": round(max(peak[0], after), 1),
                               "rss_after_mb": round(after, 1), "edits": sum(rep.get("edits", 0) for rep in reports),
                               "errors": len(errs), "error_samples": errs[:5],
                               "crossed": sum(rep.get("crossed", 0) for rep in reports), "wall_s": round(wall, 2),
                               "edits_per_s": round(len(lat) / wall, 2) if wall else None,
                               "median_edit_s": round(statistics.median(lat), 4) if lat else None})
        first, last = out_rounds[0]["rss_after_mb"], out_rounds[-1]["rss_after_mb"]
        tab = tab_bytes(preset, imgs[0], edits)
        return {"clients": clients, "edits": edits, "rounds": rounds, "preset": preset, "models": models,
                "image_side": side, "max_sessions": max_sessions, "sessions_mb": sessions_mb or Tabs.DEFAULT_MB,
                "rounds_detail": out_rounds, "tab": tab,
                "errors": sum(r["errors"] for r in out_rounds), "crossed": sum(r["crossed"] for r in out_rounds),
                "growth_after_first_round_mb": round(last - first, 1),
                "app_log_errors": sum(" ERROR " in line for line in
                                      Path(proc.log_path).read_text(errors="replace").splitlines()),
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
                "command": " ".join(["python", "benchmarks/soak.py"] + sys.argv[1:])}
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def markdown_table(paths) -> str:
    return table([json.loads(Path(path).read_text()) for path in paths])


def table(docs) -> str:
    """The README's table of one soak run (a dict) or several (a list)."""
    lines = ["| run | round | edits | errors | crossed | RSS before | peak | after | edits/s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for d in [docs] if isinstance(docs, dict) else docs:
        bound = (f"IC_ZOO_MAX_SESSIONS={d['max_sessions']}" if d.get("max_sessions") else
                 f"default bounds ({d.get('sessions_mb', '?')} MB of tabs)")
        tag = f"{d['clients']} clients × {d['edits']} edits, {d['preset']} at {d['image_side']} px, {bound}"
        for r in d["rounds_detail"]:
            lines.append(f"| {tag if r['round'] == 1 else ''} | {r['round']} | {r['edits']} | {r['errors']} | "
                         f"{r['crossed']} | {r['rss_before_mb']:.0f} MB | {r['rss_peak_mb']:.0f} MB | "
                         f"{r['rss_after_mb']:.0f} MB | {r['edits_per_s']} |")
        if d["rounds"] > 1:
            lines.append(f"| | growth after round 1 | | | | | | **{d['growth_after_first_round_mb']:+.0f} MB** | |")
        if d.get("tab"):
            n = d["edits"]
            lines.append(f"| | one tab after {n} strokes (memsize) | | | | | | {d['tab'][f'after_{n}_strokes_mb']:.0f} MB | |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--edits", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--preset", choices=sorted(PRESETS), default="flower2d")
    p.add_argument("--side", type=int, default=256)
    p.add_argument("--max-sessions", type=int, default=None, help="IC_ZOO_MAX_SESSIONS for the app (default: the app's)")
    p.add_argument("--sessions-mb", type=int, default=None, help="IC_ZOO_SESSIONS_MB for the app (default: the app's)")
    p.add_argument("--settle", type=float, default=3.0)
    p.add_argument("--json", default=None)
    p.add_argument("--table", nargs="+", default=None, help="print the README table from saved JSON files")
    a = p.parse_args(argv)
    if a.table:
        print(markdown_table(a.table), end="")
        return 0
    d = run(a.clients, a.edits, a.rounds, a.preset, a.side, a.max_sessions, a.settle, sessions_mb=a.sessions_mb)
    if a.json:
        Path(a.json).write_text(json.dumps(d, indent=2) + "\n")
        Path(a.json).with_suffix(".md").write_text(table(d))
        print(markdown_table([a.json]), end="")
    else:
        print(json.dumps(d, indent=2))
    return 0 if d["errors"] == 0 and d["crossed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
