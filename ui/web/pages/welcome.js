// First run: pick folders, plug in a drive (or pick a cloud or network location, issue #13), prepare
// it, first backup.
import { h, fill, icon, bytes, plural, freeOf, sentence, showError, progressView, ago } from '../util.js';
import { folderList, field, invalid, confirmSet, recoveryKeyDialog, recoveryReminders, remotePicker } from './widgets.js';

const STEPS = ['Folders', 'Where to', 'Prepare', 'First backup'];

export async function render(main, ctx) {
  // remote: the rclone:REMOTE:PATH chosen instead of a drive (null: a drive).
  const state = { step: 0, sources: [], volume: null, driveId: null, remote: null, toRemote: false, jobName: 'My files' };
  const alerts = h('div');
  const stepList = h('ol', { class: 'steps', 'aria-label': 'Setup steps' });
  const body = h('section', { class: 'card', id: 'welcome-step' });
  main.append(h('div', { class: 'hero' }, icon('shield'), h('h1', {}, 'Welcome to Plugback'),
    h('p', { class: 'muted' }, 'Plug in your drive, and your folders are backed up, checked, and safe to unplug.')), stepList, alerts, body);
  let stop = null;
  const sources = folderList(ctx, { label: 'Folders to back up', id: 'sources', hint: 'Add the folders that matter: documents, photos, projects.', onChange: (f) => { state.sources = f; } });

  function go(step) {
    if (stop) { stop(); stop = null; }
    state.step = step;
    showError(alerts, null);
    fill(stepList, ...STEPS.map((s, i) => h('li', { class: i < step ? 'done' : '', 'aria-current': i === step ? 'step' : null }, s)));
    fill(body);
    [folders, state.toRemote ? cloud : drive, state.toRemote ? prepareRemote : prepare, backup][step]();
    const heading = body.querySelector('h2');
    if (heading) { heading.setAttribute('tabindex', '-1'); heading.focus(); }
  }

  function folders() {
    body.append(h('h2', {}, 'Which folders should be backed up?'), sources.el,
      h('div', { class: 'form-actions' }, h('button', { type: 'button', class: 'primary', id: 'welcome-next', onclick: () => {
        if (!sources.get().length) { showError(alerts, { message: 'Add at least one folder to back up.' }, 'One more thing.'); return; }
        state.sources = sources.get();
        go(1);
      } }, 'Next')));
  }

  function drive() {
    const list = h('div', { id: 'welcome-drives', role: 'radiogroup', 'aria-label': 'Backup drive' });
    body.append(h('h2', {}, 'Plug in your backup drive'),
      h('p', { class: 'muted' }, 'Any USB drive or external disk works. Plugback keeps its backups in a “Plugback” folder and leaves everything else alone.'), list,
      h('p', { class: 'muted' }, 'No drive? ', h('button', { type: 'button', class: 'link', id: 'welcome-to-remote', onclick: () => { state.toRemote = true; go(1); } },
        'Back up to a cloud or network location instead…')),
      h('div', { class: 'form-actions' }, h('button', { type: 'button', onclick: () => go(0) }, 'Back'),
        h('button', { type: 'button', class: 'primary', id: 'welcome-next', onclick: () => {
          if (!state.volume) { showError(alerts, { message: 'Choose the drive to back up to. If it is not listed, plug it in and wait a moment.' }, 'No drive chosen.'); return; }
          go(2);
        } }, 'Next')));
    let shown = '';
    async function refresh() {
      const reply = await ctx.call('drives_list');
      if (!reply.ok) { showError(alerts, reply, 'Cannot list the drives.'); return; }
      const volumes = reply.data.filter((v) => v.removable || v.drive_id);
      const signature = JSON.stringify(volumes.map((v) => [v.mount, v.drive_id]));
      if (signature === shown) return;
      shown = signature;
      if (state.volume && !volumes.some((v) => v.mount === state.volume.mount)) state.volume = null;
      fill(list, ...(volumes.length ? volumes.map((v) => {
        const radio = h('input', { type: 'radio', name: 'welcome-drive', value: v.mount, checked: state.volume && state.volume.mount === v.mount });
        radio.addEventListener('change', () => { state.volume = v; });
        return h('label', { class: 'choice' }, radio, icon('drives'), h('span', {}, h('strong', {}, (v.label || v.mount).replace(/^the /, 'The ')), h('br'),
          h('span', { class: 'muted small' }, `${v.mount} · ${freeOf(v)}${v.drive_id ? ' · already a Plugback drive' : ''}`)));
      }) : [h('p', { class: 'empty' }, icon('plug'), h('br'), 'Waiting for a drive… plug it in now.')]));
    }
    refresh();
    const timer = setInterval(refresh, 2000);
    stop = () => clearInterval(timer);
  }

  function prepare() {
    const v = state.volume;
    // v.label may be "the 32 GB exFAT drive" (no file-system label): not a name to keep.
    const label = h('input', { type: 'text', id: 'welcome-label', value: (v.drive_id ? v.label : v.fs_label) || 'Backup drive', maxlength: '40' });
    const name = h('input', { type: 'text', id: 'welcome-name', value: state.jobName, maxlength: '64' });
    const secret = encryption();
    body.append(h('h2', {}, v.drive_id ? 'Name your backup' : 'Prepare the drive'),
      v.drive_id ? h('p', {}, `${v.label || v.mount} is already a Plugback drive.`) : field('Name for this drive', label, `Plugback will create a “Plugback” folder on ${v.mount}.`),
      field('Name for this backup', name, 'Shown in the tray menu and in History.'),
      h('p', { class: 'muted' }, 'Plugback will back up whenever this drive is plugged in, and daily at 12:00 while it is connected. You can change this on the Jobs page.'),
      secret.el,
      startActions(name, secret, start, v.drive_id ? 'Start first backup' : 'Prepare drive and start first backup'));

    async function start() {
      // The agent checks the name (the one rule, core/agent/config.py) before the drive is touched.
      if (!await nameAccepted(name)) return;
      let driveId = v.drive_id;
      if (!driveId || !v.enrolled) {
        const init = await ctx.call('drive_init', { mount: v.mount, label: label.value.trim() || null });
        if (!init.ok) { showError(alerts, init, 'The drive could not be prepared.'); return; }
        driveId = init.data.drive_id;
      }
      state.driveId = driveId;
      // The agent notices a newly prepared drive on its next look at the mounts (about 2 s).
      for (let i = 0; i < 20; i += 1) {
        const st = await ctx.call('status');
        if (st.ok && (st.data.drives || []).some((d) => d.drive_id === driveId && d.present)) break;
        await new Promise((r) => setTimeout(r, 500));
      }
      const job = { name: state.jobName, sources: state.sources, destination: { drive_id: driveId },
        triggers: { on_connect: true, schedule_fields: { kind: 'daily', time: '12:00' }, min_interval_minutes: 0 }, excludes: [], retention: {}, verify: 'after_backup', encrypt: secret.on() };
      // On a retry the job exists already: change it instead of adding a second one.
      // start: false — this page starts the one first backup itself (no second, automatic one).
      state.encrypted = secret.on();
      const saved = await ctx.call('job_save', { job, original_name: state.savedName || null, start: false, ...(secret.on() ? { passphrase: secret.value() } : {}) });
      if (!saved.ok) { showError(alerts, saved, 'The backup could not be set up.'); return; }
      state.savedName = state.jobName;
      // A drive that already holds a backup under this name (someone else's stick?): ask first.
      const found = await confirmSet(ctx, state.jobName);
      if (found.error) { showError(alerts, found.error, 'Cannot look at the backup on the drive.'); return; }
      if (found.cancelled) {
        showError(alerts, { code: 'set_needs_confirmation', message: 'Nothing was backed up and the backup on the drive was left alone. Give this backup another name, or choose another drive.' }, 'Not started.');
        name.focus();
        return;
      }
      const run = await ctx.call('run_job', { name: state.jobName });
      if (!run.ok) { showError(alerts, run, 'The first backup did not start.'); return; }
      go(3);
    }
  }

  // A cloud or network location (issue #13): a remote of the user's rclone configuration, listed and
  // tested by the agent (the window runs no rclone), as in the Jobs editor. Next tests the connection.
  function cloud() {
    const picker = remotePicker(ctx, state.remote);
    body.append(h('h2', {}, 'Back up to a cloud or network location'),
      h('p', { class: 'muted' }, 'Any place rclone reaches: S3 and compatibles, B2, SFTP, WebDAV, SMB, Google Drive, OneDrive… Backups there are always encrypted; they run on a schedule, as nothing is plugged in.'),
      picker.el,
      h('div', { class: 'form-actions' }, h('button', { type: 'button', onclick: () => go(0) }, 'Back'),
        h('button', { type: 'button', id: 'welcome-to-drive', onclick: () => { state.toRemote = false; go(1); } }, 'Use a drive instead'),
        h('button', { type: 'button', class: 'primary', id: 'welcome-next', onclick: async (e) => {
          const button = e.currentTarget;
          const spec = picker.spec();
          if (!spec) return;
          button.disabled = true;
          try {
            const found = await picker.test();
            if (found) { state.remote = spec; state.remoteHasSet = found.set; go(2); }
          } finally { button.disabled = false; }
        } }, 'Next')));
  }

  function prepareRemote() {
    const name = h('input', { type: 'text', id: 'welcome-name', value: state.jobName, maxlength: '64' });
    const secret = encryption({ locked: true });
    body.append(h('h2', {}, 'Name your backup'),
      field('Name for this backup', name, 'Shown in the tray menu and in History.'),
      h('p', { class: 'muted', id: 'welcome-remote-when' }, `Plugback will back up to ${state.remote} every day at 12:00, and whenever you choose “Back up now”. You can change this on the Jobs page.`),
      // A set there already (this computer set up again?): its passphrase opens it, and the backup goes on in it.
      state.remoteHasSet ? h('p', { class: 'alert info', id: 'welcome-remote-found' }, 'A Plugback backup is there already. Type its passphrase: this backup then goes on in it, and sends only what is new.') : null,
      secret.el,
      startActions(name, secret, start, 'Start first backup'));

    async function start() {
      if (!await nameAccepted(name)) return;
      // Nothing to plug in: no connect trigger; the agent forces encryption for a remote set anyway.
      const job = { name: state.jobName, sources: state.sources, destination: { remote: state.remote },
        triggers: { on_connect: false, schedule_fields: { kind: 'daily', time: '12:00' }, min_interval_minutes: 0 }, excludes: [], retention: {}, verify: 'after_backup', encrypt: true };
      state.encrypted = true;
      const saved = await ctx.call('job_save', { job, original_name: state.savedName || null, start: false, passphrase: secret.value() });
      if (!saved.ok) { showError(alerts, saved, 'The backup could not be set up.'); return; }
      state.savedName = state.jobName;
      const run = await ctx.call('run_job', { name: state.jobName });
      if (!run.ok) { showError(alerts, run, 'The first backup did not start.'); return; }
      go(3);
    }
  }

  // "Encrypt this backup": a passphrase typed twice; the agent keeps it in the keyring for the first run.
  // locked: always encrypted (a cloud or network location), the box ticked and not to be unticked.
  // The backup's name as typed, checked by the agent (the one rule, core/agent/config.py): whether it was accepted.
  async function nameAccepted(name) {
    state.jobName = name.value.trim();
    const check = await ctx.call('validate_job', { job: { name: state.jobName }, original_name: state.savedName || null });
    if (!check.ok) {
      if (check.code === 'bad_input') { invalid(name, check.message); name.focus(); } else showError(alerts, check, 'The backup could not be set up.');
      return false;
    }
    invalid(name, '');
    return true;
  }

  // Back, and the button that checks the backup's name and the passphrase, then calls start().
  function startActions(name, secret, start, label) {
    return h('div', { class: 'form-actions' }, h('button', { type: 'button', onclick: () => go(1) }, 'Back'),
      h('button', { type: 'button', class: 'primary', id: 'welcome-start', onclick: async (e) => {
        const button = e.currentTarget;
        if (!invalid(name, name.value.trim() ? '' : 'Give the backup a name.')) { name.focus(); return; }
        if (!secret.check()) return;
        button.disabled = true;
        try { await start(); } finally { button.disabled = false; }
      } }, label));
  }

  function encryption({ locked = false } = {}) {
    const box = h('input', { type: 'checkbox', id: 'welcome-encrypt', checked: locked || !!state.encrypted, disabled: locked });
    const pass1 = h('input', { type: 'password', id: 'welcome-pass', autocomplete: 'new-password' });
    const pass2 = h('input', { type: 'password', id: 'welcome-pass2', autocomplete: 'new-password' });
    const fields = h('div', {}, field('Passphrase', pass1, 'Without it, or the recovery key shown after the first backup, the backup cannot be read.'), field('Passphrase again', pass2));
    const sync = () => { fields.hidden = !box.checked; };
    box.addEventListener('change', sync);
    sync();
    const check = () => {
      if (!box.checked) return true;
      const okay = invalid(pass1, pass1.value.length >= 8 ? '' : 'Use at least 8 characters.') && invalid(pass2, pass1.value === pass2.value ? '' : 'The two passphrases differ.');
      if (!okay) (pass1.getAttribute('aria-invalid') ? pass1 : pass2).focus();
      return okay;
    };
    const el = h('div', {}, h('label', { class: 'check' }, box, locked ? 'Encrypted (AES-256): backups in a cloud or network location always are' : 'Encrypt this backup (AES-256)'), fields);
    return { el, check, on: () => box.checked, value: () => pass1.value };
  }

  // A new encrypted set: its recovery key, once, right after the first backup made it.
  async function offerKey(keySlot) {
    const mine = (await recoveryReminders(ctx)).find((r) => r.job === state.jobName);
    if (!mine) return;
    const show = async () => { if (await recoveryKeyDialog(ctx, { job: state.jobName })) fill(keySlot, h('p', { id: 'welcome-key-kept' }, 'Recovery key kept.')); };
    fill(keySlot, h('p', {}, 'This backup is encrypted. Keep its recovery key: it opens the backup if the passphrase is lost. ',
      h('button', { type: 'button', id: 'welcome-show-key', onclick: show }, 'Show the recovery key…')));
    if (!mine.shown) await show();
  }

  function backup() {
    const progress = progressView('First backup progress');
    const text = h('p', { id: 'welcome-backup-state', 'aria-live': 'polite' }, 'Starting…');
    const keySlot = h('div', { id: 'welcome-key' });
    body.append(h('h2', {}, 'Your first backup'), text, progress.el, keySlot,
      h('div', { class: 'form-actions' }, h('button', { type: 'button', class: 'primary', onclick: () => ctx.navigate('overview') }, 'Go to overview')));
    let seenRunning = false;
    // onStatus calls back at once with the last status it has: when that already shows the first
    // backup finished (a small one can end before the reply that started it arrives), the callback
    // runs before onStatus returns the function that stops watching, so it is called after, not inside
    // (the old code kept listening, and offered the recovery key a second time at the next poll).
    let over = false;
    const watching = ctx.onStatus((reply) => {
      if (over) return;
      if (!reply.ok) { showError(alerts, reply, 'Cannot follow the backup.'); return; }
      const job = (reply.data.jobs || []).find((j) => j.name === state.jobName);
      if (!job) return;
      if (job.running) { seenRunning = true; text.textContent = 'Backing up… you can close this window; the backup carries on.'; progress.update(job.progress || { phase: 'scan' }); return; }
      if ((seenRunning || job.last_run) && job.last_run) {
        progress.el.hidden = true;
        const r = job.last_run;
        text.textContent = ['ok', 'warnings'].includes(r.status)
          ? `Done ${ago(r.ended)}: ${plural(r.files_copied, 'file')} (${bytes(r.bytes_copied)}) ${r.files_copied === 1 ? 'is' : 'are'} safe ${state.toRemote ? `at ${state.remote}` : 'on the drive'}.${r.warnings ? ` ${plural(r.warnings, 'file')} could not be read; see History.` : ''}`
          : `The backup did not finish: ${sentence(r.error || r.status)}`;
        over = true;
        if (stop) { stop(); stop = null; }
        if (state.encrypted && ['ok', 'warnings'].includes(r.status)) offerKey(keySlot);
      }
    });
    if (over) watching(); else stop = watching;
  }

  go(0);
  return () => { if (stop) stop(); };
}
