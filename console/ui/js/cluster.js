// cluster.js: Configuration › Cluster configuration: the nodes of the
// cluster, and the wizard that edits cluster.xml ("Lan and nodes" cards or
// the text with Advanced configuration), checks it and applies it on every
// node.

import * as api from './api.js';
import { h, icon, iconButton, clear, fmtDate, expander, dialog, nodeChoice, resultRows, field, setFieldError, notify } from './dom.js';
import { nodeInfo } from './details.js';

// parseClusterXML reads cluster.xml into lans of nodes, keeping the
// attributes the form does not edit (command, laddr...) for the way back.
export function parseClusterXML(xml) {
  const out = { lans: [], nodes: [], error: '' };
  if (!xml || !xml.trim()) return out;
  const doc = new DOMParser().parseFromString(xml, 'application/xml');
  const bad = doc.querySelector('parsererror');
  if (bad) {
    out.error = bad.textContent.trim().split('\n')[0];
    return out;
  }
  const rest = (el, skip) => [...el.attributes].filter((a) => !skip.includes(a.name)).map((a) => [a.name, a.value]);
  const byName = new Map();
  for (const lan of doc.querySelectorAll('lan')) {
    const l = { name: lan.getAttribute('name') || '', attrs: rest(lan, ['name']), nodes: [] };
    for (const n of lan.querySelectorAll('node')) {
      const node = { name: n.getAttribute('name') || '', addr: n.getAttribute('addr') || '', attrs: rest(n, ['name', 'addr']) };
      l.nodes.push(node);
      if (!byName.has(node.name)) byName.set(node.name, { name: node.name, addrs: {} });
      byName.get(node.name).addrs[l.name] = node.addr;
    }
    out.lans.push(l);
  }
  out.nodes = [...byName.values()];
  return out;
}

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
const attrs = (list) => list.map(([k, v]) => ` ${k}="${esc(v)}"`).join('');

// genClusterXML writes lans back as cluster.xml; lines maps each line
// number to the lan and node written there, to put the server's errors
// next to their field.
function genClusterXML(lans) {
  const out = ['<cluster>', '  <lans>'];
  const lines = {};
  lans.forEach((l, i) => {
    out.push(`    <lan name="${esc(l.name)}"${attrs(l.attrs || [])}>`);
    lines[out.length] = { lan: i };
    l.nodes.forEach((n, j) => {
      out.push(`      <node name="${esc(n.name)}" addr="${esc(n.addr)}"${attrs(n.attrs || [])}/>`);
      lines[out.length] = { lan: i, node: j };
    });
    out.push('    </lan>');
  });
  out.push('  </lans>', '</cluster>', '');
  return { xml: out.join('\n'), lines };
}

export function configTabs(ctx, active) {
  return h('nav', { class: 'tabs' },
    h('a', { href: ctx.href('configuration/cluster'), class: active === 'cluster' ? 'active' : '', text: 'Cluster configuration' }),
    h('a', { href: ctx.href('configuration/modules'), class: active === 'modules' ? 'active' : '', text: 'Modules configuration' }));
}

export function mount(root, params, ctx) {
  const page = h('div', { class: 'page' });
  root.append(configTabs(ctx, 'cluster'), page);
  const show = (p) => {
    clear(page);
    if (p.wizard || !ctx.clusterXML) {
      if (!p.wizard) history.replaceState(null, '', ctx.href('configuration/cluster/config'));
      wizard(page, ctx);
    } else home(page, ctx);
  };
  show(params);
  return { update: show };
}

// home lists the nodes with the date their configuration was applied.
function home(page, ctx) {
  const list = h('div', { class: 'nodes' });
  page.append(h('h2', { text: 'Nodes' }), list,
    h('div', { class: 'buttons end' },
      iconButton('gear', 'Configure the cluster', () => ctx.navigate('configuration/cluster/config'), { class: 'icon configure' }),
      iconButton('download', 'Download cluster.xml', () => api.saveText('cluster.xml', ctx.clusterXML)),
      iconButton('close', 'Unconfigure the cluster', () => unconfigure(ctx))));
  for (const n of ctx.nodes) {
    const applied = h('span', { class: 'applied hint', text: '…' });
    const info = h('table', { class: 'kv' });
    const row = expander([h('span', { class: 'name', text: n.name }), applied], info, { node: n.name });
    row.querySelector('.head').addEventListener('click', () => { if (!info.firstChild) nodeInfo(info, n.name); });
    list.append(row);
    api.get('/cluster', { node: n.name }).then((c) => {
      const same = !c.signature || !ctx.clusterSignature || c.signature === ctx.clusterSignature;
      clear(applied, c.date ? `Applied on ${fmtDate(c.date)} ` : 'Not applied ', c.date && same ? h('span', { class: 'success' }, icon('check')) : null,
        same ? null : h('span', { class: 'failure', text: ' differs from this node' }));
    }, (e) => { applied.textContent = e.status === 0 || e.status >= 500 ? `No reply of ${n.name}` : e.message; applied.className = 'failure'; });
  }
}

async function unconfigure(ctx) {
  const [choice, chosen] = nodeChoice(ctx.nodes.map((n) => n.name));
  if (!(await dialog({ title: 'Unconfigure the cluster', body: [h('p', { text: 'Remove the cluster configuration (cluster.xml and key) from the selected nodes. Modules that use the cluster stop working there.' }), choice], ok: 'Unconfigure', danger: true }))) return;
  // safekit cluster deconfig on each node, through the API of distributed
  // commands.
  const rows = [];
  for (const node of chosen()) {
    try {
      const r = await api.post('/cli', { args: ['cluster', 'deconfig'] }, { node });
      rows.push({ node, ok: r.code === 0, output: `${r.stdout}${r.stderr}` });
    } catch (e) {
      rows.push({ node, ok: false, output: e.message });
    }
  }
  await dialog({ title: 'Unconfigure the cluster', body: resultRows(rows), ok: 'Close', cancel: '' });
  await ctx.reloadCluster();
  ctx.navigate('configuration/cluster', { replace: true });
}

function wizard(page, ctx) {
  const initial = () => {
    const p = parseClusterXML(ctx.clusterXML);
    if (p.lans.length) return p.lans;
    return [{ name: 'default', attrs: [], nodes: [{ name: ctx.self || 'node1', addr: location.hostname, attrs: [] }, { name: '', addr: '', attrs: [] }] }];
  };
  let lans = initial();
  let advanced = false;
  let text = '';
  const body = h('div');
  const top = h('div');
  const stepper = h('div', { class: 'stepper' });
  page.append(h('a', { class: 'back', href: ctx.href('configuration/cluster') }, icon('left'), 'Exit cluster configuration wizard'), stepper, top, body);

  const steps = (n) => clear(stepper, [['Edit cluster configuration', 1], ['Check result', 2]].map(([label, i]) => [
    i > 1 ? h('span', { class: 'line' }) : null,
    h('span', { class: `step${i === n ? ' current' : ''}${i < n ? ' done' : ''}` }, h('span', { class: 'num' }, i < n ? icon('check') : String(i)), label)]));

  const edit = () => {
    steps(1);
    const sw = h('input', { type: 'checkbox', checked: advanced, id: 'advanced' });
    sw.addEventListener('change', () => {
      if (sw.checked) {
        text = genClusterXML(lans).xml;
        advanced = true;
      } else {
        const p = parseClusterXML(text);
        if (p.error) {
          sw.checked = true;
          notify(`cluster.xml: ${p.error}`, true);
          return;
        }
        lans = p.lans;
        advanced = false;
      }
      edit();
    });
    clear(top, h('div', { class: 'topline' },
      h('label', { class: 'switch' }, sw, 'Advanced configuration'),
      h('a', { onclick: helpDialog }, icon('help'), ' Help')),
    h('div', { class: 'errors', hidden: true }));
    clear(body);
    let cards = null;
    if (advanced) {
      const ta = h('textarea', { class: 'code', spellcheck: 'false', id: 'cluster-xml' });
      ta.value = text;
      ta.addEventListener('input', () => { text = ta.value; });
      body.append(h('h2', { text: 'cluster.xml' }), ta);
    } else {
      cards = lans.map((l, i) => lanCard(l, i));
      body.append(...cards);
    }
    const save = h('button', { class: 'primary', type: 'button', text: 'Save and apply', id: 'save-apply' });
    save.addEventListener('click', async () => {
      save.disabled = true;
      try {
        await saveAndApply(cards);
      } finally {
        save.disabled = false;
      }
    });
    body.append(h('div', { class: 'buttons bar' },
      h('button', { type: 'button', text: 'Reload', onclick: () => { lans = initial(); advanced = false; edit(); } }), save));
  };

  const lanCard = (l, i) => {
    const names = lans[0].nodes.map((n) => n.name).filter(Boolean);
    const lanName = field({ label: 'Lan name', required: true, value: l.name, oninput: (e) => { l.name = e.target.value; } });
    const rows = l.nodes.map((n, j) => {
      const addr = field({ label: 'Node address', required: true, value: n.addr, cls: 'addr', oninput: (e) => { n.addr = e.target.value.trim(); } });
      const name = i === 0
        ? field({ label: 'Node name', required: true, value: n.name, cls: 'name', oninput: (e) => { n.name = e.target.value.trim(); } })
        : field({ label: 'Node name', required: true, value: n.name, cls: 'name', options: [['', ''], ...names.map((x) => [x, x])], oninput: (e) => { n.name = e.target.value; } });
      const last = j === l.nodes.length - 1;
      return h('div', { class: 'row noderow' }, addr, name,
        iconButton('trash', 'Remove this node', () => { l.nodes.splice(j, 1); edit(); }, { disabled: l.nodes.length <= 1 }),
        last ? iconButton('plus', 'Add a node', () => { l.nodes.push({ name: '', addr: '', attrs: [] }); edit(); }, { class: 'icon addnode' }) : null);
    });
    const card = h('section', { class: 'card lan', dataset: { lan: i } },
      h('header', {}, h('span', { class: 'title', text: 'Lan and nodes' }),
        iconButton('trash', 'Remove this lan', () => { lans.splice(i, 1); edit(); }, { disabled: lans.length <= 1 }),
        iconButton('plus', 'Add a lan', () => {
          lans.push({ name: '', attrs: [], nodes: lans[0].nodes.map((n) => ({ name: n.name, addr: '', attrs: [] })) });
          edit();
        }, { class: 'icon addlan' })),
      h('div', { class: 'row' }, lanName), rows);
    card.lanField = lanName;
    card.nodeRows = rows;
    return card;
  };

  // showErrors puts each error next to its field when its line (in the XML
  // we wrote) says which lan or node it concerns, and at the top
  // otherwise.
  const showErrors = (errors, lines, cards) => {
    const box = top.querySelector('.errors');
    const loose = [];
    for (const e of errors) {
      const at = lines?.[e.line];
      if (!cards || !at) { loose.push(e); continue; }
      const card = cards[at.lan];
      let f = card.lanField;
      if (at.node !== undefined) {
        const row = card.nodeRows[at.node];
        const wantName = /\bname\b/i.test(e.message) && !/addr/i.test(e.message);
        f = row.querySelector(wantName ? '.field.name' : '.field.addr');
      }
      setFieldError(f, e.message);
    }
    box.hidden = !loose.length;
    clear(box, loose.map((e) => h('div', { text: api.fmtError(e) })));
  };

  const saveAndApply = async (cards) => {
    const gen = advanced ? { xml: text, lines: null } : genClusterXML(lans);
    document.querySelectorAll('.field.invalid').forEach((f) => setFieldError(f, ''));
    showErrors([], null, null);
    let errors = [];
    try {
      errors = api.errorsOf(await api.post('/cluster/check', { xml: gen.xml }));
    } catch (e) {
      errors = api.errorsOf(e);
    }
    if (errors.length) {
      showErrors(errors, gen.lines, cards);
      return;
    }
    let rows;
    try {
      await api.put('/cluster', { xml: gen.xml });
      rows = api.results(await api.post('/cluster/apply', {}));
    } catch (e) {
      if (e.body?.diagnostics) { showErrors(api.errorsOf(e), gen.lines, cards); return; }
      rows = Array.isArray(e.body) ? api.results(e.body) : [{ node: ctx.self || 'this node', ok: false, output: e.message }];
    }
    await ctx.reloadCluster();
    result(rows);
  };

  const result = (rows) => {
    steps(2);
    clear(top);
    clear(body, h('h2', { text: 'Saving and applying cluster configuration' }), h('div', { class: 'card results' }, resultRows(rows)),
      h('div', { class: 'buttons bar' },
        h('button', { type: 'button', text: 'Previous step', onclick: () => { lans = initial(); edit(); } }),
        h('button', { type: 'button', class: 'primary', text: 'Configure modules', onclick: () => ctx.navigate('configuration/modules') })));
  };

  edit();
}

function helpDialog() {
  dialog({
    title: 'Cluster configuration', ok: 'Close', cancel: '',
    body: [
      h('p', { text: 'Each "Lan and nodes" card is one network: give it a name, then the address and the name of every node on it. On the other lans, pick the same node names: a node is linked across its networks by its name.' }),
      h('p', { text: 'Modules choose their heartbeat networks among these lan names. Removing a node or a lan can break the modules that use it.' }),
      h('p', { text: 'Save and apply checks cluster.xml, writes it with a new cluster key and applies it on every node. Applying an unchanged configuration again is allowed. Advanced configuration edits cluster.xml as text.' }),
    ],
  });
}
