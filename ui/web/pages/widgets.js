// Form pieces shared by the Jobs editor and the first-run flow.
import { h, fill, icon, showError, showPath } from '../util.js';

/**
 * A list of folders with "Remove" buttons and a way to add one: the native
 * picker in the window, a typed path (checked by the api) in the browser.
 * Returns {el, get(), set(list)}.
 */
export function folderList(ctx, { label, id, hint, initial = [], onChange = () => {} }) {
  let folders = [...initial];
  const list = h('ul', { class: 'path-list', id: `${id}-list`, 'aria-label': label });
  const error = h('div', { id: `${id}-error`, 'aria-live': 'polite' });
  const input = h('input', { type: 'text', id: `${id}-path`, placeholder: `~${ctx.info.sep || '/'}Documents`, 'aria-label': `Folder path to add to ${label.toLowerCase()}` });

  function draw() {
    fill(list, ...folders.map((f) => h('li', {},
      icon('folder'), h('span', { title: f }, showPath(f)),
      h('button', { type: 'button', class: 'link', 'aria-label': `Remove ${f}`, onclick: () => { folders = folders.filter((x) => x !== f); draw(); onChange(folders); } }, 'Remove'))));
    if (!folders.length) list.append(h('li', { class: 'muted' }, 'No folders yet.'));
  }

  async function add(path) {
    const reply = await ctx.call('check_folder', { path });
    if (!reply.ok) { showError(error, reply, 'Cannot add that folder.'); input.setAttribute('aria-invalid', 'true'); return; }
    showError(error, null);
    input.removeAttribute('aria-invalid');
    if (!folders.includes(reply.data.path)) folders.push(reply.data.path);
    input.value = '';
    draw();
    onChange(folders);
  }

  async function pick() {
    const reply = await ctx.call('pick_folder', {});
    if (!reply.ok) { showError(error, reply, 'Cannot open the folder picker.'); return; }
    if (reply.data.path) add(reply.data.path);
  }

  const addRow = h('div', { class: 'inline' },
    ctx.info.can_pick_folders ? h('button', { type: 'button', onclick: pick }, 'Choose folder…') : null,
    input,
    h('button', { type: 'button', id: `${id}-add`, onclick: () => add(input.value) }, 'Add'));
  input.addEventListener('keydown', (e) => { if (e.key === 'Enter') { e.preventDefault(); add(input.value); } });
  draw();
  const el = h('div', { class: 'field' }, h('label', { for: `${id}-path` }, label),
    hint ? h('span', { class: 'hint' }, hint) : null, list, addRow, error);
  return { el, get: () => [...folders], set(next) { folders = [...next]; draw(); } };
}

/** A labelled field wrapper: label + control + optional hint + error slot. */
export function field(labelText, control, hint) {
  const error = h('span', { class: 'error-text', id: `${control.id}-error` });
  control.setAttribute('aria-describedby', `${control.id}-error`);
  return h('div', { class: 'field' }, h('label', { for: control.id }, labelText),
    hint ? h('span', { class: 'hint' }, hint) : null, control, error);
}

/** Mark a control invalid with a message (empty message clears it). */
export function invalid(control, message) {
  const slot = document.getElementById(`${control.id}-error`);
  if (slot) slot.textContent = message || '';
  if (message) control.setAttribute('aria-invalid', 'true'); else control.removeAttribute('aria-invalid');
  return !message;
}
