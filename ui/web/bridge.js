// The only code that talks to Python. In the pywebview window it calls
// window.pywebview.api.call(method, args); in a normal browser (the fallback
// server, or the tests) it POSTs to /api/<method> with the session token,
// which is the first part of the page's path (/<token>/index.html).
// Every call resolves to {ok: true, data} or {ok: false, code, message, field?}; it never throws.

const browserToken = (() => {
  if (location.protocol !== 'http:' && location.protocol !== 'https:') return null;
  const first = location.pathname.split('/')[1] || '';
  return first.length >= 16 ? first : null;
})();

let pywebviewReady = null;

function waitForPywebview() {
  if (!pywebviewReady) {
    pywebviewReady = new Promise((resolve) => {
      if (window.pywebview && window.pywebview.api && window.pywebview.api.call) return resolve(true);
      window.addEventListener('pywebviewready', () => resolve(true), { once: true });
    });
  }
  return pywebviewReady;
}

/** 'window' inside pywebview, 'browser' behind the fallback server. */
export function transport() {
  return browserToken ? 'browser' : 'window';
}

async function callBrowser(method, args) {
  let response;
  try {
    response = await fetch(`/api/${encodeURIComponent(method)}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Plugback-Token': browserToken },
      body: JSON.stringify(args || {}),
    });
  } catch (err) {
    return { ok: false, code: 'window_closed',
      message: 'The settings server is not answering. Open settings again from the Plugback tray icon.' };
  }
  if (response.status === 403) {
    return { ok: false, code: 'forbidden',
      message: 'This settings page has expired. Open settings again from the Plugback tray icon.' };
  }
  try {
    return await response.json();
  } catch (err) {
    return { ok: false, code: 'bad_reply', message: `The settings server sent an unreadable reply (HTTP ${response.status}).` };
  }
}

async function callWindow(method, args) {
  await waitForPywebview();
  try {
    const reply = await window.pywebview.api.call(method, args || {});
    return reply && typeof reply === 'object' ? reply
      : { ok: false, code: 'bad_reply', message: 'The settings window sent an empty reply.' };
  } catch (err) {
    return { ok: false, code: 'internal', message: `The settings window could not do that: ${err && err.message ? err.message : err}` };
  }
}

/** Call one api method by name. */
export function call(method, args) {
  return browserToken ? callBrowser(method, args) : callWindow(method, args);
}
