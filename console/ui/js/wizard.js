// wizard.js: the module configuration wizard. 1 Edit module configuration
// (a form over conf/userconfig.xml, or the file itself with Advanced
// configuration), 2 Edit module scripts, 3 encryption, 4 Save and apply on
// chosen nodes, 5 Check result.

import * as api from './api.js';
import { h, icon, iconButton, clear, field, setFieldError, resultRows, notify, dialog } from './dom.js';
import { configTabs } from './cluster.js';
import { modulesOf } from './monitoring.js';

const STEPS = [['Edit module configuration'], ['Edit module scripts', 'Optional'], ['Enable communication encryption', 'Optional'], ['Save and apply'], ['Check result']];
const BOOT = [['on', 'Automatic'], ['off', 'Manual'], ['auto', 'Automatic when running before'], ['ignore', 'Set at run time (safekit boot)']];
const MAIN_SCRIPT = /^bin\/(start|stop)_(prim|both)(\.\w+)?$/;
const CHECK_ELEMENTS = ['check', 'tcp', 'ping', 'intf', 'ip', 'custom', 'splitbrain', 'errd', 'proc', 'to', 'failover'];

const xmlEsc = (s) => String(s).replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');

// setMacro sets the value of <macro name="NAME" value="..."/> in text.
function setMacro(text, name, value) {
  const re = new RegExp(`<macro\\b[^>]*\\bname\\s*=\\s*"${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}"[^>]*>`);
  return text.replace(re, (tag) => (/\bvalue\s*=\s*"[^"]*"/.test(tag)
    ? tag.replace(/\bvalue\s*=\s*"[^"]*"/, `value="${xmlEsc(value)}"`)
    : tag.replace(/\s*\/?>$/, (end) => ` value="${xmlEsc(value)}"${end}`)));
}

// setServiceAttr sets an attribute of the <service> element in text.
function setServiceAttr(text, attr, value) {
  return text.replace(/<service\b[^>]*>/, (tag) => {
    const re = new RegExp(`\\b${attr}\\s*=\\s*"[^"]*"`);
    if (re.test(tag)) return tag.replace(re, `${attr}="${xmlEsc(value)}"`);
    return tag.replace(/\s*>$/, ` ${attr}="${xmlEsc(value)}">`);
  });
}

// describe reads what the form shows from userconfig.xml.
function describe(text) {
  const doc = new DOMParser().parseFromString(text, 'application/xml');
  if (doc.querySelector('parsererror')) return { error: doc.querySelector('parsererror').textContent.trim().split('\n')[0] };
  const svc = doc.querySelector('service');
  const all = (sel, f) => [...doc.querySelectorAll(sel)].map(f);
  return {
    mode: svc?.getAttribute('mode') || '',
    boot: svc?.getAttribute('boot') || 'ignore',
    delay: svc?.getAttribute('boot_delay') || '0',
    macros: all('macro', (m) => ({ name: m.getAttribute('name'), value: m.getAttribute('value') || '' })),
    heartbeats: all('heart heartbeat', (b) => ({ name: b.getAttribute('name') || '', flow: b.getAttribute('ident') === 'flow' })),
    vips: all('virtual_addr', (v) => v.getAttribute('addr')),
    dirs: all('rfs replicated', (r) => r.getAttribute('dir')),
    checkers: [...all('check > *', (c) => `${c.tagName}: ${c.getAttribute('ident') || c.getAttribute('name') || ''} ${c.getAttribute('when') ? '(' + c.getAttribute('when') + ')' : ''}`),
      ...all('errd proc', (p) => `process: ${p.getAttribute('name')}`)],
  };
}

export function mount(root, params, ctx) {
  const page = h('div', { class: 'page wizard' });
  root.append(configTabs(ctx, 'modules'), page);
  const AM = params.module;
  const path = `/modules/${api.enc(AM)}`;
  const self = ctx.self;
  const nodes = ctx.nodeNames();
  const st = {};
  const stepper = h('div', { class: 'stepper' });
  const body = h('div');
  page.append(h('a', { class: 'back', href: ctx.href('configuration/modules') }, icon('left'),
    `Exit ${params.isNew ? 'new ' : ''}module configuration wizard - ${AM}`), stepper, body);

  const steps = (n) => clear(stepper, STEPS.map(([label, sub], i) => [
    i ? h('span', { class: 'line' }) : null,
    h('span', { class: `step${i + 1 === n ? ' current' : ''}${i + 1 < n ? ' done' : ''}`, title: label },
      h('span', { class: 'num' }, i + 1 < n ? icon('check') : String(i + 1)), h('span', {}, label, sub ? h('small', { text: sub }) : null))]));

  const load = async () => {
    clear(body, h('p', { class: 'hint', text: 'Loading…' }));
    try {
      const c = await api.get(`${path}/config`);
      st.text = c.userconfig;
      st.original = st.text;
      st.files = (c.bin || []).map((b) => `bin/${b.name}`);
    } catch (e) {
      clear(body, h('p', { class: 'errors', text: `${AM}: ${e.message}` }));
      return false;
    }
    const d = describe(st.text);
    st.macros = (d.macros || []).map((m) => ({ ...m }));
    st.boot = { value: d.boot, delay: d.delay };
    st.advanced = false;
    st.scriptsAdvanced = false;
    st.scripts = new Map();
    st.current = '';
    st.errors = [];
    return true;
  };

  // save writes the wizard's edits on the connection node: the file when
  // its text changed (Advanced configuration, start at boot), the macro
  // values of the form, and the scripts that changed.
  const save = async () => {
    if (st.text !== st.original) {
      await api.request('PUT', `${path}/files/conf/userconfig.xml`, { body: st.text });
      st.original = st.text;
    }
    if (!st.advanced) {
      await api.put(`${path}/macros`, st.macros.map(({ name, value }) => ({ name, value })));
    }
    for (const [file, s] of st.scripts) {
      if (s.text !== s.saved) {
        await api.request('PUT', `${path}/files/${file.split('/').map(api.enc).join('/')}`, { body: s.text });
        s.saved = s.text;
      }
    }
  };

  const check = async () => {
    try {
      return api.errorsOf(await api.post(`${path}/check`, {}));
    } catch (e) {
      return api.errorsOf(e);
    }
  };

  // ---- step 1 ----
  const step1 = () => {
    steps(1);
    const sw = h('input', { type: 'checkbox', checked: st.advanced, id: 'advanced' });
    sw.addEventListener('change', () => {
      if (sw.checked) {
        st.text = st.macros.reduce((t, m) => setMacro(t, m.name, m.value), st.text);
      } else {
        const d = describe(st.text);
        if (d.error) { sw.checked = true; notify(`userconfig.xml: ${d.error}`, true); return; }
        st.macros = d.macros;
        st.boot = { value: d.boot, delay: d.delay };
      }
      st.advanced = sw.checked;
      st.errors = [];
      step1();
    });
    const top = h('div', { class: 'errors', hidden: true });
    const next = h('button', { type: 'button', class: 'primary', text: 'Next step', id: 'next', disabled: st.errors.length > 0 });
    const edited = () => { next.disabled = false; };
    const panels = {};
    const panel = (id, title, content, open = false) => {
      const errs = h('div', { class: 'errors', hidden: true });
      const p = h('details', { class: 'panel', open, dataset: { panel: id } }, h('summary', {}, h('span', { text: title })), h('div', { class: 'content' }, errs, content));
      p.errs = errs;
      panels[id] = p;
      return p;
    };
    clear(body, h('div', { class: 'topline' }, h('label', { class: 'switch' }, sw, 'Advanced configuration'),
      h('a', { onclick: help }, icon('help'), ' Help')), top);
    const fields = { macro: new Map() };
    if (st.advanced) {
      const ta = h('textarea', { class: 'code', spellcheck: 'false', id: 'userconfig' });
      ta.value = st.text;
      ta.addEventListener('input', () => { st.text = ta.value; edited(); });
      body.append(h('h2', { text: 'conf/userconfig.xml' }), ta);
    } else {
      const d = describe(st.text);
      if (d.error) top.append(h('div', { text: `userconfig.xml: ${d.error}` }));
      top.hidden = !d.error;
      const ro = (text) => h('p', { class: 'hint', text });
      fields.boot = field({ label: 'Startup type', value: st.boot.value, options: BOOT, name: 'boot', oninput: (e) => {
        st.boot.value = e.target.value;
        st.text = setServiceAttr(st.text, 'boot', st.boot.value);
        edited();
      } });
      fields.delay = field({ label: 'Startup delay', value: st.boot.delay, type: 'number', name: 'boot_delay', oninput: (e) => {
        st.boot.delay = e.target.value;
        st.text = setServiceAttr(st.text, 'boot_delay', st.boot.delay);
        edited();
      } });
      body.append(
        panel('boot', 'Module startup at boot', h('div', { class: 'row' }, fields.boot, h('div', {}, fields.delay, h('div', { class: 'hint', text: 'seconds' }))), true),
        panel('macros', 'Macros', st.macros.length ? st.macros.map((m) => {
          const v = field({ label: 'Macro value', value: m.value, name: `macro-${m.name}`, oninput: (e) => {
            m.value = e.target.value;
            edited();
          } });
          fields.macro.set(m.name, v);
          return h('div', { class: 'row' }, field({ label: 'Macro name', value: m.name, readonly: true }), v);
        }) : ro('This module has no macro.'), true),
        panel('heart', 'Heartbeat networks', d.heartbeats?.length
          ? d.heartbeats.map((b) => h('div', { class: 'row' }, field({ label: 'Cluster lan name', value: b.name, readonly: true }),
            b.flow ? h('span', { class: 'hint', text: 'Replication flow' }) : null))
          : ro('No heartbeat network.')),
        panel('vip', 'Virtual IP addresses', d.vips?.length ? d.vips.map((a) => field({ label: 'Virtual IP address', value: a, readonly: true })) : ro('No virtual IP address.')),
        panel('rfs', 'Replicated directories', d.dirs?.length ? d.dirs.map((x) => h('div', { class: 'row' }, field({ label: 'Directory path', value: x, readonly: true }))) : ro('No replicated directory.')),
        panel('check', 'Checkers', d.checkers?.length ? d.checkers.map((c) => h('div', { class: 'mono', text: c })) : ro('No checker.')),
        h('p', { class: 'hint', text: 'Heartbeats, virtual IP addresses, replicated directories and checkers are changed with Advanced configuration.' }));
    }
    next.addEventListener('click', async () => {
      next.disabled = true;
      try {
        await save();
      } catch (e) {
        st.errors = api.errorsOf(e);
        showErrors();
        return;
      }
      st.errors = await check();
      if (st.errors.length) showErrors();
      else step2();
    });
    body.append(h('div', { class: 'buttons bar' }, h('button', { type: 'button', text: 'Reload', onclick: () => load().then((ok) => ok && step1()) }), next));

    // showErrors puts each error at its field, or at the top of its panel,
    // or at the top of the page.
    const showErrors = () => {
      next.disabled = true;
      const loose = [];
      const lines = st.text.split('\n');
      for (const e of st.errors) {
        const el = String(e.element || '').replace(/[<>]/g, '').toLowerCase();
        const line = lines[(e.line || 0) - 1] || '';
        if (st.advanced || (e.file && !/userconfig/.test(e.file))) { loose.push(e); continue; }
        // A macro's own line, or any element whose message names a macro
        // of the form (where the macro is used).
        const name = ((el === 'macro' && line.match(/name\s*=\s*"([^"]+)"/)) || e.message.match(/macro "?([A-Za-z0-9_]+)/) || [])[1];
        if (fields.macro.has(name)) { setFieldError(fields.macro.get(name), e.message); openPanel('macros', null); continue; }
        // The attribute a diagnostic names; older nodes only say it in the text.
        const attr = e.attribute || ((e.message.match(/\b(boot_delay|boot)\b/) || [])[1]);
        if (el === 'service' && attr === 'boot_delay') { setFieldError(fields.delay, e.message); openPanel('boot', null); continue; }
        if (el === 'service' && attr === 'boot') { setFieldError(fields.boot, e.message); openPanel('boot', null); continue; }
        const id = el === 'macro' ? 'macros' : ['heart', 'heartbeat'].includes(el) ? 'heart'
          : ['rfs', 'replicated', 'flow'].includes(el) ? 'rfs'
            : ['vip', 'interface_list', 'interface', 'real_interface', 'virtual_interface', 'virtual_addr'].includes(el) ? 'vip'
              : CHECK_ELEMENTS.includes(el) ? 'check' : '';
        if (id && panels[id]) openPanel(id, e); else loose.push(e);
      }
      top.hidden = !loose.length;
      clear(top, loose.map((e) => h('div', { text: api.fmtError(e) })));
    };
    const openPanel = (id, e) => {
      const p = panels[id];
      p.open = true;
      p.classList.add('invalid');
      let badge = p.querySelector('summary .badge');
      if (!badge) p.querySelector('summary').append(badge = h('span', { class: 'badge', text: '0' }));
      badge.textContent = String(Number(badge.textContent) + 1);
      if (e) { p.errs.hidden = false; p.errs.append(h('div', { text: api.fmtError(e) })); }
    };
    if (st.errors.length) showErrors();
  };

  // ---- step 2 ----
  const step2 = () => {
    steps(2);
    const bin = st.files.filter((f) => f.startsWith('bin/')).sort();
    const main = bin.filter((f) => MAIN_SCRIPT.test(f));
    const shown = st.scriptsAdvanced || !main.length ? bin : main;
    if (!shown.includes(st.current)) st.current = shown[0] || '';
    const sw = h('input', { type: 'checkbox', checked: st.scriptsAdvanced, id: 'advanced' });
    sw.addEventListener('change', () => { st.scriptsAdvanced = sw.checked; step2(); });
    const editor = h('div', { class: 'editor' });
    const list = h('nav', {}, shown.map((f) => h('a', { class: f === st.current ? 'active' : '', dataset: { file: f }, text: f,
      onclick: () => { st.current = f; step2(); } })));
    clear(body, h('div', { class: 'topline' }, h('label', { class: 'switch' }, sw, 'Advanced configuration'), h('a', { onclick: help }, icon('help'), ' Help')),
      h('div', { class: 'scripts' }, list, editor),
      h('div', { class: 'buttons bar' },
        h('button', { type: 'button', text: 'Reload', onclick: () => { st.scripts.clear(); step2(); } }),
        h('button', { type: 'button', text: 'Previous step', onclick: step1 }),
        h('button', { type: 'button', class: 'primary', text: 'Next step', id: 'next', onclick: async (ev) => {
          ev.target.disabled = true;
          try {
            await save();
            step3();
          } catch (e) {
            ev.target.disabled = false;
            notify(e.message, true);
          }
        } })));
    if (!st.current) { editor.append(h('p', { class: 'hint', text: 'This module has no script in bin/.' })); return; }
    const file = st.current;
    const ta = h('textarea', { class: 'code', spellcheck: 'false', id: 'script' });
    const fill = () => { ta.value = st.scripts.get(file).text; };
    ta.addEventListener('input', () => { st.scripts.get(file).text = ta.value; });
    editor.append(h('div', { class: 'topline' }, h('h2', { text: file }), h('span', {},
      iconButton('copy', 'Copy all to the clipboard', () => copy(ta)),
      iconButton('paste', 'Paste from the clipboard', () => paste(ta)))), h('div', { class: 'hint', text: 'TEXT*' }), ta);
    if (st.scripts.has(file)) fill();
    else {
      api.get(`${path}/files/${file.split('/').map(api.enc).join('/')}`, { text: true }).then((t) => {
        st.scripts.set(file, { text: t, saved: t });
        if (st.current === file) fill();
      }, (e) => notify(`${file}: ${e.message}`, true));
    }
  };

  // ---- step 3 ----
  const step3 = () => {
    steps(3);
    clear(body, h('div', { class: 'card' },
      h('h2', { text: 'Encrypt module communications' }),
      h('p', { text: 'The heartbeats, the replication and the commands between nodes are encrypted with the cluster key, which the cluster configuration makes and copies to every node. There is no separate key or switch per module: to get new keys, apply the cluster configuration again.' })),
    h('div', { class: 'buttons bar' },
      h('button', { type: 'button', text: 'Previous step', onclick: step2 }),
      h('button', { type: 'button', class: 'primary', text: 'Next step', id: 'next', onclick: step4 })));
  };

  // ---- step 4 ----
  const step4 = async () => {
    steps(4);
    const rows = h('div', { class: 'nodes-check' }, h('p', { text: 'Select nodes:' }));
    const apply = h('button', { type: 'button', class: 'primary', text: 'Save and apply', id: 'save-apply', disabled: true });
    const checkBtn = h('button', { type: 'button', text: 'Save and check', id: 'save-check' });
    clear(body, rows, h('div', { class: 'buttons bar' },
      h('button', { type: 'button', text: 'Previous step', onclick: step3 }), checkBtn, apply));
    const states = await Promise.all(nodes.map((node) => api.get('/modules', { node }).then(
      (d) => ({ node, mod: modulesOf(d).find((m) => m.name === AM) }), () => ({ node, unreachable: true }))));
    const boxes = states.map((s) => {
      const blocked = s.unreachable ? `No reply of ${s.node}` : s.mod && s.mod.state && s.mod.state !== 'STOP' ? `${AM} stop required on ${s.node}` : '';
      const box = h('input', { type: 'checkbox', value: s.node, checked: s.node === self || !s.unreachable, disabled: s.node === self });
      box.blocked = blocked;
      box.addEventListener('change', refresh);
      rows.append(h('label', { dataset: { node: s.node } }, box, h('span', { text: s.node }), blocked ? h('span', { class: 'failure blocked', text: blocked }) : null));
      return box;
    });
    function refresh() { apply.disabled = boxes.some((b) => b.checked && b.blocked) || !boxes.some((b) => b.checked); }
    refresh();
    const run = async (title, fn) => {
      apply.disabled = checkBtn.disabled = true;
      let results;
      try {
        await save();
        results = await fn();
      } catch (e) {
        results = Array.isArray(e.body) ? api.results(e.body) : [{ node: self, ok: false, output: api.errorsOf(e).map(api.fmtError).join('\n') }];
      }
      step5(title, results);
    };
    checkBtn.addEventListener('click', () => run(`Saving and checking ${AM} configuration`, async () => {
      const errors = await check();
      return [{ node: self, ok: !errors.length, output: errors.length ? errors.map(api.fmtError).join('\n') : 'Configuration checked: no error' }];
    }));
    apply.addEventListener('click', () => run(`Saving and applying ${AM} configuration`,
      async () => api.results(await api.post(`${path}/apply`, { nodes: boxes.filter((b) => b.checked).map((b) => b.value) }))));
  };

  // ---- step 5 ----
  const step5 = (title, results) => {
    steps(5);
    clear(body, h('h2', { text: title }), h('div', { class: 'card results' }, resultRows(results)),
      h('div', { class: 'buttons bar' },
        h('button', { type: 'button', text: 'Previous step', onclick: step4 }),
        h('button', { type: 'button', class: 'primary', text: 'Monitor modules', id: 'monitor', onclick: () => ctx.navigate('monitoring') })));
  };

  load().then((ok) => ok && step1());
  return {};
}

function copy(ta) {
  if (navigator.clipboard?.writeText) navigator.clipboard.writeText(ta.value).catch(() => fallbackCopy(ta));
  else fallbackCopy(ta);
}

function fallbackCopy(ta) {
  ta.select();
  document.execCommand('copy');
}

function paste(ta) {
  if (!navigator.clipboard?.readText) { notify('The browser lets pages read the clipboard over HTTPS or on localhost only: use Ctrl+V', true); return; }
  navigator.clipboard.readText().then((t) => {
    ta.setRangeText(t, ta.selectionStart, ta.selectionEnd, 'end');
    ta.dispatchEvent(new Event('input'));
  }, () => notify('The browser refused to read the clipboard: use Ctrl+V', true));
}

function help() {
  dialog({
    title: 'Module configuration', ok: 'Close', cancel: '',
    body: [
      h('p', { text: 'The form edits the main settings of conf/userconfig.xml: start at boot and the macro values, used elsewhere in the file as %NAME%. Advanced configuration edits the whole file, and in the scripts step lists every file of bin/.' }),
      h('p', { text: 'Next step saves the edits on this node and checks them. Save and apply copies the module to the selected nodes and applies it; the module must be stopped there.' }),
    ],
  });
}
