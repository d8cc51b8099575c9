// monitoring.js: one card per module, one node panel per node, updated
// live from the events websocket of the connection node (no polling),
// with the module and node menus, and the details pane of a selected
// module>node.

import * as api from './api.js';
import { h, icon, iconButton, clear, synthetic, detailed, stateIcon, showMenu, confirm, notify, resourceMap } from './dom.js';
import * as details from './details.js';

// modulesOf reads the rows of GET /modules ({node, modules}).
export const modulesOf = (data) => data?.modules || [];

// Store holds the modules of every node: GET /modules of each node once,
// then the events websocket of the connection node, which carries the
// changes of every node. It calls the listeners after each change.
class Store {
  constructor(nodes) {
    this.nodes = nodes;
    this.data = new Map(nodes.map((n) => [n, { modules: new Map(), error: '', loaded: false }]));
    this.listeners = new Set();
  }

  start() {
    this.nodes.forEach((n) => this.load(n));
    let dropped = false;
    this.events = api.stream('/ws/events', {
      onMessage: (m) => this.event(m),
      // After a drop, more may have changed than the events say: read the
      // lists again.
      onStatus: (s) => {
        if (s === 'retry') dropped = true;
        if (s === 'open' && dropped) this.nodes.forEach((n) => this.load(n));
      },
    });
  }

  close() { this.events?.close(); }

  async load(node) {
    const d = this.data.get(node);
    try {
      const list = modulesOf(await api.get('/modules', { node }));
      const old = d.modules;
      d.modules = new Map(list.map((m) => [m.name, { ...old.get(m.name), ...m }]));
      d.error = '';
    } catch (e) {
      d.error = e.status === 0 || e.status >= 500 ? `No reply of ${node}` : e.message;
    }
    d.loaded = true;
    this.changed();
  }

  // event applies one event: {node, module, configured, snapshot, removed}
  // for a module, {node, reachable, error} for a node.
  event(ev) {
    if (!ev || typeof ev !== 'object') return;
    const d = this.data.get(ev.node) || (this.nodes.length === 1 ? this.data.get(this.nodes[0]) : null);
    if (!d) return;
    if (!ev.module) {
      if (ev.reachable === false) d.error = ev.error || `No reply of ${ev.node}`;
      if (ev.reachable === true) d.error = '';
    } else if (ev.removed) {
      d.modules.delete(ev.module);
    } else {
      const m = { ...d.modules.get(ev.module), name: ev.module, configured: !!ev.configured };
      const s = ev.snapshot;
      if (s) Object.assign(m, { state: s.state, ready: s.ready, busy: s.busy, mode: s.mode || m.mode, resources: s.resources, remote: s.remote });
      // A configured module without a snapshot is starting its process
      // again: it keeps its last state meanwhile.
      else if (!ev.configured) Object.assign(m, { state: 'STOP', ready: 'NotReady', resources: [] });
      d.modules.set(ev.module, m);
    }
    this.changed();
  }

  changed() { this.listeners.forEach((f) => f()); }

  subscribe(f) {
    this.listeners.add(f);
    return () => this.listeners.delete(f);
  }

  get(node, module) { return this.data.get(node)?.modules.get(module); }

  // names lists every module of every node, sorted.
  names() {
    const s = new Set();
    this.data.forEach((d) => d.modules.forEach((_, n) => s.add(n)));
    return [...s].sort();
  }
}

export function mount(root, params, ctx) {
  const nodes = ctx.nodeNames();
  const store = new Store(nodes);
  const cards = h('div', { class: 'cards' });
  const pane = h('div', { class: 'details-pane', hidden: true });
  const view = h('div', { class: 'monitor' }, cards, pane);
  const empty = h('div', { class: 'empty', hidden: true }, 'No module is installed. ',
    api.isAdmin() ? h('a', { href: ctx.href('configuration/modules/new'), text: 'Install one' }) : null);
  root.append(empty, view);
  let sel = params;
  let shape = '';
  let detailView = null;

  const draw = () => {
    const names = store.names();
    empty.hidden = names.length > 0 || [...store.data.values()].some((d) => !d.loaded);
    const next = names.join(',');
    if (next !== shape) {
      shape = next;
      clear(cards, names.map((n) => card(n)));
    }
    cards.querySelectorAll('.mod-card').forEach((c) => {
      c.classList.toggle('selected', c.dataset.module === sel.module);
      c.querySelectorAll('.node-panel').forEach((p) => drawPanel(p, c.dataset.module));
    });
  };

  const card = (name) => {
    const menuBtn = iconButton('dotsH', 'Module menu: all nodes', (ev) => { ev.stopPropagation(); moduleMenu(menuBtn, name); });
    return h('section', { class: 'mod-card', dataset: { module: name } },
      h('header', {}, icon('branch'), h('span', { class: 'name', text: name }), menuBtn),
      nodes.map((node) => panel(name, node)));
  };

  // panel builds the panel of a module on a node once; drawPanel updates
  // its state, so that its buttons stay put while events arrive.
  const panel = (name, node) => {
    const detailsBtn = iconButton('details', 'Details: logs, resources, information', () => {
      const open = sel.module === name && sel.node === node;
      ctx.navigate(open ? 'monitoring' : `monitoring/modules/${api.enc(name)}/nodes/${api.enc(node)}/${sel.tab || 'logs'}`);
    }, { class: 'icon details' });
    const menuBtn = iconButton('dotsH', `Node menu: ${node}`, (ev) => { ev.stopPropagation(); nodeMenu(menuBtn, name, node); }, { class: 'icon nodemenu' });
    const p = h('div', { class: 'node-panel', dataset: { node, module: name } },
      h('header', {}, h('span', { class: 'name', text: node || 'this node' }), detailsBtn, menuBtn));
    p.synth = h('div', { class: 'synth' });
    p.detail = h('div', { class: 'detail' });
    p.body = h('div', { class: 'body' }, p.synth, p.detail);
    p.append(p.body);
    return p;
  };

  const drawPanel = (p, name) => {
    const { node } = p.dataset;
    const d = store.data.get(node);
    const mod = d.error ? { error: d.error } : d.modules.get(name);
    p.hidden = !mod && d.loaded;
    const s = synthetic(mod || { state: '…', ready: 'Transient' });
    const det = detailed(mod);
    p.dataset.state = s.label;
    p.dataset.ready = mod?.ready || '';
    p.classList.toggle('selected', sel.module === name && sel.node === node);
    p.body.title = mod?.error || '';
    p.synth.className = `synth ${s.kind}`;
    clear(p.synth, stateIcon(s), h('span', { class: 'label', text: s.label }));
    clear(p.detail, det.warn ? h('span', { class: 'warn' }, icon('warning')) : null,
      h('span', {}, det.http ? h('span', { class: 'httptag', text: 'HTTP' }) : null, det.text));
  };

  // post sends an operation of a module on a node (what: command,
  // settings, dump); a refusal shows the command's output.
  const post = async (node, module, what, body = {}) => {
    try {
      await api.post(`/modules/${api.enc(module)}/${what}`, body, { node });
    } catch (e) {
      notify(`${module} on ${node}: ${e.message}`, true);
    }
  };
  const run = (node, module, action, arg) => post(node, module, 'command', arg ? { action, arg } : { action });

  // act asks for confirmation of a disruptive action, then runs it.
  const act = async (node, module, action, arg, question) => {
    if (question && !(await confirm(question, `${question} on ${node}?`, 'Confirm', true))) return;
    await run(node, module, action, arg);
  };

  const debugItems = (module, targets) => [
    { label: 'Download the snapshots', action: () => targets.forEach((n) => api.download(`/modules/${api.enc(module)}/snapshot`, n)) },
    { label: 'Download the logs', action: () => targets.forEach((n) => details.downloadLog(module, n, false)) },
    { label: 'Generate the dump files', action: () => targets.forEach((n) => post(n, module, 'dump')) },
  ];

  const nodeMenu = (anchor, module, node) => {
    const mod = store.get(node, module) || {};
    const state = mod.state || 'STOP';
    const stopped = state === 'STOP' && mod.ready !== 'Transient';
    const ctl = !api.canControl() || mod.error || mod.configured === false;
    const mirror = (mod.mode || 'mirror') === 'mirror';
    const boot = resourceMap(mod).get('usersetting.boot');
    const items = [
      { label: 'Start', icon: 'play', disabled: ctl || !stopped, action: () => act(node, module, 'start') },
      { label: 'Stop', icon: 'stop', disabled: ctl || stopped, action: () => act(node, module, 'stop', '', 'Stop the module') },
      { label: 'Restart', icon: 'restart', disabled: ctl || stopped, action: () => act(node, module, 'restart', '', 'Restart the module') },
    ];
    if (mirror) {
      items.push({ label: 'Swap', icon: 'swap', disabled: ctl || !['PRIM', 'SECOND'].includes(state),
        action: () => act(node, module, 'swap', '', 'Swap the primary and the secondary') });
      items.push({ label: 'Force start', disabled: ctl || !stopped, sub: [
        { label: 'As primary', action: () => act(node, module, 'prim', '', 'Force start as primary') },
        { label: 'As secondary', action: () => act(node, module, 'second', '', 'Force start as secondary') },
        { label: 'As secondary with full data synchronization',
          action: () => act(node, module, 'second', 'fullsync', 'Force start as secondary with full data synchronization') },
      ] });
    }
    items.push({ label: `Boot start${boot ? ': ' + boot : ''}`, disabled: ctl, sub: [
      { label: 'On', disabled: boot === 'on', action: () => post(node, module, 'settings', { name: 'boot', on: true }) },
      { label: 'Off', disabled: boot === 'off', action: () => post(node, module, 'settings', { name: 'boot', on: false }) },
    ] });
    items.push({ label: 'Debug', sub: debugItems(module, [node]) });
    showMenu(anchor, node, items);
  };

  const moduleMenu = (anchor, module) => {
    const on = nodes.filter((n) => store.get(n, module) && !store.get(n, module).error);
    const mods = on.map((n) => [n, store.get(n, module)]);
    const ctl = !api.canControl();
    const stoppedOn = mods.filter(([, m]) => (m.state || 'STOP') === 'STOP').map(([n]) => n);
    // A mirror stops its secondary first, so that no failover starts.
    const rank = (m) => ({ SECOND: 0, WAIT: 1, STOP: 1, UP: 1, PRIM: 2, ALONE: 2 }[m.state] ?? 1);
    const runningOn = mods.filter(([, m]) => (m.state || 'STOP') !== 'STOP').sort((a, b) => rank(a[1]) - rank(b[1])).map(([n]) => n);
    showMenu(anchor, on.join(','), [
      { label: 'Start', icon: 'play', disabled: ctl || !stoppedOn.length,
        action: async () => { for (const n of stoppedOn) await run(n, module, 'start'); } },
      { label: 'Stop', icon: 'stop', disabled: ctl || !runningOn.length, action: async () => {
        if (!(await confirm('Stop the module', `Stop ${module} on ${runningOn.join(', ')}?`, 'Confirm', true))) return;
        for (const n of runningOn) await run(n, module, 'stop');
      } },
      { label: 'Debug', sub: debugItems(module, on) },
    ]);
  };

  const select = (p) => {
    const changed = p.module !== sel.module || p.node !== sel.node;
    sel = p;
    view.classList.toggle('details', !!p.module);
    pane.hidden = !p.module;
    if (changed || !p.module) {
      detailView?.close();
      detailView = null;
    }
    if (p.module) {
      if (!detailView) {
        clear(pane);
        detailView = details.mount(pane, p, ctx, store);
      } else detailView.update(p);
    }
    draw();
  };

  store.subscribe(draw);
  store.start();
  select(params);
  return {
    update: select,
    close() { store.close(); detailView?.close(); },
  };
}

