"""The chaos benchmark's small form (benchmarks/chaos.py, issue 33 item 5): 2 replicas behind the project's
HAProxy config and one PostgreSQL, a few participants painting, a CPU burner per core, a kill -9 of one
replica and a SIGSTOP of the other (shorter than HAProxy's time to DOWN: its participants wait, they are
not moved), at fixed stroke counts. Every acknowledged stroke is logged exactly once, every participant's
log replays to the image its client last saw, no client waits 30 s without an answer or a sentence, no
replica that was not faulted is marked DOWN, and the killed replica's participants resume and finish."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import chaos as C  # noqa: E402


@pytest.mark.slow
def test_a_kill_9_and_a_pause_under_cpu_load_lose_nothing_hang_no_one_and_the_log_replays_what_was_seen(
        pg_server, tmp_path):
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (.ci/run installs Debian's haproxy package)")
    r = C.run_chaos(tmp_path, pg_server, replicas=2, participants=4, strokes=6, models=("flower2d/squeezenet",),
                    size=96, burn=os.cpu_count() or 1, pause=8.0, faults=("KILL", "STOP"), restart=False,
                    log=lambda s: print(s, file=sys.stderr, flush=True), app_users=2, slow_every=2)
    print(C.table(r))
    kinds = [f["kind"] for f in r["faults"]]
    assert kinds == ["KILL", "STOP"], r["faults"]
    kill = r["faults"][0]
    assert kill["exit_code"] == -9
    assert r["hung"] == [], r["hung"]
    assert r["lost"] == [] and r["duplicated"] == [], (r["lost"], r["duplicated"])
    # every stroke in the log once (one whose answer was lost to a fault is logged, and shown after the reload)
    assert r["logged_strokes"] == 4 * 6 and r["acked"] + r["unacked_logged"] == 4 * 6 and r["seq_gaps"] == []
    assert r["replayed"] == 4 and r["mismatches"] == [], r["mismatches"]
    assert r["controls"] == 4 and r["controls_caught"] == 4  # a log one stroke short is caught
    assert r["false_downs"] == [], (r["false_downs"], r["faults"])
    assert r["stats_errors"] < 5
    assert r["finished"] == 4 and r["unfinished"] == []
    # the killed replica's participants resumed elsewhere and finished, every failed call told in a sentence
    # (the clients are ic_zoo.app.client's: a broken stream or a proxy's 502 is its sentence, as in a page)
    assert kill["finished"] == kill["pinned"]
    assert r["untold"] == [] and r["in_flight_broken"] == 0, r["untold"]
    assert kill["told"] == kill["hit"], kill
    # the comparison app's users on their own replicas: nothing hung or lost, each one's work rebuilt from its
    # record on whatever replica equal to its last canvas (the control caught), every slow-maps job done
    a = r["app"]
    assert [f["kind"] for f in a["faults"]] == ["KILL", "STOP"]
    assert a["hung"] == [] and a["lost"] == [] and a["duplicated"] == [], a
    assert a["untold"] == [], a["untold"]
    assert a["finished"] == 2 and a["rebuilt"] == 2 and a["mismatches"] == [], a["mismatches"]
    assert a["controls"] == 2 and a["controls_caught"] == 2
    assert a["false_downs"] == []
    assert a["slow_asked"] >= 4 and a["jobs"] >= 1 and a["jobs_done"] == a["jobs"], a["jobs_states"]
    # the table is made from the result
    assert f"transitions: all / false (a replica not faulted) | {len(r['downs'])} / 0 |" in C.table(r)
    assert f"| {a['slow_asked']} / {a['slow_answered']} / {a['jobs_done']} of {a['jobs']} /" in C.table(r)
