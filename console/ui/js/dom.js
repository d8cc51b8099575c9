// dom.js: small helpers shared by the pages: element building, icons,
// module states, menus, dialogs and notices.

// h builds an element. props: class, text, html-free children, on<event>
// handlers, and any attribute or property (value, checked, disabled...).
export function h(tag, props = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k in el && typeof v !== 'string') el[k] = v;
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  el.append(...kids.flat(Infinity).filter((x) => x !== null && x !== undefined && x !== false));
  return el;
}

// Icons: our own 24x24 line drawings (no icon font, nothing remote).
const PATHS = {
  menu: '<path d="M4 6h16M4 12h16M4 18h16"/>',
  eye: '<path d="M2 12s4-7 10-7 10 7 10 7-4 7-10 7S2 12 2 12z"/><circle cx="12" cy="12" r="3"/>',
  gear: '<circle cx="12" cy="12" r="8.6" stroke-width="3.2" stroke-dasharray="3.1 3.65" stroke-linecap="butt"/><circle cx="12" cy="12" r="5.2" stroke-width="3"/>',
  cast: '<path d="M3 9V5a1 1 0 0 1 1-1h16a1 1 0 0 1 1 1v14a1 1 0 0 1-1 1h-6M3 13a8 8 0 0 1 8 8M3 17a4 4 0 0 1 4 4"/><circle class="f" cx="3.5" cy="20.5" r="1.3"/>',
  dotsH: '<circle class="f" cx="5" cy="12" r="2"/><circle class="f" cx="12" cy="12" r="2"/><circle class="f" cx="19" cy="12" r="2"/>',
  dotsV: '<circle class="f" cx="12" cy="5" r="2"/><circle class="f" cx="12" cy="12" r="2"/><circle class="f" cx="12" cy="19" r="2"/>',
  details: '<path d="M3 6h12M3 11h6M3 16h5M18.5 18.5l3 3"/><circle cx="15" cy="15" r="4.2"/>',
  branch: '<path d="M12 21v-8L6 5M12 13l6-8M4 4h4v4M20 4h-4v4"/>',
  trash: '<path d="M4 7h16M10 11v6M14 11v6M6 7l1 13h10l1-13M9 7V4h6v3"/>',
  plus: '<circle cx="12" cy="12" r="9"/><path d="M12 8v8M8 12h8"/>',
  download: '<path d="M12 4v11M7 10l5 5 5-5M5 20h14"/>',
  upload: '<path d="M12 16V5M7 10l5-5 5 5M5 20h14"/>',
  history: '<circle cx="12" cy="12" r="9"/><path d="M12 7v5l3 3"/>',
  close: '<path d="M6 6l12 12M18 6L6 18"/>',
  check: '<path d="M5 12.5l4.5 4.5L19 7"/>',
  chevron: '<path d="M6 9l6 6 6-6"/>',
  right: '<path d="M9 6l6 6-6 6"/>',
  left: '<path d="M20 12H4M10 6l-6 6 6 6"/>',
  play: '<path class="f" d="M8 5v14l11-7z"/>',
  pause: '<path class="f" d="M7 5h3.5v14H7zM13.5 5H17v14h-3.5z"/>',
  stop: '<path class="f" d="M6 6h12v12H6z"/>',
  restart: '<path d="M20 12a8 8 0 1 1-2.4-5.7M20 4v5h-5"/>',
  swap: '<path d="M4 8h15l-4-4M20 16H5l4 4"/>',
  help: '<circle cx="12" cy="12" r="9"/><path d="M9.5 9.5a2.6 2.6 0 1 1 3.6 2.4c-.7.3-1.1.8-1.1 1.5v.6"/><circle class="f" cx="12" cy="17" r="1.1"/>',
  copy: '<rect x="8" y="8" width="12" height="12" rx="1"/><path d="M16 8V5a1 1 0 0 0-1-1H5a1 1 0 0 0-1 1v10a1 1 0 0 0 1 1h3"/>',
  paste: '<rect x="5" y="4" width="14" height="17" rx="1"/><path d="M9 4V2.5h6V4M9 10h6M9 14h6"/>',
  user: '<circle cx="12" cy="8" r="4"/><path d="M4 21a8 8 0 0 1 16 0"/>',
  info: '<circle cx="12" cy="12" r="9"/><path d="M12 11v6"/><circle class="f" cx="12" cy="7.5" r="1.2"/>',
  warning: '<path d="M12 3L2 21h20z"/><path d="M12 10v5"/><circle class="f" cx="12" cy="18" r="1.1"/>',
  logout: '<path d="M15 4h4a1 1 0 0 1 1 1v14a1 1 0 0 1-1 1h-4M10 17l5-5-5-5M15 12H3"/>',
  login: '<path d="M9 4H5a1 1 0 0 0-1 1v14a1 1 0 0 0 1 1h4M14 17l5-5-5-5M19 12H8"/>',
  // State icons of the node panels.
  ok: '<path d="M4 12.5l5 5L20 6" stroke-width="3"/>',
  ko: '<path d="M5 5l14 14M19 5L5 19" stroke-width="3"/>',
  transient: '<path d="M4.5 12a7.5 7.5 0 0 1 13-5.1M19.5 12a7.5 7.5 0 0 1-13 5.1" stroke-width="2.6"/><path d="M18 2.5v5h-5M6 21.5v-5h5" stroke-width="2.6"/>',
  wait: '<circle cx="12" cy="12" r="7.5" stroke-width="2.6"/>',
  error: '<path d="M12 4v11" stroke-width="3.2"/><circle class="f" cx="12" cy="20" r="1.8"/>',
};

export function icon(name, cls = '') {
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', `i ${cls}`.trim());
  svg.setAttribute('aria-hidden', 'true');
  svg.innerHTML = PATHS[name] || '';
  return svg;
}

// iconButton is a round button with an icon and a tooltip.
export function iconButton(name, title, onclick, props = {}) {
  return h('button', { class: 'icon', title, 'aria-label': title, type: 'button', onclick, ...props }, icon(name));
}

export function clear(el, ...kids) {
  el.replaceChildren(...kids.flat(Infinity).filter(Boolean));
  return el;
}

// fmtDate renders a date as the console does: 2024-06-06 15:22:13.959
// (ms optional), in the browser's time zone.
export function fmtDate(t, ms = false) {
  if (!t) return '';
  const d = t instanceof Date ? t : new Date(t);
  if (Number.isNaN(d.getTime()) || d.getFullYear() < 1971) return '';
  const p = (n, w = 2) => String(n).padStart(w, '0');
  const s = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  return ms ? `${s}.${p(d.getMilliseconds(), 3)}` : s;
}

// resourceMap turns the resources of a module (pairs or an object) into
// a Map name -> value.
export function resourceMap(mod) {
  const r = mod?.resources;
  if (!r) return new Map();
  return new Map(Array.isArray(r) ? r.map((x) => (Array.isArray(x) ? x : [x.name, x.value])) : Object.entries(r));
}

// synthetic is the large state of a node panel: kind (the colour class),
// the icon and the label, from the module's state and readiness.
export function synthetic(mod) {
  if (!mod) return { kind: 'notconf', icon: '', label: 'NOT INSTALLED' };
  if (mod.error) return { kind: 'notready', icon: 'error', label: 'ERROR' };
  if (mod.configured === false) return { kind: 'notconf', icon: '', label: 'NOT CONFIGURED' };
  const state = mod.state || 'STOP';
  const ready = mod.ready || 'NotReady';
  if (ready === 'Transient') return { kind: 'transient', icon: 'transient', label: state };
  if (ready === 'Ready') return { kind: 'ready', icon: 'ok', label: state };
  return { kind: 'notready', icon: state === 'WAIT' ? 'wait' : 'ko', label: state };
}

// detailed is the right half of a node panel: data up to date or not for a
// mirror that replicates, the farm share, a failover rule that fired.
export function detailed(mod) {
  if (!mod || mod.error) return mod?.error ? { warn: false, http: true, text: 'connection error' } : { text: '' };
  const res = resourceMap(mod);
  if (res.get('rfs.degraded') === 'up') return { warn: true, text: 'degraded' };
  if (res.has('rfs.uptodate')) {
    return res.get('rfs.uptodate') === 'up' ? { text: 'uptodate' } : { warn: true, text: 'not uptodate' };
  }
  const shares = [...res].filter(([k]) => k.startsWith('farm.')).map(([, v]) => v.replace('%', ' %'));
  if (shares.length) return { warn: shares.every((s) => s.startsWith('0 ')), text: shares.join(', ') };
  if (mod.rule) return { warn: true, text: mod.rule };
  return { text: '' };
}

// stateIcon draws the synthetic state icon (the transient one turns).
export function stateIcon(s) {
  if (!s.icon) return null;
  return h('span', { class: `big ${s.kind}` }, icon(s.icon, s.icon === 'transient' ? 'spin' : ''));
}

// ---- menus ----

let openMenus = [];

function closeMenus() {
  openMenus.forEach((m) => m.remove());
  openMenus = [];
}

document.addEventListener('click', (ev) => {
  if (!openMenus.some((m) => m.contains(ev.target))) closeMenus();
});
document.addEventListener('keydown', (ev) => { if (ev.key === 'Escape') closeMenus(); });

// showMenu opens a popover menu next to anchor. items: {label, icon,
// disabled, action, sub: [items]} or 'sep'; target is the first line (the
// nodes the menu acts on).
export function showMenu(anchor, target, items, level = 0) {
  if (level === 0) closeMenus();
  else openMenus.splice(level).forEach((m) => m.remove());
  const menu = h('div', { class: 'menu', role: 'menu' });
  if (target) menu.append(h('div', { class: 'target', text: target }));
  for (const it of items) {
    if (it === 'sep') { menu.append(h('div', { class: 'sep' })); continue; }
    const b = h('button', { type: 'button', role: 'menuitem', disabled: !!it.disabled, dataset: { item: it.label } },
      it.icon ? icon(it.icon) : h('span', { class: 'i' }), h('span', { text: it.label }),
      it.sub ? icon('right', 'sub') : null);
    b.addEventListener('click', (ev) => {
      ev.stopPropagation();
      if (it.sub) {
        menu.querySelectorAll('button.open').forEach((x) => x.classList.remove('open'));
        b.classList.add('open');
        showMenu(b, null, it.sub, level + 1);
        return;
      }
      closeMenus();
      it.action?.();
    });
    menu.append(b);
  }
  document.body.append(menu);
  openMenus[level] = menu;
  const r = anchor.getBoundingClientRect();
  const w = menu.offsetWidth;
  const ht = menu.offsetHeight;
  let x = level ? r.right : r.left;
  let y = level ? r.top : r.bottom;
  if (x + w > innerWidth) x = level ? Math.max(0, r.left - w) : Math.max(0, innerWidth - w - 4);
  if (y + ht > innerHeight) y = Math.max(0, innerHeight - ht - 4);
  menu.style.left = `${x}px`;
  menu.style.top = `${y}px`;
  return menu;
}

// ---- dialogs ----

// dialog shows a modal with body elements and Cancel / ok buttons. It
// resolves true on ok (after validate() returned true) and false on cancel.
export function dialog({ title, body = [], ok = 'Confirm', cancel = 'Cancel', validate, danger }) {
  return new Promise((resolve) => {
    const okBtn = h('button', { type: 'submit', class: danger ? 'danger' : 'primary', text: ok });
    const d = h('dialog', {},
      h('form', { method: 'dialog' },
        h('h3', { text: title }),
        h('div', { class: 'body' }, body),
        h('div', { class: 'buttons end' },
          cancel ? h('button', { type: 'button', text: cancel, onclick: () => { d.close(); resolve(false); } }) : null,
          okBtn)));
    d.querySelector('form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (validate && !(await validate())) return;
      d.close();
      resolve(true);
    });
    d.addEventListener('cancel', () => resolve(false));
    d.addEventListener('close', () => d.remove());
    document.body.append(d);
    d.showModal();
  });
}

export const confirm = (title, message, ok = 'Confirm', danger = false) =>
  dialog({ title, body: [h('p', { text: message })], ok, danger });

// nodeChoice is a node checklist for a dialog: returns [element, () =>
// chosen names].
export function nodeChoice(nodes, checked = () => true) {
  const boxes = nodes.map((n) => h('input', { type: 'checkbox', checked: checked(n), value: n }));
  const el = h('div', { class: 'nodes-check' }, h('div', { text: 'Select nodes:' }),
    boxes.map((b) => h('label', { class: 'check' }, b, h('span', { text: b.value }))));
  return [el, () => boxes.filter((b) => b.checked).map((b) => b.value)];
}

// resultRows renders per-node results [{node, ok, output}] as expandable
// rows "node  Success ✓ / Failure ✗".
export function resultRows(results) {
  return results.map((r) => expander(
    [h('span', { class: 'name', text: r.node }),
      h('span', { class: r.ok ? 'success' : 'failure' }, r.ok ? 'Success ' : 'Failure ', icon(r.ok ? 'check' : 'close'))],
    h('pre', { class: 'output', text: r.output || '(no output)' }), { result: r.ok ? 'success' : 'failure', node: r.node }));
}

// expander is a row with a chevron that shows content when clicked.
export function expander(headKids, content, dataset = {}, open = false) {
  const el = h('div', { class: `expander${open ? ' open' : ''}`, dataset },
    h('div', { class: 'head', onclick: () => el.classList.toggle('open') }, headKids, h('span', { class: 'grow' }), icon('chevron', 'chev')),
    h('div', { class: 'content' }, content));
  return el;
}

// notify shows a short message at the bottom of the window.
export function notify(message, bad = false) {
  const n = h('div', { class: `toast${bad ? ' bad' : ''}`, role: 'status', text: message });
  let box = document.getElementById('toasts');
  if (!box) {
    box = h('div', { id: 'toasts' });
    document.body.append(box);
  }
  box.append(n);
  setTimeout(() => n.remove(), bad ? 9000 : 4000);
}

// field builds a labelled input: returns the wrapper; the input is
// wrapper.input. opts: label, value, type, readonly, required, options
// (for a select: [[value, label]]), oninput.
export function field({ label, value = '', type = 'text', readonly, required, options, oninput, name, cls = '' }) {
  const input = options
    ? h('select', { name }, options.map(([v, l]) => h('option', { value: v, text: l, selected: v === value })))
    : h('input', { type, value, readOnly: !!readonly, name, spellcheck: 'false' });
  const wrap = h('label', { class: `field ${readonly ? 'readonly' : ''} ${cls}`.trim() },
    h('span', { text: label + (required ? '*' : '') }), input);
  // An edit answers the error shown at the field, until the next check.
  input.addEventListener(options ? 'change' : 'input', (ev) => {
    setFieldError(wrap, '');
    oninput?.(ev);
  });
  wrap.input = input;
  return wrap;
}

// setFieldError marks a field invalid with a message under its input (''
// clears it).
export function setFieldError(wrap, message) {
  wrap.classList.toggle('invalid', !!message);
  let e = wrap.querySelector('.err');
  if (!message) { e?.remove(); return; }
  if (!e) wrap.append(e = h('span', { class: 'err' }));
  e.textContent = message;
}
