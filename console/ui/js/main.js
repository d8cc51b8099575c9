// main.js: the application shell (top bar, sidebar) and the router. URLs
// are SafeKit's: /console/en/monitoring, /console/en/configuration/cluster...

import * as api from './api.js';
import { h, icon, iconButton, clear, showMenu, notify } from './dom.js';
import * as login from './login.js';
import * as monitoring from './monitoring.js';
import * as cluster from './cluster.js';
import * as modules from './modules.js';
import * as wizard from './wizard.js';

const ROOT = '/console/';
const lang = location.pathname.split('/')[2] || 'en';
const base = `${ROOT}${lang}/`;

// Pages by the first match of the path after /console/en/.
const routes = [
  { re: /^monitoring(?:\/modules\/([^/]+)\/nodes\/([^/]+)(?:\/(logs|resources|information))?)?$/, page: monitoring, title: 'Monitoring',
    params: (m) => ({ module: m[1] && decodeURIComponent(m[1]), node: m[2] && decodeURIComponent(m[2]), tab: m[3] || (m[1] ? 'logs' : '') }) },
  { re: /^configuration(?:\/cluster(\/config)?)?$/, page: cluster, title: 'Configuration', admin: true, params: (m) => ({ wizard: !!m[1] }) },
  { re: /^configuration\/modules(?:\/(new))?$/, page: modules, title: 'Configuration', admin: true, params: (m) => ({ tab: m[1] || 'installed' }) },
  { re: /^configuration\/modules\/([^/]+)\/config$/, page: wizard, title: 'Configuration', admin: true,
    params: (m, q) => ({ module: decodeURIComponent(m[1]), isNew: q.has('new') }) },
];

// ctx is what every page gets: the session, the connection node, the
// cluster's nodes, and navigation.
const ctx = {
  base,
  self: '',
  nodes: [],       // [{name, addrs: {lan: addr}}] from cluster.xml
  clusterXML: '',
  clusterSignature: '',
  navigate,
  href: (p) => base + p,
  // nodeNames are the nodes of the cluster, or this node alone before
  // there is a cluster.
  nodeNames: () => (ctx.nodes.length ? ctx.nodes.map((n) => n.name) : [ctx.self]),
  reloadCluster,
};

let current = null; // {route, page, view}
let shell = null;

function parse() {
  const rest = location.pathname.startsWith(base) ? location.pathname.slice(base.length).replace(/\/$/, '') : '';
  const q = new URLSearchParams(location.search);
  for (const r of routes) {
    const m = rest.match(r.re);
    if (m) return { ...r, path: rest, params: r.params(m, q) };
  }
  return null;
}

// navigate goes to path (after /console/en/) without reloading the page.
function navigate(path, { replace = false } = {}) {
  history[replace ? 'replaceState' : 'pushState'](null, '', base + path);
  render();
}

function render() {
  let route = parse();
  if (!route || (route.admin && !api.isAdmin())) {
    history.replaceState(null, '', base + 'monitoring');
    route = parse();
  }
  document.title = `${ctx.self ? ctx.self + ' ' : ''}${route.title}`;
  shell.sidebar.querySelectorAll('a').forEach((a) => a.classList.toggle('active', route.path.startsWith(a.dataset.section)));
  if (current && current.route.page === route.page && current.view.update) {
    current.route = route;
    current.view.update(route.params);
    return;
  }
  current?.view.close?.();
  clear(shell.main);
  current = { route, view: route.page.mount(shell.main, route.params, ctx) || {} };
}

// reloadCluster reads cluster.xml and this node's name again (after the
// cluster wizard applied a new configuration).
async function reloadCluster() {
  let c = {};
  try {
    c = await api.get('/cluster');
  } catch (e) {
    notify(`cluster configuration: ${e.message}`, true);
  }
  ctx.clusterXML = c.xml || '';
  ctx.clusterSignature = c.signature || '';
  ctx.nodes = cluster.parseClusterXML(ctx.clusterXML).nodes;
  ctx.self = c.self || ctx.nodes.find((x) => Object.values(x.addrs).includes(location.hostname))?.name || '';
  api.setSelf(ctx.self);
  if (shell) drawChip();
}

function drawChip() {
  const { chip } = shell;
  clear(chip);
  if (!ctx.self) return;
  const others = ctx.nodes.map((n) => {
    const addr = Object.values(n.addrs)[0] || '';
    return {
      label: `${n.name}  ${addr}`, disabled: n.name === ctx.self || !addr,
      action: () => { location.href = `${location.protocol}//${addr}${location.port ? ':' + location.port : ''}${location.pathname}`; },
    };
  });
  const b = h('button', { class: 'chip', type: 'button', title: 'Connection node: choose another node to load the console from',
    onclick: (ev) => { ev.stopPropagation(); showMenu(b, 'Connection node', others); } },
  icon('cast'), h('span', { class: 'self', text: ctx.self }), icon('chevron'));
  chip.append(b);
}

function buildShell(app) {
  const sidebar = h('nav', { class: `sidebar${localStorage.getItem('sk.sidebar') === 'open' ? ' open' : ''}` },
    h('a', { href: base + 'monitoring', dataset: { section: 'monitoring' }, title: 'Monitoring' }, icon('eye'), h('span', { text: 'Monitoring' })),
    api.isAdmin() ? h('a', { href: base + 'configuration/cluster', dataset: { section: 'configuration' }, title: 'Configuration' },
      icon('gear'), h('span', { text: 'Configuration' })) : null);
  const chip = h('div', { class: 'center' });
  const more = iconButton('dotsV', 'Menu', (ev) => {
    ev.stopPropagation();
    showMenu(more, `${api.session.user} (${api.session.role})`, [{ label: 'Logout', icon: 'logout', action: logout }]);
  });
  const top = h('header', { class: 'topbar' },
    iconButton('menu', 'Show or hide the menu labels', () => {
      sidebar.classList.toggle('open');
      localStorage.setItem('sk.sidebar', sidebar.classList.contains('open') ? 'open' : '');
    }),
    chip, more);
  const main = h('main');
  app.append(top, h('div', { class: 'layout' }, sidebar, main));
  return { sidebar, chip, main };
}

async function logout() {
  try {
    await api.request('POST', '/logout', { raw: true, noRedirect: true });
  } catch (e) {
    notify(`Logout: ${e.message}`, true);
  }
  location.href = base + 'login';
}

function toLogin() {
  const here = location.pathname + location.search;
  location.href = `${base}login${here.startsWith(base + 'login') ? '' : '?next=' + encodeURIComponent(here)}`;
}

async function start() {
  const app = document.getElementById('app');
  if (location.pathname.startsWith(base + 'login')) {
    login.mount(app, ctx);
    return;
  }
  try {
    api.setSession(await api.get('/session', { noRedirect: true }));
  } catch (e) {
    if (e.status === 401) return toLogin();
    app.append(h('div', { class: 'page' }, h('p', { class: 'errors', text: `The console cannot reach its node: ${e.message}` })));
    return;
  }
  window.addEventListener('unauthorized', toLogin);
  await reloadCluster();
  shell = buildShell(app);
  drawChip();
  // Links inside the application change the page without a reload.
  document.addEventListener('click', (ev) => {
    const a = ev.target.closest('a[href]');
    if (!a || a.target || a.hasAttribute('download') || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin || !url.pathname.startsWith(base)) return;
    ev.preventDefault();
    navigate(url.pathname.slice(base.length) + url.search);
  });
  window.addEventListener('popstate', render);
  render();
}

start();
