"""Study mode's arrival: a participant arrives by a link (signed, or an id kept in the browser), reads the
consent text and agrees (nothing is recorded before), or resumes where they were."""
from __future__ import annotations

import logging

import gradio as gr

from ...study.security import issue, new_id, verify
from ..serve import client_address
from .pages import (BAD_ID, BAD_LINK, CLIENT_TIME_JS, MTURK_PREVIEW_NOTE, NO_PLATFORM_ID, PLATFORM_LINK,
                    REDIRECT_JS, TOO_MANY, TOO_MANY_HERE, WITHDRAWN, WITHDRAWN_BEFORE, StudyState)

log = logging.getLogger("ic_zoo.study")


class ConsentHandlers:
    """The arrival and consent handlers of ``StudyApp``."""

    # -- arriving: the link, the consent -----------------------------------------------------------------
    def on_load(self, stored, request: gr.Request):
        st = StudyState()
        params = dict(request.query_params) if request is not None else {}
        if self.study.recruitment is not None:  # the platform's id in the URL, not the study's own links
            return self._from_platform(st, params, request)
        if "participant" in params:
            issued = params.get("participant")
            code = verify(self.link_secret, issued)
            if code is None:
                return self.screen(st, BAD_ID if self.link_secret is None else BAD_LINK)
        else:  # the id this browser was given before, or a new random one
            issued, code = stored, verify(self.link_secret, stored)
            if code is None:
                code = new_id()
                issued = code if self.link_secret is None else issue(self.link_secret, code)
        st.code = issued  # shown on the consent screen and sent back with the consent, as issued
        self.sess_id(request, st)
        row = self.store.participant(code)
        if row is None:
            return self.screen(st, "", stored=issued)
        return self._enter(st, row, None, self.sess_id(request), issued, resumed=True)

    def _from_platform(self, st, params, request):
        rec = self.study.recruitment
        if rec.is_preview(params):  # MTurk's preview: the consent text only, nothing recorded
            return self.screen(st, MTURK_PREVIEW_NOTE)
        pid = params.get(rec.id_param)
        code = rec.participant_code(pid, self.link_secret or self.study.key)
        if code is None:
            return self.screen(st, NO_PLATFORM_ID.format(param=rec.id_param))
        st.code, st.platform_id, st.platform = code, str(pid).strip(), rec.params(params)
        st.platform_submit = rec.submit_to(params)  # an MTurk HIT's submission URL, "" for the others
        self.sess_id(request, st)
        row = self.store.participant(code)  # the same platform id resumes: never a second participant
        if row is None:
            return self.screen(st, "")
        return self._enter(st, row, None, self.sess_id(request), None, resumed=True)

    def _enter(self, st, row, client_time, session, stored, resumed):
        if row.get("withdrawn_at") is not None:  # a flagged withdrawal: nothing more is recorded for this id
            st.withdrawn = WITHDRAWN_BEFORE
            return self.screen(st)
        st.participant = row
        st.condition = self.study.condition_of(row["ordinal"])
        st.task_index = row["task_index"]
        if st.task_index < self.n_tasks:
            self.open_task(st, client_time, session)
        note = "Welcome back: you continue where you left off." if resumed and st.task_index < self.n_tasks else ""
        return self.screen(st, note, stored=stored)

    def on_consent(self, t, code, st, request: gr.Request):
        st = st if isinstance(st, StudyState) else StudyState()
        if self.study.recruitment is not None:  # only the id the platform's link gave this tab
            if st.code is None or code != st.code:
                raise gr.Error(PLATFORM_LINK, print_exception=False)
            issued = code
        else:
            issued, code = code, verify(self.link_secret, code)
        if code is None:
            raise gr.Error(BAD_ID if self.link_secret is None else BAD_LINK, print_exception=False)
        st.code = issued
        self.sess_id(request, st)
        ip = request.client.host if (self.study.log_ip and request is not None and request.client) else None
        existed = self.store.participant(code) is not None
        if not existed:  # refused before the log: no Latin-square row is used
            host = client_address(request)  # None behind an untrusted proxy: the global cap alone
            if host is not None and not self.joins_per_client.take(host):
                raise gr.Error(TOO_MANY_HERE, print_exception=False)
            if not self.joins.take():
                if host is not None:
                    self.joins_per_client.give_back(host)
                raise gr.Error(TOO_MANY, print_exception=False)
        row = self.store.consent(code, ip=ip, client_time=self.client_ms(t), session=self.sess_id(request),
                                 extra=st.platform or None)
        return self._enter(st, row, self.client_ms(t), self.sess_id(request), issued, resumed=existed)

    def on_withdraw(self, t, st, request: gr.Request):
        """The participant withdraws (the button after consent): as the study file says, their rows are
        deleted or flagged, an audit row records that it happened (``StudyStore.withdraw``); the page then
        shows only the sentence and the browser forgets the id."""
        st = st if isinstance(st, StudyState) else StudyState()
        if st.participant is None:
            raise gr.Error("There is nothing to withdraw: this page has not given consent.", print_exception=False)
        with st.lock:
            self.store.withdraw(st.participant["code"], how="page")
            st.participant, st.withdrawn = None, WITHDRAWN[self.study.withdrawal]
            st.release("withdrawn")
        return self.screen(st)

    def wire_withdrawal(self) -> None:
        ui = self.ui
        ui.withdraw_btn.click(self.held(self.on_withdraw), [ui.client_time, ui.state], ui.screen_outputs(),
                              api_name="withdraw", js=CLIENT_TIME_JS, **self.common)

    def wire_arrival(self, demo: gr.Blocks) -> None:
        ui = self.ui
        demo.load(self.held(self.on_load), [ui.stored], ui.screen_outputs(), api_visibility="private",
                  show_progress_on=[ui.consent.pid_note], **self.common).then(
            None, [ui.redirect], None, js=REDIRECT_JS, api_visibility="private", queue=False)
        ui.consent.agree.click(self.held(self.on_consent), [ui.client_time, ui.consent.pid_box, ui.state],
                               ui.screen_outputs(), api_name="consent", js=CLIENT_TIME_JS,
                               show_progress_on=[ui.consent.pid_note], **self.common)
