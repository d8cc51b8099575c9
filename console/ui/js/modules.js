// modules.js: Configuration › Modules configuration: the installed modules
// (one card per module, its state on each node and its actions) and New
// module (a .safe of the node's Application_Modules, or uploaded).

import * as api from './api.js';
import { h, icon, iconButton, clear, fmtDate, dialog, nodeChoice, resultRows, field, setFieldError, notify } from './dom.js';
import { configTabs } from './cluster.js';
import { modulesOf } from './monitoring.js';

const NAME_RE = /^[A-Za-z0-9_-]{1,63}$/;

export function mount(root, params, ctx) {
  const seg = h('div', { class: 'segmented' });
  const page = h('div', { class: 'page' }, seg);
  const body = h('div');
  page.append(body);
  root.append(configTabs(ctx, 'modules'), page);
  const show = (p) => {
    clear(seg,
      h('a', { href: ctx.href('configuration/modules'), class: p.tab === 'installed' ? 'active' : '', text: 'Installed modules' }),
      h('a', { href: ctx.href('configuration/modules/new'), class: p.tab === 'new' ? 'active' : '', text: 'New module' }));
    clear(body);
    (p.tab === 'new' ? newModule : installed)(body, ctx);
  };
  show(params);
  return { update: show };
}

// onNodes runs an operation of the connection node that acts on nodes
// ({nodes}) and gathers its rows [{node, ok, output}].
async function onNodes(method, path, nodes) {
  try {
    return api.results(await api.request(method, path, { json: { nodes } }));
  } catch (e) {
    return Array.isArray(e.body) ? api.results(e.body) : [{ node: api.selfNode(), ok: false, output: e.message }];
  }
}

const showResults = (title, rows) => dialog({ title, body: h('div', { class: 'results' }, resultRows(rows)), ok: 'Close', cancel: '' });

async function installed(body, ctx) {
  const nodes = ctx.nodeNames();
  const lists = await Promise.all(nodes.map((node) => api.get('/modules', { node }).then(
    (d) => ({ node, mods: new Map(modulesOf(d).map((m) => [m.name, m])) }),
    (e) => ({ node, error: e.status === 0 || e.status >= 500 ? `No reply of ${node}` : e.message, mods: new Map() }))));
  const names = [...new Set(lists.flatMap((l) => [...l.mods.keys()]))].sort();
  if (!names.length && lists.every((l) => !l.error)) {
    ctx.navigate('configuration/modules/new', { replace: true });
    return;
  }
  const reload = () => { clear(body); installed(body, ctx); };
  for (const name of names) {
    const on = lists.filter((l) => l.mods.has(name)).map((l) => l.node);
    const configuredOn = lists.filter((l) => l.mods.get(name)?.configured).map((l) => l.node);
    body.append(h('section', { class: 'card module', dataset: { module: name } },
      h('header', {}, icon('branch'), h('span', { class: 'title', text: name })),
      lists.map((l) => {
        const m = l.mods.get(name);
        let status;
        if (l.error) status = h('span', { class: 'failure', text: l.error });
        else if (!m) status = h('span', { class: 'hint', text: 'Not installed' });
        else if (!m.configured) status = h('span', { class: 'hint', text: 'Installed, not configured' });
        else status = h('span', {}, m.date ? `Applied on ${fmtDate(m.date)} ` : 'Applied ', h('span', { class: 'success' }, icon('check')));
        return h('div', { class: 'row applied', dataset: { node: l.node } }, h('span', { class: 'name', text: l.node }), status,
          m?.saved ? h('span', { class: 'hint', text: `Saved on ${fmtDate(m.saved)}, not applied` }) : null);
      }),
      h('div', { class: 'buttons end' },
        iconButton('gear', 'Configure the module', () => ctx.navigate(`configuration/modules/${api.enc(name)}/config`), { class: 'icon configure' }),
        iconButton('download', `Download ${name}.safe`, () => api.download(`/modules/${api.enc(name)}/download`)),
        iconButton('history', 'Restore a previous configuration', () => restore(ctx, name, on).then(reload)),
        iconButton('close', 'Deconfigure', () => nodeAction(`Deconfigure ${name}`,
          'The module stops being managed on the selected nodes; its files (conf/, bin/) stay.', configuredOn,
          (nodes) => onNodes('POST', `/modules/${api.enc(name)}/deconfig`, nodes)).then(reload), { class: 'icon deconfigure' }),
        iconButton('trash', 'Uninstall', () => nodeAction(`Uninstall ${name}`,
          'The module is removed from the selected nodes; a .safe backup is kept in Application_Modules/backup.', on,
          (nodes) => onNodes('DELETE', `/modules/${api.enc(name)}`, nodes)).then(reload), { class: 'icon uninstall' }))));
  }
}

// nodeAction asks which nodes, confirms, runs and shows the results.
async function nodeAction(title, text, nodes, call) {
  const [choice, chosen] = nodeChoice(nodes);
  if (!(await dialog({ title, body: [h('p', { text }), choice], ok: 'Confirm', danger: true }))) return;
  await showResults(title, await call(chosen()));
}

async function restore(ctx, name, nodes) {
  let configs;
  try {
    configs = await api.get(`/modules/${api.enc(name)}/lastconfig`);
  } catch (e) {
    notify(e.message, true);
    return;
  }
  if (!configs.length) {
    notify(`No previous configuration of ${name} is kept on ${ctx.self}`);
    return;
  }
  const radios = configs.map((c, i) => h('input', { type: 'radio', name: 'lastconfig', value: c.file, checked: i === 0 }));
  const [choice, chosen] = nodeChoice(nodes);
  const ok = await dialog({
    title: `Restore a configuration of ${name}`,
    body: [h('div', {}, configs.map((c, i) => h('label', { class: 'check' }, radios[i], h('span', { text: `${c.file}${c.date ? '  ' + fmtDate(c.date) : ''}` })))),
      h('p', { class: 'hint', text: 'The module must be stopped on the nodes where it is applied.' }), choice],
  });
  if (!ok) return;
  const file = radios.find((r) => r.checked).value;
  let rows;
  try {
    await api.post(`/modules/${api.enc(name)}/restore`, { file });
    rows = await onNodes('POST', `/modules/${api.enc(name)}/apply`, chosen());
  } catch (e) {
    rows = [{ node: ctx.self, ok: false, output: e.message }];
  }
  await showResults(`Restore ${file}`, rows);
}

// Sections of Application_Modules, in the order the product shows them.
const SECTIONS = [['Main modules', ['generic', 'demo', 'published']], ['Backup modules', ['backup']], ['Other modules', ['other']]];

async function newModule(body, ctx) {
  // {section: [{name, path}]}, path relative to Application_Modules.
  let bySection = {};
  try {
    bySection = await api.get('/application_modules');
  } catch (e) {
    body.append(h('p', { class: 'errors', text: e.message }));
  }
  const panel = (title, entries, open) => {
    const radios = entries.map((m) => h('input', { type: 'radio', name: `safe-${title}`, value: m.path }));
    if (radios[0]) radios[0].checked = true;
    const chosen = () => entries.find((_, i) => radios[i].checked);
    return h('details', { class: 'panel', open, dataset: { section: title } },
      h('summary', { text: title }),
      h('div', { class: 'content' },
        entries.length ? [h('p', { text: 'Select a module:' }),
          entries.map((m, i) => h('label', { class: 'check radio' }, radios[i], h('span', { text: m.name })))] : h('p', { class: 'hint', text: 'None' }),
        h('div', { class: 'buttons end' },
          iconButton('gear', 'Configure the new module', () => chosen() && create(ctx, chosen().name, { json: { source: chosen().path } }),
            { class: 'icon configure', disabled: !entries.length }),
          iconButton('download', 'Download the .safe', () => chosen() && api.download(`/application_modules/${chosen().path.split('/').map(api.enc).join('/')}`),
            { disabled: !entries.length }))));
  };
  for (const [title, dirs] of SECTIONS) {
    body.append(panel(title, dirs.flatMap((d) => bySection[d] || []), title === 'Main modules'));
  }
  const file = h('input', { type: 'file', accept: '.safe,.zip', id: 'upload-file' });
  body.append(h('details', { class: 'panel', dataset: { section: 'Upload a module' } },
    h('summary', { text: 'Upload a module' }),
    h('div', { class: 'content' },
      h('label', { class: 'field' }, h('span', { text: 'Local .safe or .zip file*' }), file),
      h('div', { class: 'buttons end' },
        iconButton('gear', 'Configure the uploaded module', () => {
          const f = file.files[0];
          if (!f) { notify('Choose a .safe or .zip file first', true); return; }
          const form = new FormData();
          form.append('file', f);
          create(ctx, f.name, { body: form });
        }, { class: 'icon configure upload' })))));
}

// create asks the new module's name, installs the .safe under it and opens
// the wizard.
async function create(ctx, file, source) {
  const name = field({ label: 'Module name', required: true, value: file.replace(/\.(safe|zip)$/i, '').replace(/[^A-Za-z0-9_-]/g, '_'), name: 'module-name' });
  const ok = await dialog({
    title: 'New module name', body: [name],
    validate: async () => {
      const v = name.input.value.trim();
      if (!NAME_RE.test(v)) {
        setFieldError(name, v ? "Letters, digits, '_' and '-' only (at most 63)" : 'Required value');
        return false;
      }
      try {
        await api.request('POST', `/modules/${api.enc(v)}/install`, source);
        return true;
      } catch (e) {
        setFieldError(name, e.message);
        return false;
      }
    },
  });
  if (ok) ctx.navigate(`configuration/modules/${api.enc(name.input.value.trim())}/config?new=1`);
}
