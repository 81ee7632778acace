// The page shell: navigation (hash routes), the shared status poller and the
// activity line in the side bar. Each page is a module exporting
// render(main, ctx, param) that may return a cleanup function.
import { call, transport } from './bridge.js';
import { icon, setHome, when } from './util.js';

const PAGES = {
  overview: () => import('./pages/overview.js'),
  jobs: () => import('./pages/jobs.js'),
  drives: () => import('./pages/drives.js'),
  restore: () => import('./pages/restore.js'),
  history: () => import('./pages/history.js'),
  prefs: () => import('./pages/prefs.js'),
  welcome: () => import('./pages/welcome.js'),
};
const TITLES = { overview: 'Overview', jobs: 'Jobs', drives: 'Drives', restore: 'Restore', history: 'History', prefs: 'Preferences', welcome: 'Welcome' };

const main = document.getElementById('main');
let cleanup = null;
let info = { mode: transport(), can_pick_folders: false };

// One status poller for everyone: fast (1 s) while a page listens or something
// runs, slow otherwise. In the browser it also keeps the fallback server alive.
const listeners = new Set();
let lastStatus = null;
let pollTimer = null;
async function poll() {
  clearTimeout(pollTimer);
  const reply = await call('status');
  lastStatus = reply;
  renderActivity(reply);
  for (const fn of listeners) { try { fn(reply); } catch (err) { console.error(err); } }
  const busy = reply.ok && (reply.data.jobs || []).some((j) => j.running) || (reply.ok && reply.data.restore && reply.data.restore.running);
  pollTimer = setTimeout(poll, listeners.size || busy ? 1000 : 4000);
}

function renderActivity(reply) {
  const box = document.getElementById('activity');
  if (!reply.ok) { box.textContent = reply.code === 'agent_unavailable' ? 'Plugback agent is not running' : ''; return; }
  const running = (reply.data.jobs || []).filter((j) => j.running);
  if (running.length) {
    const p = running[0].progress;
    const pct = p && p.bytes_total ? ` ${Math.floor((100 * p.bytes_done) / p.bytes_total)}%` : '';
    box.textContent = `Backing up ${running[0].name}…${pct}`;
  } else if ((reply.data.attention || []).length || reply.data.problem) {
    const n = (reply.data.attention || []).length;
    box.textContent = n > 1 ? `${n} backups need attention` : n ? `Needs attention: ${reply.data.attention[0].job}` : 'Plugback needs attention';
  } else if (reply.data.paused) {
    box.textContent = reply.data.paused_until ? `Automatic backups paused until ${when(reply.data.paused_until)}` : 'Automatic backups paused until you resume them';
  } else {
    box.textContent = (reply.data.jobs || []).length ? 'Idle · backups on watch' : '';
  }
  box.classList.toggle('attention', !running.length && !!((reply.data.attention || []).length || reply.data.problem));
}

const ctx = {
  call,
  get info() { return info; },
  navigate(hash) { if (location.hash === `#${hash}`) route(); else location.hash = hash; },
  /** Listen to status replies; returns a function that stops listening. */
  onStatus(fn) {
    listeners.add(fn);
    if (lastStatus) fn(lastStatus);
    poll();
    return () => listeners.delete(fn);
  },
  refreshStatus: () => poll(),
};

async function route() {
  const [name, ...rest] = (location.hash.slice(1) || 'overview').split('/');
  const page = PAGES[name] ? name : 'overview';
  if (cleanup) { try { cleanup(); } catch (err) { console.error(err); } cleanup = null; }
  for (const a of document.querySelectorAll('.nav a')) {
    if (a.dataset.page === page) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  document.title = `${TITLES[page]} – Plugback settings`;
  const module = await PAGES[page]();
  main.replaceChildren();
  main.dataset.page = page;
  cleanup = (await module.render(main, ctx, rest.map(decodeURIComponent).join('/'))) || null;
  const heading = main.querySelector('h1');
  if (heading && document.activeElement && document.activeElement.closest('.nav')) {
    heading.setAttribute('tabindex', '-1');
  }
}

async function start() {
  const logo = document.getElementById('brand-logo');
  logo.replaceWith(icon('logo'));
  for (const a of document.querySelectorAll('.nav a')) a.prepend(icon(a.dataset.page));
  const reply = await call('info');
  if (reply.ok) info = reply.data;
  setHome(info.home, info.sep);
  document.documentElement.dataset.mode = info.mode;
  if (!location.hash) {
    const config = await call('config_get');
    if (config.ok && !(config.data.jobs || []).length) location.replace('#welcome');
  }
  window.addEventListener('hashchange', route);
  await route();
  poll();
  document.documentElement.dataset.ready = 'true';
}

start();
