// Preferences: start at login, notifications, battery policy, monthly check, the reminder (issue #14),
// the change journal's full scans and live mode's quiet time (issue #12), reading cloud backups back (issue #13).
import { h, showError, toast } from '../util.js';
import { field, invalid } from './widgets.js';

export async function render(main, ctx) {
  const alerts = h('div');
  main.append(h('div', { class: 'page-head' }, h('div', {}, h('h1', {}, 'Preferences'), h('p', {}, 'How Plugback behaves on this computer.'))), alerts);
  const config = await ctx.call('config_get');
  if (!config.ok) { showError(alerts, config, 'Cannot load the preferences.'); return; }
  const prefs = config.data.prefs || {};
  const check = (id, key, text, hint) => {
    const box = h('input', { type: 'checkbox', id, checked: !!prefs[key] });
    return { key, box, el: h('label', { class: 'check' }, box, h('span', {}, text, hint ? h('span', { class: 'hint muted small' }, h('br'), hint) : null)) };
  };
  const login = check('pref-login', 'start_at_login', 'Start Plugback when I log in', 'Needed for backups to start by themselves when you plug in the drive.');
  const notify = check('pref-notify', 'notifications', 'Show notifications', 'When a backup finishes, fails, or the drive is safe to unplug.');
  const monthly = check('pref-monthly', 'monthly_integrity_check', 'Check the whole backup every month', 'After each backup, reads a part of what is on the drive again, so everything is re-read within 30 days and a failing drive is caught early. Damage is repaired from this computer where it can be.');
  // Off by default (issue #13): reading a cloud backup back downloads it, which a provider or a metered
  // connection may charge for; without it, remote sets get the monthly check of listings and manifests.
  const remote = check('pref-read-back-remote', 'read_back_remote', 'Also read back cloud and network backups', 'Downloads a part of each cloud or network backup after each backup, so all of it is read again within 30 days. Your provider or a metered connection may charge for the downloads. When off, Plugback still checks once a month that everything a snapshot needs is there, without downloading the files.');
  // The numbers are checked by the agent (core/agent/config.py Prefs): a bad one comes back with its
  // key as `field`, and its message is shown by that field.
  const number = (id, key, fallback) => ({ key, input: h('input', { type: 'number', id, value: String(prefs[key] ?? fallback) }) });
  const numbers = [
    number('pref-battery', 'battery_threshold', 20), number('pref-delay', 'connect_delay_seconds', 2),
    number('pref-remind', 'remind_after_days', 7), number('pref-full-days', 'full_scan_days', 7),
    number('pref-full-runs', 'full_scan_runs', 0), number('pref-quiet', 'live_quiet_seconds', 30)];
  const [battery, delay, remind, fullDays, fullRuns, quiet] = numbers.map((n) => n.input);

  async function save(e) {
    e.preventDefault();
    const next = { ...prefs };
    for (const n of numbers) next[n.key] = n.input.value.trim() === '' ? null : Number(n.input.value);
    for (const c of [login, notify, monthly, remote]) next[c.key] = c.box.checked;
    const reply = await ctx.call('prefs_save', { prefs: next });
    const bad = !reply.ok && numbers.find((n) => n.key === reply.field);
    for (const n of numbers) invalid(n.input, n === bad ? reply.message : '');
    if (bad) { showError(alerts, null); bad.input.focus(); return; }
    if (!reply.ok) { showError(alerts, reply, 'The preferences were not saved.'); return; }
    showError(alerts, null);
    Object.assign(prefs, reply.data.prefs);
    toast('Preferences saved');
  }

  const form = h('form', { id: 'prefs-form', novalidate: true, onsubmit: save },
    h('fieldset', { class: 'card' }, h('legend', {}, 'General'), login.el, notify.el),
    h('fieldset', { class: 'card' }, h('legend', {}, 'Power'),
      field('On battery, wait with scheduled backups below (%)', battery, '0 means never wait. Backups you start yourself always run.')),
    h('fieldset', { class: 'card' }, h('legend', {}, 'Drive connected'),
      field('Wait before an automatic backup (seconds)', delay, 'Gives you a moment to cancel when you plugged the drive in to restore something.')),
    h('fieldset', { class: 'card' }, h('legend', {}, 'Checks'), monthly.el, remote.el,
      field('Remind me when a job has not been backed up for (days)', remind, 'A notification once a day, and a line in the tray menu, until a backup succeeds. 0 means never remind.')),
    h('fieldset', { class: 'card' }, h('legend', {}, 'Looking for changes'),
      h('p', { class: 'hint muted small' }, 'While Plugback runs it notes which folders change, and a backup looks only at those. Now and then it checks every file anyway, in case a change was missed.'),
      field('Check every file (full scan) at least every (days)', fullDays),
      field('… and every (backups)', fullRuns, '0 means only by days.'),
      field('Live backups wait for (seconds of quiet)', quiet, 'A job that backs up changes continuously starts once its folders have not changed for this long.')),
    h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'primary', id: 'prefs-save' }, 'Save preferences')));
  main.append(form);
}
