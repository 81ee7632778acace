// Form pieces shared by the Jobs editor and the first-run flow.
import { h, fill, icon, showError, showPath, when, dialog, errorBox, toast } from '../util.js';

/**
 * A list of folders with "Remove" buttons and a way to add one: the native
 * picker in the window, a typed path (checked by the api) in the browser.
 * Returns {el, get(), set(list)}.
 */
export function folderList(ctx, { label, id, hint, initial = [], onChange = () => {} }) {
  let folders = [...initial];
  const list = h('ul', { class: 'path-list', id: `${id}-list`, 'aria-label': label });
  const error = h('div', { id: `${id}-error`, 'aria-live': 'polite' });
  const input = h('input', { type: 'text', id: `${id}-path`, placeholder: `~${ctx.info.sep || '/'}Documents`, 'aria-label': `Folder path to add to ${label.toLowerCase()}` });

  function draw() {
    fill(list, ...folders.map((f) => h('li', {},
      icon('folder'), h('span', { title: f }, showPath(f)),
      h('button', { type: 'button', class: 'link', 'aria-label': `Remove ${f}`, onclick: () => { folders = folders.filter((x) => x !== f); draw(); onChange(folders); } }, 'Remove'))));
    if (!folders.length) list.append(h('li', { class: 'muted' }, 'No folders yet.'));
  }

  async function add(path) {
    const reply = await ctx.call('check_folder', { path });
    if (!reply.ok) { showError(error, reply, 'Cannot add that folder.'); input.setAttribute('aria-invalid', 'true'); return; }
    showError(error, null);
    input.removeAttribute('aria-invalid');
    if (!folders.includes(reply.data.path)) folders.push(reply.data.path);
    input.value = '';
    draw();
    onChange(folders);
  }

  async function pick() {
    const reply = await ctx.call('pick_folder', {});
    if (!reply.ok) { showError(error, reply, 'Cannot open the folder picker.'); return; }
    if (reply.data.path) add(reply.data.path);
  }

  const addRow = h('div', { class: 'inline' },
    ctx.info.can_pick_folders ? h('button', { type: 'button', onclick: pick }, 'Choose folder…') : null,
    input,
    h('button', { type: 'button', id: `${id}-add`, onclick: () => add(input.value) }, 'Add'));
  input.addEventListener('keydown', (e) => { if (e.key === 'Enter') { e.preventDefault(); add(input.value); } });
  draw();
  const el = h('div', { class: 'field' }, h('label', { for: `${id}-path` }, label),
    hint ? h('span', { class: 'hint' }, hint) : null, list, addRow, error);
  return { el, get: () => [...folders], set(next) { folders = [...next]; draw(); } };
}

/** A labelled field wrapper: label + control + optional hint + error slot. */
export function field(labelText, control, hint) {
  const error = h('span', { class: 'error-text', id: `${control.id}-error` });
  control.setAttribute('aria-describedby', `${control.id}-error`);
  return h('div', { class: 'field' }, h('label', { for: control.id }, labelText),
    hint ? h('span', { class: 'hint' }, hint) : null, control, error);
}

/** Mark a control invalid with a message (empty message clears it). */
export function invalid(control, message) {
  const slot = document.getElementById(`${control.id}-error`);
  if (slot) slot.textContent = message || '';
  if (message) control.setAttribute('aria-invalid', 'true'); else control.removeAttribute('aria-invalid');
  return !message;
}

/**
 * A job found a backup set it did not make at its destination (issue #10): show that set's
 * computer, job and newest snapshot and ask. Resolves {adopted: true} after "Use this backup",
 * {adopted: false} when there is nothing to confirm, {cancelled: true} when the user says no,
 * {error: reply} on failure.
 */
export async function confirmSet(ctx, name, driveId) {
  // driveId: the drive whose set to look at (a job on several drives, issue #14); none: the one connected.
  const info = await ctx.call('set_info', { name, ...(driveId ? { drive_id: driveId } : {}) });
  if (!info.ok) return { adopted: false, error: info };
  const set = info.data.set;
  if (!set || info.data.own) return { adopted: false };
  const unknown = 'not readable (the backup is encrypted)';
  const facts = h('dl', { class: 'facts', id: 'adopt-facts' },
    h('dt', {}, 'Made on computer'), h('dd', { id: 'adopt-host' }, set.encrypted ? unknown : set.host || '?'),
    h('dt', {}, 'By the backup'), h('dd', { id: 'adopt-job' }, set.encrypted ? unknown : set.job || '?'),
    h('dt', {}, 'Newest snapshot'), h('dd', { id: 'adopt-newest' }, set.newest_time
      ? `${when(set.newest_time)}${set.newest_files !== null ? `, ${set.newest_files} files` : ''} (${set.snapshots} in all)` : 'none'),
    h('dt', {}, 'Where'), h('dd', { class: 'mono' }, info.data.path));
  const choice = await dialog(`Use the backup already at the destination of “${name}”?`, h('div', {},
    h('p', {}, 'This backup was not made by this job on this computer. Use it only if you know it is yours: Plugback will add to it and delete its old snapshots as this job’s settings say.'),
    facts), [{ label: 'Cancel', value: false }, { label: 'Use this backup', value: true, class: 'primary' }]);
  if (!choice) return { adopted: false, cancelled: true };
  const reply = await ctx.call('adopt_set', { name, set_id: set.set_id, ...(info.data.drive_id ? { drive_id: info.data.drive_id } : {}) });
  return reply.ok ? { adopted: true } : { adopted: false, error: reply };
}

/**
 * "Unlock" (issue #15): a passphrase or recovery-key field for an encrypted backup that could
 * not be opened. `which` is {job} or {set}; `keyring` says whether "remember" can be offered.
 * Calls onUnlocked(reply.data) once the agent opened it; a wrong secret is shown and asked again.
 */
export function unlockForm(ctx, { which, keyring, reason, onUnlocked }) {
  const passphrase = h('input', { type: 'radio', name: 'unlock-kind', id: 'unlock-passphrase', value: 'passphrase', checked: true });
  const recovery = h('input', { type: 'radio', name: 'unlock-kind', id: 'unlock-recovery', value: 'recovery_key' });
  const secret = h('input', { type: 'password', id: 'unlock-secret', autocomplete: 'off', spellcheck: 'false' });
  const label = h('label', { for: 'unlock-secret' }, 'Passphrase');
  const remember = h('input', { type: 'checkbox', id: 'unlock-remember' });
  const error = h('div', { id: 'unlock-error', 'aria-live': 'polite' });
  const go = h('button', { type: 'button', class: 'primary', id: 'unlock-go' }, 'Unlock');
  const sync = () => {
    const isKey = recovery.checked;
    label.textContent = isKey ? 'Recovery key' : 'Passphrase';
    secret.type = isKey ? 'text' : 'password';
    remember.disabled = isKey;
  };
  passphrase.addEventListener('change', sync); recovery.addEventListener('change', sync);
  async function submit() {
    if (!secret.value) { showError(error, { message: 'Type the passphrase or the recovery key.' }, 'Nothing typed.'); secret.focus(); return; }
    go.disabled = true;
    const reply = await ctx.call('unlock', { ...which, kind: recovery.checked ? 'recovery_key' : 'passphrase', secret: secret.value, remember: remember.checked && !remember.disabled });
    go.disabled = false;
    if (!reply.ok) { showError(error, reply, 'Not unlocked.'); secret.select(); secret.focus(); return; }
    secret.value = '';
    onUnlocked(reply.data);
  }
  go.addEventListener('click', submit);
  secret.addEventListener('keydown', (e) => { if (e.key === 'Enter') { e.preventDefault(); submit(); } });
  const keep = keyring
    ? h('label', { class: 'check' }, remember, 'Remember the passphrase in this computer’s keyring (so automatic backups can open it)')
    : h('p', { class: 'hint', id: 'unlock-no-keyring' }, 'This computer has no keyring, so Plugback stores the passphrase nowhere: ',
      'the backup stays unlocked until Plugback quits, and you unlock it again after that. ',
      'Automatic backups into an encrypted set then need the passphrase in PLUGBACK_PASSPHRASE.');
  const el = h('section', { class: 'card unlock', id: 'unlock', 'aria-labelledby': 'unlock-title' },
    h('h2', { id: 'unlock-title' }, icon('shield'), ' This backup is encrypted'),
    h('p', {}, reason || 'Type its passphrase, or its recovery key if the passphrase is lost.'),
    h('fieldset', { class: 'inline' }, h('legend', { class: 'sr-only' }, 'Unlock with'),
      h('label', { class: 'check' }, passphrase, 'Passphrase'), h('label', { class: 'check' }, recovery, 'Recovery key')),
    h('div', { class: 'field' }, label, h('div', { class: 'inline' }, secret, go)), keep, error);
  return { el, focus: () => secret.focus() };
}

/**
 * The recovery key of an encrypted set (issue #15): "Save as file…", "Print", and a confirmation that
 * it was kept. The agent records that it was shown (and kept), so a new set's key pops up once and the
 * Overview reminds until it is kept. Resolves true when the user confirmed, false otherwise.
 */
export async function recoveryKeyDialog(ctx, which) {
  const reply = await ctx.call('recovery_key', which);
  if (!reply.ok) { await dialog('The recovery key cannot be shown', errorBox(reply), [{ label: 'Close', value: false }]); return false; }
  const key = reply.data.recovery_key;
  const text = `Plugback recovery key\nBackup set ${reply.data.set_id}\n\n${key}\n\nAnyone with this key can read the backup. Keep it on paper, away from the drive.\n`;
  const kept = h('input', { type: 'checkbox', id: 'recovery-kept' });
  const save = () => {
    const a = h('a', { href: URL.createObjectURL(new Blob([text], { type: 'text/plain' })), download: `plugback-recovery-key-${reply.data.set_id.slice(0, 8)}.txt` });
    document.body.append(a); a.click(); a.remove();
  };
  const print = () => {
    const w = window.open('', '_blank');
    if (!w) return;
    w.document.body.append(Object.assign(w.document.createElement('pre'), { textContent: text }));
    w.print();
  };
  const body = h('div', {},
    h('p', {}, 'If the passphrase is ever lost, only this key opens the backup. Keep it somewhere safe, away from the drive.'),
    h('pre', { class: 'recovery-key mono', id: 'recovery-key' }, key),
    h('div', { class: 'inline' }, h('button', { type: 'button', onclick: save }, 'Save as file…'), h('button', { type: 'button', onclick: print }, 'Print')),
    h('label', { class: 'check' }, kept, 'I have kept the recovery key'));
  // "Done" only once the box is ticked (re-opening the one <dialog> from its own close would race its close event).
  const answer = dialog('Keep the recovery key', body, [{ label: 'Later', value: false }, { label: 'Done', value: true, class: 'primary' }]);
  const done = document.querySelector('#dialog .form-actions button.primary');
  const sync = () => { done.disabled = !kept.checked; };
  kept.addEventListener('change', sync);
  sync();
  const confirmed = Boolean((await answer) && kept.checked);
  const noted = await ctx.call('recovery_key_kept', { set_id: reply.data.set_id, confirmed });
  if (!noted.ok) toast(`Not recorded: ${noted.message}`);
  return confirmed;
}

/**
 * The encrypted jobs whose recovery key was not yet kept (`recovery_reminders`): {job, set_id, shown}.
 * An empty list when the agent cannot say (the reminder is a nicety, never an error in the page).
 */
export async function recoveryReminders(ctx) {
  const reply = await ctx.call('recovery_reminders');
  return reply.ok ? reply.data.reminders : [];
}

// "A cloud or network location" (the Jobs editor and the first-run wizard): a remote from
// `rclone listremotes` (through the agent), a folder on it, and "Test connection". Without rclone the box says what to install (the agent's words).
export function remotePicker(ctx, initial) {
  const m = /^rclone:([^:]*):(.*)$/.exec(initial || '');
  const [name, folder] = m ? [m[1], m[2]] : ['', ''];
  const select = h('select', { id: 'dest-remote' }, h('option', { value: '' }, 'Loading your rclone remotes…'));
  const path = h('input', { type: 'text', id: 'dest-remote-path', value: folder, placeholder: 'backups/laptop' });
  const result = h('div', { id: 'dest-remote-result', class: 'small', 'aria-live': 'polite' });
  const missing = h('div', { id: 'dest-remote-missing', class: 'small', 'aria-live': 'polite' });
  const spec = () => (select.value ? `rclone:${select.value}:${path.value.trim()}` : '');
  // The agent's answer when the connection works ({ok, set, message}: the first-run wizard goes on only
  // then), else false.
  async function test() {
    if (!invalid(select, select.value ? '' : 'Choose a remote.')) return false;
    fill(result, h('span', { class: 'muted' }, 'Connecting…'));
    const reply = await ctx.call('remote_test', { remote: spec() });
    if (!reply.ok) { showError(result, reply, 'Cannot test the connection.'); return false; }
    fill(result, h('p', { class: reply.data.ok ? 'ok-text' : 'error-text', dataset: { ok: String(reply.data.ok) } }, reply.data.message));
    return reply.data.ok ? reply.data : false;
  }
  const button = h('button', { type: 'button', id: 'dest-remote-test', onclick: test }, 'Test connection');
  ctx.call('remotes').then((reply) => {
    const names = reply.ok ? reply.data.remotes : [];
    if (name && !names.includes(name)) names.unshift(name);
    fill(select, h('option', { value: '' }, names.length ? 'Choose a remote…' : 'No rclone remotes yet'),
      names.map((n) => h('option', { value: n, selected: n === name }, n)));
    if (!reply.ok) showError(missing, reply, 'Cannot list the rclone remotes.');
    else if (reply.data.error) fill(missing, h('p', { class: 'error-text', dataset: { code: reply.data.error.code } }, reply.data.error.message));
    else if (!names.length) fill(missing, h('p', { class: 'muted' }, 'Add one with “rclone config” (in a terminal), then open this page again.'));
  });
  const el = h('div', { id: 'dest-remote-box' },
    field('Remote', select, 'From your rclone configuration: Plugback keeps no passwords of its own. Backups there are always encrypted.'),
    missing,
    field('Folder on it', path, 'An empty or new folder; it is made by the first backup.'),
    h('div', { class: 'form-actions' }, button), result);
  return { el, test, spec: () => { const ok = invalid(select, select.value ? '' : 'Choose a remote.'); return ok ? spec() : ''; } };
}
