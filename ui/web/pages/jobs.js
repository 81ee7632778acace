// Jobs: the list, and the editor (#jobs/new, #jobs/edit/<name>) with folder
// pickers, destination, triggers, excludes with a live preview, retention,
// verification and encryption; a job may rotate over several drives (issue #14). The form checks itself before sending; the
// agent validates again and names any bad field. Schedules come and go as
// fields ({kind, hours, time, day}) and a summary made by the agent: the
// schedule grammar lives in Python only (core/agent/schedule.py).
import { h, fill, icon, showPath, showError, confirm, toast, debounce, count, ago } from '../util.js';
import { folderList, field, invalid, remotePicker } from './widgets.js';

const DAYS = [['mon', 'Monday'], ['tue', 'Tuesday'], ['wed', 'Wednesday'], ['thu', 'Thursday'], ['fri', 'Friday'], ['sat', 'Saturday'], ['sun', 'Sunday']];
const RETENTION = [
  ['keep_last', 'Always keep the last', 'snapshots'],
  ['keep_hourly', 'Keep one per hour for', 'hours'],
  ['keep_daily', 'Keep one per day for', 'days'],
  ['keep_weekly', 'Keep one per week for', 'weeks'],
  ['keep_monthly', 'Keep one per month for', 'months'],
];

export async function render(main, ctx, param) {
  if (param === 'new') return editor(main, ctx, null);
  if (param.startsWith('edit/')) return editor(main, ctx, param.slice(5));
  return list(main, ctx);
}

// What the schedule form shows when a job has no schedule, or for the fields its kind does not use.
const FORM_DEFAULTS = { kind: 'none', hours: 6, time: '09:00', day: 'mon' };

async function list(main, ctx) {
  const alerts = h('div');
  const body = h('div');
  main.append(h('div', { class: 'page-head' },
    h('div', {}, h('h1', {}, 'Jobs'), h('p', {}, 'What is backed up, where to, and when.')),
    h('button', { type: 'button', class: 'primary', onclick: () => ctx.navigate('jobs/new') }, 'Add job')), alerts, body);
  const [reply, status] = await Promise.all([ctx.call('config_get'), ctx.call('status')]);
  if (!reply.ok) { showError(alerts, reply, 'Cannot load the jobs.'); return; }
  const { jobs = [], drives = [] } = reply.data;
  const scans = Object.fromEntries(((status.ok && status.data.jobs) || []).map((j) => [j.name, j]));
  const agesOf = (name) => ((status.ok ? status.data.jobs || [] : []).find((j) => j.name === name) || {}).drives || [];
  if (!jobs.length) {
    body.append(h('div', { class: 'card empty' }, h('p', {}, 'No jobs yet.'),
      h('button', { type: 'button', class: 'primary', onclick: () => ctx.navigate('welcome') }, 'Set up your first backup')));
    return;
  }
  for (const job of jobs) {
    const driveName = (id) => `“${(drives.find((d) => d.drive_id === id) || {}).label || id}”`;
    const ids = [job.destination.drive_id, ...(job.destination.rotation || []).map((r) => r.drive_id)];
    const dest = job.destination.remote || showPath(job.destination.path) || `Drive ${ids.map(driveName).join(' or ')}${job.destination.folder ? ` / ${job.destination.folder}` : ''}`;
    body.append(h('section', { class: 'card', 'aria-label': job.name, dataset: { job: job.name } },
      h('div', { class: 'card-head' }, h('h2', {}, job.name),
        h('div', { class: 'row' }, job.encrypt ? h('span', { class: 'badge info' }, icon('shield'), 'Encrypted') : null)),
      h('dl', { class: 'facts' },
        h('dt', {}, 'Folders'), h('dd', {}, job.sources.map(showPath).join(', ')),
        h('dt', {}, 'Backs up to'), h('dd', {}, dest),
        h('dt', {}, 'Runs'), h('dd', {}, job.triggers.summary),
        agesOf(job.name).length ? [h('dt', {}, 'Newest backup'), h('dd', {}, h('ul', { class: 'drive-ages' }, agesOf(job.name).map((d) =>
          h('li', { dataset: { drive: d.drive_id } }, `${d.label}: ${d.last_success ? ago(d.last_success.ended || d.last_success.started) : 'none yet'}`,
            d.newest && agesOf(job.name).length > 1 ? h('span', { class: 'badge ok' }, 'Newest') : null))))] : null,
        job.excludes && job.excludes.length ? [h('dt', {}, 'Leaves out'), h('dd', {}, job.excludes.join(', '))] : null,
        scanFacts(scans[job.name])),
      h('div', { class: 'row' },
        h('button', { type: 'button', onclick: () => ctx.navigate(`jobs/edit/${encodeURIComponent(job.name)}`) }, 'Edit'),
        // Reads every file again instead of trusting the change journal (issue #12).
        h('button', { type: 'button', class: 'full-check', title: 'Back up now, checking every file instead of only the folders that changed', onclick: async () => {
          const r = await ctx.call('full_check', { name: job.name });
          if (!r.ok) showError(alerts, r, 'Could not start the full check.'); else toast(`Checking every file of ${job.name}…`);
        } }, 'Full check now'),
        h('button', { type: 'button', class: 'danger', onclick: async () => {
          if (!(await confirm(`Remove “${job.name}”?`, 'The job stops running. Backups already on the drive stay there and can still be restored.', 'Remove job', true))) return;
          const r = await ctx.call('job_remove', { name: job.name });
          if (!r.ok) showError(alerts, r, 'Could not remove the job.'); else { toast(`Removed ${job.name}`); ctx.navigate('jobs'); }
        } }, 'Remove'))));
  }
}

/** How the job's next backup looks for changes (the agent's change journal, issue #12). */
function scanFacts(st) {
  if (!st || !st.next_scan) return null;
  const next = st.next_scan === 'journal' ? 'Only the folders that changed since the last backup'
    : `Every folder: ${st.next_scan_reason}`;
  return [h('dt', {}, 'Next backup checks'), h('dd', { class: 'scan-next' }, next),
    st.full_scan_reason ? [h('dt', {}, 'Last full check'), h('dd', { class: 'scan-last' }, `because ${st.full_scan_reason}`)] : null];
}

/** The schedule form's values as the agent takes them (null: no schedule). */
function scheduleFields(kind, hours, time, day) {
  if (kind === 'hours') return { kind, hours };
  if (kind === 'daily') return { kind, time };
  if (kind === 'weekly') return { kind, day, time };
  return null;
}

async function editor(main, ctx, name) {
  const alerts = h('div');
  main.append(alerts);
  const [config, volumes] = await Promise.all([ctx.call('config_get'), ctx.call('drives_list')]);
  if (!config.ok) { showError(alerts, config, 'Cannot load the settings.'); return; }
  const original = name ? (config.data.jobs || []).find((j) => j.name === name) : null;
  if (name && !original) { showError(alerts, { message: `There is no job called “${name}”.` }, 'Not found.'); return; }
  const job = original || { name: '', sources: [], destination: {}, triggers: { on_connect: true, schedule_fields: { kind: 'daily', time: '12:00' }, min_interval_minutes: 0 }, excludes: [], retention: {}, verify: 'after_backup', encrypt: false };
  const enrolled = config.data.drives || [];
  const connected = volumes.ok ? volumes.data : [];

  const nameInput = h('input', { type: 'text', id: 'job-name', value: job.name, required: true, maxlength: '64', autocomplete: 'off' });
  const preview = h('div', { id: 'exclude-preview', class: 'small', 'aria-live': 'polite' });
  const excludes = h('textarea', { id: 'job-excludes', spellcheck: 'false' });
  excludes.value = (job.excludes || []).join('\n');
  const sources = folderList(ctx, { label: 'Folders to back up', id: 'sources', initial: job.sources, onChange: () => refreshPreview() });

  // Destination: an enrolled drive (optionally a folder on it), any folder, or a cloud or network
  // location: a remote of the user's rclone configuration and a folder on it (issue #13).
  const onDrive = !job.destination.path && !job.destination.remote;
  const destDrive = h('input', { type: 'radio', name: 'dest-kind', id: 'dest-kind-drive', value: 'drive', checked: onDrive });
  const destPath = h('input', { type: 'radio', name: 'dest-kind', id: 'dest-kind-path', value: 'path', checked: !!job.destination.path });
  const destRemote = h('input', { type: 'radio', name: 'dest-kind', id: 'dest-kind-remote', value: 'remote', checked: !!job.destination.remote, disabled: !!original && !job.destination.remote });
  const driveSelect = h('select', { id: 'dest-drive' },
    h('option', { value: '' }, enrolled.length ? 'Choose a drive…' : 'No prepared drives yet'),
    enrolled.map((d) => {
      const here = connected.find((v) => v.drive_id === d.drive_id);
      return h('option', { value: d.drive_id, selected: d.drive_id === job.destination.drive_id }, `${d.label || d.drive_id.slice(0, 8)}${here ? ` (connected at ${here.mount})` : ' (not connected)'}`);
    }));
  const driveFolder = h('input', { type: 'text', id: 'dest-folder', value: job.destination.folder || '', placeholder: 'optional' });
  const pathInput = h('input', { type: 'text', id: 'dest-path', value: job.destination.path || '' });
  // Drives in rotation: the other enrolled drives, ticked when the job also backs up to them.
  const rotation = new Set((job.destination.rotation || []).map((r) => r.drive_id));
  const rotationList = h('div', { id: 'dest-rotation' });
  const drawRotation = () => fill(rotationList, enrolled.filter((d) => d.drive_id !== driveSelect.value).map((d) =>
    h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'dest-rotation', value: d.drive_id, checked: rotation.has(d.drive_id),
      onchange: (e) => { if (e.target.checked) rotation.add(d.drive_id); else rotation.delete(d.drive_id); } }), d.label || d.drive_id.slice(0, 8))));
  driveSelect.addEventListener('change', () => { rotation.delete(driveSelect.value); drawRotation(); });
  drawRotation();
  const driveBox = h('div', {}, field('Drive', driveSelect, 'Prepare a new drive on the Drives page.'),
    enrolled.length > 1 ? h('div', { class: 'field', role: 'group', 'aria-labelledby': 'dest-rotation-label' },
      h('span', { id: 'dest-rotation-label' }, 'Also back up to'),
      h('span', { class: 'hint' }, 'Drives in rotation: each backup goes to the one that is connected, so one can be kept elsewhere.'),
      rotationList) : null,
    field('Folder on the drive', driveFolder, 'Leave empty to use the standard place (Plugback/<computer>/<job>).'));
  const pathBox = h('div', {}, field('Backup folder', pathInput, 'A full path, e.g. a network share or a second disk.'));
  const remote = remotePicker(ctx, job.destination.remote);
  const syncDest = () => {
    driveBox.hidden = !destDrive.checked; pathBox.hidden = !destPath.checked; remote.el.hidden = !destRemote.checked;
    syncRemoteJob();   // (defined below with the triggers and encryption it changes; first called there)
  };
  for (const r of [destDrive, destPath, destRemote]) r.addEventListener('change', syncDest);

  // Triggers
  const sched = { ...FORM_DEFAULTS, ...(job.triggers.schedule_fields || {}) };
  const onConnect = h('input', { type: 'checkbox', id: 'trig-connect', checked: !!job.triggers.on_connect });
  const live = h('input', { type: 'checkbox', id: 'trig-live', checked: !!job.triggers.live });
  // In hours, as on the CLI (--min-interval HOURS); a value set there in minutes (30m) shows as 0.5.
  const interval = h('input', { type: 'number', id: 'trig-interval', min: '0', max: '10080', step: 'any', value: String(Math.round(((job.triggers.min_interval_minutes || 0) / 60) * 100) / 100) });
  const kind = h('select', { id: 'sched-kind' },
    [['none', 'No schedule'], ['hours', 'Every few hours'], ['daily', 'Every day'], ['weekly', 'Every week']].map(([v, t]) => h('option', { value: v, selected: sched.kind === v }, t)));
  const hours = h('input', { type: 'number', id: 'sched-hours', min: '1', max: '168', value: String(sched.hours) });
  const time = h('input', { type: 'time', id: 'sched-time', value: sched.time });
  const summary = h('p', { class: 'muted small', id: 'sched-summary' }, original ? `Now: ${job.triggers.summary}.` : '');
  const day = h('select', { id: 'sched-day' }, DAYS.map(([v, t]) => h('option', { value: v, selected: sched.day === v }, t)));
  const hoursBox = field('Every how many hours', hours);
  const dayBox = field('Day', day);
  const timeBox = field('At', time);
  const syncSched = () => { hoursBox.hidden = kind.value !== 'hours'; dayBox.hidden = kind.value !== 'weekly'; timeBox.hidden = !['daily', 'weekly'].includes(kind.value); };
  kind.addEventListener('change', syncSched);
  syncSched();

  // Retention, verification, encryption
  const retention = RETENTION.map(([key, label, unit]) => {
    const input = h('input', { type: 'number', id: `ret-${key}`, min: '0', max: '100000', value: job.retention[key] === undefined ? '' : String(job.retention[key]), placeholder: 'default', 'aria-label': `${label} (${unit})` });
    return { key, input, row: h('div', { class: 'ret-row' }, h('label', { for: input.id }, label), input, h('span', { class: 'muted' }, unit), h('span', { class: 'error-text', id: `ret-${key}-error` })) };
  });
  const verify = h('select', { id: 'job-verify' },
    h('option', { value: 'after_backup', selected: job.verify !== 'none' }, 'Read back and check everything written, after each backup (recommended)'),
    h('option', { value: 'none', selected: job.verify === 'none' }, 'Do not check after backups (faster)'));
  const encrypt = h('input', { type: 'checkbox', id: 'job-encrypt', checked: !!job.encrypt, disabled: !!original });
  const pass1 = h('input', { type: 'password', id: 'job-pass', autocomplete: 'new-password' });
  const pass2 = h('input', { type: 'password', id: 'job-pass2', autocomplete: 'new-password' });
  const passBox = h('div', {}, field('Passphrase', pass1, 'Kept in this computer\'s keyring so backups run unattended. Without it (or the recovery key) the backup cannot be read.'), field('Passphrase again', pass2));
  const syncPass = () => { passBox.hidden = !encrypt.checked || !!original; };
  encrypt.addEventListener('change', syncPass);
  // A remote set is always encrypted, and nothing is plugged in to start it: it runs on its schedule.
  const syncRemoteJob = () => {
    const isRemote = destRemote.checked;
    encrypt.disabled = !!original || isRemote;
    if (isRemote) { encrypt.checked = true; onConnect.checked = false; live.checked = false; }
    onConnect.disabled = isRemote; live.disabled = isRemote;
    syncPass();
  };
  syncDest();

  async function refreshPreviewNow() {
    const patterns = excludes.value.split('\n').map((s) => s.trim()).filter(Boolean);
    const srcs = sources.get();
    if (!srcs.length) { fill(preview, h('span', { class: 'muted' }, 'Add a folder to see what the patterns leave out.')); return; }
    const reply = await ctx.call('exclude_preview', { sources: srcs, excludes: patterns });
    if (!reply.ok) { showError(preview, reply, 'Cannot preview.'); return; }
    const shown = (reply.data.excluded || []).slice(0, 12);
    fill(preview, 
      h('p', { class: 'muted', id: 'exclude-count' }, reply.data.count ? `${count(reply.data.count)} item${reply.data.count === 1 ? '' : 's'} will be left out${reply.data.count > shown.length ? ', for example:' : ':'}` : 'Nothing is left out by these patterns.'),
      shown.length ? h('ul', { class: 'path-list' }, shown.map((p) => h('li', {}, h('span', { class: 'mono', title: p }, showPath(p))))) : null);
  }
  const refreshPreview = debounce(refreshPreviewNow, 350);
  excludes.addEventListener('input', refreshPreview);

  function collect() {
    let okay = true;
    const n = nameInput.value.trim();
    okay = invalid(nameInput, n ? '' : 'Give the job a name.') && okay;   // the name rule itself is the agent's
    const srcs = sources.get();
    const srcError = document.getElementById('sources-error');
    if (!srcs.length) { fill(srcError, h('span', { class: 'error-text' }, 'Add at least one folder to back up.')); okay = false; }
    const destination = destDrive.checked ? { drive_id: driveSelect.value } : destRemote.checked ? {} : { path: pathInput.value.trim() };
    if (destRemote.checked) {
      const spec = remote.spec();
      if (spec) destination.remote = spec; else okay = false;
    } else if (destDrive.checked) {
      okay = invalid(driveSelect, driveSelect.value ? '' : 'Choose the drive to back up to.') && okay;
      if (driveFolder.value.trim()) destination.folder = driveFolder.value.trim();
      const others = [...rotation].filter((id) => id !== driveSelect.value && enrolled.some((d) => d.drive_id === id));
      if (others.length) destination.rotation = others.map((id) => ({ drive_id: id }));
    } else okay = invalid(pathInput, destination.path.startsWith('/') || /^[A-Za-z]:[\\/]/.test(destination.path) ? '' : 'Give the full path of the backup folder.') && okay;
    const h1 = Number(hours.value);
    if (kind.value === 'hours') okay = invalid(hours, Number.isInteger(h1) && h1 >= 1 && h1 <= 168 ? '' : 'Between 1 and 168 hours.') && okay;
    if (['daily', 'weekly'].includes(kind.value)) okay = invalid(time, /^\d{2}:\d{2}$/.test(time.value) ? '' : 'Give a time like 09:30.') && okay;
    const ret = {};
    for (const r of retention) {
      if (r.input.value === '') continue;
      const v = Number(r.input.value);
      okay = invalid(r.input, Number.isInteger(v) && v >= 0 ? '' : 'A whole number.') && okay;
      ret[r.key] = v;
    }
    if (encrypt.checked && !original) {
      okay = invalid(pass1, pass1.value.length >= 8 ? '' : 'Use at least 8 characters.') && okay;
      okay = invalid(pass2, pass1.value === pass2.value ? '' : 'The two passphrases differ.') && okay;
    }
    if (!okay) return null;
    return {
      name: n, sources: srcs, destination,
      triggers: { on_connect: onConnect.checked, live: live.checked, schedule_fields: scheduleFields(kind.value, h1, time.value, day.value), min_interval_minutes: Math.max(0, Math.round(Number(interval.value || 0) * 60)) },
      excludes: excludes.value.split('\n').map((s) => s.trim()).filter(Boolean),
      retention: ret, verify: verify.value, encrypt: encrypt.checked,
    };
  }

  async function save(e) {
    e.preventDefault();
    showError(alerts, null);
    let data = collect();
    // The name is checked where it is typed, by the agent's one rule (validate_job): same words as the CLI.
    const n = nameInput.value.trim();
    const check = n ? await ctx.call('validate_job', { job: { name: n }, original_name: original ? original.name : null }) : { ok: true };
    if (!check.ok && check.code === 'bad_input') { invalid(nameInput, check.message); data = null; }
    if (!data) { const bad = form.querySelector('[aria-invalid="true"]') || document.getElementById('sources-path'); if (bad) bad.focus(); return; }
    const args = { job: data, original_name: original ? original.name : null };
    if (data.encrypt && !original) args.passphrase = pass1.value;
    const reply = await ctx.call('job_save', args);
    if (!reply.ok) { showError(alerts, reply, 'The job was not saved.'); return; }
    // A new encrypted job: the Overview follows its first backup and then shows the recovery key once.
    const fresh = data.encrypt && !original;
    toast(fresh ? `Saved ${data.name}. Its recovery key is shown after its first backup.` : `Saved ${data.name}`);
    ctx.navigate(fresh ? 'overview' : 'jobs');
  }

  const form = h('form', { id: 'job-form', novalidate: true, onsubmit: save },
    h('div', { class: 'card' }, field('Name', nameInput, 'For example “Documents” or “Photos”.'), sources.el),
    h('fieldset', { class: 'card' }, h('legend', {}, 'Back up to'),
      h('label', { class: 'check' }, destDrive, 'A backup drive'),
      h('label', { class: 'check' }, destPath, 'A folder'),
      h('label', { class: 'check' }, destRemote, 'A cloud or network location'),
      driveBox, pathBox, remote.el),
    h('fieldset', { class: 'card' }, h('legend', {}, 'When'),
      h('label', { class: 'check' }, onConnect, 'When the backup drive is connected'),
      h('label', { class: 'check' }, live, 'Back up changes continuously while the drive is connected'),
      field('…but at most once every (hours, 0 = every time)', interval),
      field('Schedule', kind, 'A scheduled backup waits for the drive if it is not connected.'), hoursBox, dayBox, timeBox, summary),
    h('fieldset', { class: 'card' }, h('legend', {}, 'Leave out'),
      field('Patterns, one per line', excludes, 'Like .gitignore: *.tmp, node_modules/, /Downloads. System junk and caches are always left out.'), preview),
    h('fieldset', { class: 'card' }, h('legend', {}, 'Keep'),
      h('p', { class: 'muted small' }, 'Empty fields use the defaults: everything for a day, one a day for a month, one a week after that. When the drive is nearly full the oldest snapshots go first, never the newest.'),
      retention.map((r) => r.row)),
    h('fieldset', { class: 'card' }, h('legend', {}, 'Safety'),
      field('Verification', verify),
      h('label', { class: 'check' }, encrypt, original ? `Encryption is ${job.encrypt ? 'on' : 'off'} (it is chosen when the job is created)` : 'Encrypt this backup (AES-256)'),
      passBox),
    h('div', { class: 'form-actions' },
      h('button', { type: 'button', onclick: () => ctx.navigate('jobs') }, 'Cancel'),
      h('button', { type: 'submit', class: 'primary', id: 'job-save' }, original ? 'Save changes' : 'Create job')));
  main.prepend(h('div', { class: 'page-head' }, h('div', {}, h('h1', {}, original ? `Edit “${original.name}”` : 'New job'), h('p', {}, original ? 'Changes apply from the next backup.' : 'Choose what to back up, where to, and when.'))));
  main.append(form);
  refreshPreviewNow();
  nameInput.focus();
}
