// History: past runs — backups and checks of the backup (issue #14, rolling verification) — with
// status, counts, warnings and each run's log.
import { h, fill, when, copied, count, duration, statusBadge, showError, dialog } from '../util.js';
import { spaceActions } from './space.js';

export async function render(main, ctx) {
  const alerts = h('div');
  const jobFilter = h('select', { id: 'history-job' }, h('option', { value: '' }, 'All jobs'));
  const body = h('div', { id: 'history-runs' });
  main.append(h('div', { class: 'page-head' },
    h('div', {}, h('h1', {}, 'History'), h('p', {}, 'Every backup, and every check of a backup that finished a round or found damage, newest first.')),
    h('div', { class: 'field' }, h('label', { for: 'history-job' }, 'Show'), jobFilter)), alerts, body);

  const config = await ctx.call('config_get');
  if (config.ok) jobFilter.append(...(config.data.jobs || []).map((j) => h('option', { value: j.name }, j.name)));

  async function showLog(run) {
    const reply = await ctx.call('run_log', { run_id: run.id });
    const content = reply.ok ? h('pre', { id: 'run-log' }, reply.data.log || '(This run wrote no log.)') : h('div', {}, showErrorBox(reply));
    await dialog(`Log of ${run.job}, ${when(run.started)}`, content, [{ label: 'Close', value: true, class: 'primary' }]);
  }

  function showErrorBox(reply) { const slot = h('div'); showError(slot, reply, 'Cannot show the log.'); return slot; }

  // What started each run (the agent's Trigger values, core/agent/history.py).
  const TRIGGERS = { manual: 'started by hand', connect: 'drive plugged in', schedule: 'on schedule', live: 'live: files changed' };
  // What a run did (RunKind): a check reads the backup on the drive again, and copies only to repair it.
  const KINDS = { backup: 'Backup', verify: 'Check' };
  const CHECKED = { ok: ['ok', 'No damage'], warnings: ['warn', 'Damage repaired'], failed: ['bad', 'Damage found'] };
  const badge = (run) => {
    const [cls, text] = (run.kind === 'verify' && (run.status !== 'failed' || run.error_code === 'damaged') && CHECKED[run.status]) || [];
    return text ? h('span', { class: `badge ${cls}` }, text) : statusBadge(run.status);
  };

  async function draw() {
    const reply = await ctx.call('history', { job: jobFilter.value || null, limit: 200, kind: 'all' });
    if (!reply.ok) { showError(alerts, reply, 'Cannot load the history.'); fill(body); return; }
    showError(alerts, null);
    if (!reply.data.length) { fill(body, h('div', { class: 'card empty' }, h('p', {}, 'No runs yet.'))); return; }
    fill(body, h('div', { class: 'card table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, h('th', {}, 'Started'), h('th', {}, 'Job'), h('th', {}, 'Kind'), h('th', {}, 'Result'), h('th', { class: 'num' }, 'Files checked'),
        h('th', { class: 'num' }, 'Copied'), h('th', { class: 'num' }, 'Warnings'), h('th', { class: 'num' }, 'Took'), h('th', {}, h('span', { class: 'sr-only' }, 'Log')))),
      h('tbody', {}, reply.data.map((run) => {
        const took = run.ended && run.started ? (new Date(run.ended) - new Date(run.started)) / 1000 : null;
        return [h('tr', { dataset: { run: String(run.id) } },
          h('td', { class: 'nowrap' }, when(run.started)), h('td', {}, run.job, h('div', { class: 'small muted trigger' }, TRIGGERS[run.trigger] || '')),
          h('td', { class: 'kind' }, KINDS[run.kind] || run.kind),
          h('td', {}, badge(run)),
          h('td', { class: 'num' }, run.kind === 'verify' ? '–' : count(run.files_scanned)),
          h('td', { class: 'num' }, run.kind === 'verify' || (run.status === 'failed' && !run.files_copied) ? '–' : copied(run.files_copied, run.bytes_copied)),
          h('td', { class: 'num' }, count(run.warnings)), h('td', { class: 'num' }, duration(took)),
          h('td', {}, h('button', { type: 'button', class: 'link', 'aria-label': `Show the log of ${run.job} at ${when(run.started)}`, onclick: () => showLog(run) }, 'Log'))),
        run.error ? h('tr', { class: 'error-row' }, h('td', { colspan: '9', class: 'small' },
          h('div', { class: 'error-text' }, run.error), spaceActions(ctx, run.job, run))) : null];
      })))));
  }

  jobFilter.addEventListener('change', draw);
  await draw();

}
