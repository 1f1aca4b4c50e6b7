"""Study mode's admin page (``/admin``): progress, the export and the live analysis, behind a password
whose wrong guesses are logged and throttled."""
from __future__ import annotations

import hmac
import logging
import math
import shutil
import tempfile
import time
from pathlib import Path

import gradio as gr

from ...errors import IcZooError
from .. import jobs
from ..guard import guarded
from .pages import PARTICIPANT_COLUMNS, TASK_COLUMNS, _digest, _zip_folder

log = logging.getLogger("ic_zoo.study")


class AdminHandlers:
    """The admin page's handlers of ``StudyApp``."""

    # -- the researchers' page -------------------------------------------------------------------------
    def admin_ok(self, password, request):
        """Every admin handler starts here: an address that must wait (security.AdminThrottle) is told how
        long before its password is looked at; a wrong one is logged (the address, never the password) and
        counted."""
        want = self.study.password()
        if not want:
            raise gr.Error(f"The admin page is disabled: set the environment variable "
                           f"{self.study.admin_password_env} before starting the app.", print_exception=False)
        host = (request.client.host if request is not None and request.client else None) or "unknown"
        throttle = self.throttle  # the address is the TCP peer, or what a trusted proxy says (serve.trust_proxies)
        wait = throttle.wait_for(host)
        if wait > 0:
            raise gr.Error(f"Too many wrong passwords: try again in {math.ceil(wait)} s.", print_exception=False)
        if not password or not hmac.compare_digest(_digest(password), _digest(want)):  # constant time
            n = throttle.failed(host)
            log.warning("admin: wrong password from %s (%d in a row; the next try waits %.0f s)", host, n,
                        throttle.delay(n))
            raise gr.Error("Wrong password.", print_exception=False)
        throttle.succeeded(host)

    def on_admin(self, password, request: gr.Request):
        import pandas as pd

        self.admin_ok(password, request)
        parts = self.store.progress()
        tasks = self.store.task_progress()
        done = sum(1 for p in parts if p["finished"])
        summary = (f"**{self.study.title}** (key `{self.study.key}`, log: {self.log_name}): {len(parts)} participant(s), "
                   f"{done} finished, {self.n_tasks} task(s).")
        conds = self.store.condition_counts()
        if conds:  # assigned in turn by the log's counter: the counts differ by at most one (before withdrawals)
            summary += " Conditions: " + ", ".join(f"**{c['condition']}** {c['participants']} ({c['finished']} "
                                                   "finished)" for c in conds) + "."
        return summary, pd.DataFrame(parts, columns=PARTICIPANT_COLUMNS), pd.DataFrame(tasks, columns=TASK_COLUMNS)

    def export_job(self, args: dict, progress) -> bytes:
        """The log's export (CSV, JSON, masks) as a job's result: one zip."""
        from ...study.research import export

        self._own_study(args)
        d = Path(tempfile.mkdtemp(prefix="ic_zoo_study_export_"))
        try:
            progress(0.1, "exporting the log")
            export(self.store.engine, d / "export", self.study.key)
            return jobs.pack({"name": f"study_{self.study.key}.zip"}, {"export.zip": _zip_folder(d / "export")})
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def analysis_job(self, args: dict, progress) -> bytes:
        """The humans-vs-models report of the log as a job's result: its HTML body and its zip. It holds one
        model slot, so participants keep the others."""
        from ...study.analysis import analyze, report_body

        self._own_study(args)
        d = Path(tempfile.mkdtemp(prefix="ic_zoo_study_analysis_"))
        try:
            progress(0.05, "analysing the log")
            with self.model_slots:
                doc = analyze(self.store.engine, d / "analysis", self.study.key, n_boot=300, device=self.device,
                              log=lambda s: log.info("analysis: %s", s), cache=self.analysis_cache)
            when = time.strftime("%H:%M:%S")
            body = f"<p>Computed at {when} from the log as it was then.</p>" + report_body(doc, doc.get("figures", {}))
            return jobs.pack({"body": body, "name": f"analysis_{self.study.key}.zip"},
                             {"analysis.zip": _zip_folder(d / "analysis")})
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def _own_study(self, args: dict) -> None:
        if args.get("study") != self.study.key:
            raise IcZooError(f"This server runs study {self.study.key}, not {args.get('study')}.")

    def _job_file(self, kind: str, progress=None) -> tuple[dict, str]:
        """Run (or reuse) the job of ``kind`` on the log as it is now; its doc and its zip, written here
        (a file this replica serves, whichever replica computed it)."""
        args = {"study": self.study.key, "log": self.store.log_version()}
        key = self.jobs.submit(kind, args)
        st = self.jobs.wait(key, progress)
        doc, files = jobs.unpack(st.result)
        d = Path(tempfile.mkdtemp(prefix="ic_zoo_study_job_"))
        path = d / doc["name"]
        path.write_bytes(next(iter(files.values())))
        return doc, str(path)

    def on_admin_export(self, password, request: gr.Request):
        self.admin_ok(password, request)
        return self._job_file("study_export")[1]

    def on_admin_analysis(self, password, request: gr.Request, progress=gr.Progress()):
        """The humans-vs-models report of the log as it is now (model maps kept between refreshes)."""
        self.admin_ok(password, request)
        doc, path = self._job_file("study_analysis", lambda f, n: progress(f, desc=n))
        return doc["body"], path

    def admin_page(self) -> None:
        """The /admin page (by URL only): progress and the log's export, behind the admin password."""
        import pandas as pd

        gr.Markdown(f"# {self.study.title}: progress (researchers only)")
        pw = gr.Textbox(label="Admin password", type="password", elem_id="admin_password")
        with gr.Row():
            show = gr.Button("Show progress", elem_id="admin_show")
            dl = gr.Button("Download the log (CSV, JSON, masks)", elem_id="admin_export")
        summary = gr.Markdown(elem_id="admin_summary")
        # their columns before the password is given (an empty Dataframe shows placeholder columns "1 2 3")
        per_p = gr.Dataframe(pd.DataFrame(columns=PARTICIPANT_COLUMNS), label="Per participant", interactive=False,
                             elem_id="admin_participants")
        per_t = gr.Dataframe(pd.DataFrame(columns=TASK_COLUMNS), label="Per task", interactive=False,
                             elem_id="admin_tasks")
        zip_file = gr.File(label="Export", interactive=False)
        show.click(guarded(self.on_admin), pw, [summary, per_p, per_t], api_name="admin_progress")
        dl.click(guarded(self.on_admin_export), pw, zip_file, api_name="admin_export")
        gr.Markdown("## Humans vs models\nWhat the participants removed against where each model looks (the "
                    "report of `python -m ic_zoo study analyze`), from the log as it is now.")
        with gr.Row():
            run = gr.Button("Analyse now", elem_id="admin_analyse")
            live = gr.Checkbox(label="Update every minute while this page is open", value=False,
                               elem_id="admin_live")
        report = gr.HTML(elem_id="admin_report")
        report_zip = gr.File(label="The analysis (CSV, JSON, figures, report.html)", interactive=False)
        timer = gr.Timer(60, active=False)
        live.change(lambda on: gr.Timer(active=bool(on)), live, timer, api_visibility="private")
        run.click(guarded(self.on_admin_analysis), pw, [report, report_zip], api_name="admin_analysis",
                  **self.common)
        timer.tick(guarded(self.on_admin_analysis), pw, [report, report_zip], api_visibility="private", **self.common)
