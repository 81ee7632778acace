// A run that failed because the backup drive is full (issue #14): instead of a command line, the
// window offers what a person can do. The agent already removes this job's oldest backups when
// the drive fills up (never the newest), so the actions are about everything else:
//   "Free up space…"            explains where space can come from and opens the Drives page;
//   "Choose what to leave out…" opens the job's editor at its excludes.
// The codes are core/errors.py's: drive_full (checked before writing) and disk_full (mid-run).
import { h, dialog } from '../util.js';

export const FULL_CODES = ['drive_full', 'disk_full'];

/** Whether a run (history row or status Run dict) failed for lack of space. */
export function isFull(run) {
  return !!run && run.status === 'failed' && FULL_CODES.includes(run.error_code);
}

/** Wait for ``selector`` on the page just opened, then bring it into view and focus it. */
async function focusWhenShown(selector) {
  for (let i = 0; i < 100; i += 1) {
    const el = document.querySelector(selector);
    if (el) { el.scrollIntoView({ block: 'center' }); el.focus(); return; }
    await new Promise((resolve) => { setTimeout(resolve, 50); });
  }
}

/** Open the job editor of ``job`` with its "leave out" patterns focused. */
export function chooseExcludes(ctx, job) {
  ctx.navigate(`jobs/edit/${encodeURIComponent(job)}`);
  return focusWhenShown('#job-excludes');
}

/** The "Free up space…" dialog: where room can come from, and a way there. */
export async function freeUpSpace(ctx, job, message) {
  const body = h('div', { id: 'free-space-help' },
    message ? h('p', { class: 'error-text' }, message) : null,
    h('p', {}, `Plugback already removes the oldest backups of “${job}” when the drive is full, never the newest one. To make room:`),
    h('ul', {},
      h('li', {}, 'delete files on the drive that are not backups, or backups of other jobs you no longer need (the Drives page shows how full each drive is);'),
      h('li', {}, 'leave big folders or files you do not need out of this backup;'),
      h('li', {}, 'or use a bigger drive.')),
    h('p', {}, 'Then back up again.'));
  const choice = await dialog('Free up space on the backup drive', body, [
    { label: 'Close', value: null },
    { label: 'Choose what to leave out…', value: 'excludes' },
    { label: 'Open Drives', value: 'drives', class: 'primary' },
  ]);
  if (choice === 'drives') ctx.navigate('drives');
  if (choice === 'excludes') await chooseExcludes(ctx, job);
}

/** The two buttons for a run that failed for lack of space (null for any other run). */
export function spaceActions(ctx, job, run) {
  if (!isFull(run)) return null;
  return h('div', { class: 'row space-actions', dataset: { code: run.error_code } },
    h('button', { type: 'button', onclick: () => freeUpSpace(ctx, job, run.error) }, 'Free up space…'),
    h('button', { type: 'button', onclick: () => chooseExcludes(ctx, job) }, 'Choose what to leave out…'));
}
