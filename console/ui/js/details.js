// details.js: the details pane of a module on a node, with its tabs Logs
// (the module log, live, and the script log of a selected script run),
// Resources (live, with a bandwidth plot) and Information.

import * as api from './api.js';
import { h, icon, iconButton, clear, fmtDate, showMenu, resourceMap, field } from './dom.js';

const TABS = [['logs', 'Logs'], ['resources', 'Resources'], ['information', 'Information']];

export function mount(root, params, ctx, store) {
  const tabs = h('nav', { class: 'tabs' });
  const body = h('div');
  root.append(tabs, body);
  let tab = '';
  let view = null;
  const show = (p) => {
    clear(tabs, TABS.map(([id, label]) => h('a', {
      href: ctx.href(`monitoring/modules/${api.enc(p.module)}/nodes/${api.enc(p.node)}/${id}`),
      class: id === p.tab ? 'active' : '', dataset: { tab: id }, text: `${label} - ${p.node}`,
    })));
    if (p.tab === tab) return;
    tab = p.tab;
    view?.close?.();
    clear(body);
    const mountTab = { logs: logsTab, resources: resourcesTab, information: informationTab }[tab] || logsTab;
    view = mountTab(body, p.module, p.node, store);
  };
  show(params);
  return { update: show, close: () => view?.close?.() };
}

// ---- Logs ----

// Most rows kept in the page; older ones are dropped from the table.
const MAX_ROWS = 3000;
const LEVELS = [['C', 'Critical', 'warning'], ['E', 'Event', 'info'], ['U', 'User', 'user'], ['S', 'Script', 'gear']];
const STATE_RE = /^(?:Local|Remote) state \S+ (Ready|NotReady|Transient)/;
const SCRIPT_RE = /^Script (\S+).*? > (userlog_\S+\.ulog)\s*$/;

function typeIcon(e) {
  const st = e.msg.match(STATE_RE);
  if (st) {
    const [name, cls] = { Ready: ['ok', 'ready'], NotReady: ['ko', 'notready'], Transient: ['transient', 'transient'] }[st[1]];
    return h('span', { class: cls, title: e.level }, icon(name));
  }
  const l = LEVELS.find(([x]) => x === e.level);
  return h('span', { class: e.level === 'C' ? 'notready' : '', title: l ? l[1] : e.level }, icon(l ? l[2] : 'info'));
}

// downloadLog saves the whole module log as text, as safekit log prints it
// (GET log.txt streams it; the file is named AM_NODE_[verbose_]log.txt).
export function downloadLog(module, node, verbose) {
  api.download(`/modules/${api.enc(module)}/log.txt?verbose=${verbose ? 1 : 0}`, node);
}

function logsTab(root, module, node) {
  const path = `/modules/${api.enc(module)}`;
  let lastSeq = 0;
  let paused = false;
  let held = [];
  let selected = null;
  let side = null; // the open side view (script log stream)
  const types = new Set(LEVELS.map(([l]) => l));
  const rows = h('tbody');
  const status = h('span', { class: 'status', text: 'connecting…' });
  const filter = field({ label: 'Filter', oninput: () => applyFilter() });
  const play = iconButton('play', 'Resume', () => setPaused(false), { class: 'icon on' });
  const pause = iconButton('pause', 'Pause', () => setPaused(true));
  const dl = iconButton('download', 'Download the module log', (ev) => {
    ev.stopPropagation();
    showMenu(dl, null, [
      { label: 'Module log', action: () => downloadLog(module, node, false) },
      { label: 'Verbose module log', action: () => downloadLog(module, node, true) },
    ]);
  });
  const viewTypes = h('div', { class: 'viewtypes', title: 'View' }, h('span', { class: 'hint', text: 'View' }),
    LEVELS.map(([l, label, ic]) => h('label', { title: label },
      h('input', { type: 'checkbox', checked: true, value: l, onchange: (ev) => { ev.target.checked ? types.add(l) : types.delete(l); applyFilter(); } }),
      icon(ic), h('span', { text: l }))));
  const sideBox = h('aside', { class: 'side' }, h('div', { class: 'placeholder', text: 'No message selected' }));
  root.append(
    h('div', { class: 'toolbar' }, h('div', { class: 'group' }, play, pause), h('div', { class: 'group' }, dl), viewTypes, filter, status),
    h('div', { class: 'split' },
      h('div', { class: 'mainview' },
        h('table', { class: 'grid log' },
          h('thead', {}, h('tr', {}, h('th', { text: 'Date / newest on top' }), h('th', { text: 'Origin' }), h('th', { text: 'Type' }), h('th', { text: 'Message' }))),
          rows)),
      sideBox));

  function setPaused(p) {
    paused = p;
    play.classList.toggle('on', !p);
    pause.classList.toggle('on', p);
    if (!p) {
      held.forEach((e) => addRow(e));
      held = [];
    }
  }

  function visible(tr) {
    const q = filter.input.value.trim().toLowerCase();
    return (!tr.dataset.level || types.has(tr.dataset.level)) && (!q || tr.textContent.toLowerCase().includes(q));
  }

  function applyFilter() {
    for (const tr of rows.children) tr.hidden = !visible(tr);
  }

  function addRow(e, fresh = true) {
    const [day, time] = fmtDate(e.time, true).split(' ');
    const tr = h('tr', { class: `clickable${fresh ? ' fresh' : ''}`, dataset: { seq: e.seq, level: e.level } },
      h('td', { class: 'date', text: `${day}  ${time}` }), h('td', { text: e.origin }),
      h('td', { class: 'type' }, typeIcon(e)), h('td', { class: 'msg', text: e.msg }));
    tr.entry = e;
    tr.addEventListener('click', () => choose(tr));
    tr.hidden = !visible(tr);
    rows.prepend(tr);
    while (rows.children.length > MAX_ROWS) rows.lastElementChild.remove();
  }

  function addMissed(n) {
    rows.prepend(h('tr', { class: 'missed' }, h('td', { colspan: 4, text: `${n} messages missed` })));
  }

  function take(e) {
    if (!e || typeof e.seq !== 'number' || e.seq <= lastSeq) return;
    lastSeq = e.seq;
    if (paused) held.push(e); else addRow(e);
  }

  function choose(tr) {
    selected?.classList.remove('sel');
    selected = tr;
    tr.classList.add('sel');
    side?.close();
    side = null;
    const e = tr.entry;
    const m = e.msg.match(SCRIPT_RE);
    if (m) {
      side = scriptLog(sideBox, path, node, m[2]);
      return;
    }
    // Any other row: the verbose messages logged since the previous row.
    let prev = 0;
    for (let x = tr.nextElementSibling; x; x = x.nextElementSibling) {
      if (x.entry) { prev = x.entry.seq; break; }
    }
    const list = h('tbody');
    clear(sideBox, h('header', {}, h('span', { class: 'title', text: 'Verbose messages' })),
      h('table', { class: 'grid' }, h('thead', {}, h('tr', {}, ['Date', 'Origin', 'Type', 'Message'].map((t) => h('th', { text: t })))), list));
    api.get(`${path}/log?verbose=1&after=${prev}&n=${Math.min(5000, e.seq - prev)}`, { node }).then((d) => {
      const sel = (d || []).filter((x) => x.seq <= e.seq);
      clear(list, sel.reverse().map((x) => h('tr', {}, h('td', { class: 'date', text: fmtDate(x.time, true).split(' ')[1] }),
        h('td', { text: x.origin }), h('td', { text: x.level }), h('td', { text: x.msg }))));
    }, (err) => clear(list, h('tr', {}, h('td', { colspan: 4, class: 'bad', text: err.message }))));
  }

  let live = null;
  api.get(`${path}/log?n=500`, { node }).then((d) => {
    (d || []).sort((a, b) => a.seq - b.seq).forEach((e) => { lastSeq = Math.max(lastSeq, e.seq); addRow(e, false); });
  }, (e) => { status.textContent = e.message; status.classList.add('bad'); }).finally(() => {
    // The stream resumes after the last entry shown, also after a reconnect.
    live = api.stream(`${path}/ws/log`, {
      node,
      query: () => ({ verbose: 0, after: lastSeq }),
      // {entry}, {missed, after} when the server dropped messages for a
      // slow reader, {error} while the module has no process.
      onMessage: (m) => {
        if (m?.missed) addMissed(m.missed);
        if (m?.entry) take(m.entry);
        if (m?.error) status.textContent = m.error;
      },
      onStatus: (s) => {
        status.textContent = { open: 'live', retry: 'reconnecting…', closed: '' }[s];
        status.classList.toggle('bad', s === 'retry');
      },
    });
  });
  return { close() { live?.close(); side?.close(); } };
}

// scriptLog shows a script's log file (the application's output) in the
// side panel, streamed as the script writes it.
function scriptLog(box, path, node, file) {
  const out = h('pre', { class: 'output script-log' });
  clear(box, h('header', {}, h('span', { class: 'title', text: 'Script log' }), h('span', { class: 'hint', text: file })), out);
  const err = h('div', { class: 'err' });
  box.append(err);
  // Messages: {file}, then {data} as the file grows, or {error}. A new
  // connection sends the file again from its start.
  return api.stream(`${path}/ws/userlog`, {
    node,
    query: () => ({ file }),
    onMessage: (m) => {
      if (m?.data) out.append(m.data);
      err.textContent = m?.error || '';
    },
    onStatus: (s) => { if (s === 'open') out.textContent = ''; },
  });
}

// ---- Resources ----

const VIEWS = [
  ['status', 'Module status', (n) => /^(state|usersetting)\./.test(n) || ['rfs.uptodate', 'rfs.degraded', 'rfs.reintegre_failed'].includes(n)],
  ['checkers', 'Checkers', (n) => /^(heart|heartbeat|heartbeatlocaladdr|custom|intf|ip|proc|errd|tcp|ping|splitbrain|module)\./.test(n)],
  ['replication', 'File replication', (n) => n.startsWith('rfs.')],
  ['all', 'All resources', () => true],
];

// Labels of the resources we know, in our words.
const LABELS = {
  'state.local': 'Local state', 'state.remote': 'Remote state',
  'usersetting.boot': 'Module start at boot', 'usersetting.checker': 'Monitoring by checkers',
  'usersetting.errd': 'Processes/services monitoring', 'usersetting.failover': 'Automatic failover',
  'usersetting.encryption': 'Encrypted communication', 'heart.stopstartloop': 'Stop/start loops counted',
  'rfs.uptodate': 'Replicated data up to date', 'rfs.degraded': 'Degraded replication mode',
  'rfs.reintegre_failed': 'Last synchronization failed', 'rfs.rep_bandwidth': 'Replication bandwidth',
  'rfs.rei_bandwidth': 'Synchronization bandwidth', 'rfs.rei_copy_size_metric': 'Copied size (bytes)',
  'rfs.rei_copy_size_total': 'Size to copy (bytes)', 'rfs.replicated_writes': 'Replicated writes',
  'rfs.netin_bandwidth': 'Incoming bandwidth', 'rfs.netout_bandwidth': 'Outgoing bandwidth',
};
const CATEGORY_LABELS = { heartbeat: 'Heartbeat link', custom: 'Custom checker', tcp: 'TCP checker', ping: 'Ping checker',
  intf: 'Interface checker', ip: 'IP checker', proc: 'Process/service monitoring', splitbrain: 'Split brain checker', farm: 'Farm load share' };

// health colours a resource name: good (up, on), bad (down), or neutral.
function health(name, value) {
  if (name === 'rfs.degraded' || name === 'rfs.reintegre_failed') return value === 'up' || value === 'true' ? 'bad' : '';
  if (value === 'up' || value === 'on') return 'good';
  if (value === 'down') return 'bad';
  return '';
}

// progress finds a fraction in a value ("12/40"), or in a pair of
// resources: rfs.rei_copy_size_metric of rfs.rei_copy_size_total.
function progress(name, value, res) {
  let m = String(value).match(/^\s*([\d.]+)\s*\/\s*([\d.]+)/);
  if (!m && /_(metric|copied)$/.test(name)) m = [0, value, res.get(name.replace(/_(metric|copied)$/, '_total'))];
  const [a, b] = [parseFloat(m?.[1]), parseFloat(m?.[2])];
  return b > 0 ? Math.min(100, (100 * a) / b) : null;
}

// Inline styles go through the CSSOM: the page's policy forbids style
// attributes.
function bar(pct) {
  const inner = h('div');
  inner.style.width = `${pct}%`;
  return h('div', { class: 'progress' }, inner);
}

function swatch(color) {
  const i = h('i');
  i.style.background = color;
  return i;
}

const PLOT = [['rfs.rep_bandwidth', '#90caf9'], ['rfs.rei_bandwidth', '#ffa303']];
const PLOT_SPAN = 5 * 60 * 1000;

function resourcesTab(root, module, node, store) {
  const samples = new Map(PLOT.map(([n]) => [n, []]));
  const history = new Map();
  let selected = '';
  const viewSel = field({ label: 'View', value: 'status', options: VIEWS.map(([id, label]) => [id, label]), oninput: () => draw() });
  const filter = field({ label: 'Filter', oninput: () => draw() });
  const rows = h('tbody');
  const canvas = h('canvas', { class: 'plot', width: 800, height: 140 });
  const plotBox = h('div', { class: 'plotbox' },
    h('div', { class: 'legend' }, PLOT.map(([n, c]) => h('span', {}, swatch(c), n))), canvas);
  const side = h('aside', { class: 'side' }, h('div', { class: 'placeholder', text: 'No resource selected' }));
  root.append(h('div', { class: 'toolbar' }, viewSel, filter),
    h('div', { class: 'split' },
      h('div', { class: 'mainview' }, plotBox,
        h('table', { class: 'grid resources' },
          h('thead', {}, h('tr', {}, ['Name', 'Value', 'Label', 'Category'].map((t) => h('th', { text: t })))), rows)),
      side));

  const record = () => {
    const res = resourceMap(store.get(node, module));
    const now = Date.now();
    for (const [name, value] of res) {
      const hist = history.get(name) || [];
      if (!hist.length || hist[hist.length - 1].value !== value) hist.push({ t: now, value });
      history.set(name, hist.slice(-50));
      const s = samples.get(name);
      if (s) {
        s.push([now, parseFloat(value) || 0]);
        while (s.length && s[0][0] < now - PLOT_SPAN) s.shift();
      }
    }
  };

  const draw = () => {
    const res = resourceMap(store.get(node, module));
    const view = VIEWS.find(([id]) => id === viewSel.input.value);
    const q = filter.input.value.trim().toLowerCase();
    const names = [...res.keys()].filter((n) => view[2](n) && (!q || n.toLowerCase().includes(q))).sort();
    plotBox.hidden = !['replication', 'all'].includes(view[0]);
    clear(rows, names.length ? names.map((n) => {
      const v = res.get(n);
      const [cat, ...rest] = n.split('.');
      const pct = progress(n, v, res);
      return h('tr', { class: `clickable${n === selected ? ' sel' : ''}`, dataset: { name: n }, onclick: () => { selected = n; draw(); } },
        h('td', { class: health(n, v), text: rest.join('.') || n }),
        h('td', { text: v }),
        h('td', {}, LABELS[n] || CATEGORY_LABELS[cat] || '',
          pct === null ? null : bar(pct), pct === null ? null : h('div', { class: 'hint', text: `${Math.round(pct)} %` })),
        h('td', { text: cat }));
    }) : h('tr', {}, h('td', { colspan: 4, class: 'hint', text: 'No resource' })));
    if (selected) {
      clear(side, h('header', {}, h('span', { class: 'title', text: selected })),
        h('table', { class: 'grid' }, h('tbody', {}, (history.get(selected) || []).slice().reverse().map((x) =>
          h('tr', {}, h('td', { class: health(selected, x.value), text: x.value }), h('td', { class: 'date', text: fmtDate(x.t) }))))));
    }
    plot();
  };

  const plot = () => {
    if (plotBox.hidden) return;
    const w = (canvas.width = canvas.clientWidth || 800);
    const ht = canvas.height;
    const g = canvas.getContext('2d');
    g.clearRect(0, 0, w, ht);
    const now = Date.now();
    const all = [...samples.values()].flat();
    const max = Math.max(1, ...all.map(([, v]) => v));
    g.fillStyle = 'rgba(255,255,255,0.6)';
    g.font = '11px sans-serif';
    g.fillText(`${max}`, 4, 12);
    g.fillText('now', w - 26, ht - 4);
    g.fillText('-5 min', 4, ht - 4);
    for (const [name, color] of PLOT) {
      const s = samples.get(name);
      if (!s.length) continue;
      g.strokeStyle = color;
      g.lineWidth = 2;
      g.beginPath();
      const y = (v) => ht - 16 - (v / max) * (ht - 32);
      s.forEach(([t, v], i) => {
        const x = w - ((now - t) / PLOT_SPAN) * w;
        if (i) g.lineTo(x, y(s[i - 1][1]));
        g[i ? 'lineTo' : 'moveTo'](x, y(v));
      });
      g.lineTo(w, y(s[s.length - 1][1]));
      g.stroke();
    }
  };

  record();
  draw();
  const off = store.subscribe(() => { record(); draw(); });
  // The time axis moves on; the values come from the events.
  const tick = setInterval(plot, 1000);
  return { close() { off(); clearInterval(tick); } };
}

// ---- Information ----

function informationTab(root, module, node) {
  const table = h('table', { class: 'kv info' });
  root.append(h('div', { class: 'card' }, table));
  nodeInfo(table, node);
  return {};
}

// nodeInfo fills table with what a node says of itself: its addresses by
// lan, its version, licence, host name and OS.
export function nodeInfo(table, node) {
  clear(table, h('tbody', {}, h('tr', {}, h('td', { text: 'Loading…' }))));
  Promise.allSettled([api.get('/level', { node }), api.get('/node', { node })]).then(([lv, nd]) => {
    const l = lv.value || {};
    const lans = Object.entries(nd.value?.addresses || {}).map(([lan, a]) => `${lan}-${a}`).join(',');
    const err = lv.reason || nd.reason;
    clear(table, h('tbody', {},
      [['Lan', lans], ['SafeKit', l.version], ['License', l.license], ['Hostname', l.host], ['OS', l.os]]
        .map(([k, v]) => h('tr', { dataset: { key: k } }, h('td', { text: k }), h('td', { text: v || '' }))),
      err ? h('tr', {}, h('td', { text: 'Error' }), h('td', { class: 'bad', text: err.message })) : null));
  });
}
