// Drives: enrolled and connected drives with free space, last backup and the rolling check;
// prepare a new drive, eject, forget.
import { h, fill, icon, freeOf, lastBackupText, showError, confirm, dialog, toast } from '../util.js';

export async function render(main, ctx) {
  const alerts = h('div');
  const enrolledBox = h('div', { id: 'drives-enrolled' });
  const otherBox = h('div', { id: 'drives-other' });
  main.append(h('div', { class: 'page-head' },
    h('div', {}, h('h1', {}, 'Drives'), h('p', {}, 'Drives prepared for Plugback, and other drives you could use.')),
    h('button', { type: 'button', onclick: () => draw() }, 'Refresh')),
  alerts, h('h2', {}, 'Backup drives'), enrolledBox, h('h2', {}, 'Other drives'), otherBox);

  function space(v) {
    const used = v.total ? (v.total - v.free) / v.total : 0;
    const fill = h('span');
    fill.style.width = `${Math.round(used * 100)}%`;
    if (!v.total) return h('div', { class: 'small muted' }, 'Size unknown: this file system does not report it.');
    return h('div', {}, h('div', { class: 'small' }, freeOf(v)),
      h('div', { class: `meter ${used > 0.9 ? 'full' : ''}`, role: 'img', 'aria-label': `${Math.round(used * 100)}% used` }, fill));
  }

  async function act(method, args, okText) {
    const reply = await ctx.call(method, args);
    if (!reply.ok) showError(alerts, reply, 'That did not work.');
    else { showError(alerts, null); toast(okText); await draw(); }
    return reply;
  }

  async function prepare(v) {
    const label = h('input', { type: 'text', id: 'drive-label', value: v.label || 'Backup drive', maxlength: '40' });
    const choice = await dialog(`Use ${v.label || v.mount} for backups?`, h('div', {},
      h('p', {}, `Plugback will create a “Plugback” folder on ${v.mount}. Nothing already on the drive is changed or deleted.`),
      h('div', { class: 'field' }, h('label', { for: 'drive-label' }, 'Name for this drive'), label)),
    [{ label: 'Cancel', value: false }, { label: 'Prepare drive', value: true, class: 'primary' }]);
    if (choice) await act('drive_init', { mount: v.mount, label: label.value.trim() || null }, `${label.value || v.mount} is ready for backups`);
  }

  // "3 Nov" (with the year when it is not this year): when a pass began or ended.
  function day(value) {
    const d = value ? new Date(value) : null;
    if (!d || Number.isNaN(d.getTime())) return '–';
    const sameYear = d.getFullYear() === new Date().getFullYear();
    return d.toLocaleDateString(undefined, { day: 'numeric', month: 'short', year: sameYear ? undefined : 'numeric' });
  }

  // The rolling check (issue #14; fields of drives_list): the last complete pass, and the one under way.
  function checkText(v) {
    const full = v.last_full_check ? `Last fully checked: ${day(v.last_full_check)}` : 'Not fully checked yet';
    const going = v.check_percent === null || v.check_percent === undefined ? ''
      : ` · checked ${v.check_percent} % since ${day(v.check_since)}`;
    return full + going + (v.checking ? ' (checking now)' : '');
  }

  let shown = null;
  // Redraw only when drives come, go or change role, so keyboard focus stays put.
  async function draw(onlyIfChanged) {
    const [volumes, config, status] = await Promise.all([ctx.call('drives_list'), ctx.call('config_get'), ctx.call('status')]);
    if (!volumes.ok || !config.ok) { showError(alerts, volumes.ok ? config : volumes, 'Cannot list the drives.'); shown = null; return; }
    const runs = (status.ok ? status.data.drives || [] : []).map((d) => [d.last_success && d.last_success.id, d.last_attempt && d.last_attempt.id]);
    const checks = volumes.data.map((v) => [v.last_full_check, v.check_percent, v.checking]);
    const signature = JSON.stringify([volumes.data.map((v) => [v.mount, v.drive_id]), config.data.drives, runs, checks]);
    if (onlyIfChanged && signature === shown) return;
    shown = signature;
    const jobs = status.ok ? status.data.jobs || [] : [];
    // The agent tells each drive's last successful backup from its last attempt (status.drives).
    const recordOf = (driveId) => (status.ok ? status.data.drives || [] : []).find((x) => x.drive_id === driveId) || {};
    const enrolled = config.data.drives || [];
    fill(enrolledBox, ...(enrolled.length ? enrolled.map((d) => {
      const v = volumes.data.find((x) => x.drive_id === d.drive_id);
      const rec = recordOf(d.drive_id);
      const usedBy = jobs.filter((j) => j.destination && j.destination.drive_id === d.drive_id).map((j) => j.name);
      return h('section', { class: 'card', 'aria-label': d.label || d.drive_id, dataset: { drive: d.drive_id } },
        h('div', { class: 'card-head' }, h('h3', { class: 'row' }, icon('drives'), d.label || d.drive_id.slice(0, 8)),
          h('span', { class: `badge ${v ? 'ok' : ''}` }, v ? 'Connected' : 'Not connected')),
        h('dl', { class: 'facts' },
          v ? [h('dt', {}, 'Mounted at'), h('dd', {}, v.mount)] : null,
          h('dt', {}, 'Backups'), h('dd', { class: 'last-backup' }, lastBackupText(rec)),
          v ? [h('dt', {}, 'Checks'), h('dd', { class: 'last-check' }, checkText(v))] : null,
          h('dt', {}, 'Used by'), h('dd', {}, usedBy.length ? usedBy.join(', ') : 'no job yet')),
        v ? space(v) : null,
        h('div', { class: 'row form-actions' },
          v ? h('button', { type: 'button', onclick: () => act('eject', { drive_id: d.drive_id }, `${d.label} can be unplugged now`) }, 'Eject') : null,
          h('button', { type: 'button', class: 'danger', onclick: async () => {
            if (await confirm(`Forget ${d.label}?`, 'Plugback stops using this drive. The backups on it are not deleted, and you can prepare it again later.', 'Forget drive', true)) {
              await act('drive_forget', { drive_id: d.drive_id }, `Forgot ${d.label}`);
            }
          } }, 'Forget')));
    }) : [h('div', { class: 'card empty' }, h('p', {}, 'No backup drive yet. Plug one in and prepare it below.'))]));

    const others = volumes.data.filter((v) => !enrolled.some((d) => d.drive_id === v.drive_id));
    const card = (v) => h('section', { class: 'card', 'aria-label': v.label || v.mount, dataset: { mount: v.mount } },
      h('div', { class: 'card-head' }, h('h3', { class: 'row' }, icon('drives'), v.label || v.mount),
        h('div', { class: 'badges' }, h('span', { class: 'badge' }, v.removable ? 'Removable' : 'Internal'),
          v.drive_id ? h('span', { class: 'badge info' }, 'Has Plugback backups') : null)),
      h('dl', { class: 'facts' }, h('dt', {}, 'Mounted at'), h('dd', {}, v.mount), h('dt', {}, 'File system'), h('dd', {}, v.filesystem || v.fstype || 'unknown')),
      space(v),
      h('div', { class: 'row form-actions' }, h('button', { type: 'button', class: v.removable ? 'primary' : '', onclick: () => prepare(v) }, v.drive_id ? 'Use this drive' : 'Prepare this drive')));
    // Removable drives are the usual choice; internal disks are listed, folded away, for the few who back up to one.
    const usual = others.filter((v) => v.removable || v.drive_id);
    const internal = others.filter((v) => !(v.removable || v.drive_id));
    fill(otherBox,
      usual.length ? usual.map(card) : h('div', { class: 'card empty' }, h('p', {}, 'No other drives are connected. Plug in a USB drive to use it for backups.')),
      internal.length ? h('details', { class: 'more', id: 'drives-internal' }, h('summary', {}, `Internal disks (${internal.length})`), internal.map(card)) : null);
  }

  await draw();
  const timer = setInterval(() => { if (!document.querySelector('dialog[open]')) draw(true); }, 3000);
  return () => clearInterval(timer);
}
