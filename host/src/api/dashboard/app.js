// taskhost dashboard: one ES module, no framework, no build step, no network beyond this host.
//
// It uses only the public API: REST under /api/v1 (Authorization: Bearer TOKEN when signed in)
// and the WebSocket streams /ws/queue and /ws/tasks/{id} (?token=). Everything it shows that
// came from the API (task ids, names, messages, event data) is inserted as text nodes, never
// parsed as HTML.
//
// Live data: /ws/queue feeds the queue counts and the running tasks; after every (re)connect
// the lists are read again over REST, so nothing missed while offline stays wrong. A task page
// follows /ws/tasks/{id}?since=SEQ, where SEQ is the last sequence id it applied: on a reconnect
// the host resends exactly what came after it. Events are applied strictly in sequence: a
// duplicate is dropped, and a gap makes the page reconnect from its last sequence id.

const TOKEN_KEY = 'taskhost.token';
const RECENT_LIMIT = 30;
const LOG_ROWS_MAX = 1500;
const TERMINAL = new Set(['succeeded', 'failed', 'cancelled', 'expired', 'dead']);
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 15000;
/** A connection that stayed up this long resets the backoff. */
const BACKOFF_RESET_AFTER_MS = 5000;
/** Close code of a watcher the host dropped for falling behind: resume at once. */
const CLOSE_LAGGED = 4008;

/** Inputs that make a good first run, by plugin or task name (others get a skeleton from the schema). */
const EXAMPLES = {
  hello: { name: 'Ada', spin_ms: 3000 },
  cvd: {
    recipe: {
      mode: 'thermal', film_material: 'Si3N4', temperature_c: 800, pressure_torr: 0.5,
      precursor_flow_sccm: 80, carrier_gas_flow_sccm: 500, target_thickness_nm: 100, duration_sec: 3600,
    },
    simulation: { speedup: 200 },
  },
  dft_job: { preset: 'Si', mixing_beta: 0.2, scf_tolerance_ev: 1e-9, pace_ms: 250 },
  rhf: { preset: 'H2', pace_ms: 250 },
};

// ---------------------------------------------------------------------------------------------
// DOM helpers: elements from tags, attributes and children; strings become text nodes.

function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = String(value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key === 'on') for (const [type, fn] of Object.entries(value)) el.addEventListener(type, fn);
    else if (key === 'value' || key === 'checked' || key === 'disabled' || key === 'selected') el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null && value !== false) el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------------
// Formatting

function isNum(x) {
  return typeof x === 'number' && Number.isFinite(x);
}

function firstNum(...values) {
  for (const v of values) if (isNum(v)) return v;
  return null;
}

function fmtDuration(ms) {
  if (!isNum(ms)) return '–';
  const secs = Math.max(0, ms) / 1000;
  if (secs < 10) return `${secs.toFixed(1)} s`;
  if (secs < 60) return `${Math.floor(secs)} s`;
  const m = Math.floor(secs / 60);
  if (m < 60) return `${m} min ${String(Math.floor(secs % 60)).padStart(2, '0')} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
}

function parseTime(iso) {
  const t = typeof iso === 'string' ? Date.parse(iso) : NaN;
  return Number.isNaN(t) ? null : t;
}

function fmtClock(iso, withMillis = false) {
  const t = parseTime(iso);
  if (t === null) return '–';
  const d = new Date(t);
  const time = d.toLocaleTimeString([], { hour12: false, hour: '2-digit', minute: '2-digit', second: '2-digit' });
  const ms = withMillis ? `.${String(d.getMilliseconds()).padStart(3, '0')}` : '';
  const today = new Date().toDateString() === d.toDateString();
  return today ? time + ms : `${d.toLocaleDateString()} ${time}${ms}`;
}

function fmtNum(x, digits = 1) {
  return isNum(x) ? x.toFixed(digits) : '–';
}

/** Short form of an id for tables: client ids as they are, generated UUIDs by their random tail. */
function shortId(id) {
  id = String(id ?? '');
  return id.length <= 20 ? id : `…${id.slice(-8)}`;
}

function taskLabel(t) {
  const plugin = t.plugin || '?';
  return t.task && t.task !== plugin ? `${plugin} · ${t.task}` : plugin;
}

function taskHref(id) {
  return `#/tasks/${encodeURIComponent(id)}`;
}

function compactJson(value, max = 240) {
  let text;
  try {
    text = JSON.stringify(value);
  } catch {
    text = String(value);
  }
  if (text === undefined) text = '';
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

const SUPERSCRIPT = { '-': '⁻', 0: '⁰', 1: '¹', 2: '²', 3: '³', 4: '⁴', 5: '⁵', 6: '⁶', 7: '⁷', 8: '⁸', 9: '⁹' };

function powerOfTen(k) {
  return `10${String(k).replace(/[-0-9]/g, (c) => SUPERSCRIPT[c])}`;
}

// ---------------------------------------------------------------------------------------------
// Token, REST and WebSocket addresses

const auth = {
  get token() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || localStorage.getItem(TOKEN_KEY) || '';
    } catch {
      return '';
    }
  },
  set(token, remember) {
    this.clear();
    try {
      (remember ? localStorage : sessionStorage).setItem(TOKEN_KEY, token);
    } catch {
      // Storage refused (private mode): the token cannot be kept, and the next 401 asks again.
    }
  },
  clear() {
    try {
      sessionStorage.removeItem(TOKEN_KEY);
      localStorage.removeItem(TOKEN_KEY);
    } catch {
      // nothing stored
    }
  },
};

class ApiError extends Error {
  constructor(status, kind, message) {
    super(message);
    this.status = status;
    this.kind = kind;
  }
}

async function api(path, { method = 'GET', body } = {}) {
  const headers = { accept: 'application/json' };
  const token = auth.token;
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let response;
  try {
    response = await fetch(`/api/v1${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
    });
  } catch {
    throw new ApiError(0, 'network', 'The host cannot be reached.');
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  const error = data && typeof data === 'object' && data.error ? data.error : {};
  if (response.status === 401) {
    signIn.require(token ? 'That token is no longer accepted. Sign in again.' : null);
    throw new ApiError(401, 'unauthorized', error.message || 'A token is required.');
  }
  if (!response.ok) {
    throw new ApiError(response.status, error.kind || `http_${response.status}`, error.message || `HTTP ${response.status}`);
  }
  return data;
}

function wsUrl(path, params = {}) {
  const url = new URL(path, location.href);
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  for (const [key, value] of Object.entries(params)) url.searchParams.set(key, String(value));
  const token = auth.token;
  if (token) url.searchParams.set('token', token);
  return url.href;
}

// ---------------------------------------------------------------------------------------------
// Connection indicator: one line for every live stream of the page.

const connection = {
  sockets: new Map(),
  set(socket, state, retryAt = null) {
    this.sockets.set(socket, { state, retryAt });
    this.render();
  },
  remove(socket) {
    this.sockets.delete(socket);
    this.render();
  },
  render() {
    const el = $('connection');
    const states = [...this.sockets.values()];
    let state = 'connecting';
    let text = 'Connecting…';
    let countdown = '';
    const waiting = states.filter((x) => x.state === 'reconnecting');
    if (!navigator.onLine) {
      state = 'offline';
      text = 'Offline: waiting for the network';
    } else if (waiting.length) {
      state = 'reconnecting';
      text = 'Connection lost: reconnecting';
      const next = Math.min(...waiting.map((x) => x.retryAt ?? Date.now()));
      const secs = Math.max(0, Math.ceil((next - Date.now()) / 1000));
      countdown = secs > 0 ? ` in ${secs} s` : '…';
    } else if (states.length && states.every((x) => x.state === 'live')) {
      state = 'live';
      text = 'Live';
    }
    // The element is a live region: its words change with the state only; the countdown
    // beside them is not read out every second.
    if (el.dataset.state !== state || el.firstChild?.textContent !== text) {
      el.dataset.state = state;
      el.replaceChildren(h('span', { text }), h('span', { 'aria-hidden': 'true', class: 'countdown' }));
    }
    const tail = el.querySelector('.countdown');
    if (tail && tail.textContent !== countdown) tail.textContent = countdown;
  },
};

/**
 * A WebSocket that reconnects on its own with exponential backoff and jitter. `url()` is called
 * for every attempt, so a stream can resume from where it stopped. `probe()` runs after an attempt
 * that never opened (the browser hides the HTTP status of a refused upgrade): it can ask the REST
 * API why, and return false to give up (a 401 or a 404).
 */
class LiveSocket {
  constructor({ url, onMessage, onOpen, shouldReconnect, probe }) {
    this.options = { url, onMessage, onOpen, shouldReconnect, probe };
    this.ws = null;
    this.failures = 0;
    this.opens = 0;
    this.timer = null;
    this.stopped = true;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  connect() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.stopped) return;
    connection.set(this, this.opens ? 'reconnecting' : 'connecting');
    let ws;
    try {
      ws = new WebSocket(this.options.url());
    } catch {
      this.retry(false);
      return;
    }
    this.ws = ws;
    let openedAt = null;
    ws.onopen = () => {
      openedAt = Date.now();
      connection.set(this, 'live');
      this.options.onOpen?.(this.opens++ > 0);
    };
    ws.onmessage = (message) => {
      let data;
      try {
        data = JSON.parse(message.data);
      } catch {
        return;
      }
      this.options.onMessage(data);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) return;
      if (this.options.shouldReconnect && !this.options.shouldReconnect(event)) {
        this.stop();
        return;
      }
      if (openedAt !== null && Date.now() - openedAt >= BACKOFF_RESET_AFTER_MS) this.failures = 0;
      this.retry(openedAt !== null, event.code === CLOSE_LAGGED ? 0 : undefined);
    };
  }

  retry(wasOpen, delay) {
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.failures);
    this.failures += 1;
    const wait = delay ?? Math.round(base * (0.75 + Math.random() * 0.5));
    connection.set(this, 'reconnecting', Date.now() + wait);
    this.timer = setTimeout(async () => {
      this.timer = null;
      if (this.stopped) return;
      if (!wasOpen && this.options.probe) {
        const goOn = await this.options.probe().catch(() => true);
        if (!goOn) {
          this.stop();
          return;
        }
      }
      this.connect();
    }, wait);
  }

  /** Reconnects now (after a gap in the sequence, for instance). */
  restart() {
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onclose = null;
      ws.close();
    }
    this.connect();
  }

  /** Loses the connection as a network failure would; the socket reconnects on its own. */
  drop() {
    this.ws?.close(4000, 'dropped by the page');
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = null;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onclose = null;
      ws.close(1000);
    }
    connection.remove(this);
  }
}

// ---------------------------------------------------------------------------------------------
// Shared state: every task the page knows, merged from REST replies and live messages.

const state = {
  plugins: [],
  queue: null,
  tasks: new Map(),
  recent: [],
  recentFilter: '',
  /** Local clock minus host clock, estimated from live messages (min over samples). */
  clockOffset: null,
  queueSocket: null,
  page: null,
};

function serverNow() {
  return Date.now() - (state.clockOffset ?? 0);
}

function noteServerTime(iso) {
  const t = parseTime(iso);
  if (t === null) return;
  const offset = Date.now() - t;
  state.clockOffset = state.clockOffset === null ? offset : Math.min(state.clockOffset, offset);
}

/**
 * Merges what a REST reply or a live message says about a task. A REST reply that was asked for
 * before the last live message about the task does not overwrite its live fields.
 */
function mergeTask(partial, { askedAt = null } = {}) {
  const known = state.tasks.get(partial.id);
  const task = known || { id: partial.id };
  const stale = askedAt !== null && known && known.liveAt && known.liveAt > askedAt;
  for (const [key, value] of Object.entries(partial)) {
    if (value === undefined) continue;
    if (stale && (key === 'status' || key === 'progress' || key === 'message')) continue;
    task[key] = value;
  }
  state.tasks.set(task.id, task);
  return task;
}

async function fetchTask(id) {
  const askedAt = performance.now();
  const task = await api(`/tasks/${encodeURIComponent(id)}`);
  return mergeTask(task, { askedAt });
}

const refetching = new Set();

/** Reads a task again soon (once however often it is asked for meanwhile). */
function refetchTask(id) {
  if (refetching.has(id)) return;
  refetching.add(id);
  setTimeout(() => {
    fetchTask(id)
      .catch(() => {})
      .finally(() => {
        refetching.delete(id);
        scheduleRender();
      });
  }, 150);
}

// ---------------------------------------------------------------------------------------------
// Small shared widgets

function statusBadge(status) {
  return h('span', { class: 'badge', dataset: { status: status || 'unknown' }, text: status || 'unknown' });
}

function setBadge(el, status) {
  status = status || 'unknown';
  if (el.dataset.status !== status) {
    el.dataset.status = status;
    el.textContent = status;
  }
}

function progressBar(label) {
  const fill = h('div', { class: 'fill' });
  const bar = h('div', {
    class: 'bar',
    role: 'progressbar',
    'aria-valuemin': '0',
    'aria-valuemax': '100',
    'aria-valuenow': '0',
    'aria-label': label,
  }, fill);
  const pct = h('span', { class: 'pct', text: '0 %' });
  return h('div', { class: 'progress' }, bar, pct);
}

function setProgress(el, percent, status) {
  const bar = el.querySelector('.bar');
  const value = Math.max(0, Math.min(100, isNum(percent) ? percent : 0));
  const now = value.toFixed(1);
  if (bar.getAttribute('aria-valuenow') !== now || !bar.dataset.drawn) {
    bar.setAttribute('aria-valuenow', now);
    const fill = bar.querySelector('.fill');
    if (!bar.dataset.drawn) {
      // The first value is drawn at once; only changes slide.
      bar.dataset.drawn = 'yes';
      fill.style.transition = 'none';
      fill.style.width = `${value}%`;
      requestAnimationFrame(() => fill.style.removeProperty('transition'));
    } else {
      fill.style.width = `${value}%`;
    }
    el.querySelector('.pct').textContent = `${value < 10 && value > 0 ? value.toFixed(1) : Math.round(value)} %`;
  }
  if (status && bar.dataset.status !== status) bar.dataset.status = status;
}

function cancelButton(task, { small = true } = {}) {
  return h('button', {
    type: 'button',
    class: small ? 'danger small' : 'danger',
    text: 'Cancel',
    'aria-label': `Cancel task ${taskLabel(task)} ${shortId(task.id)}`,
    dataset: { action: 'cancel', taskId: task.id },
  });
}

async function cancelTask(id, button) {
  if (button) {
    button.disabled = true;
    button.textContent = 'Cancelling…';
  }
  try {
    const reply = await api(`/tasks/${encodeURIComponent(id)}/cancel`, { method: 'POST' });
    const task = state.tasks.get(id);
    if (reply && reply.status) mergeTask({ id, status: reply.status, cancel_requested: reply.cancel === 'requested' || undefined });
    if (reply && reply.cancel === 'already_finished') toast(`${shortId(id)} had already finished.`);
    else toast(`Cancelling ${task ? taskLabel(task) : 'task'} ${shortId(id)}.`);
    refetchTask(id);
  } catch (error) {
    toast(`Could not cancel ${shortId(id)}: ${error.message}`, 'error');
    if (button) {
      button.disabled = false;
      button.textContent = 'Cancel';
    }
  }
  scheduleRender();
}

function toast(message, kind = 'info') {
  let region = $('toasts');
  if (!region) {
    region = h('div', { id: 'toasts', class: 'toasts', role: 'status', 'aria-live': 'polite' });
    document.body.append(region);
  }
  const item = h('p', { class: `toast toast-${kind}`, text: message });
  region.append(item);
  setTimeout(() => item.remove(), kind === 'error' ? 9000 : 5000);
}

// Clicks on any Cancel button of the page, wherever it is drawn.
document.addEventListener('click', (event) => {
  const button = event.target.closest('button[data-action="cancel"]');
  if (button && !button.disabled) cancelTask(button.dataset.taskId, button);
});

/** Forgets tasks that are over and shown nowhere, so that a page left open for days stays small. */
function pruneTasks() {
  const shown = new Set(state.recent);
  if (state.page) shown.add(state.page.id);
  for (const [id, task] of state.tasks) {
    if (TERMINAL.has(task.status) && !shown.has(id)) state.tasks.delete(id);
  }
}

setInterval(pruneTasks, 60_000);

// Elapsed times tick (twice a second: short ones show tenths).
setInterval(() => {
  const now = serverNow();
  for (const el of document.querySelectorAll('[data-since]')) {
    const since = parseTime(el.dataset.since);
    if (since !== null) el.textContent = fmtDuration(now - since);
  }
  connection.render();
}, 500);

window.addEventListener('online', () => connection.render());
window.addEventListener('offline', () => connection.render());

// ---------------------------------------------------------------------------------------------
// Sign-in: shown only when the API answers 401.

const signIn = {
  active: false,
  require(reason) {
    if (this.active) return;
    this.active = true;
    stopLive();
    for (const view of document.querySelectorAll('.view')) view.hidden = true;
    $('signin').hidden = false;
    $('sign-out').hidden = true;
    $('signin-reason').textContent = reason || 'This host asks for an access token.';
    $('signin-error').textContent = '';
    $('connection').dataset.state = 'offline';
    $('connection').replaceChildren(h('span', { text: 'Signed out' }));
    $('token').value = '';
    $('token').focus();
    document.title = 'Sign in · taskhost';
  },
  async submit(event) {
    event.preventDefault();
    const token = $('token').value.trim();
    const error = $('signin-error');
    if (!token) {
      error.textContent = 'Enter your token.';
      $('token').focus();
      return;
    }
    const button = event.submitter || $('signin-form').querySelector('button');
    button.disabled = true;
    error.textContent = '';
    try {
      const response = await fetch('/api/v1/queues', { headers: { authorization: `Bearer ${token}` }, cache: 'no-store' });
      if (response.status === 401) {
        error.textContent = 'That token was not accepted.';
        $('token').select();
        return;
      }
      auth.set(token, $('remember').checked);
      this.active = false;
      $('signin').hidden = true;
      boot();
    } catch {
      error.textContent = 'The host cannot be reached.';
    } finally {
      button.disabled = false;
    }
  },
};

$('signin-form').addEventListener('submit', (event) => signIn.submit(event));
$('sign-out').addEventListener('click', () => {
  auth.clear();
  location.hash = '#/';
  location.reload();
});

// ---------------------------------------------------------------------------------------------
// Overview: queue counts, running tasks, recent tasks, submit form.

function renderStats() {
  const q = state.queue;
  if (!q) return;
  const set = (id, value) => {
    const text = isNum(value) ? String(value) : '–';
    if ($(id).textContent !== text) $(id).textContent = text;
  };
  set('stat-total', q.total_tasks);
  set('stat-running', q.active_tasks);
  set('stat-pending', q.pending_tasks);
  set('stat-scheduled', q.scheduled_tasks);
  set('stat-dead', q.dead_tasks);
  const hosts = $('stat-hosts');
  hosts.replaceChildren(isNum(q.workers_online) ? String(q.workers_online) : '–');
  if (isNum(q.slots)) hosts.append(' ', h('span', { class: 'sub', text: `(${q.slots} slot${q.slots === 1 ? '' : 's'} here)` }));
  document.querySelector('.stat[data-stat="dead"]').toggleAttribute('data-nonzero', (q.dead_tasks || 0) > 0);
  const body = $('queue-table').tBodies[0];
  const rows = (Array.isArray(q.queues) ? q.queues : []).map((row) =>
    h('tr', {},
      h('th', { scope: 'row', text: row.queue }),
      h('td', { class: 'num', text: row.pending ?? '–' }),
      h('td', { class: 'num', text: row.running ?? '–' }),
      h('td', { class: 'num', text: row.scheduled ?? '–' }),
      h('td', { class: 'num', text: row.dead ?? '–' })));
  body.replaceChildren(...rows);
}

const runningRows = new Map();

function renderRunning() {
  const list = $('running-list');
  const running = [...state.tasks.values()]
    .filter((t) => t.status === 'running')
    .sort((a, b) => (parseTime(a.started_at) ?? 0) - (parseTime(b.started_at) ?? 0));
  const keep = new Set(running.map((t) => t.id));
  for (const [id, row] of runningRows) {
    if (!keep.has(id)) {
      row.remove();
      runningRows.delete(id);
    }
  }
  for (const task of running) {
    let row = runningRows.get(task.id);
    if (!row) {
      row = h('li', { dataset: { taskId: task.id } },
        h('div', { class: 'title' },
          h('a', { href: taskHref(task.id), text: taskLabel(task) }),
          h('span', { class: 'mono id', title: task.id, text: shortId(task.id) }),
          h('span', { class: 'badge stale', text: 'stale', title: 'No report for a while', hidden: true })),
        h('div', { class: 'actions' },
          h('span', { class: 'elapsed', title: 'Running for' }), ' ',
          cancelButton(task)),
        progressBar(`Progress of ${taskLabel(task)} ${shortId(task.id)}`),
        h('p', { class: 'message' }));
      runningRows.set(task.id, row);
    }
    setProgress(row.querySelector('.progress'), task.progress, 'running');
    const message = row.querySelector('.message');
    const text = task.cancel_requested ? 'cancel requested…' : task.message || '';
    if (message.textContent !== text) message.textContent = text;
    row.querySelector('.badge.stale').hidden = !task.stale;
    const elapsed = row.querySelector('.elapsed');
    if (task.started_at && elapsed.dataset.since !== task.started_at) {
      elapsed.dataset.since = task.started_at;
      elapsed.textContent = fmtDuration(serverNow() - parseTime(task.started_at));
    }
    list.append(row);
  }
  $('running-empty').hidden = running.length > 0;
  $('running-count').textContent = running.length ? `(${running.length})` : '';
}

const recentRows = new Map();

function renderRecent() {
  const body = $('recent-body');
  const ids = state.recent.filter((id) => state.tasks.has(id));
  const keep = new Set(ids);
  for (const [id, row] of recentRows) {
    if (!keep.has(id)) {
      row.remove();
      recentRows.delete(id);
    }
  }
  for (const id of ids) {
    const task = state.tasks.get(id);
    let row = recentRows.get(id);
    if (!row) {
      row = h('tr', { dataset: { taskId: id } },
        h('td', {}, h('a', { class: 'mono', href: taskHref(id), title: id, text: shortId(id) })),
        h('td', { class: 'plugin', text: taskLabel(task) }),
        h('td', {}, statusBadge(task.status)),
        h('td', {}, progressBar(`Progress of ${taskLabel(task)} ${shortId(id)}`)),
        h('td', { class: 'created' }, h('time')),
        h('td', { class: 'num runtime' }),
        h('td', { class: 'actions' }));
      recentRows.set(id, row);
    }
    row.dataset.status = task.status || '';
    setBadge(row.querySelector('.badge'), task.status);
    setProgress(row.querySelector('.progress'), task.progress, task.status);
    const time = row.querySelector('time');
    if (task.created_at && time.dateTime !== task.created_at) {
      time.dateTime = task.created_at;
      time.textContent = fmtClock(task.created_at);
    }
    const runtime = row.querySelector('.runtime');
    const started = parseTime(task.started_at);
    const finished = parseTime(task.finished_at);
    if (task.status === 'running' && task.started_at) {
      if (runtime.dataset.since !== task.started_at) {
        runtime.dataset.since = task.started_at;
        runtime.textContent = fmtDuration(serverNow() - started);
      }
    } else {
      delete runtime.dataset.since;
      const text = started !== null && finished !== null ? fmtDuration(finished - started) : '–';
      if (runtime.textContent !== text) runtime.textContent = text;
    }
    const actions = row.querySelector('.actions');
    const cancellable = !TERMINAL.has(task.status);
    const button = actions.querySelector('button');
    if (cancellable && !button) actions.append(cancelButton(task));
    if (!cancellable && button) button.remove();
    body.append(row);
  }
  $('recent-empty').hidden = ids.length > 0;
}

let renderQueued = false;

function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    if (signIn.active) return;
    renderStats();
    renderRunning();
    renderRecent();
    updateTitle();
    state.page?.onSharedState();
  });
}

function updateTitle() {
  if (state.page) return;
  const running = [...state.tasks.values()].filter((t) => t.status === 'running').length;
  document.title = running ? `taskhost · ${running} running` : 'taskhost';
}

let recentAsked = 0;

async function loadRecent() {
  const asked = ++recentAsked;
  const askedAt = performance.now();
  const query = new URLSearchParams({ limit: String(RECENT_LIMIT) });
  if (state.recentFilter) query.set('status', state.recentFilter);
  const reply = await api(`/tasks?${query}`);
  if (asked !== recentAsked) return;
  const tasks = Array.isArray(reply?.tasks) ? reply.tasks : [];
  state.recent = tasks.map((t) => mergeTask(t, { askedAt }).id);
  scheduleRender();
}

async function loadRunning() {
  const askedAt = performance.now();
  const reply = await api('/tasks?status=running&limit=1000');
  const running = new Set();
  for (const t of Array.isArray(reply?.tasks) ? reply.tasks : []) running.add(mergeTask(t, { askedAt }).id);
  // Tasks we thought were running but are not any more ended while we were not listening.
  for (const task of state.tasks.values()) {
    if (task.status === 'running' && !running.has(task.id) && !(task.liveAt > askedAt)) refetchTask(task.id);
  }
  scheduleRender();
}

let recentReload = null;

function scheduleRecentReload(delay = 600) {
  if (recentReload) return;
  recentReload = setTimeout(() => {
    recentReload = null;
    loadRecent().catch(() => {});
  }, delay);
}

function queueChanged(before, after) {
  if (!before) return true;
  return ['total_tasks', 'active_tasks', 'pending_tasks', 'scheduled_tasks', 'dead_tasks'].some((k) => before[k] !== after[k]);
}

function onQueueMessage(message) {
  if (message.type === 'queue_status') {
    const changed = queueChanged(state.queue, message);
    state.queue = message;
    if (changed) scheduleRecentReload();
    scheduleRender();
    return;
  }
  if (message.type !== 'task_status' || typeof message.task_id !== 'string') return;
  noteServerTime(message.ts);
  const known = state.tasks.get(message.task_id);
  const status = typeof message.status === 'string' ? message.status : 'running';
  const partial = {
    id: message.task_id,
    plugin: message.plugin ?? undefined,
    task: message.task_name ?? undefined,
    liveAt: performance.now(),
  };
  if (status !== 'finished') partial.status = status;
  if (isNum(message.progress)) partial.progress = message.progress;
  if (typeof message.message === 'string') partial.message = message.message;
  // The message's time is when the attempt started or ended. The other fields (created_at, the
  // queue) come with the list, which is read again when the counts change: no read per task.
  if (status === 'running' && (!known || known.status !== 'running')) {
    partial.started_at = message.ts;
    partial.finished_at = null;
  }
  if (TERMINAL.has(status) || status === 'finished' || status === 'retrying') partial.finished_at = message.ts;
  if (status === 'finished') refetchTask(message.task_id);
  mergeTask(partial);
  const wanted = !state.recentFilter || state.recentFilter === partial.status;
  if (wanted && !state.recent.includes(message.task_id)) {
    state.recent.unshift(message.task_id);
    state.recent.length = Math.min(state.recent.length, RECENT_LIMIT);
  }
  scheduleRender();
}

function startQueueSocket() {
  state.queueSocket?.stop();
  state.queueSocket = new LiveSocket({
    url: () => wsUrl('/ws/queue'),
    onMessage: onQueueMessage,
    onOpen: () => {
      // Whatever happened while we were not listening: read the lists again.
      if (!state.plugins.length) loadPlugins().catch(() => {});
      loadRunning().catch(() => {});
      loadRecent().catch(() => {});
    },
    probe: async () => {
      try {
        await api('/queues');
        return true;
      } catch (error) {
        return error.status !== 401;
      }
    },
  });
  state.queueSocket.start();
}

function stopLive() {
  state.queueSocket?.stop();
  state.queueSocket = null;
  state.page?.destroy();
  state.page = null;
}

// --- Submit form

function schemaOf(option) {
  const schema = option?.describe?.input_schema;
  if (!schema || typeof schema !== 'object') return null;
  if (schema.tasks && typeof schema.tasks === 'object' && !schema.properties) {
    const own = schema.tasks[option.task];
    return own && typeof own === 'object' ? own : null;
  }
  return schema;
}

async function loadPlugins() {
  const reply = await api('/plugins');
  const options = [];
  for (const p of Array.isArray(reply?.plugins) ? reply.plugins : []) {
    const tasks = Array.isArray(p.tasks) && p.tasks.length ? p.tasks : [p.name];
    for (const task of tasks) {
      options.push({
        value: tasks.length > 1 ? task : p.name,
        label: tasks.length > 1 ? `${p.name} · ${task}` : p.name,
        plugin: p.name,
        task,
        summary: p.describe?.summary || p.description || '',
        describe: p.describe,
      });
    }
  }
  state.plugins = options;
  const select = $('submit-plugin');
  const previous = select.value;
  select.replaceChildren(...options.map((o) => h('option', { value: o.value, text: o.label })));
  if (!options.length) select.append(h('option', { value: '', text: 'no plugins loaded' }));
  const preferred = options.find((o) => o.value === previous) || options.find((o) => o.value === 'hello') || options[0];
  if (preferred) select.value = preferred.value;
  onPluginChange();
}

function currentOption() {
  return state.plugins.find((o) => o.value === $('submit-plugin').value) || null;
}

function skeleton(schema) {
  const out = {};
  if (!schema || typeof schema.properties !== 'object') return out;
  for (const name of Array.isArray(schema.required) ? schema.required : []) {
    const prop = schema.properties[name] || {};
    if (prop.default !== undefined) out[name] = prop.default;
    else if (Array.isArray(prop.enum)) out[name] = prop.enum[0];
    else out[name] = { string: '', integer: 0, number: 0, boolean: false, array: [], object: {} }[prop.type] ?? null;
  }
  return out;
}

function exampleFor(option) {
  if (!option) return {};
  return EXAMPLES[option.value] ?? EXAMPLES[option.plugin] ?? skeleton(schemaOf(option));
}

let autoFilled = '{}';

function onPluginChange() {
  const option = currentOption();
  const help = $('plugin-help');
  help.replaceChildren();
  if (option) {
    if (option.summary) help.append(option.summary);
    const schema = schemaOf(option);
    if (schema && schema.properties && typeof schema.properties === 'object') {
      const required = new Set(Array.isArray(schema.required) ? schema.required : []);
      const fields = Object.keys(schema.properties);
      if (fields.length) {
        if (option.summary) help.append(h('br'));
        help.append('Fields: ');
        fields.forEach((name, i) => {
          if (i) help.append(', ');
          help.append(h('code', { text: name }));
          if (required.has(name)) help.append(h('abbr', { title: 'required', text: '*' }));
        });
      }
    }
  }
  const textarea = $('submit-input');
  if (textarea.value.trim() === '' || textarea.value === autoFilled) {
    autoFilled = JSON.stringify(exampleFor(option), null, 2);
    textarea.value = autoFilled;
  }
  validateInput();
}

const TYPE_CHECKS = {
  string: (v) => typeof v === 'string',
  integer: (v) => Number.isInteger(v),
  number: (v) => typeof v === 'number',
  boolean: (v) => typeof v === 'boolean',
  array: (v) => Array.isArray(v),
  object: (v) => v !== null && typeof v === 'object' && !Array.isArray(v),
};

/** Checks the textarea: JSON, an object, and what the plugin's schema says at the top level. */
function checkInput() {
  const text = $('submit-input').value;
  let value;
  if (text.trim() === '') {
    value = {};
  } else {
    try {
      value = JSON.parse(text);
    } catch (error) {
      return { ok: false, message: `Not valid JSON: ${error.message}` };
    }
  }
  if (!TYPE_CHECKS.object(value)) return { ok: false, message: 'The input must be a JSON object, like {"name": "Ada"}.' };
  const schema = schemaOf(currentOption());
  if (schema && typeof schema.properties === 'object' && schema.properties) {
    const missing = (Array.isArray(schema.required) ? schema.required : []).filter((k) => !(k in value));
    if (missing.length) {
      return { ok: false, message: `Missing required field${missing.length > 1 ? 's' : ''}: ${missing.join(', ')}.` };
    }
    for (const [key, v] of Object.entries(value)) {
      const prop = schema.properties[key];
      if (!prop) {
        if (schema.additionalProperties === false) {
          return { ok: false, message: `Unknown field "${key}"; expected one of: ${Object.keys(schema.properties).join(', ')}.` };
        }
        continue;
      }
      const check = TYPE_CHECKS[prop.type];
      if (check && !check(v)) return { ok: false, message: `"${key}" should be ${prop.type === 'integer' ? 'an' : 'a'} ${prop.type}.` };
      if (Array.isArray(prop.enum) && !prop.enum.includes(v)) {
        return { ok: false, message: `"${key}" should be one of: ${prop.enum.map((e) => JSON.stringify(e)).join(', ')}.` };
      }
      if (isNum(prop.minimum) && isNum(v) && v < prop.minimum) return { ok: false, message: `"${key}" should be at least ${prop.minimum}.` };
    }
  }
  return { ok: true, value };
}

function validateInput() {
  const result = checkInput();
  const status = $('input-status');
  const textarea = $('submit-input');
  textarea.setAttribute('aria-invalid', result.ok ? 'false' : 'true');
  status.dataset.valid = String(result.ok);
  status.textContent = result.ok ? 'Valid JSON object.' : result.message;
  return result;
}

let validateTimer = null;
$('submit-input').addEventListener('input', () => {
  // A refusal of the previous attempt no longer applies to what is being typed.
  if ($('submit-result').dataset.kind === 'error') {
    delete $('submit-result').dataset.kind;
    $('submit-result').replaceChildren();
  }
  clearTimeout(validateTimer);
  validateTimer = setTimeout(validateInput, 150);
});
$('submit-plugin').addEventListener('change', onPluginChange);
$('submit-example').addEventListener('click', () => {
  autoFilled = JSON.stringify(exampleFor(currentOption()), null, 2);
  $('submit-input').value = autoFilled;
  validateInput();
  $('submit-input').focus();
});

$('submit-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const result = $('submit-result');
  const checked = validateInput();
  if (!checked.ok) {
    result.dataset.kind = 'error';
    result.replaceChildren(`Not submitted: ${checked.message}`);
    $('submit-input').focus();
    return;
  }
  const option = currentOption();
  if (!option) {
    result.dataset.kind = 'error';
    result.replaceChildren('No plugin to submit to.');
    return;
  }
  const body = { plugin: option.value, input: checked.value };
  const priority = $('submit-priority').value;
  if (priority) body.priority = priority;
  const button = $('submit-button');
  button.disabled = true;
  result.dataset.kind = 'pending';
  result.replaceChildren('Submitting…');
  try {
    const reply = await api('/tasks', { method: 'POST', body });
    const task = mergeTask({
      id: reply.id,
      plugin: option.plugin,
      task: option.task,
      status: reply.status,
      progress: 0,
      created_at: new Date(serverNow()).toISOString(),
    });
    if (!state.recent.includes(task.id)) state.recent.unshift(task.id);
    result.dataset.kind = 'ok';
    result.dataset.taskId = task.id;
    result.replaceChildren(
      reply.created === false ? 'Already known: ' : 'Submitted ',
      h('a', { href: taskHref(task.id), class: 'mono', title: task.id, text: shortId(task.id) }),
      ` (${reply.status}).`);
    refetchTask(task.id);
    scheduleRender();
  } catch (error) {
    result.dataset.kind = 'error';
    delete result.dataset.taskId;
    result.replaceChildren(`Not submitted: ${error.kind ? `${error.kind}: ` : ''}${error.message}`);
  } finally {
    button.disabled = false;
  }
});

$('recent-status').addEventListener('change', () => {
  state.recentFilter = $('recent-status').value;
  state.recent = [];
  scheduleRender();
  loadRecent().catch((error) => toast(`Could not list tasks: ${error.message}`, 'error'));
});

// ---------------------------------------------------------------------------------------------
// Charts: small SVG line charts drawn by hand.

function niceStep(span, count) {
  const raw = span / Math.max(1, count);
  const power = 10 ** Math.floor(Math.log10(raw));
  const unit = raw / power;
  return (unit <= 1 ? 1 : unit <= 2 ? 2 : unit <= 2.5 ? 2.5 : unit <= 5 ? 5 : 10) * power;
}

function ticks(min, max, count = 5) {
  if (!(max > min)) return [min];
  const step = niceStep(max - min, count);
  const out = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return out;
}

function tickLabel(v) {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(0);
  return String(Number(v.toPrecision(6)));
}

/**
 * An empty chart: axes, grid, labels. Returns the svg, the scales and a group to draw into.
 * `x`/`y`: {min, max, label, ticks?, format?}.
 */
function chartFrame({ x, y, label, width = 640, height = 300 }) {
  const m = { left: 58, right: 18, top: 14, bottom: 40 };
  const w = width - m.left - m.right;
  const hgt = height - m.top - m.bottom;
  const sx = (v) => m.left + ((v - x.min) / (x.max - x.min || 1)) * w;
  const sy = (v) => m.top + hgt - ((v - y.min) / (y.max - y.min || 1)) * hgt;
  const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': label });
  const grid = s('g', { class: 'grid' });
  const axis = s('g', { class: 'axis' });
  const xt = x.ticks || ticks(x.min, x.max, 6);
  const yt = y.ticks || ticks(y.min, y.max, 5);
  for (const v of yt) {
    grid.append(s('line', { x1: m.left, x2: m.left + w, y1: sy(v), y2: sy(v) }));
    axis.append(s('text', { x: m.left - 6, y: sy(v) + 4, 'text-anchor': 'end' }, (y.format || tickLabel)(v)));
  }
  for (const v of xt) {
    grid.append(s('line', { x1: sx(v), x2: sx(v), y1: m.top, y2: m.top + hgt }));
    axis.append(s('text', { x: sx(v), y: m.top + hgt + 16, 'text-anchor': 'middle' }, (x.format || tickLabel)(v)));
  }
  axis.append(s('line', { x1: m.left, x2: m.left + w, y1: m.top + hgt, y2: m.top + hgt }));
  axis.append(s('line', { x1: m.left, x2: m.left, y1: m.top, y2: m.top + hgt }));
  axis.append(s('text', { x: m.left + w / 2, y: height - 4, 'text-anchor': 'middle' }, x.label));
  axis.append(s('text', { x: 14, y: m.top + hgt / 2, 'text-anchor': 'middle', transform: `rotate(-90 14 ${m.top + hgt / 2})` }, y.label));
  const plot = s('g', { class: 'plot' });
  const clipId = `clip-${Math.random().toString(36).slice(2)}`;
  svg.append(s('defs', {}, s('clipPath', { id: clipId }, s('rect', { x: m.left, y: m.top - 6, width: w, height: hgt + 12 }))));
  plot.setAttribute('clip-path', `url(#${clipId})`);
  svg.append(grid, axis, plot);
  return { svg, sx, sy, plot, box: { left: m.left, top: m.top, right: m.left + w, bottom: m.top + hgt } };
}

function polyline(points, sx, sy, cls) {
  return s('polyline', { class: cls, points: points.map(([a, b]) => `${sx(a).toFixed(1)},${sy(b).toFixed(1)}`).join(' ') });
}

/** What kind of CVD warning this is, for its colour: stress, adhesion, rate or other. */
function warningCategory(type) {
  const t = String(type || '').toLowerCase();
  if (t.includes('adhesion')) return 'adhesion';
  if (t.includes('stress')) return 'stress';
  if (t.includes('rate')) return 'rate';
  return 'other';
}

/** The CVD run as the events tell it: thickness samples per step, targets and warnings. */
class CvdTrace {
  constructor() {
    this.samples = [];
    this.seen = new Set();
    this.targets = new Map();
    this.films = new Map();
    this.warnings = [];
    this.latest = null;
    this.metrics = null;
    this.stepCount = null;
  }

  get hasData() {
    return this.samples.length > 0;
  }

  add(event) {
    const d = event.data;
    if (!d || typeof d !== 'object' || Array.isArray(d)) return false;
    let changed = false;
    const isSample = isNum(d.time_sec) && isNum(d.current_thickness_nm);
    // Per-step facts count only from events that name their step (a sample of a single-step
    // run may not); a step's summary, for one, calls it `index`.
    const named = Number.isInteger(d.step_index);
    const step = named ? d.step_index : 0;
    if (named || isSample) {
      if (isNum(d.step_count)) this.stepCount = d.step_count;
      if (typeof d.film_material === 'string') this.films.set(step, d.film_material);
      if (isNum(d.target_thickness_nm) && this.targets.get(step) !== d.target_thickness_nm) {
        this.targets.set(step, d.target_thickness_nm);
        changed = true;
      }
    }
    if (isSample) {
      const key = `${step}:${d.time_sec}`;
      const sample = {
        t: d.time_sec,
        thickness: d.current_thickness_nm,
        step,
        rate: firstNum(d.deposition_rate_nm_min),
        stress: firstNum(d.stress_mpa),
        stack: firstNum(d.stack_thickness_nm),
      };
      if (!this.seen.has(key)) {
        this.seen.add(key);
        this.samples.push(sample);
        changed = true;
      }
      if (!this.latest || sample.t >= this.latest.t) this.latest = { ...this.latest, ...Object.fromEntries(Object.entries(sample).filter(([, v]) => v !== null)) };
      if (event.event_type === 'metrics_update') this.metrics = d;
    }
    // Only warning events: a step's summary (`step_completed`) repeats its warnings.
    const isWarning = event.event_type === 'warning' || /_(risk|anomaly)$/.test(event.event_type);
    if (isWarning) {
      const list = Array.isArray(d.warnings) ? d.warnings : [d];
      for (const w of list) {
        if (!w || typeof w !== 'object') continue;
        const t = firstNum(w.time_sec, d.time_sec);
        if (t === null) continue;
        const type = w.type || w.code || (event.event_type !== 'warning' ? event.event_type : 'warning');
        this.warnings.push({
          t,
          step: Number.isInteger(w.step_index) ? w.step_index : step,
          type,
          category: warningCategory(type),
          severity: String(w.severity || 'WARNING').toUpperCase(),
          message: typeof w.message === 'string' ? w.message : String(type),
          thickness: firstNum(w.thickness_nm),
          seq: event.seq,
        });
        changed = true;
      }
    }
    return changed;
  }

  thicknessAt(step, t) {
    let best = null;
    for (const p of this.samples) {
      if (p.step === step && p.t <= t && (!best || p.t >= best.t)) best = p;
    }
    return best ? best.thickness : null;
  }
}

function timeUnit(maxSec) {
  if (maxSec > 7200) return { div: 3600, name: 'h' };
  if (maxSec > 900) return { div: 60, name: 'min' };
  return { div: 1, name: 's' };
}

function drawCvdChart(trace, width) {
  const tMax = Math.max(...trace.samples.map((p) => p.t), ...trace.warnings.map((w) => w.t), 1);
  const tMin = Math.min(0, ...trace.samples.map((p) => p.t));
  const unit = timeUnit(tMax);
  const targets = [...trace.targets.values()];
  const yMax = Math.max(...trace.samples.map((p) => p.thickness), ...targets, 1) * 1.1;
  const warnings = trace.warnings.length;
  const latest = trace.latest;
  const label = `Film thickness versus time: ${fmtNum(latest?.thickness)} nm at ${fmtNum(latest?.t, 0)} s` +
    (targets.length ? `, target ${targets.map((t) => `${fmtNum(t)} nm`).join(', ')}` : '') +
    `; ${warnings} warning${warnings === 1 ? '' : 's'} marked.`;
  const frame = chartFrame({
    label,
    width,
    x: { min: tMin / unit.div, max: tMax / unit.div, label: `time (${unit.name})` },
    y: { min: 0, max: yMax, label: 'thickness (nm)' },
  });
  const { sx, sy, plot, box } = frame;
  const x = (t) => sx(t / unit.div);
  const bySteps = new Map();
  for (const p of trace.samples) {
    if (!bySteps.has(p.step)) bySteps.set(p.step, []);
    bySteps.get(p.step).push(p);
  }
  const steps = [...bySteps.keys()].sort((a, b) => a - b);
  // Targets: a dashed line over each step's time span (the last one to the end of the chart).
  for (const [step, target] of [...trace.targets.entries()].sort((a, b) => a[0] - b[0])) {
    const points = bySteps.get(step);
    const from = points ? points[0].t : tMin;
    const isLast = step >= Math.max(...steps, step);
    const to = points && !isLast ? points[points.length - 1].t : tMax;
    const y = sy(target);
    plot.append(s('line', { class: 'target', x1: x(from), x2: x(to), y1: y, y2: y }, s('title', {}, `target ${target} nm`)));
    // Above the line at its start; right-aligned when it starts too close to the right edge.
    const start = Math.max(x(from), box.left);
    const nearEdge = start > box.left + (box.right - box.left) * 0.7;
    frame.svg.append(s('text', {
      class: 'target-label',
      x: nearEdge ? box.right - 4 : start + 6,
      y: y - 6,
      'text-anchor': nearEdge ? 'end' : 'start',
    }, `target ${tickLabel(target)} nm`));
  }
  for (const step of steps) {
    const points = bySteps.get(step).map((p) => [p.t / unit.div, p.thickness]);
    const film = trace.films.get(step);
    const line = polyline(points, sx, sy, `series series-${step % 4}`);
    line.append(s('title', {}, `step ${step + 1}${film ? ` (${film})` : ''}`));
    plot.append(line);
  }
  // Warnings: a dotted line at the time, and a triangle on the curve (stacked when several coincide).
  const stacked = new Map();
  for (const w of trace.warnings.slice(-300)) {
    const key = `${w.step}:${w.t}`;
    const n = stacked.get(key) || 0;
    stacked.set(key, n + 1);
    const thickness = w.thickness ?? trace.thicknessAt(w.step, w.t) ?? 0;
    const px = x(w.t);
    const py = Math.max(box.top + 8, sy(thickness) - 4 - n * 11);
    plot.append(s('g', { class: `mark mark-${w.category}` },
      s('title', {}, `${fmtNum(w.t, 0)} s · ${w.type}: ${w.message}`),
      s('line', { x1: px, x2: px, y1: box.top, y2: box.bottom }),
      s('path', { d: `M${px.toFixed(1)},${(py - 8).toFixed(1)} l5,9 h-10 z` })));
  }
  return frame.svg;
}

/** The SCF loop of a DFT job: energy change and residual per iteration. */
class ScfTrace {
  constructor() {
    this.points = [];
    this.tolerance = null;
    this.converged = null;
    this.unit = 'eV';
    this.energyUnit = 'eV';
  }

  get hasData() {
    return this.points.length > 0;
  }

  add(event) {
    const d = event.data;
    if (!d || typeof d !== 'object') return false;
    const t = event.event_type;
    if (t === 'scf_converged' || t === 'scf_not_converged') {
      this.converged = t === 'scf_converged';
      const tol = firstNum(d.tolerance_ev, d.tolerance);
      if (tol !== null) this.tolerance = tol;
      return true;
    }
    if (t !== 'scf_iteration') return false;
    let delta = firstNum(d.delta_e_ev, d.delta_e, d.deltaE, d.de);
    if (delta === null && isNum(d.delta_e_hartree)) {
      delta = d.delta_e_hartree;
      this.unit = 'Ha';
    }
    const tol = firstNum(d.tolerance_ev, d.tolerance);
    if (tol !== null) this.tolerance = tol;
    let energy = firstNum(d.energy_ev, d.energy, d.total_energy_ev);
    if (energy === null && isNum(d.energy_hartree)) {
      energy = d.energy_hartree;
      this.energyUnit = 'Ha';
    }
    this.points.push({
      iteration: firstNum(d.iteration, d.iter) ?? this.points.length + 1,
      energy,
      delta,
      residual: firstNum(d.residual, d.density_residual),
      converged: d.converged === true,
    });
    if (d.converged === true) this.converged = true;
    return true;
  }
}

const LOG_FLOOR = -16;

function log10Abs(v) {
  if (!isNum(v)) return null;
  return v === 0 ? LOG_FLOOR : Math.max(LOG_FLOOR, Math.log10(Math.abs(v)));
}

function drawScfChart(trace, width) {
  const deltas = trace.points.filter((p) => log10Abs(p.delta) !== null).map((p) => [p.iteration, log10Abs(p.delta)]);
  const residuals = trace.points.filter((p) => log10Abs(p.residual) !== null).map((p) => [p.iteration, log10Abs(p.residual)]);
  const tolerance = log10Abs(trace.tolerance);
  const ys = [...deltas, ...residuals].map((p) => p[1]).concat(tolerance !== null ? [tolerance] : []);
  const yMin = Math.floor(Math.min(...ys, 0) - 0.2);
  const yMax = Math.ceil(Math.max(...ys, yMin + 1) + 0.2);
  const iterations = trace.points.map((p) => p.iteration);
  const xMax = Math.max(...iterations, 2);
  const xMin = Math.min(...iterations, 1);
  const yStep = Math.max(1, Math.ceil((yMax - yMin) / 7));
  const yTicks = [];
  for (let k = yMax; k >= yMin; k -= yStep) yTicks.push(k);
  const xStep = Math.max(1, Math.ceil(niceStep(xMax - xMin, 8)));
  const xTicks = [];
  for (let i = Math.ceil(xMin / xStep) * xStep; i <= xMax; i += xStep) xTicks.push(i);
  const last = trace.points[trace.points.length - 1];
  const label = `SCF convergence: log10 of |ΔE| over ${trace.points.length} iterations` +
    (last && isNum(last.delta) ? `, last |ΔE| ${Math.abs(last.delta).toExponential(2)} ${trace.unit}` : '') +
    (trace.converged === true ? ', converged.' : trace.converged === false ? ', not converged.' : '.');
  const frame = chartFrame({
    label,
    width,
    x: { min: xMin - 0.4, max: xMax + 0.4, label: 'SCF iteration', ticks: xTicks, format: (v) => String(v) },
    y: { min: yMin, max: yMax, label: `|ΔE| (${trace.unit}, log scale)`, ticks: yTicks, format: (k) => powerOfTen(k) },
  });
  const { sx, sy, plot, box } = frame;
  if (tolerance !== null) {
    plot.append(s('line', { class: 'tolerance', x1: box.left, x2: box.right, y1: sy(tolerance), y2: sy(tolerance) }));
    frame.svg.append(s('text', { class: 'target-label', x: box.left + 6, y: sy(tolerance) - 6 },
      `tolerance ${trace.tolerance.toExponential(0)} ${trace.unit}`));
  }
  if (residuals.length > 1) plot.append(polyline(residuals, sx, sy, 'residual'));
  if (deltas.length > 1) plot.append(polyline(deltas, sx, sy, 'series series-0'));
  for (const p of trace.points) {
    const y = log10Abs(p.delta);
    if (y === null) continue;
    plot.append(s('circle', { class: `dot${p.converged ? ' converged' : ''}`, cx: sx(p.iteration), cy: sy(y), r: 3 },
      s('title', {}, `iteration ${p.iteration}: |ΔE| = ${Math.abs(p.delta).toExponential(2)} ${trace.unit}` +
        (isNum(p.energy) ? `, E = ${p.energy.toFixed(6)}` : ''))));
  }
  return frame.svg;
}

/** The width a chart gets inside its figure, in CSS pixels. */
function chartWidth(figure) {
  return Math.max(320, Math.min(1400, Math.round(figure.clientWidth || 640)));
}

function tiles(entries) {
  return h('dl', { class: 'tiles' }, entries.map(([name, value, alarm]) =>
    h('div', {}, h('dt', { text: name }), h('dd', { class: alarm ? 'alarm' : undefined, text: value }))));
}

// ---------------------------------------------------------------------------------------------
// Event log: severity and one-line summaries.

function severityOf(event) {
  const t = String(event.event_type || '');
  const d = event.data && typeof event.data === 'object' ? event.data : {};
  const fromWord = (word) => {
    const w = String(word || '').toLowerCase();
    if (w === 'error' || w === 'critical' || w === 'fatal') return 'error';
    if (w === 'warn' || w === 'warning') return 'warning';
    if (w === 'debug' || w === 'trace') return 'debug';
    if (w === 'info' || w === 'notice') return 'info';
    return null;
  };
  if (t === 'run_failed' || t === 'error' || t.endsWith('_error') || t.endsWith('_failed') || t === 'scf_not_converged') return 'error';
  if (t === 'log') return fromWord(d.level) || 'info';
  if (t === 'run_completed' || t === 'scf_converged') return 'success';
  if (t === 'warning' && Array.isArray(d.warnings) && d.warnings.length) {
    const words = d.warnings.map((w) => fromWord(w && w.severity));
    if (words.includes('error')) return 'error';
    return words.every((w) => w === 'info') ? 'info' : 'warning';
  }
  if (t === 'warning' || t === 'run_stale' || t === 'run_retrying' || t === 'run_cancelled' || /_(risk|anomaly)$/.test(t)) {
    return fromWord(d.severity) === 'info' ? 'info' : 'warning';
  }
  return fromWord(d.severity) || fromWord(d.level) || 'info';
}

function summarize(event) {
  const d = event.data;
  if (d === null || typeof d !== 'object') return d === undefined ? '' : compactJson(d);
  const error = d.error && typeof d.error === 'object' ? `${d.error.kind ?? 'error'}: ${d.error.message ?? ''}` : '';
  switch (event.event_type) {
    case 'log':
      return `${d.level ?? 'info'} · ${d.message ?? ''}`;
    case 'progress_update': {
      const pct = firstNum(d.percent, d.progress);
      return [pct !== null ? `${pct.toFixed(1)} %` : null, d.message].filter(Boolean).join(' · ') || compactJson(d);
    }
    case 'run_started':
      return `attempt ${d.attempt ?? '?'}${d.host ? ` on ${d.host}` : ''}${d.worker ? ` (${d.worker})` : ''}`;
    case 'run_completed':
      return `succeeded${isNum(d.duration_ms) ? ` in ${fmtDuration(d.duration_ms)}` : ''}` +
        `${isNum(d.fuel_used) ? `, fuel ${d.fuel_used.toLocaleString()}` : ''}`;
    case 'run_failed':
    case 'run_cancelled':
    case 'run_retrying':
      return [d.status, error].filter(Boolean).join(' · ') || compactJson(d);
    case 'cancel_requested':
      return `cancel requested${d.by ? ` by ${d.by}` : ''}`;
    case 'run_stale':
      return `no report for ${fmtDuration(d.silent_ms)}`;
    case 'scf_iteration': {
      const delta = firstNum(d.delta_e_ev, d.delta_e, d.delta_e_hartree);
      const energy = firstNum(d.energy_ev, d.energy, d.energy_hartree);
      return `iteration ${d.iteration ?? '?'}` +
        (energy !== null ? ` · E = ${energy.toFixed(6)}` : '') +
        (delta !== null ? ` · ΔE = ${delta.toExponential(2)}` : '') +
        (isNum(d.residual) ? ` · residual ${d.residual.toExponential(2)}` : '') +
        (d.converged === true ? ' · converged' : '');
    }
    case 'warning':
      if (Array.isArray(d.warnings)) {
        const when = isNum(d.time_sec) ? `at ${fmtNum(d.time_sec, 0)} s: ` : '';
        return when + d.warnings.map((w) => (w && typeof w === 'object' ? w.message || w.type : String(w))).join(' · ');
      }
      return [d.code || d.type, d.message].filter(Boolean).join(': ') || compactJson(d);
    case 'metrics_update': {
      const parts = [
        isNum(d.time_sec) ? `t ${fmtNum(d.time_sec, 0)} s` : null,
        isNum(d.current_thickness_nm) ? `${fmtNum(d.current_thickness_nm)} nm` : null,
        isNum(d.deposition_rate_nm_min) ? `${fmtNum(d.deposition_rate_nm_min, 2)} nm/min` : null,
        isNum(d.stress_mpa) ? `${fmtNum(d.stress_mpa, 0)} MPa` : null,
        isNum(d.wafer?.bow_um) ? `bow ${fmtNum(d.wafer.bow_um)} µm` : null,
        typeof d.regime === 'string' ? d.regime.replace(/_/g, ' ') : null,
      ].filter(Boolean);
      return parts.length ? parts.join(' · ') : fieldsSummary(d);
    }
    default:
      if (typeof d.message === 'string') return d.message;
      return fieldsSummary(d);
  }
}

function fmtSignificant(v) {
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  return a >= 1e7 || a < 1e-3 ? v.toExponential(3) : String(Number(v.toPrecision(6)));
}

/** `name: value` for the plain fields of an event (the data button shows everything). */
function fieldsSummary(d, max = 8) {
  const parts = [];
  for (const [key, value] of Object.entries(d)) {
    let text = null;
    if (isNum(value)) text = fmtSignificant(value);
    else if (typeof value === 'boolean') text = String(value);
    else if (typeof value === 'string') text = value.length > 80 ? `${value.slice(0, 80)}…` : value;
    if (text === null) continue;
    if (parts.length === max) {
      parts.push('…');
      break;
    }
    parts.push(`${key}: ${text}`);
  }
  return parts.length ? parts.join(' · ') : compactJson(d);
}

// ---------------------------------------------------------------------------------------------
// Task page: #/tasks/{id}

class TaskPage {
  constructor(id, root) {
    this.id = id;
    this.root = root;
    this.events = new Map();
    this.count = 0;
    this.lastSeq = 0;
    this.finished = false;
    this.destroyed = false;
    this.types = new Map();
    this.pendingRows = [];
    this.cvd = new CvdTrace();
    this.scf = new ScfTrace();
    this.chartsDirty = false;
    this.chartTimer = null;
    this.flushQueued = false;
  }

  get task() {
    return state.tasks.get(this.id) || { id: this.id };
  }

  async mount() {
    const el = this.el = {};
    el.name = h('span', { class: 'name', text: this.id });
    el.badge = statusBadge('loading');
    el.stale = h('span', { class: 'badge stale', text: 'stale', hidden: true, title: 'No report for a while' });
    el.cancel = h('button', { type: 'button', class: 'danger', text: 'Cancel task', hidden: true });
    el.retry = h('button', { type: 'button', text: 'Retry', hidden: true });
    el.progress = progressBar(`Progress of task ${shortId(this.id)}`);
    el.progress.classList.add('task-progress');
    el.message = h('p', { class: 'task-message' });
    el.facts = h('dl', { class: 'facts' });
    el.error = h('div', { class: 'error-box', role: 'alert', hidden: true });
    el.resultPre = h('pre', { class: 'json', tabindex: '0' });
    el.result = h('details', { class: 'result', hidden: true }, h('summary', { text: 'Result' }), el.resultPre);
    el.cvd = h('figure', { class: 'chart', id: 'cvd-chart', hidden: true });
    el.scf = h('figure', { class: 'chart', id: 'scf-chart', hidden: true });
    el.charts = h('section', { class: 'panel', 'aria-labelledby': 'charts-title', hidden: true },
      h('h2', { id: 'charts-title', text: 'Process' }),
      h('div', { class: 'charts' }, el.cvd, el.scf));
    el.typeFilter = h('select', { id: 'log-type' }, h('option', { value: '', text: 'all types' }));
    el.severityFilter = h('select', { id: 'log-severity' },
      h('option', { value: '', text: 'any' }),
      h('option', { value: 'warning', text: 'warnings and errors' }),
      h('option', { value: 'error', text: 'errors' }));
    el.follow = h('input', { type: 'checkbox', id: 'log-follow', checked: true });
    el.streamState = h('span', { class: 'spacer', id: 'stream-state', 'aria-live': 'polite' });
    el.count = h('span', { class: 'count' });
    el.log = h('ol', { class: 'log', id: 'event-log', 'aria-label': 'Event log', tabindex: '0' });
    el.logNote = h('p', { class: 'log-note', hidden: true });
    el.typeFilter.addEventListener('change', () => this.refilter());
    el.severityFilter.addEventListener('change', () => this.refilter());
    el.cancel.addEventListener('click', () => cancelTask(this.id, el.cancel));
    el.retry.addEventListener('click', () => this.retry());
    el.log.addEventListener('click', (event) => this.toggleData(event));

    this.root.replaceChildren(
      h('a', { class: 'back', href: '#/', text: '← Overview' }),
      h('section', { class: 'panel', 'aria-labelledby': 'task-title' },
        h('div', { class: 'task-head' },
          h('div', {},
            h('h1', { id: 'task-title' }, el.name, el.badge, el.stale),
            h('p', { class: 'id', text: this.id })),
          h('div', { class: 'task-actions' }, el.cancel, el.retry)),
        el.progress, el.message, el.facts, el.error, el.result),
      el.charts,
      h('section', { class: 'panel', 'aria-labelledby': 'events-title' },
        h('div', { class: 'panel-head' },
          h('h2', { id: 'events-title' }, 'Events ', el.count),
          h('ul', { class: 'sev-legend', 'aria-label': 'Severity colours' },
            ['error', 'warning', 'success', 'info'].map((sev) => h('li', { dataset: { severity: sev }, text: sev })))),
        h('div', { class: 'log-tools' },
          h('label', { class: 'inline-label' }, 'Type ', el.typeFilter),
          h('label', { class: 'inline-label' }, 'Severity ', el.severityFilter),
          h('label', { class: 'check' }, el.follow, ' Follow new events'),
          el.streamState),
        el.log, el.logNote));

    try {
      await fetchTask(this.id);
    } catch (error) {
      if (this.destroyed) return;
      if (error.status === 404) {
        this.root.replaceChildren(
          h('a', { class: 'back', href: '#/', text: '← Overview' }),
          h('section', { class: 'panel' }, h('h1', { text: 'No such task' }),
            h('p', {}, 'There is no task ', h('code', { text: this.id }), ' (or it belongs to someone else).')));
        document.title = 'No such task · taskhost';
        return;
      }
      if (error.status === 401) return;
      toast(`Could not read the task: ${error.message}`, 'error');
    }
    if (this.destroyed) return;
    this.renderHead();
    this.socket = new LiveSocket({
      url: () => wsUrl(`/ws/tasks/${encodeURIComponent(this.id)}`, { since: this.lastSeq }),
      onMessage: (message) => this.onMessage(message),
      onOpen: () => {
        this.el.streamState.dataset.opens = String(Number(this.el.streamState.dataset.opens || 0) + 1);
        this.setStreamState(this.lastSeq ? `resumed after #${this.lastSeq}` : 'live');
      },
      shouldReconnect: () => !this.finished,
      probe: async () => {
        try {
          await api(`/tasks/${encodeURIComponent(this.id)}`);
          return true;
        } catch (error) {
          return error.status !== 401 && error.status !== 404;
        }
      },
    });
    this.socket.start();
  }

  destroy() {
    this.destroyed = true;
    this.socket?.stop();
    this.resizeObserver?.disconnect();
    clearTimeout(this.chartTimer);
  }

  setStreamState(text) {
    if (this.el.streamState.textContent !== text) this.el.streamState.textContent = text;
  }

  onMessage(message) {
    if (this.destroyed || message.type !== 'event') return;
    const seq = Number(message.seq);
    if (!Number.isInteger(seq) || seq <= this.lastSeq) return; // already applied
    if (this.lastSeq > 0 && seq !== this.lastSeq + 1) {
      // A gap: ask the host again from the last event applied.
      this.socket.restart();
      return;
    }
    this.lastSeq = seq;
    this.apply(message);
  }

  apply(event) {
    this.events.set(event.seq, event);
    this.count += 1;
    const type = String(event.event_type);
    this.types.set(type, (this.types.get(type) || 0) + 1);
    const d = event.data && typeof event.data === 'object' ? event.data : {};
    const partial = { id: this.id, liveAt: performance.now() };
    switch (type) {
      case 'run_started':
        Object.assign(partial, { status: 'running', started_at: event.ts, finished_at: null, stale: false });
        // The charts follow the current attempt; the log keeps every attempt.
        if (this.cvd.hasData || this.scf.hasData) {
          this.cvd = new CvdTrace();
          this.scf = new ScfTrace();
          this.chartsDirty = true;
        }
        if (isNum(d.attempt)) partial.attempts = d.attempt;
        break;
      case 'progress_update': {
        const pct = firstNum(d.percent, d.progress);
        if (pct !== null) partial.progress = pct;
        if (typeof d.message === 'string') partial.message = d.message;
        partial.stale = false;
        break;
      }
      case 'run_stale':
        partial.stale = true;
        break;
      case 'cancel_requested':
        partial.cancel_requested = true;
        break;
      case 'run_retrying':
        Object.assign(partial, { status: typeof d.status === 'string' ? d.status : 'retrying', error: d.error });
        break;
      default:
        break;
    }
    if (type === 'run_completed' || type === 'run_failed' || type === 'run_cancelled') {
      this.finished = true;
      const status = typeof d.status === 'string' ? d.status
        : { run_completed: 'succeeded', run_failed: 'failed', run_cancelled: 'cancelled' }[type];
      Object.assign(partial, { status, finished_at: event.ts, stale: false });
      if (d.error) partial.error = d.error;
      if (d.result !== undefined) partial.result = d.result;
      this.setStreamState('finished');
      // The stored record has the final fields (a result too large to travel in the event, too).
      setTimeout(() => fetchTask(this.id).then(() => this.renderHead()).catch(() => {}), 100);
    }
    if (Object.keys(partial).length > 2) mergeTask(partial);
    if (this.cvd.add(event) || this.scf.add(event)) this.chartsDirty = true;
    this.pendingRows.push(event);
    this.scheduleFlush();
  }

  scheduleFlush() {
    if (this.flushQueued) return;
    this.flushQueued = true;
    requestAnimationFrame(() => {
      this.flushQueued = false;
      if (this.destroyed) return;
      this.flushRows();
      this.renderHead();
      this.updateTypeFilter();
      if (this.chartsDirty) this.scheduleCharts();
    });
  }

  onSharedState() {
    this.renderHead();
  }

  passes(event) {
    const type = this.el.typeFilter.value;
    if (type && event.event_type !== type) return false;
    const wanted = this.el.severityFilter.value;
    if (!wanted) return true;
    const severity = severityOf(event);
    return wanted === 'error' ? severity === 'error' : severity === 'error' || severity === 'warning';
  }

  row(event) {
    const severity = severityOf(event);
    const summary = summarize(event);
    const hasData = event.data && typeof event.data === 'object' && Object.keys(event.data).length > 0;
    return h('li', { dataset: { seq: String(event.seq), type: event.event_type, severity } },
      h('span', { class: 'seq', text: `#${event.seq}` }),
      h('time', { class: 'time', datetime: event.ts, title: event.ts, text: fmtClock(event.ts, true) }),
      h('span', { class: 'type', title: event.event_type, text: event.event_type }),
      h('span', { class: 'summary' },
        summary,
        hasData ? ' ' : null,
        hasData ? h('button', { type: 'button', class: 'quiet small', dataset: { seq: String(event.seq) }, 'aria-expanded': 'false', text: 'data' }) : null));
  }

  flushRows() {
    const log = this.el.log;
    const fragment = document.createDocumentFragment();
    for (const event of this.pendingRows) if (this.passes(event)) fragment.append(this.row(event));
    this.pendingRows = [];
    log.append(fragment);
    this.trimRows();
    this.el.count.textContent = `(${this.count})`;
    if (this.el.follow.checked) log.scrollTop = log.scrollHeight;
  }

  trimRows() {
    const log = this.el.log;
    let hidden = 0;
    while (log.childElementCount > LOG_ROWS_MAX) {
      log.firstElementChild.remove();
      hidden += 1;
    }
    this.hiddenRows = (this.hiddenRows || 0) + hidden;
    this.el.logNote.hidden = !this.hiddenRows;
    this.el.logNote.textContent = this.hiddenRows
      ? `Showing the last ${LOG_ROWS_MAX} matching events; ${this.hiddenRows} earlier ones are hidden. Filter by type to see them.`
      : '';
  }

  refilter() {
    this.hiddenRows = 0;
    this.el.log.replaceChildren();
    this.pendingRows = [...this.events.values()];
    this.flushRows();
  }

  updateTypeFilter() {
    const select = this.el.typeFilter;
    const existing = new Map([...select.options].map((o) => [o.value, o]));
    existing.get('').textContent = `all types (${this.count})`;
    const names = [...this.types.keys()].sort();
    for (const name of names) {
      const text = `${name} (${this.types.get(name)})`;
      let option = existing.get(name);
      if (!option) {
        option = h('option', { value: name });
        const after = [...select.options].slice(1).find((o) => o.value > name);
        select.insertBefore(option, after || null);
      }
      if (option.textContent !== text) option.textContent = text;
    }
  }

  toggleData(event) {
    const button = event.target.closest('button[data-seq]');
    if (!button) return;
    const li = button.closest('li');
    const open = li.querySelector('pre');
    if (open) {
      open.remove();
      button.setAttribute('aria-expanded', 'false');
      return;
    }
    const data = this.events.get(Number(button.dataset.seq))?.data;
    li.append(h('pre', { class: 'json', text: JSON.stringify(data, null, 2) }));
    button.setAttribute('aria-expanded', 'true');
  }

  async retry() {
    this.el.retry.disabled = true;
    try {
      await api(`/tasks/${encodeURIComponent(this.id)}/retry`, { method: 'POST' });
      toast(`Requeued ${shortId(this.id)}.`);
      // Follow the new attempt: its events come after the ones already seen.
      this.finished = false;
      await fetchTask(this.id);
      this.renderHead();
      this.socket.stopped = false;
      this.socket.connect();
    } catch (error) {
      toast(`Could not retry: ${error.message}`, 'error');
    } finally {
      this.el.retry.disabled = false;
    }
  }

  renderHead() {
    if (this.destroyed || !this.el) return;
    const t = this.task;
    const el = this.el;
    const label = t.plugin ? taskLabel(t) : this.id;
    if (el.name.textContent !== label) el.name.textContent = label;
    setBadge(el.badge, t.status || 'unknown');
    el.stale.hidden = !(t.stale && t.status === 'running');
    el.cancel.hidden = !t.status || TERMINAL.has(t.status);
    if (el.cancel.hidden) {
      el.cancel.disabled = false;
      el.cancel.textContent = 'Cancel task';
    }
    el.retry.hidden = t.status !== 'dead';
    setProgress(el.progress, t.progress, t.status);
    const message = t.cancel_requested && !TERMINAL.has(t.status) ? 'cancel requested…' : t.message || '';
    if (el.message.textContent !== message) el.message.textContent = message;
    const started = parseTime(t.started_at);
    const finished = parseTime(t.finished_at);
    const facts = [
      ['Queue', t.queue],
      ['Priority', t.priority],
      ['Tenant', t.tenant],
      ['Attempts', isNum(t.attempts) ? `${t.attempts}${isNum(t.max_retries) ? ` of ${t.max_retries + 1}` : ''}` : null],
      ['Created', t.created_at ? fmtClock(t.created_at) : null],
      ['Started', t.started_at ? fmtClock(t.started_at) : null],
      ['Finished', t.finished_at ? fmtClock(t.finished_at) : null],
    ].filter(([, v]) => v !== null && v !== undefined && v !== '');
    const key = JSON.stringify([facts, t.status, t.started_at, t.finished_at]);
    if (el.facts.dataset.key !== key) {
      el.facts.dataset.key = key;
      const runTime = h('dd');
      if (t.status === 'running' && started !== null) {
        runTime.dataset.since = t.started_at;
        runTime.textContent = fmtDuration(serverNow() - started);
      } else {
        runTime.textContent = started !== null && finished !== null ? fmtDuration(finished - started) : '–';
      }
      el.facts.replaceChildren(
        ...facts.map(([name, value]) => h('div', {}, h('dt', { text: name }), h('dd', { text: value }))),
        h('div', {}, h('dt', { text: 'Run time' }), runTime));
    }
    const error = t.error && typeof t.error === 'object' ? t.error : null;
    el.error.hidden = !error || t.status === 'succeeded';
    if (error) {
      const text = `${error.kind ?? 'error'}: ${error.message ?? ''}`;
      if (el.error.textContent !== text) el.error.replaceChildren(h('strong', { text: error.kind ?? 'error' }), `: ${error.message ?? ''}`);
    }
    const hasResult = t.result !== undefined && t.result !== null;
    el.result.hidden = !hasResult;
    if (hasResult && el.result.dataset.shown !== 'yes') {
      el.result.dataset.shown = 'yes';
      el.resultPre.textContent = JSON.stringify(t.result, null, 2);
    }
    document.title = `${label} ${shortId(this.id)} · ${t.status || '…'} · taskhost`;
  }

  scheduleCharts() {
    if (this.chartTimer) return;
    this.chartTimer = setTimeout(() => {
      this.chartTimer = null;
      if (this.destroyed) return;
      this.chartsDirty = false;
      this.renderCharts();
    }, 200);
  }

  renderCharts() {
    const { cvd, scf } = this;
    this.el.charts.hidden = !cvd.hasData && !scf.hasData;
    if (!this.resizeObserver && !this.el.charts.hidden) {
      // Charts are drawn at the width they get, so that their text keeps its size.
      let lastWidth = 0;
      this.resizeObserver = new ResizeObserver(() => {
        const width = this.el.charts.clientWidth;
        if (Math.abs(width - lastWidth) > 8) {
          lastWidth = width;
          this.scheduleCharts();
        }
      });
      this.resizeObserver.observe(this.el.charts);
    }
    this.el.cvd.hidden = !cvd.hasData;
    this.el.scf.hidden = !scf.hasData;
    if (cvd.hasData) this.renderCvd();
    if (scf.hasData) this.renderScf();
  }

  renderCvd() {
    const trace = this.cvd;
    const latest = trace.latest || {};
    const step = latest.step ?? 0;
    const target = trace.targets.get(step);
    const bow = this.cvd.metrics?.wafer?.bow_um;
    const stressAlarm = trace.warnings.some((w) => w.category === 'stress' || w.category === 'adhesion');
    const legend = h('ul', { class: 'legend' },
      h('li', {}, h('span', { class: 'swatch' }), 'thickness'),
      trace.targets.size ? h('li', {}, h('span', { class: 'swatch dashed' }), 'target') : null,
      h('li', {}, h('span', { class: 'swatch tri stress' }), 'stress warning'),
      h('li', {}, h('span', { class: 'swatch tri adhesion' }), 'adhesion risk'),
      h('li', {}, h('span', { class: 'swatch tri rate' }), 'rate anomaly'));
    const warnings = trace.warnings.slice(-50).map((w) =>
      h('li', { dataset: { category: w.category } },
        h('span', { class: 'when', text: `${fmtNum(w.t, 0)} s` }), ' ',
        h('strong', { text: w.type }), ` (${w.severity.toLowerCase()}): ${w.message}`));
    this.el.cvd.hidden = false;
    const width = chartWidth(this.el.cvd);
    this.el.cvd.replaceChildren(
      h('figcaption', { text: 'Film thickness versus time' }),
      tiles([
        ['Thickness', `${fmtNum(latest.thickness)} nm`],
        ['Target', isNum(target) ? `${fmtNum(target)} nm` : '–'],
        ['Rate', `${fmtNum(latest.rate, 2)} nm/min`],
        ['Stress', `${fmtNum(latest.stress, 0)} MPa`, stressAlarm],
        ['Wafer bow', isNum(bow) ? `${fmtNum(bow, 1)} µm` : '–'],
        ['Step', `${step + 1}${trace.stepCount ? ` of ${trace.stepCount}` : ''}${trace.films.get(step) ? ` · ${trace.films.get(step)}` : ''}`],
      ]),
      drawCvdChart(trace, width),
      legend,
      warnings.length
        ? h('div', {}, h('h3', { text: `Warnings (${trace.warnings.length})` }), h('ul', { class: 'warning-list', id: 'cvd-warnings' }, warnings))
        : h('p', { class: 'hint', text: 'No warnings.' }));
  }

  renderScf() {
    const trace = this.scf;
    const last = trace.points[trace.points.length - 1] || {};
    this.el.scf.hidden = false;
    const width = chartWidth(this.el.scf);
    this.el.scf.replaceChildren(
      h('figcaption', { text: 'SCF convergence' }),
      tiles([
        ['Iteration', String(last.iteration ?? '–')],
        ['Energy', isNum(last.energy) ? `${last.energy.toFixed(6)} ${trace.energyUnit}` : '–'],
        ['|ΔE|', isNum(last.delta) ? `${Math.abs(last.delta).toExponential(2)} ${trace.unit}` : '–'],
        ['Tolerance', isNum(trace.tolerance) ? `${trace.tolerance.toExponential(0)} ${trace.unit}` : '–'],
        ['Converged', trace.converged === null ? 'not yet' : trace.converged ? 'yes' : 'no', trace.converged === false],
      ]),
      drawScfChart(trace, width),
      h('ul', { class: 'legend' },
        h('li', {}, h('span', { class: 'swatch dot' }), '|ΔE| per iteration (log₁₀)'),
        trace.points.some((p) => isNum(p.residual)) ? h('li', {}, h('span', { class: 'swatch residual' }), 'density residual') : null,
        isNum(trace.tolerance) ? h('li', {}, h('span', { class: 'swatch dashed' }), 'tolerance') : null));
  }
}

// ---------------------------------------------------------------------------------------------
// Routing and start

function route() {
  if (signIn.active) return;
  const match = /^#\/tasks\/(.+)$/.exec(location.hash);
  state.page?.destroy();
  state.page = null;
  const overview = $('view-overview');
  const taskView = $('view-task');
  if (match) $('nav-overview').removeAttribute('aria-current');
  else $('nav-overview').setAttribute('aria-current', 'page');
  if (match) {
    let id = match[1];
    try {
      id = decodeURIComponent(id);
    } catch {
      // keep it as written
    }
    overview.hidden = true;
    taskView.hidden = false;
    state.page = new TaskPage(id, taskView);
    state.page.mount();
  } else {
    taskView.hidden = true;
    taskView.replaceChildren();
    overview.hidden = false;
    updateTitle();
    scheduleRender();
  }
}

let routed = false;

window.addEventListener('hashchange', () => {
  route();
  $('main').focus({ preventScroll: true });
  window.scrollTo(0, 0);
});

async function boot() {
  $('sign-out').hidden = !auth.token;
  try {
    await loadPlugins();
  } catch (error) {
    if (error.status === 401) return;
    toast(`Could not read the plugins: ${error.message}`, 'error');
  }
  if (signIn.active) return;
  startQueueSocket();
  loadRunning().catch(() => {});
  loadRecent().catch(() => {});
  route();
  routed = true;
}

/** For tests and the curious: lose every live connection as a network failure would. */
window.taskhostDashboard = {
  dropConnections() {
    state.queueSocket?.drop();
    state.page?.socket?.drop();
  },
  get routed() {
    return routed;
  },
};

boot();
