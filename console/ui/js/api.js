// api.js: the console's only way to the server. Every request goes to the
// connection node (the host of this page); a request for another node goes
// through its proxy, /api/v1.0/nodes/<node>/..., so the browser never
// talks to the other nodes itself.

const BASE = '/api/v1.0';

// The session, as GET /api/v1.0/session gives it: {user, role, csrf}.
export const session = { user: '', role: '', csrf: '' };
// The connection node's name in cluster.xml ('' before a cluster exists).
let self = '';

export function setSession(s) { Object.assign(session, s); }
export function setSelf(name) { self = name || ''; }
export function selfNode() { return self; }
export const isAdmin = () => session.role === 'Admin';
export const canControl = () => session.role === 'Admin' || session.role === 'Control';

// apiPath is the URL of path on node (the connection node when node is
// empty or is this node).
function apiPath(path, node) {
  return node && node !== self ? `${BASE}/nodes/${encodeURIComponent(node)}${path}` : BASE + path;
}

export const enc = encodeURIComponent;

// ApiError carries the HTTP status and the decoded body, so that callers
// can show the server's message and its positioned errors.
class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

// request sends one call of the API (path after /api/v1.0). opts: node,
// json (sent as JSON), body (a string is sent as text, a Blob or File as
// application/octet-stream, a FormData as multipart), text (read the
// answer as text), raw (path is a URL of its own, such as /login). Unsafe methods carry the CSRF token. A 401 means the
// session ended: the page goes back to the login form.
export async function request(method, path, opts = {}) {
  const headers = {};
  let body = opts.body;
  if (opts.json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.json);
  } else if (typeof body === 'string') {
    headers['Content-Type'] = 'text/plain; charset=utf-8';
  } else if (body instanceof Blob) {
    headers['Content-Type'] = 'application/octet-stream';
  } // FormData sets its own multipart type.
  if (method !== 'GET' && method !== 'HEAD') headers['X-CSRF-Token'] = session.csrf;
  const url = opts.raw ? path : apiPath(path, opts.node);
  let resp;
  try {
    resp = await fetch(url, { method, headers, body, credentials: 'same-origin' });
  } catch (e) {
    throw new ApiError(0, `no reply from ${opts.node || 'the connection node'}: ${e.message}`, null);
  }
  const type = resp.headers.get('Content-Type') || '';
  let data = null;
  if (resp.status !== 204) {
    data = type.includes('json') && !opts.text ? await resp.json().catch(() => null) : await resp.text();
  }
  if (resp.status === 401 && !opts.noRedirect) {
    window.dispatchEvent(new CustomEvent('unauthorized'));
  }
  if (!resp.ok) {
    const msg = (data && (data.error || data.output)) || (typeof data === 'string' && data.trim()) || `${resp.status} ${resp.statusText}`;
    throw new ApiError(resp.status, msg, data);
  }
  return data;
}

export const get = (path, opts) => request('GET', path, opts);
export const post = (path, json, opts = {}) => request('POST', path, { ...opts, json });
export const put = (path, json, opts = {}) => request('PUT', path, { ...opts, json });

// download saves what GET path returns (a file: AM.safe, a snapshot) as the
// browser does for a link.
export function download(path, node) {
  const a = document.createElement('a');
  a.href = apiPath(path, node);
  a.download = '';
  document.body.append(a);
  a.click();
  a.remove();
}

// saveText offers text made in the page as a file.
export function saveText(name, text) {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([text], { type: 'text/plain' }));
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

// Reconnection delays of the websockets: doubled after each failure.
const RETRY_FIRST = 500;
const RETRY_MAX = 8000;

// stream opens a websocket on path (on node, through the proxy) and keeps
// it open: after a drop it connects again, later and later, until close().
// query() is called at each connection so that a stream resumes where it
// stopped (after=<last seq>). onMessage gets each message, decoded when it
// is JSON; onStatus gets 'open', 'retry' or 'closed'.
export function stream(path, { node, query, onMessage, onStatus }) {
  let ws = null;
  let closed = false;
  let delay = RETRY_FIRST;
  let timer = 0;
  const connect = () => {
    const q = query ? new URLSearchParams(query()).toString() : '';
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    ws = new WebSocket(`${proto}//${location.host}${apiPath(path, node)}${q ? '?' + q : ''}`);
    ws.onopen = () => { delay = RETRY_FIRST; onStatus?.('open'); };
    ws.onmessage = (ev) => {
      let m = ev.data;
      if (typeof m === 'string' && (m.startsWith('{') || m.startsWith('['))) {
        try { m = JSON.parse(m); } catch { /* plain text that looks like JSON */ }
      }
      onMessage(m);
    };
    ws.onclose = () => {
      if (closed) return;
      onStatus?.('retry');
      timer = setTimeout(connect, delay);
      delay = Math.min(delay * 2, RETRY_MAX);
    };
  };
  connect();
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      ws?.close();
      onStatus?.('closed');
    },
  };
}

// results reads the per-node answer of apply, deconfig, uninstall
// ([{node, ok, output}]) or the answer of one command ({ok, output}) as
// rows [{node, ok, output}].
export function results(data, node) {
  const rows = Array.isArray(data) ? data : [data || {}];
  return rows.map((r) => ({ node: r.node || node || self, ok: !!r.ok, output: r.output || '' }));
}

// fmtError renders one positioned diagnostic as the CLI does:
// conf/userconfig.xml:14:5: <heartbeat>: message.
export function fmtError(e) {
  const where = [e.file, e.line || '', e.column || ''].filter(Boolean).join(':');
  return `${where ? where + ': ' : ''}${e.element ? `<${e.element}>: ` : ''}${e.message || ''}`;
}

// errorsOf reads the errors of a check ({valid, diagnostics, error}), of
// the answer of a refused call, or of a call that failed: warnings do not
// count.
export function errorsOf(x) {
  const b = x instanceof ApiError ? x.body : x;
  const errs = (b?.diagnostics || []).filter((d) => d.severity !== 'warning');
  if (b?.error && (b.valid === false || !errs.length)) errs.push({ message: b.error });
  if (!errs.length && (b?.valid === false || x instanceof ApiError)) errs.push({ message: x.message || 'the configuration is not valid' });
  return errs;
}
