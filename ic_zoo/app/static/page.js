() => {
  if (window.__icZooKeys) return;
  window.__icZooKeys = true;
  const style = document.createElement('style');
  style.textContent = __CSS__;
  document.head.appendChild(style);
  const canvas = () => document.querySelector('.ic-canvas');
  const tool = (name) => canvas() && canvas().querySelector(`button[aria-label="${name}"]`);
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  window.icZooBrush = __BRUSH__;
  const showBrush = (v) => {
    const el = document.querySelector('#brush_label');
    if (el) el.querySelectorAll('.ic-brush').forEach((s) => { s.textContent = String(v); });
  };
  async function setBrush(delta) {
    const own = document.querySelector('.ic-paint-size');  // the page's canvas (painter): its own slider
    if (own) {
      const v = Math.max(1, Math.min(100, (parseInt(own.value, 10) || window.icZooBrush) + delta));
      own.value = String(v);
      own.dispatchEvent(new Event('input', { bubbles: true }));
      window.icZooBrush = v;
      showBrush(v);
      return;
    }
    // the size lives in the canvas's own size picker: open it, set it, and give the drawing tool back
    // (an open picker would eat the next stroke's first press)
    const active = ['Erase', 'Brush'].find((n) => tool(n) && tool(n).classList.contains('highlight')) || 'Brush';
    let range = canvas() && canvas().querySelector('.size_picker input[type=range]');
    if (!range) {
      const b = tool('Brush Size');
      if (!b) return;
      b.click(); await sleep(60);
      range = canvas().querySelector('.size_picker input[type=range]');
    }
    if (!range) return;
    const v = Math.max(1, Math.min(100, (parseInt(range.value, 10) || window.icZooBrush) + delta));
    range.value = String(v);
    range.dispatchEvent(new Event('input', { bubbles: true }));
    range.dispatchEvent(new Event('change', { bubbles: true }));
    window.icZooBrush = v;
    showBrush(v);
    // a full press (the picker closes on a pointer press outside it, which .click() alone is not)
    const back = tool(active);
    if (back) {
      for (const t of ['pointerdown', 'mousedown', 'pointerup', 'mouseup'])
        back.dispatchEvent(new PointerEvent(t, { bubbles: true, cancelable: true }));
      back.click();
    }
  }
  let queue = Promise.resolve();
  document.addEventListener('keydown', (e) => {
    const t = e.target;
    const typing = t && (t.isContentEditable || (/^(INPUT|TEXTAREA|SELECT)$/).test(t.tagName)) &&
                   !(t.type === 'range');
    if (typing) return;
    const mod = e.ctrlKey || e.metaKey;
    const key = (e.key || '').toLowerCase();
    if (mod && key === 'z') {
      e.preventDefault();
      const b = document.querySelector(e.shiftKey ? '#redo' : '#undo');
      if (b) b.click();
    } else if (mod && key === 'y') {
      e.preventDefault();
      const b = document.querySelector('#redo');
      if (b) b.click();
    } else if (!mod && (e.key === '[' || e.key === ']')) {
      e.preventDefault();
      const d = e.key === '[' ? -3 : 3;
      queue = queue.then(() => setBrush(d));  // one at a time: each reads the size the last one set
    }
  }, true);
  // click-select: Shift-clicks collect several regions into one selection, applied on releasing Shift
  let shiftPicked = false;
  const collectBox = () => document.querySelector('#collect input[type=checkbox]');
  document.addEventListener('click', (e) => {
    if (!e.shiftKey || !e.target.closest || !e.target.closest('#click_select')) return;
    const box = collectBox();
    if (box && !box.checked) box.click();
    shiftPicked = true;
  }, true);
  const idle = () => {  // no progress on the status line (an error's tracker holds a clear button instead)
    const t = document.querySelector('#status [data-testid="status-tracker"]:not(.hide)');
    return !t || !!t.querySelector('.clear-status');
  };
  // a failed event leaves a red "Error" and a clear button on every output it had (Gradio's tracker), long
  // after its sentence's toast closed: they go with the toast (closed by the person, or after its time)
  const errorToast = () => document.querySelector('.toast-body.error, [data-testid="toast-body"].error');
  let clearing = null;
  const clearErrors = () => {
    if (clearing) return;
    clearing = setInterval(() => {
      if (errorToast()) return;
      document.querySelectorAll('[data-testid="status-tracker"] .clear-status button').forEach((b) => b.click());
      clearInterval(clearing);
      clearing = null;
    }, 300);
  };
  new MutationObserver(() => {
    if (document.querySelector('[data-testid="status-tracker"] .clear-status')) clearErrors();
  }).observe(document.body, { subtree: true, childList: true });
  document.addEventListener('keyup', async (e) => {
    if (e.key !== 'Shift' || !shiftPicked) return;
    shiftPicked = false;
    for (let i = 0; i < 100 && !idle(); i++) await sleep(50);  // the last click's event first
    const b = document.querySelector('#remove_selected');
    if (b) b.click();
    const box = collectBox();
    if (box && box.checked) box.click();
  });
}
