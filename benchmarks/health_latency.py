"""How long ``GET /healthz`` takes on a replica whose cores are busy: the numbers behind deploy/haproxy.cfg's
``timeout check`` / ``fall`` / ``rise`` and deploy/k8s.yaml's probe timings.

One replica (``python app.py``, study mode, the Flower2D trio, a SQLite log) on loopback. The health
endpoint is probed every ``--interval`` seconds, first on an idle machine, then while

* one CPU burner process per core (``--burners``, default: the core count) spins in pure Python, and
* ``--participants`` gradio_client participants send strokes back to back (every stroke inpaints and runs
  the three models with Grad-CAM: the replica's own Python and torch work).

    python benchmarks/health_latency.py --seconds 60 --json benchmarks/health_latency.json

The endpoint is probed on the app's port (:class:`ic_zoo.app.serve.HealthFront`, on Gradio's event loop) and
on ``IC_ZOO_HEALTH_PORT`` (:class:`ic_zoo.app.serve.HealthServer`, a thread of its own). Prints a table (probes, median, p95, max, probes over 1 s / 2 s, failures) per phase and per endpoint and
writes JSON (with the load average seen). Each probe is a fresh connection with a 10 s time-out, as a
proxy's check is.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import replicas as R  # noqa: E402  (the loopback cluster)

BURNER = "import itertools\nfor _ in itertools.count(): pass\n"
#: the floor: a Python process that does nothing but answer (what the scheduler alone costs at this load,
#: this prober's own share included)
CONTROL = """import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"{}")
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def probe(url: str, timeout: float = 10.0) -> tuple[float, int | None]:
    """(seconds, HTTP status or None) of one GET on a fresh connection."""
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            r.read()
            code = r.status
    except urllib.error.HTTPError as e:
        code = e.code
    except OSError:
        code = None
    return time.perf_counter() - t0, code


def stats(samples: list[tuple[float, int | None]]) -> dict:
    ok = sorted(t for t, c in samples if c is not None)
    q = (lambda p: ok[min(len(ok) - 1, int(p * len(ok)))]) if ok else (lambda p: None)
    return {"probes": len(samples), "failed": sum(c != 200 for _, c in samples),
            "median_ms": round(1000 * statistics.median(ok), 1) if ok else None,
            "p95_ms": round(1000 * q(0.95), 1) if ok else None,
            "max_ms": round(1000 * ok[-1], 1) if ok else None,
            "over_1s": sum(t > 1 for t, _ in samples), "over_2s": sum(t > 2 for t, _ in samples)}


def measure(folder: Path, seconds: float, burners: int, participants: int, interval: float, idle_s: float,
            models, log=print, health_port: bool = True) -> dict:
    hport = R.free_port() if health_port else None
    cluster = R.Cluster(folder, replicas=1, proxy=False, db=f"sqlite:///{folder / 'health.sqlite'}", models=models,
                        env={"IC_ZOO_HEALTH_PORT": str(hport)} if hport else None)
    procs: list[subprocess.Popen] = []
    stop = threading.Event()
    strokes = [0]
    errors: list[str] = []
    try:
        t0 = time.monotonic()
        cluster.start()
        log(f"replica ready in {time.monotonic() - t0:.1f} s")
        targets = {"/healthz": cluster.url(0) + "healthz"}
        if hport:  # the same state from a thread of its own (IC_ZOO_HEALTH_PORT)
            targets["IC_ZOO_HEALTH_PORT /healthz"] = f"http://127.0.0.1:{hport}/healthz"
        cport = R.free_port()
        procs.append(subprocess.Popen([sys.executable, "-c", CONTROL, str(cport)]))
        targets["control (bare server process)"] = f"http://127.0.0.1:{cport}/"
        R.wait_for(lambda: probe(targets["control (bare server process)"])[1] == 200, 10)

        def run_probes(duration: float) -> dict:
            seen = {k: [] for k in targets}
            end = time.monotonic() + duration
            while time.monotonic() < end:
                for k, url in targets.items():
                    seen[k].append(probe(url))
                time.sleep(interval)
            return seen

        idle = run_probes(idle_s)
        log(f"idle: {stats(idle['/healthz'])}")

        def participant(k: int) -> None:
            p = R.Participant(cluster.url(0), f"H{k}", cluster.secret, folder, size=cluster.size, seed=k)
            try:
                p.join()
                while not stop.is_set():
                    p.stroke()
                    strokes[0] += 1
            except Exception as exc:  # noqa: BLE001 - counted and reported
                if not stop.is_set():
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])

        procs += [subprocess.Popen([sys.executable, "-c", BURNER]) for _ in range(burners)]
        workers = [threading.Thread(target=participant, args=(k,), daemon=True) for k in range(participants)]
        for w in workers:
            w.start()
        time.sleep(min(10.0, seconds / 4))  # the participants joined, the burners run
        load0 = os.getloadavg()[0]
        loaded = run_probes(seconds)
        load1 = os.getloadavg()[0]
        stop.set()
        for w in workers:
            w.join(60)
        return {"idle": {k: stats(v) for k, v in idle.items()},
                "loaded": {k: stats(v) for k, v in loaded.items()},
                "loadavg_1min": [round(load0, 1), round(load1, 1)], "strokes": strokes[0],
                "errors": errors[:5], "burners": burners, "participants": participants,
                "interval_s": interval, "seconds": seconds}
    finally:
        stop.set()
        for p in procs:
            p.kill()
            p.wait()
        cluster.stop()


def table(doc: dict) -> str:
    rows = ["| phase | endpoint | probes | median ms | p95 ms | max ms | > 1 s | > 2 s | failed |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for phase in ("idle", "loaded"):
        for ep, s in doc["run"][phase].items():
            rows.append(f"| {phase} | `{ep}` | {s['probes']} | {s['median_ms']} | {s['p95_ms']} | {s['max_ms']} | "
                        f"{s['over_1s']} | {s['over_2s']} | {s['failed']} |")
    r = doc["run"]
    rows.append(f"\n{doc['machine']['cores']} cores; loaded: {r['burners']} burner(s) + {r['participants']} "
                f"participant(s) painting ({r['strokes']} strokes in {r['seconds']:.0f} s), load average "
                f"{r['loadavg_1min'][0]} -> {r['loadavg_1min'][1]}")
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--idle-seconds", type=float, default=5)
    p.add_argument("--burners", type=int, default=os.cpu_count() or 2, help="CPU burner processes (default: one per core)")
    p.add_argument("--participants", type=int, default=4)
    p.add_argument("--interval", type=float, default=0.25)
    p.add_argument("--preset", choices=sorted(R.PRESETS), default="flower2d")
    p.add_argument("--no-health-port", action="store_true", help="probe only the app's own port")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    doc = {"machine": {"cores": os.cpu_count(), "python": platform.python_version()},
           "command": "python benchmarks/health_latency.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    with tempfile.TemporaryDirectory(prefix="ic_zoo_health_") as tmp:
        doc["run"] = measure(Path(tmp), args.seconds, args.burners, args.participants, args.interval,
                             args.idle_seconds, R.PRESETS[args.preset],
                             log=lambda s: print(s, file=sys.stderr, flush=True),
                             health_port=not args.no_health_port)
    print(table(doc))
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
