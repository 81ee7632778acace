// Restore: pick a backup — a job of this computer, or any set found on a connected drive or in a
// folder the user opens (issue #15: "restore anywhere", grouped by computer) — and a snapshot by
// time; browse its tree or search a file name (one row per distinct version); restore what is
// selected (always visible as a list) to its original place or another folder (made after
// confirming), choosing what happens to files already there. An encrypted set that cannot be
// opened gets an Unlock form. The full destination of each top folder is shown before "Restore";
// the result names every file saved under another name. A selected or focused file has "Versions…":
// its distinct versions across the snapshots, newest first, each one selectable to restore.
// Restore first (issue #14): while this page is open it tells the agent so (renewed every 20 s), and a
// drive plugged in meanwhile waits with its automatic backup until the page closes; a restore that waits
// for a running backup says so, and can be stopped. `#restore/<drive id>` starts on that drive's backup.
import { h, fill, icon, bytes, when, count, plural, showError, errorBox, progressView, toast, debounce, confirm, dialog } from '../util.js';
import { unlockForm, recoveryKeyDialog } from './widgets.js';

const KIND_ICON = { d: 'folder', f: 'file', l: 'link' };
const LOCKED = new Set(['passphrase_needed', 'wrong_passphrase', 'wrong_recovery_key', 'bad_recovery_key']);
const opened = [];   // folders the user opened on this page (kept while the window is open)
const HOLD_RENEW_MS = 20000;   // the agent lets the hold go after 60 s without renewal (a crashed window)

/** A local time with seconds, e.g. "22 Nov 2026, 14:30:05". */
function exact(value) {
  const d = new Date(value);
  return isNaN(d) ? '–' : d.toLocaleString(undefined, { day: 'numeric', month: 'short', year: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** The `<select>` of backups: jobs here, then sets found elsewhere grouped by computer. */
function sourceOptions(jobs, found) {
  const groups = [];
  if (jobs.length) groups.push(h('optgroup', { label: 'Jobs on this computer' }, jobs.map((j) => h('option', { value: `job:${j.name}` }, j.name))));
  const others = found.filter((s) => !s.used_by.length);
  const computers = [...new Set(others.map((s) => s.computer))];
  for (const c of computers) {
    groups.push(h('optgroup', { label: `Made on ${c}` }, others.filter((s) => s.computer === c).map((s) =>
      h('option', { value: `set:${s.path}` }, `${s.job}${s.encrypted ? ' (encrypted)' : ''} — ${s.drive_label ? `drive ${s.drive_label}` : s.where}`))));
  }
  return groups;
}

/** The selection, always visible: a count, a list with "Remove", and "Clear". */
function selectionView(onChange) {
  const selected = new Map();   // path -> type
  const list = h('ul', { class: 'path-list', id: 'restore-selection', 'aria-label': 'Selected to restore' });
  const text = h('span', { id: 'restore-selected', class: 'muted' });
  const draw = () => {
    const n = selected.size;
    text.textContent = n ? `${n} item${n === 1 ? '' : 's'} selected` : 'Select files or folders above.';
    fill(list, ...[...selected].map(([path, type]) => h('li', {}, icon(KIND_ICON[type] || 'file'), h('span', { class: 'mono' }, path),
      h('button', { type: 'button', class: 'link', 'aria-label': `Remove ${path} from the selection`, onclick: () => remove(path) }, 'Remove'))));
    if (n > 1) list.append(h('li', {}, h('button', { type: 'button', class: 'link', id: 'restore-clear', onclick: () => clear() }, 'Clear the selection')));
    onChange(n);
  };
  const remove = (path) => { selected.delete(path); draw(); };
  const clear = () => { selected.clear(); draw(); };
  return {
    list, text, draw, clear, has: (p) => selected.has(p), paths: () => [...selected.keys()], size: () => selected.size,
    set(path, type, on) { if (on) selected.set(path, type); else selected.delete(path); draw(); },
  };
}

/** What a finished restore did, naming each file saved under another name and where. */
function summary(task) {
  const r = task.result || {};
  const stopped = Boolean(task.error) && task.error.code === 'cancelled';   // the user stopped it: not a failure
  const failed = Boolean(task.error) && !stopped;
  const rows = [['Restored', r.files_restored], ['Bytes', r.bytes_restored !== undefined ? bytes(r.bytes_restored) : undefined],
    ['Skipped (already there)', r.skipped], ['Saved under another name', r.kept_both], ['Replaced', r.overwritten]]
    .filter(([, v]) => v !== undefined && v !== null && v !== 0);
  const where = task.target || (task.destinations || []).map((d) => d.to).join(', ');
  const renamed = r.renamed || [];
  return h('div', { class: `alert ${failed ? 'error' : 'info'}`, role: failed ? 'alert' : 'status' },
    h('div', { class: 'grow' }, h('strong', {}, failed ? 'The restore failed. ' : stopped ? 'Restore stopped. ' : 'Restore finished. '),
      task.error ? task.error.message : `Restored into ${where}.`,
      rows.length ? h('dl', { class: 'facts' }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, typeof v === 'number' ? count(v) : v)])) : null,
      renamed.length ? [h('p', {}, 'These files were already there, so the restored copies have new names:'),
        h('ul', { id: 'restore-renamed' }, renamed.map((x) => h('li', {}, h('span', { class: 'mono' }, x.as), ' (next to ', h('span', { class: 'mono' }, x.to), ')')))] : null,
      (r.damaged_files || []).length ? [h('p', {}, 'Not restored (damaged on the drive):'),
        h('ul', {}, r.damaged_files.map((d) => h('li', {}, `${d.path}: ${d.reason}`)))] : null,
      (r.warnings || []).length ? h('ul', {}, r.warnings.slice(0, 20).map((w) => h('li', {}, `${w.path}: ${w.message}`))) : null));
}

/** The versions of one file, newest first, in a dialog; resolves with the one picked to restore (or null). */
async function versionsDialog(ctx, which, path, newestId) {
  const reply = await ctx.call('versions', { ...which, path });
  const name = path.slice(path.lastIndexOf('/') + 1);
  if (!reply.ok) { await dialog(`Versions of ${name}`, errorBox(reply, 'Cannot list its versions.'), [{ label: 'Close', value: null }]); return null; }
  let picked = null;
  const pick = (v) => { picked = v; document.getElementById('dialog').close(); };
  const rows = reply.data.map((v) => h('tr', {},
    h('td', {}, exact(v.time)),
    h('td', { class: 'num' }, `${bytes(v.size)} (${count(v.size)} bytes)`),
    h('td', { class: 'mono', title: `SHA-256 ${v.sha256}` }, v.sha256.slice(0, 8)),
    h('td', { class: 'mono' }, v.snapshot, v.snapshot === newestId ? h('span', { class: 'muted' }, ' (newest)') : null),
    h('td', {}, h('button', { type: 'button', class: 'link', 'aria-label': `Select the version of ${exact(v.time)} to restore`, onclick: () => pick(v) }, 'Select'))));
  const body = h('div', { id: 'versions' },
    h('p', {}, h('span', { class: 'mono' }, path), ` — ${plural(reply.data.length, 'version')}, newest first. Select one to restore it:`),
    h('div', { class: 'table-wrap' }, h('table', { class: 'versions' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Backed up'), h('th', { class: 'num' }, 'Size'), h('th', {}, 'SHA-256'), h('th', {}, 'Snapshot'),
        h('th', {}, h('span', { class: 'sr-only' }, 'Action')))),
      h('tbody', {}, rows))));
  await dialog(`Versions of ${name}`, body, [{ label: 'Close', value: null }]);
  return picked;
}

/** The source to show first for `#restore/<drive id>` ("Restore instead" of a drive just plugged in). */
function onDrive(found, driveId) {
  const set = found.find((s) => s.drive_id === driveId);
  if (!set) return null;
  return set.used_by.length ? `job:${set.used_by[0]}` : `set:${set.path}`;
}

export async function render(main, ctx, driveId) {
  const alerts = h('div');
  const state = { which: null, job: null, snapshot: null, path: '', snapshots: [], found: [], jobs: [], keyring: false };
  const jobSelect = h('select', { id: 'restore-job' });
  const snapSelect = h('select', { id: 'restore-snapshot', 'aria-describedby': 'restore-snapshot-facts' });
  // The options say when (short enough for a half-width select); what each holds is said here and in its title.
  const snapFacts = h('span', { class: 'hint', id: 'restore-snapshot-facts' });
  const snapDetails = (s) => `${plural(s.files, 'file')}, ${bytes(s.bytes)}`;
  const openPath = h('input', { type: 'text', id: 'restore-open-path', placeholder: `/media/${ctx.info.sep === '\\' ? 'E:' : 'me/OldDrive'}`, 'aria-label': 'Folder or drive to look in for backups' });
  const openError = h('div', { id: 'restore-open-error', 'aria-live': 'polite' });
  const unlockBox = h('div');
  const keyButton = h('button', { type: 'button', id: 'restore-recovery-key', hidden: true, onclick: () => recoveryKeyDialog(ctx, state.which) }, 'Show the recovery key…');
  const searchInput = h('input', { type: 'search', id: 'restore-search', placeholder: 'File name, e.g. report.odt', autocomplete: 'off' });
  const searchBox = h('div', { id: 'search-results', 'aria-live': 'polite' });
  const crumbs = h('nav', { class: 'crumbs', 'aria-label': 'Folder in the snapshot' });
  const tree = h('div', { class: 'table-wrap', id: 'restore-tree' });
  const toOriginal = h('input', { type: 'radio', name: 'restore-target', id: 'target-original', value: 'original', checked: true });
  const toOther = h('input', { type: 'radio', name: 'restore-target', id: 'target-other', value: 'other' });
  const originalNote = h('p', { class: 'hint', id: 'target-original-note', hidden: true });
  const targetPath = h('input', { type: 'text', id: 'target-path', placeholder: `~${ctx.info.sep || '/'}Restored` });
  const targetError = h('div');
  const conflict = h('select', { id: 'restore-conflict' },
    h('option', { value: 'keep_both' }, 'Keep both (the restored copy gets a new name)'),
    h('option', { value: 'skip' }, 'Skip it (keep the file that is there now)'),
    h('option', { value: 'overwrite' }, 'Replace it with the restored version'));
  const restoreButton = h('button', { type: 'button', class: 'primary big', id: 'restore-start', disabled: true }, 'Restore');
  const progress = progressView('Restore progress');
  const waitingNote = h('p', { id: 'restore-waiting', class: 'hint', role: 'status', hidden: true });
  const stopButton = h('button', { type: 'button', id: 'restore-stop', onclick: async () => {
    const r = await ctx.call('restore_stop', {});
    if (!r.ok) showError(result, r, 'Cannot stop the restore.');
  } }, 'Stop restore');
  const progressBox = h('div', { id: 'restore-progress', hidden: true }, waitingNote, progress.el, h('div', { class: 'row' }, stopButton));
  const result = h('div', { id: 'restore-result', 'aria-live': 'polite' });
  const plan = h('div', { id: 'restore-plan', 'aria-live': 'polite' });
  const selection = selectionView((n) => {
    restoreButton.disabled = n === 0;
    restoreButton.textContent = n ? `Restore ${n} item${n === 1 ? '' : 's'}` : 'Restore';
    showPlan();
  });
  const targetBox = h('div', { class: 'inline', hidden: true },
    ctx.info.can_pick_folders ? h('button', { type: 'button', onclick: async () => {
      const r = await ctx.call('pick_folder', {});
      if (r.ok && r.data.path) { targetPath.value = r.data.path; showPlan(); }
    } }, 'Choose folder…') : null, targetPath);
  let planAsked = 0;
  async function showPlan() {
    const ask = ++planAsked;
    const target = toOther.checked ? targetPath.value.trim() : null;
    if (!selection.size() || !state.snapshot || target === '') { fill(plan); return; }
    const reply = await ctx.call('restore_plan', { ...state.which, snapshot: state.snapshot, paths: selection.paths(), target });
    if (ask !== planAsked) return;   // the choice changed meanwhile
    if (!reply.ok) { showError(plan, reply, 'No place to restore to.'); return; }
    fill(plan, h('p', { class: 'muted' }, reply.data.creates ? 'Restores into (a new folder, made when you start):' : 'Restores into:'),
      h('ul', { class: 'path-list' }, reply.data.destinations.map((d) => h('li', {}, icon('folder'), h('span', { class: 'mono' }, d.to)))));
  }
  const syncTarget = () => { targetBox.hidden = !toOther.checked; showPlan(); };
  targetPath.addEventListener('input', debounce(showPlan, 400));
  toOriginal.addEventListener('change', syncTarget); toOther.addEventListener('change', syncTarget);

  main.append(h('div', { class: 'page-head' },
    h('div', {}, h('h1', {}, 'Restore'), h('p', {}, 'Get back a file or folder as it was at any backup — also from another computer’s backup drive.'))),
  alerts,
  h('section', { class: 'card' }, h('div', { class: 'split' },
    h('div', { class: 'field' }, h('label', { for: 'restore-job' }, 'Backup'), jobSelect),
    h('div', { class: 'field' }, h('label', { for: 'restore-snapshot' }, 'As it was at'), snapSelect, snapFacts)), keyButton,
  h('details', { id: 'restore-open' }, h('summary', {}, 'Look for backups in a folder or drive…'),
    h('div', { class: 'inline' }, ctx.info.can_pick_folders ? h('button', { type: 'button', onclick: async () => {
      const r = await ctx.call('pick_folder', {});
      if (r.ok && r.data.path) { openPath.value = r.data.path; openFolder(); }
    } }, 'Choose folder…') : null, openPath, h('button', { type: 'button', id: 'restore-open-go', onclick: () => openFolder() }, 'Look')),
    h('p', { class: 'muted', id: 'restore-open-hint' }, 'A cloud or network location works too: type rclone:REMOTE:FOLDER (a remote of your rclone configuration).'),
    openError)),
  unlockBox,
  h('section', { class: 'card', id: 'restore-browse' },
    h('div', { class: 'field' }, h('label', { for: 'restore-search' }, 'Search all snapshots for a file name'),
      h('div', { class: 'inline' }, searchInput, h('button', { type: 'button', id: 'restore-search-go', onclick: () => search() }, 'Search'))),
    searchBox),
  h('section', { class: 'card', 'aria-label': 'Files in the snapshot' }, crumbs, tree),
  h('section', { class: 'card', 'aria-label': 'Restore options' },
    h('h2', {}, 'Selected'), selection.text, selection.list,
    h('h2', {}, 'Restore to'),
    h('label', { class: 'check' }, toOriginal, 'The original place'), originalNote,
    h('label', { class: 'check' }, toOther, 'Another folder'), targetBox, targetError, plan,
    h('div', { class: 'field' }, h('label', { for: 'restore-conflict' }, 'If a file is already there'), conflict),
    h('div', { class: 'row' }, restoreButton), progressBox, result));

  function chooseSource() {
    const [kind, ...rest] = jobSelect.value.split(':');
    const value = rest.join(':');
    state.which = kind === 'set' ? { set: value } : { job: value };
    const found = kind === 'set' ? state.found.find((s) => s.path === value) : null;
    // A set no job here uses has no original place on this computer: the user picks a folder.
    toOriginal.disabled = Boolean(found);
    originalNote.hidden = !found;
    originalNote.textContent = found ? `This backup was made on ${found.computer}, not by a job here: choose a folder to restore into.` : '';
    const job = kind === 'job' ? state.jobs.find((j) => j.name === value) : null;
    state.encrypted = Boolean((found && found.encrypted) || (job && job.encrypt));
    keyButton.hidden = true;
    if (found) toOther.checked = true;
    else if (toOriginal.disabled === false && !toOther.checked) toOriginal.checked = true;
    syncTarget();
  }

  async function loadSnapshots() {
    chooseSource();
    selection.clear();
    fill(unlockBox); fill(searchBox);
    state.snapshot = null;
    const reply = await ctx.call('snapshots', state.which);
    if (!reply.ok) {
      fill(snapSelect); fill(snapFacts); fill(tree); fill(crumbs);
      if (LOCKED.has(reply.code)) { showError(alerts, null); showUnlock(reply); return; }
      showError(alerts, reply, 'Cannot list the snapshots.');
      return;
    }
    showError(alerts, null);
    keyButton.hidden = !state.encrypted;   // open now: its recovery key can be shown (and kept)
    state.snapshots = reply.data;
    fill(snapSelect, ...reply.data.map((s, i) => {
      const label = `${when(s.time)}${i === 0 ? ' (newest)' : ''}`;
      return h('option', { value: s.id, title: `${label} · ${snapDetails(s)}` }, label);
    }));
    fill(snapFacts);
    if (!reply.data.length) { fill(tree, h('p', { class: 'empty' }, 'This backup has no snapshots yet. Run a backup first.')); fill(crumbs); return; }
    await openSnapshot(reply.data[0].id, '');
  }

  function showUnlock(reply) {
    const form = unlockForm(ctx, {
      which: state.which, keyring: state.keyring,
      reason: reply.code === 'passphrase_needed' ? 'Type its passphrase to open it, or its recovery key if the passphrase is lost.' : reply.message,
      onUnlocked: (data) => { toast(data.remembered ? 'Unlocked, and remembered in the keyring' : 'Unlocked until Plugback quits'); loadSnapshots(); },
    });
    fill(unlockBox, form.el);
    form.focus();
  }

  async function openSnapshot(id, path) {
    if (state.snapshot !== id) selection.clear();
    state.snapshot = id;
    snapSelect.value = id;
    const shown = state.snapshots.find((s) => s.id === id);
    snapFacts.textContent = shown ? snapDetails(shown) : '';
    await browse(path);
  }

  async function browse(path) {
    state.path = path;
    const reply = await ctx.call('ls', { ...state.which, snapshot: state.snapshot, path });
    if (!reply.ok) { showError(alerts, reply, 'Cannot open that folder.'); return; }
    const parts = path ? path.split('/') : [];
    fill(crumbs, h('button', { type: 'button', onclick: () => browse('') }, 'All folders'),
      ...parts.map((p, i) => [h('span', { 'aria-hidden': 'true' }, '›'),
        h('button', { type: 'button', 'aria-current': i === parts.length - 1 ? 'location' : null, onclick: () => browse(parts.slice(0, i + 1).join('/')) }, p)]));
    if (!reply.data.length) { fill(tree, h('p', { class: 'empty' }, 'This folder is empty.')); return; }
    fill(tree, h('table', { class: 'tree' },
      h('thead', {}, h('tr', {}, h('th', {}, h('span', { class: 'sr-only' }, 'Select')), h('th', {}, 'Name'), h('th', { class: 'num' }, 'Size'), h('th', {}, 'Modified'), h('th', {}, h('span', { class: 'sr-only' }, 'Action')))),
      h('tbody', {}, reply.data.map((e) => {
        const box = h('input', { type: 'checkbox', 'aria-label': `Select ${e.name}`, checked: selection.has(e.path), dataset: { path: e.path } });
        const row = h('tr', { class: box.checked ? 'picked' : null },
          h('td', {}, box),
          h('td', {}, h('span', { class: 'name' }, icon(KIND_ICON[e.type] || 'file'),
            e.type === 'd' ? h('button', { type: 'button', 'aria-label': `Open folder ${e.name}`, onclick: () => browse(e.path) }, e.name) : e.name)),
          h('td', { class: 'num' }, e.type === 'd' ? '' : bytes(e.size)),
          h('td', {}, when(e.mtime)),
          // Shown on a selected, focused or hovered row (always on touch screens): see style.css.
          h('td', {}, e.type === 'f' ? h('button', { type: 'button', class: 'link row-action', 'aria-label': `Versions of ${e.name}`,
            onclick: (ev) => showVersions(e.path, ev.currentTarget) }, 'Versions…') : null));
        box.addEventListener('change', () => { selection.set(e.path, e.type, box.checked); row.classList.toggle('picked', box.checked); });
        return row;
      }))));
  }

  /** Open a snapshot at a file's folder, and select and focus that file (a search hit, a version). */
  async function selectIn(snapshot, path, type) {
    await openSnapshot(snapshot, path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '');
    selection.set(path, type, true);
    const box = tree.querySelector(`input[data-path="${CSS.escape(path)}"]`);
    if (box) { box.checked = true; box.closest('tr').classList.add('picked'); box.focus(); }
  }

  async function showVersions(path, button) {
    const picked = await versionsDialog(ctx, state.which, path, state.snapshots.length ? state.snapshots[0].id : null);
    if (picked) { await selectIn(picked.snapshot, path, 'f'); toast(`Selected the version of ${exact(picked.time)}`); }
    else if (button.isConnected) button.focus();
  }

  async function search() {
    const q = searchInput.value.trim();
    if (q.length < 2) { fill(searchBox, h('p', { class: 'muted' }, 'Type at least two characters.')); return; }
    const reply = await ctx.call('search', { ...state.which, query: q });
    if (!reply.ok) { showError(searchBox, reply, 'Search failed.'); return; }
    if (!reply.data.length) { fill(searchBox, h('p', { class: 'muted' }, `No file matching “${q}” in any snapshot.`)); return; }
    const snapTime = (id) => (state.snapshots.find((s) => s.id === id) || {}).time;
    const kept = (r) => (r.snapshots === 1 ? when(snapTime(r.snapshot)) : `${r.snapshots} backups, ${when(snapTime(r.first_snapshot))} to ${when(snapTime(r.snapshot))}`);
    fill(searchBox, h('p', { class: 'muted' }, `${reply.data.length} version${reply.data.length === 1 ? '' : 's'} found:`),
      h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, h('th', {}, 'File'), h('th', {}, 'Modified'), h('th', { class: 'num' }, 'Size'), h('th', {}, 'In'), h('th', {}, h('span', { class: 'sr-only' }, 'Action')))),
        h('tbody', {}, reply.data.slice(0, 200).map((r) => h('tr', {},
          h('td', { class: 'mono' }, r.path), h('td', {}, exact(r.mtime)), h('td', { class: 'num' }, r.type === 'd' ? '' : `${bytes(r.size)} (${count(r.size)} bytes)`),
          h('td', {}, kept(r)),
          h('td', {}, h('button', { type: 'button', class: 'link', onclick: () => selectIn(r.snapshot, r.path, r.type) }, 'Select this version'))))))));
  }

  async function findSets() {
    const reply = await ctx.call('sets', { folders: opened });
    if (!reply.ok) { showError(alerts, reply, 'Cannot look for backups on the drives.'); return null; }
    state.found = reply.data.sets;
    state.keyring = reply.data.keyring;
    return reply.data;
  }

  async function openFolder() {
    const path = openPath.value.trim();
    if (!path) { showError(openError, { message: 'Type the folder or drive to look in.' }, 'Nothing typed.'); return; }
    const check = await ctx.call('check_folder', { path });
    if (!check.ok) { showError(openError, check, 'Cannot look there.'); return; }
    if (!opened.includes(check.data.path)) opened.push(check.data.path);
    const data = await findSets();
    if (!data) return;
    const here = data.sets.filter((s) => s.where === check.data.path || s.path.startsWith(check.data.path));
    if (!here.length) {
      opened.splice(opened.indexOf(check.data.path), 1);
      const problem = data.problems.find((p) => p.path.startsWith(check.data.path));
      showError(openError, { message: problem ? `${problem.path}: ${problem.message}.` : check.data.path }, 'No Plugback backup found.');
      return;
    }
    showError(openError, null);
    fillSources();
    const first = here[0];
    jobSelect.value = first.used_by.length ? `job:${first.used_by[0]}` : `set:${first.path}`;
    await loadSnapshots();
  }

  function fillSources() {
    const keep = jobSelect.value;
    fill(jobSelect, ...sourceOptions(state.jobs, state.found));
    if (keep && [...jobSelect.options].some((o) => o.value === keep)) jobSelect.value = keep;
  }

  let watching = null;
  let priorTask = 'null';   // the finished task shown before ours started: not our result
  restoreButton.addEventListener('click', async () => {
    fill(targetError);
    let target = null;
    let create = false;
    if (toOther.checked) {
      const check = await ctx.call('check_target', { path: targetPath.value });
      if (!check.ok) { showError(targetError, check, 'Choose the folder to restore into.'); targetPath.focus(); return; }
      target = check.data.path;
      if (!check.data.exists) {
        create = await confirm('Create the folder?', `There is no folder at ${target} yet. Plugback will create it and restore into it.`, 'Create and restore');
        if (!create) { targetPath.focus(); return; }
      }
    }
    const before = await ctx.call('status');
    priorTask = JSON.stringify(before.ok ? before.data.restore || null : null);
    const reply = await ctx.call('restore', { ...state.which, snapshot: state.snapshot, paths: selection.paths(), target, on_conflict: conflict.value, create_target: create });
    if (!reply.ok) { showError(result, reply, 'The restore did not start.'); return; }
    fill(result);
    progressBox.hidden = false;
    restoreButton.disabled = true;
    watch();
  });

  function watch() {
    if (watching) return;
    // onStatus calls back at once with the last status it has: when that already shows our restore
    // finished (a small one ends before the reply that started it arrives), the callback runs before
    // onStatus returns the function that stops watching, so it is called after, not inside.
    let stop = null;
    let over = false;
    stop = ctx.onStatus((reply) => {
      if (!reply.ok) return;
      const task = reply.data.restore;
      if (!task || JSON.stringify(task) === priorTask) return;
      if (task.running) {
        progressBox.hidden = false;
        waitingNote.hidden = !task.waiting;
        waitingNote.textContent = task.waiting || '';
        progress.update(task.progress || { phase: 'restore' });
        return;
      }
      progressBox.hidden = true;
      restoreButton.disabled = selection.size() === 0;   // a failed or stopped restore can be started again
      fill(result, summary(task));
      if (!task.error) {
        toast('Restore finished');
        // Done: nothing stays ticked for the next restore.
        selection.clear();
        tree.querySelectorAll('input[type=checkbox]').forEach((b) => { b.checked = false; });
      }
      over = true;
      if (stop) stop();
      watching = null;
    });
    if (over) stop(); else watching = stop;
  }

  // While this page is open, a drive plugged in does not start its automatic backup (it may be meant for
  // restoring); closing the page (or the window) lets it go. pagehide covers a window closed on this page.
  const hold = (open) => ctx.call('restore_page', { open });
  hold(true);
  const holdTimer = setInterval(() => hold(true), HOLD_RENEW_MS);
  const release = () => { clearInterval(holdTimer); hold(false); };
  window.addEventListener('pagehide', release, { once: true });
  const leave = () => { window.removeEventListener('pagehide', release); release(); if (watching) watching(); };

  jobSelect.addEventListener('change', loadSnapshots);
  snapSelect.addEventListener('change', () => openSnapshot(snapSelect.value, state.path));
  searchInput.addEventListener('keydown', (e) => { if (e.key === 'Enter') { e.preventDefault(); search(); } });
  searchInput.addEventListener('input', debounce(() => { if (searchInput.value.trim().length >= 3) search(); }, 500));
  openPath.addEventListener('keydown', (e) => { if (e.key === 'Enter') { e.preventDefault(); openFolder(); } });

  const config = await ctx.call('config_get');
  if (!config.ok) { showError(alerts, config, 'Cannot load the jobs.'); return leave; }
  state.jobs = config.data.jobs || [];
  await findSets();
  selection.draw();
  if (!state.jobs.length && !state.found.filter((s) => !s.used_by.length).length) {
    fill(tree, h('p', { class: 'empty', id: 'restore-nothing' }, 'There is nothing to restore yet: no backup is set up here, and no connected drive holds a Plugback backup. ',
      'Plug in the backup drive, or look in the folder that holds it (above).'));
    document.getElementById('restore-open').open = true;
    return leave;
  }
  fillSources();
  const first = driveId && onDrive(state.found, driveId);
  if (first && [...jobSelect.options].some((o) => o.value === first)) jobSelect.value = first;
  await loadSnapshots();
  const status = await ctx.call('status');
  if (status.ok && status.data.restore && status.data.restore.running) { progressBox.hidden = false; watch(); }
  return leave;
}
