// Overview: one card per job with its last backup, next due time, whether its
// drive is here, a big "Back up now", and live progress while it runs. Issue #14: drives
// Plugback could use ("Use ‘LABEL’ for backups?", "Not this drive"), a job's newest backup on
// each of its drives, and the "not backed up for N days" reminder.
import { h, fill, ago, when, bytes, copied, plural, showPath, statusBadge, showError, progressView, toast, lastBackupText, pausedText } from '../util.js';
import { confirmSet, recoveryKeyDialog, recoveryReminders } from './widgets.js';
import { spaceActions } from './space.js';

function destinationText(job, drives) {
  const dest = job.destination || {};
  if (dest.path) return showPath(dest.path);
  if (dest.remote) return dest.remote;   // a cloud or network location (issue #13)
  const drive = (drives || []).find((d) => d.drive_id === dest.drive_id);
  return `Drive “${(drive && drive.label) || (dest.drive_id || '').slice(0, 8)}”`;
}

export async function render(main, ctx) {
  const alerts = h('div', { id: 'overview-alerts' });
  const cards = h('div', { class: 'grid', id: 'job-cards' });
  const pauseSlot = h('div');
  const notices = h('div', { id: 'overview-notices' });
  const offers = h('div', { id: 'drive-offers' });
  const keyNotices = h('div', { id: 'recovery-reminders' });
  main.append(
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', {}, 'Overview'), h('p', {}, 'Your backups at a glance.')),
      h('div', { class: 'row' }, pauseSlot)),
    alerts, notices, offers, keyNotices, cards);

  const views = new Map();   // job name -> {card, progress, ...}
  let drives = [];
  const config = await ctx.call('config_get');
  if (config.ok) drives = config.data.drives || [];

  async function act(method, args, okText) {
    const reply = await ctx.call(method, args);
    if (!reply.ok) showError(alerts, reply, 'Could not do that.');
    else { showError(alerts, null); if (okText) toast(okText); }
    ctx.refreshStatus();
    return reply;
  }

  function card(job) {
    const facts = h('dl', { class: 'facts' });
    const badges = h('div', { class: 'row' });
    const runButton = h('button', { type: 'button', class: 'primary big', onclick: () => act('run_job', { name: job.name }, `Backing up ${job.name}…`) }, 'Back up now');
    const stopButton = h('button', { type: 'button', class: 'danger', onclick: () => act('stop_job', { name: job.name }, 'Stopping…') }, 'Stop');
    const progress = progressView(`Backup progress of ${job.name}`);
    const progressBox = h('div', { class: 'progress-box' }, progress.el);
    // A run refused the set it found at the destination: the user looks at it and decides.
    const reviewButton = h('button', { type: 'button', class: 'primary', hidden: true, onclick: (ev) => review(job.name, ev.currentTarget.dataset.drive) }, 'Review the backup on the drive…');
    const spaceSlot = h('div', { class: 'space-slot' });   // a full drive: what to do (space.js)
    const scanLines = h('div', { class: 'scan-lines small muted' });   // issue #12: worded by core/agent/watching.py
    const el = h('section', { class: 'card job-card', 'aria-label': job.name, dataset: { job: job.name } },
      h('div', { class: 'card-head' }, h('h2', {}, job.name), badges),
      facts, scanLines, progressBox, spaceSlot,
      h('div', { class: 'row' }, reviewButton, runButton, stopButton));
    return { el, facts, scanLines, badges, runButton, stopButton, reviewButton, spaceSlot, progress, progressBox };
  }

  async function review(name, driveId) {
    const result = await confirmSet(ctx, name, driveId);
    if (result.error) { showError(alerts, result.error, 'Could not use that backup.'); return; }
    if (result.adopted) await act('run_job', { name }, `Backing up ${name}…`);
  }

  // A new encrypted set's recovery key pops up once (after its first backup); until the user says it
  // was kept, a reminder stays here. Asked again only when a job's newest backup changes.
  let keysSeen = null;
  let keyOpen = false;
  async function showKey(reminder) {
    if (keyOpen) return;
    keyOpen = true;
    try { await recoveryKeyDialog(ctx, { job: reminder.job }); } finally { keyOpen = false; }
    keysSeen = null;
    ctx.refreshStatus();
  }
  async function reminders(jobs) {
    const key = JSON.stringify(jobs.map((j) => [j.name, (j.last_success || {}).id]));
    if (key === keysSeen) return;
    keysSeen = key;
    const list = await recoveryReminders(ctx);
    fill(keyNotices, list.map((r) => h('div', { class: 'alert warn', role: 'status', dataset: { recovery: r.job } },
      h('div', { class: 'grow' }, h('strong', {}, `Save the recovery key of ${r.job}. `), 'It opens the backup if the passphrase is lost.'),
      h('button', { type: 'button', onclick: () => showKey(r) }, 'Show the recovery key…'))));
    const fresh = list.find((r) => !r.shown);
    if (fresh) showKey(fresh);
  }

  // A drive that is not Plugback's: the same choices as the tray menu (core.agent.offers words them).
  function offerView(o, hasJobs) {
    const setUp = () => ctx.navigate(hasJobs ? 'drives' : 'welcome');
    return h('div', { class: 'alert info', role: 'status', dataset: { offer: o.mount } },
      h('div', { class: 'grow' }, h('strong', {}, `${o.title} `), o.kind === 'plugback'
        ? `${o.this_computer && o.computers.length === 1 ? 'It holds earlier backups of this computer.' : `It holds backups made on ${o.computers.join(', ') || 'another computer'}.`}`
        : `It is mounted at ${o.mount}.`),
      o.kind === 'plugback' ? h('button', { type: 'button', class: 'primary', onclick: () => ctx.navigate('restore') }, 'Restore files from it…') : null,
      h('button', { type: 'button', class: o.kind === 'plugback' ? '' : 'primary', onclick: setUp }, 'Set it up for backups…'),
      h('button', { type: 'button', onclick: () => act('offer_decline', { mount: o.mount }, `${o.name} will not be offered again`) }, 'Not this drive'));
  }

  /** A job's newest backup on each of its drives, the newest marked (shown for jobs on several drives). */
  function driveAges(job) {
    return h('ul', { class: 'drive-ages' }, job.drives.map((d) => h('li', { dataset: { drive: d.drive_id } },
      `${d.label}: `, d.last_success ? `${ago(d.last_success.ended || d.last_success.started)}` : 'no backup yet',
      d.newest ? h('span', { class: 'badge ok' }, 'Newest') : null,
      d.present ? h('span', { class: 'badge' }, 'Connected') : null)));
  }

  function update(view, job) {
    // Truthful: the last successful backup and the last attempt are told apart (a failed run is no backup).
    const ok = job.last_success;
    const attempt = job.last_attempt || job.last_run;
    fill(view.badges,
      job.running ? statusBadge('running') : job.queued ? h('span', { class: 'badge info' }, 'Waiting to start') : attempt ? statusBadge(attempt.status) : h('span', { class: 'badge' }, 'Not backed up yet'),
      job.destination && job.destination.remote
        ? h('span', { class: `badge ${job.waiting ? 'warn' : ''}`, dataset: { waiting: String(!!job.waiting) } }, job.waiting ? 'Waiting for the network' : 'Cloud or network location')
        : h('span', { class: `badge ${job.drive_present ? 'ok' : ''}` }, job.destination && job.destination.path
          ? (job.drive_present ? 'Destination reachable' : 'Destination not reachable')
          : (job.drive_present ? 'Drive connected' : 'Drive not connected')));
    view.el.classList.toggle('attention', !!(job.attention || job.damage));
    fill(view.facts,
      h('dt', {}, 'Folders'), h('dd', {}, (job.sources || []).map(showPath).join(', ')),
      h('dt', {}, 'Backs up to'), h('dd', {}, destinationText(job, drives)),
      h('dt', {}, 'Backups'), h('dd', { class: 'last-backup' }, lastBackupText(job), ok ? ` (${when(ok.ended || ok.started)})` : ''),
      ok ? [h('dt', {}, 'Copied'), h('dd', {}, `${copied(ok.files_copied, ok.bytes_copied)}${ok.warnings ? ` · ${plural(ok.warnings, 'warning')}` : ''}`)] : null,
      (job.drives || []).length > 1 ? [h('dt', {}, 'On each drive'), h('dd', {}, driveAges(job))] : null,
      job.reminder ? [h('dt', {}, 'Reminder'), h('dd', { class: 'error-text reminder' }, job.reminder.message)] : null,
      job.attention ? [h('dt', {}, 'Problem'), h('dd', { class: 'error-text' }, job.attention)] : null,
      job.waiting ? [h('dt', {}, 'Waiting'), h('dd', { class: 'waiting' }, `${job.waiting.error} Trying again ${ago(job.waiting.retry_at)}.`)] : null,
      job.running && job.progress && job.progress.speed !== undefined ? [h('dt', {}, 'Uploaded'), h('dd', { class: 'uploaded' }, `${bytes(job.progress.uploaded)} at ${bytes(job.progress.speed)}/s`)] : null,
      job.damage ? [h('dt', {}, 'Backup check'), h('dd', { class: 'error-text damage' }, job.damage)] : null,
      // A remote job's check (issue #13; a drive's is on the Drives page): after its backups, see Preferences.
      job.check ? [h('dt', {}, 'Checked'), h('dd', { class: 'checked' }, job.check.last_full_check ? `Last checked ${ago(job.check.last_full_check)}` : 'Not checked yet',
        job.check.checking ? ` · checking now${job.check.check_percent !== null ? ` (${job.check.check_percent} %)` : ''}` : '')] : null,
      h('dt', {}, 'Next backup'), h('dd', {}, job.next_due ? `${ago(job.next_due)} (${when(job.next_due)})` : job.triggers && job.triggers.on_connect ? 'when the drive is connected' : 'only when you start it'));
    fill(view.scanLines, job.next_scan_text ? h('div', { class: 'next-scan' }, job.next_scan_text) : null,
      job.live_text ? h('div', { class: 'live-line' }, job.live_text) : null);
    view.progressBox.hidden = !job.running;
    if (job.running) view.progress.update(job.progress || { phase: 'scan' });
    view.runButton.disabled = !!job.running;
    view.runButton.title = job.drive_present ? '' : 'The backup will start when the drive is connected.';
    view.stopButton.hidden = !job.running;
    view.reviewButton.hidden = !!job.running || !attempt || attempt.error_code !== 'set_needs_confirmation';
    view.reviewButton.dataset.drive = (attempt && attempt.drive_id) || '';   // the drive whose set was refused
    const full = job.running ? '' : `${(attempt || {}).id}:${(attempt || {}).error_code}`;
    if (view.spaceSlot.dataset.key !== full) {   // redraw only on change, so focus stays on its button
      view.spaceSlot.dataset.key = full;
      fill(view.spaceSlot, job.running ? null : spaceActions(ctx, job.name, attempt));
    }
  }

  function onStatus(reply) {
    if (!reply.ok) {
      showError(alerts, reply, 'Cannot reach the backup agent.');
      return;
    }
    if (alerts.querySelector('[data-code="agent_unavailable"]')) showError(alerts, null);
    const status = reply.data;
    const jobs = status.jobs || [];
    const labelOf = (id) => ((status.drives || []).find((d) => d.drive_id === id) || {}).label || 'the drive';
    const attention = status.attention || [];
    const overdue = status.reminders || [];
    const pendingKey = JSON.stringify([status.problem, attention, overdue, status.paused, status.paused_until, (status.pending || []).map((p) => [p.drive_id, p.starts_at])]);
    if (notices.dataset.key !== pendingKey) {   // redraw only on change, so focus stays on its button
      notices.dataset.key = pendingKey;
      fill(notices,
        status.problem ? h('div', { class: 'alert warn', role: 'status' }, h('div', { class: 'grow' }, h('strong', {}, 'Plugback needs attention. '), status.problem)) : null,
        attention.length ? h('div', { class: 'alert warn', role: 'status', id: 'attention-banner' }, h('div', { class: 'grow' },
          h('strong', {}, attention.length === 1 ? 'A backup needs attention. ' : `${attention.length} backups need attention. `),
          attention.length === 1 ? attention[0].message : h('ul', {}, attention.map((a) => h('li', {}, a.message))))) : null,
        overdue.length ? h('div', { class: 'alert warn', role: 'status', id: 'reminder-banner' }, h('div', { class: 'grow' },
          h('strong', {}, 'Plug in a backup drive. '), overdue.length === 1 ? overdue[0].message : h('ul', {}, overdue.map((r) => h('li', {}, r.message))))) : null,
        status.paused ? h('div', { class: 'alert info', role: 'status', id: 'paused-banner' }, h('div', { class: 'grow' }, `${pausedText(status)}. Backups you start yourself still run.`)) : null,
        (status.pending || []).map((p) => h('div', { class: 'alert info', role: 'status', dataset: { pending: p.drive_id } },
          h('div', { class: 'grow' }, `${labelOf(p.drive_id)} was connected: backing up ${p.jobs.join(', ')} ${ago(p.starts_at)}.`),
          h('button', { type: 'button', onclick: () => act('stop_job', {}, 'Automatic backup cancelled') }, 'Not now'))));
    }
    const offerKey = JSON.stringify([(status.offers || []).map((o) => [o.mount, o.kind, o.title]), jobs.length > 0]);
    if (offers.dataset.key !== offerKey) {
      offers.dataset.key = offerKey;
      fill(offers, (status.offers || []).map((o) => offerView(o, jobs.length > 0)));
    }
    fill(pauseSlot, status.paused
      ? h('button', { type: 'button', onclick: () => act('resume', {}, 'Automatic backups resumed') }, 'Resume automatic backups')
      : jobs.length ? h('button', { type: 'button', onclick: () => act('pause', { until: null }, 'Automatic backups paused') }, 'Pause automatic backups') : '');
    reminders(jobs);
    if (!jobs.length) {
      fill(cards, h('div', { class: 'card empty' },
        h('h2', {}, 'No backups set up yet'),
        h('p', {}, 'Choose the folders to keep safe and a drive to keep them on.'),
        h('button', { type: 'button', class: 'primary big', onclick: () => ctx.navigate('welcome') }, 'Set up a backup')));
      views.clear();
      return;
    }
    for (const name of [...views.keys()]) {
      if (!jobs.some((j) => j.name === name)) { views.get(name).el.remove(); views.delete(name); }
    }
    if (cards.querySelector('.empty')) fill(cards);
    for (const job of jobs) {
      if (!views.has(job.name)) { const v = card(job); views.set(job.name, v); cards.append(v.el); }
      update(views.get(job.name), job);
    }
  }

  return ctx.onStatus(onStatus);
}
