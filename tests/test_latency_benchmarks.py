"""The latency benchmarks' small forms (issue 35): the API's (gradio_client, plain HTTP, /stroke) and the
page's (headless Chromium, the stroke's stages, the budget) run end to end on two strokes, exit cleanly (the
page's used to abort at exit with "terminate called without an active exception") and write the JSON their
tables are made from. Their numbers are not checked here: timings belong to the benchmarks."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True,
                          timeout=600, env=env, cwd=ROOT)


@pytest.mark.slow
def test_the_api_benchmark_small_form(tmp_path):
    import app_latency

    out = tmp_path / "api.json"
    r = _run("app_latency.py", "--preset", "flower2d", "--strokes", "2", "--json", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads(out.read_text())
    for key in ("median_s", "median_http_s", "median_http_server_s", "median_stroke_s", "median_edit_server_s",
                "median_ic_s", "median_ic_server_s"):
        assert d[key] > 0, key
    assert all(math.isfinite(d[k]) and d[k] > 0
               for k in ("edit_over_server", "http_over_server", "stroke_over_server", "ic_over_server"))
    row = app_latency.markdown_table([out]).splitlines()[-1]
    assert row.startswith("| flower2d/squeezenet") and row.count("|") == 16 and "n/a" not in row


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")),
                    reason="needs Debian's chromium (.ci/run installs it)")
def test_the_page_benchmark_small_form_exits_cleanly(tmp_path):
    import browser_latency

    out = tmp_path / "page.json"
    r = _run("browser_latency.py", "--preset", "flower2d", "--strokes", "2", "--json", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "terminate called" not in r.stderr
    d = json.loads(out.read_text())
    assert len(d["per_stroke"]) == 2 and set(browser_latency.STAGES) <= set(d["stages_ms"])
    assert 0 < d["median_status_s"] <= d["median_columns_s"]  # the status line comes first, in the same event
    assert d["budget"] == browser_latency.budget(d)
    stroke = d["per_stroke"][0]
    status = sum(stroke[k] for k in browser_latency.STATUS_STAGES)
    assert status > 0 and stroke["maps and columns"] > 0  # the second step timed apart
    assert browser_latency.stage_table(d).count("\n") == len(browser_latency.STAGES) + 5
