// Preferences: start at login, notifications, battery policy, monthly check, the reminder (issue #14).
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
  const battery = h('input', { type: 'number', id: 'pref-battery', min: '0', max: '100', value: String(prefs.battery_threshold ?? 20) });
  const delay = h('input', { type: 'number', id: 'pref-delay', min: '0', max: '600', value: String(prefs.connect_delay_seconds ?? 2) });
  const remind = h('input', { type: 'number', id: 'pref-remind', min: '0', max: '365', value: String(prefs.remind_after_days ?? 7) });

  async function save(e) {
    e.preventDefault();
    const b = Number(battery.value);
    const d = Number(delay.value);
    const r = Number(remind.value);
    const okay = invalid(battery, Number.isInteger(b) && b >= 0 && b <= 100 ? '' : 'A percentage from 0 to 100.')
      & invalid(delay, Number.isInteger(d) && d >= 0 && d <= 600 ? '' : 'Seconds from 0 to 600.')
      & invalid(remind, Number.isInteger(r) && r >= 0 && r <= 365 ? '' : 'Days from 0 to 365.');
    if (!okay) { form.querySelector('[aria-invalid="true"]').focus(); return; }
    const next = { ...prefs, battery_threshold: b, connect_delay_seconds: d, remind_after_days: r };
    for (const c of [login, notify, monthly]) next[c.key] = c.box.checked;
    const reply = await ctx.call('prefs_save', { prefs: next });
    if (!reply.ok) { showError(alerts, reply, 'The preferences were not saved.'); return; }
    showError(alerts, null);
    toast('Preferences saved');
  }

  const form = h('form', { id: 'prefs-form', novalidate: true, onsubmit: save },
    h('fieldset', { class: 'card' }, h('legend', {}, 'General'), login.el, notify.el),
    h('fieldset', { class: 'card' }, h('legend', {}, 'Power'),
      field('On battery, wait with scheduled backups below (%)', battery, '0 means never wait. Backups you start yourself always run.')),
    h('fieldset', { class: 'card' }, h('legend', {}, 'Drive connected'),
      field('Wait before an automatic backup (seconds)', delay, 'Gives you a moment to cancel when you plugged the drive in to restore something.')),
    h('fieldset', { class: 'card' }, h('legend', {}, 'Checks'), monthly.el,
      field('Remind me when a job has not been backed up for (days)', remind, 'A notification once a day, and a line in the tray menu, until a backup succeeds. 0 means never remind.')),
    h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'primary', id: 'prefs-save' }, 'Save preferences')));
  main.append(form);
}
