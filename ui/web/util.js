// Small helpers shared by the pages: building DOM safely (text is never parsed
// as HTML), formatting sizes and times, messages and dialogs.

/** Create an element: h('button', {class: 'primary', onclick: fn}, 'Save'). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key === 'value') el.value = value;
    else if (key === 'checked' || key === 'selected' || key === 'disabled') el[key] = true;
    else el.setAttribute(key, value === true ? '' : value);
  }
  append(el, children);
  return el;
}

/** Replace an element's children; like replaceChildren but flattens arrays and drops null/false. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** An inline icon from the fixed set in ICONS (static markup, never data). */
export function icon(name) {
  const span = document.createElement('span');
  span.className = 'icon';
  span.setAttribute('aria-hidden', 'true');
  span.innerHTML = ICONS[name] || '';
  const svgEl = span.firstElementChild;
  if (!svgEl) return span;
  svgEl.setAttribute('class', `ico ico-${name}`);
  svgEl.setAttribute('aria-hidden', 'true');
  svgEl.setAttribute('focusable', 'false');
  return svgEl;
}

const svg = (body) => `<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round">${body}</svg>`;
export const ICONS = {
  logo: `<svg viewBox="0 0 32 32"><rect x="3" y="7" width="26" height="18" rx="4" fill="#0a6c74"/><rect x="8" y="3" width="16" height="6" rx="1.5" fill="#3fb5bd"/><path d="M10 16.5l4 4 8-8" stroke="#fff" stroke-width="2.6" fill="none" stroke-linecap="round" stroke-linejoin="round"/></svg>`,
  overview: svg('<path d="M3 12l9-8 9 8"/><path d="M5 10v10h14V10"/>'),
  jobs: svg('<rect x="3" y="4" width="18" height="16" rx="2"/><path d="M7 9h10M7 13h10M7 17h6"/>'),
  drives: svg('<rect x="3" y="13" width="18" height="7" rx="2"/><path d="M5 13l2-8h10l2 8"/><circle cx="17" cy="16.5" r="1"/>'),
  restore: svg('<path d="M3 12a9 9 0 1 0 3-6.7"/><path d="M3 4v5h5"/><path d="M12 8v4l3 2"/>'),
  history: svg('<path d="M4 6h16M4 12h16M4 18h10"/>'),
  prefs: svg('<circle cx="12" cy="12" r="3"/><path d="M19.4 15a1.7 1.7 0 0 0 .3 1.8l.1.1a2 2 0 1 1-2.8 2.8l-.1-.1a1.7 1.7 0 0 0-1.8-.3 1.7 1.7 0 0 0-1 1.5V21a2 2 0 1 1-4 0v-.1a1.7 1.7 0 0 0-1.1-1.5 1.7 1.7 0 0 0-1.8.3l-.1.1a2 2 0 1 1-2.8-2.8l.1-.1a1.7 1.7 0 0 0 .3-1.8 1.7 1.7 0 0 0-1.5-1H3a2 2 0 1 1 0-4h.1a1.7 1.7 0 0 0 1.5-1.1 1.7 1.7 0 0 0-.3-1.8l-.1-.1a2 2 0 1 1 2.8-2.8l.1.1a1.7 1.7 0 0 0 1.8.3H9a1.7 1.7 0 0 0 1-1.5V3a2 2 0 1 1 4 0v.1a1.7 1.7 0 0 0 1 1.5 1.7 1.7 0 0 0 1.8-.3l.1-.1a2 2 0 1 1 2.8 2.8l-.1.1a1.7 1.7 0 0 0-.3 1.8V9a1.7 1.7 0 0 0 1.5 1H21a2 2 0 1 1 0 4h-.1a1.7 1.7 0 0 0-1.5 1z"/>'),
  folder: svg('<path d="M3 7a2 2 0 0 1 2-2h4l2 2h8a2 2 0 0 1 2 2v8a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2z"/>'),
  file: svg('<path d="M14 3H7a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h10a2 2 0 0 0 2-2V8z"/><path d="M14 3v5h5"/>'),
  link: svg('<path d="M10 14a5 5 0 0 0 7 0l3-3a5 5 0 0 0-7-7l-1 1"/><path d="M14 10a5 5 0 0 0-7 0l-3 3a5 5 0 0 0 7 7l1-1"/>'),
  shield: svg('<path d="M12 3l8 3v6c0 5-3.5 8-8 9-4.5-1-8-4-8-9V6z"/><path d="M8.5 12l2.5 2.5 4.5-5"/>'),
  plug: svg('<path d="M9 2v6M15 2v6"/><path d="M6 8h12v3a6 6 0 0 1-12 0z"/><path d="M12 17v5"/>'),
};

let homeFolder = null;
/** Tell showPath where the user's home folder is (from the api's info). */
export function setHome(home, sep) { homeFolder = home ? { home, sep: sep || '/' } : null; }

/** A path as people read it: "~/Documents" for folders in the home folder. */
export function showPath(path) {
  if (!path || !homeFolder) return path || '';
  const { home, sep } = homeFolder;
  if (path === home) return '~';
  return path.startsWith(home + sep) ? `~${sep}${path.slice(home.length + 1)}` : path;
}

const UNITS = ['B', 'KB', 'MB', 'GB', 'TB'];
/** 1536 -> "1.5 KB" (decimal units, like file managers). */
export function bytes(n) {
  if (n === null || n === undefined || isNaN(n)) return '–';
  let value = Number(n);
  let unit = 0;
  while (value >= 1000 && unit < UNITS.length - 1) { value /= 1000; unit += 1; }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 1 : 0)} ${UNITS[unit]}`;
}

/** "3 files, 1.2 MB" for what a run copied, or "nothing new" when it copied nothing. */
export function copied(files, size) {
  if (!files) return 'nothing new';
  return `${plural(files, 'file')}, ${bytes(size)}`;
}

/** The one plural helper of the window (core/agent/words.py plural in Python): "1 file", "43 files". */
export function plural(n, word, many) {
  return `${count(n)} ${Number(n) === 1 ? word : (many || `${word}s`)}`;
}

/** "12 GB free of 32 GB", or "size unknown" when the file system does not say (total 0). */
export function freeOf(volume) {
  return volume && volume.total ? `${bytes(volume.free)} free of ${bytes(volume.total)}` : 'size unknown';
}

/** A message as a sentence: one final full stop, never two ("Prompt dismissed." stays as it is). */
export function sentence(text) {
  const t = String(text || '').trim();
  return !t || /[.!?…]$/.test(t) ? t : `${t}.`;
}

export function count(n) {
  return n === null || n === undefined ? '–' : Number(n).toLocaleString();
}

function toDate(value) {
  if (!value) return null;
  if (typeof value === 'number') return new Date(value > 1e12 ? value : value * 1000);
  const d = new Date(value);
  return isNaN(d) ? null : d;
}

/** A local date and time, e.g. "Sun 22 Nov, 14:30". */
export function when(value) {
  const d = toDate(value);
  if (!d) return '–';
  const sameYear = d.getFullYear() === new Date().getFullYear();
  // A 24-hour clock, as schedules are written ("daily at 12:00"), never "12:00 PM".
  return d.toLocaleString(undefined, {
    weekday: 'short', day: 'numeric', month: 'short', year: sameYear ? undefined : 'numeric',
    hour: '2-digit', minute: '2-digit', hourCycle: 'h23',
  });
}

/** Only the time of day, 24-hour: "14:30". */
export function clock(value) {
  const d = toDate(value);
  return d ? d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }) : '–';
}

const ATTEMPT_WORDS = { failed: 'failed', drive_removed: 'was cut off', cancelled: 'was stopped' };

/**
 * The truthful last-backup line (core/agent/status.py describe, in the browser's time):
 * "Last successful backup: never · last attempt failed 2 min ago: drive full".
 * `rec` has last_success, last_attempt (IPC Run dicts or null) and attention (text or null).
 */
export function lastBackupText(rec) {
  const ok = rec && rec.last_success;
  const attempt = attemptText(rec);
  return `Last successful backup: ${ok ? ago(ok.ended || ok.started) : 'never'}${attempt ? ` · last attempt ${attempt}` : ''}`;
}

/** "failed 2 min ago: drive full" when the last attempt did not succeed, else "". */
export function attemptText(rec) {
  const attempt = rec && rec.last_attempt;
  if (!attempt || !ATTEMPT_WORDS[attempt.status]) return '';
  return `${ATTEMPT_WORDS[attempt.status]} ${ago(attempt.ended || attempt.started)}${rec.attention ? `: ${rec.attention}` : ''}`;
}

/** "Automatic backups are paused until Sun 22 Nov, 14:30" / "… until you resume them". */
export function pausedText(status) {
  return `Automatic backups are paused ${status.paused_until ? `until ${when(status.paused_until)}` : 'until you resume them'}`;
}

/** "5 min ago", "in 2 h", "yesterday". */
export function ago(value) {
  const d = toDate(value);
  if (!d) return 'never';
  const seconds = (d.getTime() - Date.now()) / 1000;
  const abs = Math.abs(seconds);
  const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto', style: 'short' });
  if (abs < 45) return seconds < 0 ? 'just now' : 'in a moment';
  if (abs < 3600) return rtf.format(Math.round(seconds / 60), 'minute');
  if (abs < 86400) return rtf.format(Math.round(seconds / 3600), 'hour');
  if (abs < 86400 * 30) return rtf.format(Math.round(seconds / 86400), 'day');
  return when(d);
}

/** 75 -> "1 min 15 s". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return '–';
  seconds = Math.max(0, Math.round(seconds));
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${seconds % 60} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export const STATUS_TEXT = {
  ok: ['ok', 'Completed'], warnings: ['warn', 'Completed with warnings'], failed: ['bad', 'Failed'],
  cancelled: ['', 'Stopped'], drive_removed: ['bad', 'Drive removed'], running: ['info', 'Running'],
};

/** A coloured badge for a run status. */
export function statusBadge(status) {
  const [cls, text] = STATUS_TEXT[status] || ['', status || 'unknown'];
  return h('span', { class: `badge ${cls}` }, text);
}

/** A readable error box for a failed reply ({ok: false, code, message}); never a stack trace. */
export function errorBox(reply, title) {
  const message = (reply && reply.message) || 'Something went wrong.';
  return h('div', { class: 'alert error', role: 'alert', dataset: { code: (reply && reply.code) || 'error' } },
    h('div', { class: 'grow' }, h('strong', {}, title || 'That did not work.'), ' ', message));
}

/** Replace whatever is in `slot` with an error box (or clear it with null). */
export function showError(slot, reply, title) {
  slot.replaceChildren(reply ? errorBox(reply, title) : '');
  if (reply) slot.firstChild.scrollIntoView({ block: 'nearest' });
}

/** A short message at the bottom of the window, read out by screen readers. */
export function toast(text) {
  const box = document.getElementById('toasts');
  const el = h('div', { class: 'toast' }, text);
  box.append(el);
  setTimeout(() => el.remove(), 4000);
}

/** A modal dialog with content and buttons; resolves with the chosen button's value (or null). */
export function dialog(title, body, buttons) {
  const dlg = document.getElementById('dialog');
  return new Promise((resolve) => {
    const done = (value) => { dlg.close(); resolve(value); };
    const row = h('div', { class: 'form-actions' }, buttons.map((b) =>
      h('button', { type: 'button', class: b.class || '', onclick: () => done(b.value) }, b.label)));
    dlg.replaceChildren(h('h2', { id: 'dialog-title' }, title), body, row);
    dlg.setAttribute('aria-labelledby', 'dialog-title');
    dlg.onclose = () => resolve(null);
    dlg.showModal();
    const focus = dlg.querySelector('input, textarea, select') || row.lastChild;
    focus.focus();
  });
}

/** Ask before doing something that cannot be undone. */
export function confirm(title, text, okLabel, danger) {
  return dialog(title, h('p', {}, text), [
    { label: 'Cancel', value: false },
    { label: okLabel, value: true, class: danger ? 'danger primary' : 'primary' },
  ]);
}

/** A progress bar with text; call update(progress) with a Progress dict. */
export function progressView(label) {
  const fill = h('span');
  const bar = h('div', { class: 'bar', role: 'progressbar', 'aria-label': label, 'aria-valuemin': '0', 'aria-valuemax': '100' }, fill);
  const left = h('span');
  const right = h('span');
  const current = h('div', { class: 'current' });
  const el = h('div', { class: 'progress' }, bar, h('div', { class: 'progress-text' }, left, right), current);
  let first = null;
  return {
    el,
    update(p) {
      if (!p) return;
      const total = p.bytes_total || 0;
      const pct = total > 0 ? Math.min(100, Math.floor((100 * (p.bytes_done || 0)) / total)) : null;
      bar.classList.toggle('indeterminate', pct === null);
      if (pct !== null) { fill.style.width = `${pct}%`; bar.setAttribute('aria-valuenow', String(pct)); }
      else bar.removeAttribute('aria-valuenow');
      const now = Date.now();
      if (!first || first.phase !== p.phase || (p.bytes_done || 0) < first.bytes) first = { phase: p.phase, t: now, bytes: p.bytes_done || 0 };
      const rate = (now - first.t) > 1500 ? ((p.bytes_done || 0) - first.bytes) / ((now - first.t) / 1000) : 0;
      const eta = rate > 0 && total > 0 ? duration((total - (p.bytes_done || 0)) / rate) : null;
      const phase = PHASES[p.phase] || p.phase || '';
      if (p.files_done === undefined) { left.textContent = 'Starting…'; right.textContent = ''; current.textContent = ''; return; }
      left.textContent = `${phase}${pct !== null ? ` ${pct}%` : ''} · ${p.files_total ? `${count(p.files_done)} of ${plural(p.files_total, 'file')}` : plural(p.files_done, 'file')} · ${bytes(p.bytes_done)}${total ? ` of ${bytes(total)}` : ''}`;
      right.textContent = eta ? `about ${eta} left` : '';
      current.textContent = p.current || '';
    },
  };
}

const PHASES = { scan: 'Looking for changes', copy: 'Copying', commit: 'Saving snapshot', verify: 'Checking', prune: 'Tidying up', restore: 'Restoring' };

/** Run fn at most once per `ms` after the last call (for live previews). */
export function debounce(fn, ms) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}
