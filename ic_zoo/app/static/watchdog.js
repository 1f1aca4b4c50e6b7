() => {
  if (window.__icZooWatchdog) return;
  const SENTENCE = __SENTENCE__, B = __BOUNDS__;
  const W = window.__icZooWatchdog = { tripped: null, pending: new Map(), early: new Map(), lastByte: 0, streams: 0 };
  const now = () => Date.now();
  function trip(why) {
    if (W.tripped) return;
    W.tripped = why;
    console.warn('ic_zoo watchdog: ' + why);
    const box = document.createElement('div');
    box.id = 'ic_reload_notice';
    box.setAttribute('role', 'alert');
    box.style.cssText = 'position:fixed;left:0;right:0;top:0;z-index:100000;padding:14px 18px;' +
      'background:#b91c1c;color:#fff;font-size:16px;text-align:center;box-shadow:0 2px 8px rgba(0,0,0,.3)';
    const text = document.createElement('span');
    text.textContent = SENTENCE + ' ';
    const btn = document.createElement('button');
    btn.textContent = 'Reload';
    btn.id = 'ic_reload_button';
    btn.style.cssText = 'margin-left:10px;padding:3px 14px;border-radius:6px;border:0;background:#fff;color:#b91c1c;font-weight:600;cursor:pointer';
    btn.onclick = () => window.location.reload();
    box.appendChild(text); box.appendChild(btn);
    document.body.appendChild(box);
  }
  const BAD = new Set([404, 502, 503, 504]);
  // an upload (a stroke's layers, an image) that the proxy cannot deliver (its replica died; a body too large
  // for the proxy to retry elsewhere) would leave the stroke unsent without a word
  const kind = (url) => url.includes('/queue/join') ? 'join' : url.includes('/queue/data') ? 'data'
    : url.includes('/gradio_api/file=') ? 'file' : /\/gradio_api\/upload(\?|$)/.test(url) ? 'upload' : null;
  let joins = 0;
  // the page's stream passes through a parser on its way to Gradio's reader: every message is read here
  // before Gradio sees it (a copy read on the side, with tee(), could lag behind, and lose its last
  // messages when Gradio aborts the stream once every event is answered)
  function watchStream(body) {
    W.streams += 1;
    W.lastByte = now();
    const dec = new TextDecoder();
    let buf = '';
    const parse = (value) => {
      W.lastByte = now();
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i); buf = buf.slice(i + 2);
        for (const line of block.split('\n')) {
          if (!line.startsWith('data:')) continue;
          let m; try { m = JSON.parse(line.slice(5)); } catch (e) { continue; }
          // Gradio's "Session not found" (the tab's session is not on this server) and "Server stopped"
          // come as this message in a 200 stream
          if (m && m.msg === 'unexpected_error') { trip('the stream said: ' + (m.message || 'unexpected error')); continue; }
          const p = m && m.event_id && W.pending.get(m.event_id);
          if (!p) {  // a message that came before this page read its join's answer (the join's event id)
            if (m && m.event_id) { W.early.set(m.event_id, m.msg); if (W.early.size > 256) W.early.delete(W.early.keys().next().value); }
            continue;
          }
          if (m.msg === 'process_completed') W.pending.delete(m.event_id);
          else { p.seen = now(); if (m.msg === 'process_starts') p.started = true; }
        }
      }
    };
    const ts = new TransformStream({ transform(chunk, ctl) { parse(chunk); ctl.enqueue(chunk); } });
    // the page ending the stream itself (an abort, a cancel: no reason or an AbortError) is a clean end;
    // a network error (the replica died, the proxy cut it) is a break
    body.pipeTo(ts.writable).then(() => ended('the event stream ended', false), (err) => {
      const own = !err || err.name === 'AbortError';
      ended(own ? 'the event stream ended' : 'the event stream broke', !own);
    });
    return ts.readable;
  }
  function ended(why, broke) {
    W.streams -= 1;
    // the stream closes itself once every event of the tab is answered; one left waiting never will be,
    // unless Gradio's page opens another stream for it: a stream that broke is told soon, one that ended
    // cleanly (Gradio may close it as a new event joins, and reopen it only later on a busy machine) only
    // if no stream came back within the quiet bound
    if (!broke) return;  // a clean end is left to the bounds: Gradio may close and reopen it around a slow event
    setTimeout(() => { if (W.pending.size && !W.streams) trip(why + ' with an event unanswered'); }, 1500);
  }
  const realFetch = window.fetch.bind(window);
  window.fetch = function (input, init) {
    const url = typeof input === 'string' ? input : (input && input.url) || String(input);
    const k = kind(url);
    if (!k || W.tripped) return realFetch(input, init);
    let key = null;
    if (k === 'join') { key = 'join#' + (++joins); W.pending.set(key, { t0: now(), seen: 0, started: false }); }
    return realFetch(input, init).then((r) => {
      if (BAD.has(r.status) || (k === 'file' && r.status === 403)) {
        if (key) W.pending.delete(key);
        trip(k + ' answered ' + r.status);
        return r;
      }
      if (k === 'join') {
        const p = W.pending.get(key);
        W.pending.delete(key);
        // the stream is read as Gradio reads it, so an event's messages (its answer even) may come before
        // this copy of the join's answer is read: they wait in W.early (else the event would look unanswered)
        if (r.ok && p) r.clone().json().then((j) => {
          if (!(j && j.event_id)) return;
          const e = W.early.get(j.event_id);
          W.early.delete(j.event_id);
          if (e === 'process_completed') return;
          if (e) { p.seen = now(); p.started = e !== 'estimation'; }
          W.pending.set(j.event_id, p);
        }, () => {});
        return r;
      }
      if (k === 'data' && r.ok && r.body) {
        return new Response(watchStream(r.body), { status: r.status, statusText: r.statusText, headers: r.headers });
      }
      return r;
    }, (err) => {
      if (key) W.pending.delete(key);
      if (!(err && err.name === 'AbortError')) trip(k + ' failed: ' + err);
      throw err;
    });
  };
  // an image of the page that this server cannot give (another replica made it, or it is gone)
  document.addEventListener('error', (e) => {
    const t = e.target;
    if (t && t.tagName === 'IMG' && String(t.currentSrc || t.src || '').includes('/gradio_api/file=')) trip('an image failed to load');
  }, true);
  setInterval(() => {
    if (W.tripped || !W.pending.size) return;
    const t = now();
    for (const p of W.pending.values()) {
      if (!p.seen && t - p.t0 > B.quiet * 1000) return trip('an event had no answer in ' + B.quiet + ' s');
      if (t - p.t0 > B.max * 1000) return trip('an event was not finished in ' + B.max + ' s');
    }
    if (W.streams && t - W.lastByte > B.silence * 1000) trip('the event stream was silent for ' + B.silence + ' s');
  }, 500);
}
