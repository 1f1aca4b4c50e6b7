const root = element.querySelector('.ic-paint');
const stage = root.querySelector('.ic-paint-stage');
const img = root.querySelector('.ic-paint-img');
const ink = root.querySelector('.ic-paint-ink');
const size = root.querySelector('.ic-paint-size');
const zoomEl = root.querySelector('.ic-paint-zoom');
const ctx = ink.getContext('2d');
let shown = null;           // the version of the image shown (value.v)
let pending = [];           // strokes sent and not yet acknowledged: {id, r, pts}
let current = null;         // the stroke being painted
let nextId = 1;
window.icZooBrush = parseInt(size.value, 10) || __SIZE__;
const scale = () => img.naturalWidth ? img.getBoundingClientRect().width / img.naturalWidth : 1;
function place() {          // the image as large as the stage holds it; the ink exactly over it
  if (img.naturalWidth) {
    const f = Math.min(stage.clientWidth / img.naturalWidth, stage.clientHeight / img.naturalHeight);
    img.style.width = Math.max(1, Math.floor(img.naturalWidth * f)) + 'px';
    img.style.height = Math.max(1, Math.floor(img.naturalHeight * f)) + 'px';
  }
  const s = stage.getBoundingClientRect(), b = img.getBoundingClientRect();
  const dpr = window.devicePixelRatio || 1;
  ink.style.left = (b.left - s.left) + 'px'; ink.style.top = (b.top - s.top) + 'px';
  ink.style.width = b.width + 'px'; ink.style.height = b.height + 'px';
  const w = Math.max(1, Math.round(b.width * dpr)), h = Math.max(1, Math.round(b.height * dpr));
  if (ink.width !== w || ink.height !== h) { ink.width = w; ink.height = h; }
  zoomEl.textContent = Math.round(scale() * 100) + '%';
  redraw();
}
function drawStroke(st) {
  const k = (ink.width / (img.naturalWidth || 1));
  ctx.strokeStyle = 'rgba(255, 0, 0, 0.75)'; ctx.fillStyle = ctx.strokeStyle;
  ctx.lineCap = 'round'; ctx.lineJoin = 'round'; ctx.lineWidth = 2 * st.r * k;
  const p = st.pts;
  if (p.length === 2) { ctx.beginPath(); ctx.arc(p[0] * k, p[1] * k, st.r * k, 0, 2 * Math.PI); ctx.fill(); return; }
  ctx.beginPath(); ctx.moveTo(p[0] * k, p[1] * k);
  for (let i = 2; i < p.length; i += 2) ctx.lineTo(p[i] * k, p[i + 1] * k);
  ctx.stroke();
}
function redraw() {
  root.classList.toggle('ic-busy', pending.length > 0);  // sent, not yet answered: the busy sign
  ctx.clearRect(0, 0, ink.width, ink.height);
  for (const st of pending) drawStroke(st);
  if (current) drawStroke(current);
}
const send = () => {
  window.__icZooSent = performance.now();  // (the latency benchmark's stage boundary)
  const v = { v: shown, w: img.naturalWidth, h: img.naturalHeight, strokes: pending.slice(-__MAXSTROKES__) };
  window.__icZooSentBytes = JSON.stringify(v).length;
  props.value = v;
  trigger('submit');
};
function show(v) {
  if (!v || typeof v !== 'object' || v.strokes) return;  // (its own value, with strokes, is not an answer)
  if (typeof v.ack === 'number') pending = pending.filter((s) => s.id > v.ack);
  // a stroke painted while the last one was processed, which that answer did not take: sent now (the
  // server applies each id once, so a second send of the same strokes changes nothing)
  if (pending.length && v.src) setTimeout(send, 0);
  if (v.src === null) { root.classList.remove('has-image'); img.removeAttribute('src'); shown = null;
                        pending = []; redraw(); return; }
  if (v.src && v.v !== shown) {
    shown = v.v;
    window.__icZooGotBytes = v.src.length;
    img.onload = () => { root.classList.add('has-image'); root.dataset.v = String(shown); place(); };
    img.src = v.src;
  } else { redraw(); }
}
const at = (e) => {
  const b = img.getBoundingClientRect(), k = img.naturalWidth / b.width;
  return [Math.round((e.clientX - b.left) * k * 2) / 2, Math.round((e.clientY - b.top) * k * 2) / 2];
};
ink.addEventListener('pointerdown', (e) => {
  if (e.button !== 0 || !img.naturalWidth) return;
  e.preventDefault();
  ink.setPointerCapture(e.pointerId);
  current = { id: nextId++, r: window.icZooBrush, pts: at(e) };
  redraw();
});
ink.addEventListener('pointermove', (e) => {
  if (!current) return;
  const [x, y] = at(e), p = current.pts;
  if (x === p[p.length - 2] && y === p[p.length - 1]) return;
  if (p.length < 2 * __MAXPTS__) { p.push(x, y); }
  redraw();
});
const finish = () => {
  if (!current) return;
  pending.push(current); current = null;
  redraw();
  send();
};
ink.addEventListener('pointerup', finish);
ink.addEventListener('pointercancel', finish);
size.addEventListener('input', () => { window.icZooBrush = parseInt(size.value, 10) || window.icZooBrush;
  document.querySelectorAll('#brush_label .ic-brush').forEach((s) => { s.textContent = String(window.icZooBrush); }); });
window.addEventListener('resize', place);
new ResizeObserver(() => { if (img.naturalWidth) place(); }).observe(stage);
// an error's toast: what the server did not apply is not left drawn
new MutationObserver(() => {
  if (pending.length && document.querySelector('.toast-body.error, [data-testid="toast-body"].error')) {
    pending = []; redraw();
  }
}).observe(document.body, { subtree: true, childList: true });
watch('value', () => show(props.value));
show(props.value);
