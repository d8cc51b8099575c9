// login.js: the login form. It posts httpd_username and httpd_password to
// POST /login, as SafeKit's console does, and goes to the page the user
// asked for. When the node has no console user yet, the server says so and
// the page shows how to set a password.

import * as api from './api.js';
import { h, icon } from './dom.js';

export function mount(app, ctx) {
  document.body.classList.add('login');
  document.title = 'Login';
  const next = new URLSearchParams(location.search).get('next');
  const target = next && next.startsWith('/console/') && !next.includes('/login') ? next : ctx.base + 'monitoring';
  const user = h('input', { id: 'username', name: 'httpd_username', autocomplete: 'username', required: true, value: 'admin' });
  const pwd = h('input', { id: 'password', name: 'httpd_password', type: 'password', autocomplete: 'current-password', required: true });
  const err = h('div', { class: 'err', role: 'alert' });
  const setup = h('div', { class: 'setup', hidden: true },
    h('strong', { text: 'No console user is set on this node.' }),
    h('p', {}, 'As root on this node, give the user admin a password, then log in with it:'),
    h('p', {}, h('code', { text: 'safekit webservercfg -passwd <password>' })),
    h('p', {}, 'Add ', h('code', { text: '-user <name>' }), ' for another user name.'));
  const help = h('p', { class: 'hint', hidden: true,
    text: 'Log in with a console user of this node (SAFE/web/conf/user.conf). The node you log in to is the connection node: it relays every request to the other nodes of the cluster.' });
  const form = h('form', { class: 'login-card', method: 'post', action: '/login' },
    h('h1', {}, icon('login'), 'Login'),
    h('label', { for: 'username', text: 'User Name' }), user,
    h('label', { for: 'password', text: 'Password' }), pwd,
    err, setup, help,
    h('div', { class: 'buttons' },
      h('button', { type: 'submit', id: 'login', text: 'Log in' }),
      h('button', { type: 'button', text: 'Help', onclick: () => { help.hidden = !help.hidden; } })));
  app.append(form);
  pwd.focus();

  // The server answers a refused session or login with console_user:
  // false when the node has no console user yet.
  const showSetup = (body) => {
    const noUser = body?.console_user === false;
    setup.hidden = !noUser;
    return noUser;
  };

  // Already logged in, or told that no user exists yet.
  api.get('/session', { noRedirect: true }).then(() => location.replace(target), (e) => showSetup(e.body));

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.textContent = '';
    const body = new URLSearchParams({ httpd_username: user.value, httpd_password: pwd.value, login: 'Login' });
    let resp;
    try {
      resp = await fetch('/login', { method: 'POST', body, credentials: 'same-origin', redirect: 'manual' });
    } catch (e) {
      err.textContent = `No reply from the node: ${e.message}`;
      return;
    }
    if (resp.ok || resp.type === 'opaqueredirect') {
      location.replace(target);
      return;
    }
    const data = await resp.json().catch(() => null);
    if (!showSetup(data)) err.textContent = data?.error || 'Wrong user name or password';
    pwd.select();
  });
}
