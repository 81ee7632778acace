// Restore: pick a job and a snapshot by time, browse its tree, or search a
// file name across snapshots; restore what is selected to its original place
// or another folder, choosing what happens to files already there. The full destination
// of each top folder is shown before "Restore" (the original place is this computer's
// folders of the job, never a path the drive records).
import { h, fill, icon, bytes, when, count, showError, progressView, toast, debounce } from '../util.js';

const KIND_ICON = { d: 'folder', f: 'file', l: 'link' };

export async function render(main, ctx) {
  const alerts = h('div');
  const state = { job: null, snapshot: null, path: '', selected: new Set(), snapshots: [] };
  const jobSelect = h('select', { id: 'restore-job' });
  const snapSelect = h('select', { id: 'restore-snapshot' });
  const searchInput = h('input', { type: 'search', id: 'restore-search', placeholder: 'File name, e.g. report.odt', autocomplete: 'off' });
  const searchBox = h('div', { id: 'search-results', 'aria-live': 'polite' });
  const crumbs = h('nav', { class: 'crumbs', 'aria-label': 'Folder in the snapshot' });
  const tree = h('div', { class: 'table-wrap', id: 'restore-tree' });
  const selectedText = h('span', { id: 'restore-selected', class: 'muted' });
  const toOriginal = h('input', { type: 'radio', name: 'restore-target', id: 'target-original', value: 'original', checked: true });
  const toOther = h('input', { type: 'radio', name: 'restore-target', id: 'target-other', value: 'other' });
  const targetPath = h('input', { type: 'text', id: 'target-path', placeholder: `~${ctx.info.sep || '/'}Restored` });
  const targetError = h('div');
  const conflict = h('select', { id: 'restore-conflict' },
    h('option', { value: 'keep_both' }, 'Keep both (the restored copy gets a new name)'),
    h('option', { value: 'skip' }, 'Skip it (keep the file that is there now)'),
    h('option', { value: 'overwrite' }, 'Replace it with the restored version'));
  const restoreButton = h('button', { type: 'button', class: 'primary big', id: 'restore-start', disabled: true }, 'Restore');
  const progress = progressView('Restore progress');
  const progressBox = h('div', { id: 'restore-progress', hidden: true }, progress.el);
  const result = h('div', { id: 'restore-result', 'aria-live': 'polite' });
  const targetBox = h('div', { class: 'inline', hidden: true },
    ctx.info.can_pick_folders ? h('button', { type: 'button', onclick: async () => {
      const r = await ctx.call('pick_folder', {});
      if (r.ok && r.data.path) targetPath.value = r.data.path;
    } }, 'Choose folder…') : null, targetPath);
  const plan = h('div', { id: 'restore-plan', 'aria-live': 'polite' });
  let planAsked = 0;
  async function showPlan() {
    const ask = ++planAsked;
    const target = toOther.checked ? targetPath.value.trim() : null;
    if (!state.selected.size || !state.snapshot || target === '') { fill(plan); return; }
    const reply = await ctx.call('restore_plan', { job: state.job, snapshot: state.snapshot, paths: [...state.selected], target });
    if (ask !== planAsked) return;   // the choice changed meanwhile
    if (!reply.ok) { showError(plan, reply, 'No place to restore to.'); return; }
    fill(plan, h('p', { class: 'muted' }, 'Restores into:'),
      h('ul', { class: 'path-list' }, reply.data.destinations.map((d) => h('li', {}, icon('folder'), h('span', { class: 'mono' }, d.to)))));
  }
  const syncTarget = () => { targetBox.hidden = !toOther.checked; showPlan(); };
  targetPath.addEventListener('input', debounce(showPlan, 400));
  toOriginal.addEventListener('change', syncTarget); toOther.addEventListener('change', syncTarget);

  main.append(h('div', { class: 'page-head' },
    h('div', {}, h('h1', {}, 'Restore'), h('p', {}, 'Get back a file or folder as it was at any backup.'))),
  alerts,
  h('section', { class: 'card' }, h('div', { class: 'split' },
    h('div', { class: 'field' }, h('label', { for: 'restore-job' }, 'Backup'), jobSelect),
    h('div', { class: 'field' }, h('label', { for: 'restore-snapshot' }, 'As it was at'), snapSelect)),
  h('div', { class: 'field' }, h('label', { for: 'restore-search' }, 'Search all snapshots for a file name'),
    h('div', { class: 'inline' }, searchInput, h('button', { type: 'button', id: 'restore-search-go', onclick: () => search() }, 'Search'))),
  searchBox),
  h('section', { class: 'card', 'aria-label': 'Files in the snapshot' }, crumbs, tree),
  h('section', { class: 'card', 'aria-label': 'Restore options' },
    h('h2', {}, 'Restore to'),
    h('label', { class: 'check' }, toOriginal, 'The original place'),
    h('label', { class: 'check' }, toOther, 'Another folder'), targetBox, targetError, plan,
    h('div', { class: 'field' }, h('label', { for: 'restore-conflict' }, 'If a file is already there'), conflict),
    h('div', { class: 'row' }, restoreButton, selectedText), progressBox, result));

  function syncSelected() {
    const n = state.selected.size;
    selectedText.textContent = n ? `${n} item${n === 1 ? '' : 's'} selected` : 'Select files or folders above.';
    restoreButton.disabled = n === 0;
    restoreButton.textContent = n ? `Restore ${n} item${n === 1 ? '' : 's'}` : 'Restore';
    showPlan();
  }

  async function loadSnapshots() {
    state.job = jobSelect.value;
    const reply = await ctx.call('snapshots', { job: state.job });
    if (!reply.ok) { fill(snapSelect); fill(tree); showError(alerts, reply, 'Cannot list the snapshots.'); return; }
    showError(alerts, null);
    state.snapshots = reply.data;
    fill(snapSelect, ...reply.data.map((s, i) => h('option', { value: s.id },
      `${when(s.time)}${i === 0 ? ' (newest)' : ''} · ${count(s.files)} files, ${bytes(s.bytes)}`)));
    if (!reply.data.length) { fill(tree, h('p', { class: 'empty' }, 'This job has no snapshots yet. Run a backup first.')); fill(crumbs); return; }
    await openSnapshot(reply.data[0].id, '');
  }

  async function openSnapshot(id, path) {
    if (state.snapshot !== id) state.selected.clear();
    state.snapshot = id;
    snapSelect.value = id;
    await browse(path);
  }

  async function browse(path) {
    state.path = path;
    const reply = await ctx.call('ls', { job: state.job, snapshot: state.snapshot, path });
    if (!reply.ok) { showError(alerts, reply, 'Cannot open that folder.'); return; }
    const parts = path ? path.split('/') : [];
    fill(crumbs, h('button', { type: 'button', onclick: () => browse('') }, 'All folders'),
      ...parts.map((p, i) => [h('span', { 'aria-hidden': 'true' }, '›'),
        h('button', { type: 'button', 'aria-current': i === parts.length - 1 ? 'location' : null, onclick: () => browse(parts.slice(0, i + 1).join('/')) }, p)]));
    if (!reply.data.length) { fill(tree, h('p', { class: 'empty' }, 'This folder is empty.')); syncSelected(); return; }
    fill(tree, h('table', { class: 'tree' },
      h('thead', {}, h('tr', {}, h('th', {}, h('span', { class: 'sr-only' }, 'Select')), h('th', {}, 'Name'), h('th', { class: 'num' }, 'Size'), h('th', {}, 'Modified'))),
      h('tbody', {}, reply.data.map((e) => {
        const box = h('input', { type: 'checkbox', 'aria-label': `Select ${e.name}`, checked: state.selected.has(e.path), dataset: { path: e.path } });
        box.addEventListener('change', () => { if (box.checked) state.selected.add(e.path); else state.selected.delete(e.path); syncSelected(); });
        return h('tr', {},
          h('td', {}, box),
          h('td', {}, h('span', { class: 'name' }, icon(KIND_ICON[e.type] || 'file'),
            e.type === 'd' ? h('button', { type: 'button', 'aria-label': `Open folder ${e.name}`, onclick: () => browse(e.path) }, e.name) : e.name)),
          h('td', { class: 'num' }, e.type === 'd' ? '' : bytes(e.size)),
          h('td', {}, when(e.mtime)));
      }))));
    syncSelected();
  }

  async function search() {
    const q = searchInput.value.trim();
    if (q.length < 2) { fill(searchBox, h('p', { class: 'muted' }, 'Type at least two characters.')); return; }
    const reply = await ctx.call('search', { job: state.job, query: q });
    if (!reply.ok) { showError(searchBox, reply, 'Search failed.'); return; }
    if (!reply.data.length) { fill(searchBox, h('p', { class: 'muted' }, `No file matching “${q}” in any snapshot.`)); return; }
    const snapTime = (id) => (state.snapshots.find((s) => s.id === id) || {}).time;
    fill(searchBox, h('p', { class: 'muted' }, `${reply.data.length} version${reply.data.length === 1 ? '' : 's'} found:`),
      h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, h('th', {}, 'File'), h('th', {}, 'In the backup of'), h('th', { class: 'num' }, 'Size'), h('th', {}, h('span', { class: 'sr-only' }, 'Action')))),
        h('tbody', {}, reply.data.slice(0, 200).map((r) => h('tr', {},
          h('td', { class: 'mono' }, r.path), h('td', {}, when(snapTime(r.snapshot) || r.mtime)), h('td', { class: 'num' }, bytes(r.size)),
          h('td', {}, h('button', { type: 'button', class: 'link', onclick: async () => {
            await openSnapshot(r.snapshot, r.path.includes('/') ? r.path.slice(0, r.path.lastIndexOf('/')) : '');
            state.selected.add(r.path);
            const box = tree.querySelector(`input[data-path="${CSS.escape(r.path)}"]`);
            if (box) { box.checked = true; box.focus(); }
            syncSelected();
          } }, 'Select this version'))))))));
  }

  let watching = null;
  let priorTask = 'null';   // the finished task shown before ours started: not our result
  restoreButton.addEventListener('click', async () => {
    fill(targetError);
    let target = null;
    if (toOther.checked) {
      const check = await ctx.call('check_folder', { path: targetPath.value });
      if (!check.ok) { showError(targetError, check, 'Choose the folder to restore into.'); targetPath.focus(); return; }
      target = check.data.path;
    }
    const before = await ctx.call('status');
    priorTask = JSON.stringify(before.ok ? before.data.restore || null : null);
    const reply = await ctx.call('restore', { job: state.job, snapshot: state.snapshot, paths: [...state.selected], target, on_conflict: conflict.value });
    if (!reply.ok) { showError(result, reply, 'The restore did not start.'); return; }
    fill(result);
    progressBox.hidden = false;
    restoreButton.disabled = true;
    watch();
  });

  function summary(task) {
    const r = task.result || {};
    const failed = task.error || r.status === 'failed';
    const rows = [['Restored', r.files_restored], ['Bytes', r.bytes_restored !== undefined ? bytes(r.bytes_restored) : undefined],
      ['Skipped (already there)', r.skipped ?? r.files_skipped], ['Kept both', r.files_renamed], ['Replaced', r.files_overwritten]]
      .filter(([, v]) => v !== undefined && v !== null);
    const message = task.error ? (task.error.message || String(task.error)) : null;
    return h('div', { class: `alert ${failed ? 'error' : 'info'}`, role: failed ? 'alert' : 'status' },
      h('div', { class: 'grow' }, h('strong', {}, failed ? 'The restore failed. ' : 'Restore finished. '),
        message || `Files are back in ${task.target || (task.destinations || []).map((d) => d.to).join(', ') || 'their original place'}.`,
        rows.length ? h('dl', { class: 'facts' }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, typeof v === 'number' ? count(v) : v)])) : null,
        (r.warnings || []).length ? h('ul', {}, r.warnings.slice(0, 20).map((w) => h('li', {}, `${w.path}: ${w.message}`))) : null));
  }

  function watch() {
    if (watching) return;
    watching = ctx.onStatus((reply) => {
      if (!reply.ok) return;
      const task = reply.data.restore;
      if (!task || JSON.stringify(task) === priorTask) return;
      if (task.running) { progressBox.hidden = false; progress.update(task.progress || { phase: 'restore' }); return; }
      progressBox.hidden = true;
      fill(result, summary(task));
      if (!task.error) toast('Restore finished');
      watching(); watching = null;
      syncSelected();
    });
  }

  jobSelect.addEventListener('change', loadSnapshots);
  snapSelect.addEventListener('change', () => openSnapshot(snapSelect.value, state.path));
  searchInput.addEventListener('keydown', (e) => { if (e.key === 'Enter') { e.preventDefault(); search(); } });
  searchInput.addEventListener('input', debounce(() => { if (searchInput.value.trim().length >= 3) search(); }, 500));

  const config = await ctx.call('config_get');
  if (!config.ok) { showError(alerts, config, 'Cannot load the jobs.'); return () => watching && watching(); }
  const jobs = config.data.jobs || [];
  if (!jobs.length) { fill(tree, h('p', { class: 'empty' }, 'There is nothing to restore yet: no backup is set up.')); return null; }
  fill(jobSelect, ...jobs.map((j) => h('option', { value: j.name }, j.name)));
  syncSelected();
  await loadSnapshots();
  const status = await ctx.call('status');
  if (status.ok && status.data.restore && status.data.restore.running) { progressBox.hidden = false; watch(); }
  return () => { if (watching) watching(); };
}
