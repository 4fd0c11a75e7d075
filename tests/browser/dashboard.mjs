// Drives Debian's Chromium through the dashboard of a running host, as a person would:
//
//   node dashboard.mjs BASE_URL ARTIFACT_DIR [TOKEN]
//
// Without TOKEN (a host without tenants): the overview with live queue counts; the submit form's
// validation; a `hello` task submitted through the form whose progress bar is seen to move and
// which is seen to succeed; a long one cancelled with its Cancel button; task pages with their
// event logs (filtered by type), a stream that loses its connection twice and resumes without a
// gap or a duplicate; the CVD thickness chart and the DFT SCF plot when those plugins are loaded.
// With TOKEN (a host with a tenants file): the page asks for a token after the API's 401, refuses
// a wrong one, works after signing in (REST with the bearer header, WebSocket with ?token=),
// stays signed in across a reload, and signs out.
//
// A screenshot of each step goes into ARTIFACT_DIR. Every wait is on a condition, never a sleep.
// Exits 0 when every check passed; prints what failed otherwise. Uncaught errors in the page and
// console errors (a refused Content-Security-Policy, for instance) fail the run.

import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const [base, artifactDir, token] = process.argv.slice(2);
if (!base || !artifactDir) {
  console.error('usage: node dashboard.mjs BASE_URL ARTIFACT_DIR [TOKEN]');
  process.exit(2);
}
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const WAIT_MS = 30_000;
const WHOLE_RUN_MS = 300_000;

const started = Date.now();
const log = (...args) => console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s]`, ...args);
const checks = { passed: 0, failed: 0 };

function check(condition, what) {
  if (condition) {
    checks.passed += 1;
    log(`ok   ${what}`);
  } else {
    checks.failed += 1;
    log(`FAIL ${what}`);
    throw new Error(`check failed: ${what}`);
  }
}

const watchdog = setTimeout(() => {
  console.error(`the browser run took longer than ${WHOLE_RUN_MS / 1000} s; giving up`);
  process.exit(1);
}, WHOLE_RUN_MS);

/** REST from the test itself (to compare what the page shows with what the host stored). */
async function rest(pathname, init = {}) {
  const headers = { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) };
  const response = await fetch(`${base}/api/v1${pathname}`, { ...init, headers });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Error(`${init.method || 'GET'} ${pathname}: ${response.status} ${JSON.stringify(body)}`);
  return body;
}

let shots = 0;
async function screenshot(page, name) {
  shots += 1;
  const file = path.join(artifactDir, `${String(shots).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  log(`     screenshot ${file}`);
}

const css = (id) => JSON.stringify(id);

/** Selects a plugin, types an input, submits, and returns the new task's id. */
async function submitThroughForm(page, plugin, input) {
  await page.selectOption('#submit-plugin', plugin);
  await page.fill('#submit-input', typeof input === 'string' ? input : JSON.stringify(input));
  await page.waitForSelector('#input-status[data-valid="true"]', { timeout: WAIT_MS });
  const before = await page.getAttribute('#submit-result', 'data-task-id');
  await page.click('#submit-button');
  const handle = await page.waitForFunction(
    (previous) => {
      const el = document.getElementById('submit-result');
      if (el.dataset.kind === 'error') return `error: ${el.textContent}`;
      const id = el.dataset.taskId;
      return id && id !== previous ? id : false;
    },
    before,
    { timeout: WAIT_MS },
  );
  const id = await handle.jsonValue();
  if (id.startsWith('error: ')) throw new Error(`submitting ${plugin} failed: ${id}`);
  log(`     submitted ${plugin} as ${id}`);
  return id;
}

/** Reads the sequence ids and types of the event log as the page shows them. */
function logRows(page) {
  return page.$$eval('#event-log li', (rows) => rows.map((li) => ({ seq: Number(li.dataset.seq), type: li.dataset.type, severity: li.dataset.severity })));
}

function contiguous(rows) {
  return rows.every((row, i) => row.seq === i + 1);
}

async function openTaskPage(page, id) {
  await page.evaluate((hash) => {
    location.hash = hash;
  }, `#/tasks/${encodeURIComponent(id)}`);
  await page.waitForSelector('#event-log li', { timeout: WAIT_MS });
}

async function waitForTerminalRow(page) {
  await page.waitForSelector('#event-log li[data-type="run_completed"], #event-log li[data-type="run_failed"], #event-log li[data-type="run_cancelled"]', { timeout: WAIT_MS * 2 });
}

async function overview(page) {
  await page.evaluate(() => {
    location.hash = '#/';
  });
  await page.waitForSelector('#view-overview:not([hidden])', { timeout: WAIT_MS });
}

// ---------------------------------------------------------------------------------------------

async function signInScenario(page) {
  await page.goto(base);
  await page.waitForSelector('#signin:not([hidden])', { timeout: WAIT_MS });
  check(await page.isHidden('#view-overview'), 'the overview stays hidden until the API accepts a token');
  await screenshot(page, 'sign-in');

  await page.fill('#token', 'th_not_a_token');
  await page.click('#signin-form button[type="submit"]');
  await page.waitForFunction(() => document.getElementById('signin-error').textContent.includes('not accepted'), null, { timeout: WAIT_MS });
  check(true, 'a wrong token is refused with a message');
  await screenshot(page, 'sign-in-refused');

  await page.fill('#token', token);
  await page.click('#signin-form button[type="submit"]');
  await page.waitForSelector('#view-overview:not([hidden])', { timeout: WAIT_MS });
  await page.waitForSelector('#connection[data-state="live"]', { timeout: WAIT_MS });
  await page.waitForSelector('#submit-plugin option[value="hello"]', { state: 'attached', timeout: WAIT_MS });
  check(await page.isHidden('#signin'), 'after signing in the overview shows, with the plugins and a live queue stream');
  await screenshot(page, 'signed-in');
}

async function signedInWorkScenario(page) {
  const id = await submitThroughForm(page, 'hello', { name: 'Tenant', spin_ms: 1500 });
  await page.waitForSelector(`#recent-body tr[data-task-id=${css(id)}][data-status="succeeded"]`, { timeout: WAIT_MS });
  check(true, 'a signed-in tenant submits a task and sees it succeed (live over /ws/queue?token=)');
  await openTaskPage(page, id);
  await waitForTerminalRow(page);
  const rows = await logRows(page);
  check(contiguous(rows) && rows.at(-1).type === 'run_completed', `the task page streams its events with the token (${rows.length} events)`);
  await screenshot(page, 'signed-in-task-page');

  await page.reload();
  await page.waitForSelector('#event-log li[data-type="run_completed"]', { timeout: WAIT_MS });
  check(await page.isHidden('#signin'), 'a reload keeps the session (the token stays in this tab)');

  await page.click('#sign-out');
  await page.waitForSelector('#signin:not([hidden])', { timeout: WAIT_MS });
  check(true, 'signing out forgets the token and asks again');
  await screenshot(page, 'signed-out');
}

async function overviewScenario(page) {
  await page.goto(base);
  await page.waitForSelector('#view-overview:not([hidden])', { timeout: WAIT_MS });
  await page.waitForSelector('#submit-plugin option[value="hello"]', { state: 'attached', timeout: WAIT_MS });
  await page.waitForSelector('#connection[data-state="live"]', { timeout: WAIT_MS });
  await page.waitForFunction(() => /^\d+$/.test(document.getElementById('stat-total').textContent), null, { timeout: WAIT_MS });
  check(await page.isHidden('#signin'), 'without tenants the page needs no token and shows no sign-in');
  const hosts = await page.textContent('#stat-hosts');
  check(/^\d+/.test(hosts.trim()), `queue counts arrive over /ws/queue (hosts online: ${hosts.trim()})`);
  await screenshot(page, 'overview');
}

async function validationScenario(page) {
  await page.selectOption('#submit-plugin', 'hello');
  await page.fill('#submit-input', '{"name": ');
  await page.waitForSelector('#input-status[data-valid="false"]', { timeout: WAIT_MS });
  await page.click('#submit-button');
  await page.waitForSelector('#submit-result[data-kind="error"]', { timeout: WAIT_MS });
  const message = await page.textContent('#submit-result');
  check(message.includes('Not valid JSON'), `broken JSON is refused before it is sent ("${message.trim()}")`);
  check((await page.getAttribute('#submit-input', 'aria-invalid')) === 'true', 'the input is marked aria-invalid');
  await page.fill('#submit-input', '{"spin_ms": 10}');
  await page.waitForFunction(() => document.getElementById('input-status').textContent.includes('Missing required field: name'), null, { timeout: WAIT_MS });
  check(true, "a missing required field of the plugin's schema is named");
  await screenshot(page, 'validation');
}

async function progressScenario(page) {
  const id = await submitThroughForm(page, 'hello', { name: 'Chromium', spin_ms: 3000 });
  const row = `#running-list li[data-task-id=${css(id)}]`;
  const first = await page.waitForFunction(
    (selector) => {
      const bar = document.querySelector(`${selector} .bar`);
      const value = bar ? Number(bar.getAttribute('aria-valuenow')) : NaN;
      return value > 0 && value < 100 ? { value, width: bar.querySelector('.fill').style.width } : false;
    },
    row,
    { timeout: WAIT_MS },
  ).then((handle) => handle.jsonValue());
  await screenshot(page, 'progress-first');
  const elapsed = await page.textContent(`${row} .elapsed`);
  const second = await page.waitForFunction(
    ({ selector, recent, before }) => {
      const bar = document.querySelector(`${selector} .bar`) || document.querySelector(`${recent} .bar`);
      const value = bar ? Number(bar.getAttribute('aria-valuenow')) : NaN;
      return value > before ? { value, width: bar.querySelector('.fill').style.width } : false;
    },
    { selector: row, recent: `#recent-body tr[data-task-id=${css(id)}]`, before: first.value },
    { timeout: WAIT_MS },
  ).then((handle) => handle.jsonValue());
  await screenshot(page, 'progress-second');
  check(second.value > first.value && second.width !== first.width,
    `the progress bar moves: ${first.value} % (width ${first.width}) then ${second.value} % (width ${second.width}); elapsed shown: ${elapsed.trim()}`);

  await page.waitForSelector(`#recent-body tr[data-task-id=${css(id)}][data-status="succeeded"]`, { timeout: WAIT_MS });
  await page.waitForSelector(row, { state: 'detached', timeout: WAIT_MS });
  const bar = await page.getAttribute(`#recent-body tr[data-task-id=${css(id)}] .bar`, 'aria-valuenow');
  check(Number(bar) === 100, 'it finishes: status succeeded, progress 100 %, gone from the running list');
  await screenshot(page, 'succeeded');
  return id;
}

async function cancelScenario(page) {
  const id = await submitThroughForm(page, 'hello', { name: 'Long', spin_ms: 120000 });
  const row = `#running-list li[data-task-id=${css(id)}]`;
  await page.waitForSelector(`${row} .elapsed[data-since]`, { timeout: WAIT_MS });
  await screenshot(page, 'long-running');
  const clicked = Date.now();
  // The page's request and the host's answer, so that a failure says which side lost the cancel.
  const answered = page.waitForResponse(
    (r) => r.request().method() === 'POST' && r.url().endsWith(`/tasks/${encodeURIComponent(id)}/cancel`),
    { timeout: WAIT_MS },
  ).catch(() => null);
  await page.click(`${row} button[data-action="cancel"]`);
  const response = await answered;
  if (!response) throw new Error(`clicking Cancel sent no cancel request within ${WAIT_MS} ms`);
  const reply = await response.text();
  if (!response.ok()) throw new Error(`the host refused the cancel: HTTP ${response.status()} ${reply}`);
  try {
    await page.waitForSelector(`#recent-body tr[data-task-id=${css(id)}][data-status="cancelled"]`, { timeout: WAIT_MS });
  } catch (error) {
    const events = await rest(`/tasks/${encodeURIComponent(id)}/events`);
    const list = events.events || [];
    const kinds = list.map((e) => e.event_type).join(', ');
    const last = JSON.stringify(list.at(-1)?.data?.error ?? null);
    throw new Error(`the cancel was answered ${reply} ${Date.now() - clicked} ms before, yet the task did not end cancelled; its events: ${kinds} (last error ${last}); ${error.message}`);
  }
  const took = Date.now() - clicked;
  await page.waitForSelector(row, { state: 'detached', timeout: WAIT_MS });
  const stored = await rest(`/tasks/${encodeURIComponent(id)}`);
  check(stored.status === 'cancelled', `the Cancel button cancels a running task (status cancelled on the page after ${took} ms; the host says ${stored.status})`);
  await screenshot(page, 'cancelled');
  return id;
}

async function taskPageScenario(page, succeededId, cancelledId) {
  await page.click(`#recent-body tr[data-task-id=${css(succeededId)}] a`);
  await page.waitForSelector('#event-log li[data-type="run_completed"]', { timeout: WAIT_MS });
  const rows = await logRows(page);
  const stored = (await rest(`/tasks/${encodeURIComponent(succeededId)}/events?limit=10000`)).events;
  const types = new Set(rows.map((r) => r.type));
  check(contiguous(rows) && rows.length === stored.length,
    `the task page shows every stored event once, in order (${rows.length} of ${stored.length})`);
  check(['run_started', 'progress_update', 'log', 'run_completed'].every((t) => types.has(t)), `with its types: ${[...types].join(', ')}`);
  check(rows.find((r) => r.type === 'run_completed').severity === 'success', 'run_completed is coloured as a success');
  check((await page.getAttribute('#task-title .badge', 'data-status')) === 'succeeded', 'the header says succeeded');
  await page.waitForSelector('details.result:not([hidden])', { timeout: WAIT_MS });
  await screenshot(page, 'task-page');

  await page.selectOption('#log-type', 'progress_update');
  const filtered = await logRows(page);
  check(filtered.length > 0 && filtered.every((r) => r.type === 'progress_update'), `filtering by type shows only progress_update (${filtered.length} rows)`);
  await page.click('#event-log li:first-child button[data-seq]');
  await page.waitForSelector('#event-log li:first-child pre.json', { timeout: WAIT_MS });
  await screenshot(page, 'task-page-filtered');
  await page.selectOption('#log-type', '');

  await openTaskPage(page, cancelledId);
  await page.waitForSelector('#event-log li[data-type="run_cancelled"]', { timeout: WAIT_MS });
  const cancelledRows = await logRows(page);
  check(cancelledRows.find((r) => r.type === 'run_cancelled').severity === 'warning', 'run_cancelled is coloured as a warning');
  check((await page.getAttribute('#task-title .badge', 'data-status')) === 'cancelled', 'the cancelled task page says cancelled');
  await screenshot(page, 'task-page-cancelled');
}

async function resumeScenario(page) {
  await overview(page);
  const id = await submitThroughForm(page, 'hello', { name: 'Resume', spin_ms: 4000 });
  await openTaskPage(page, id);
  // Lose the connection twice while events keep coming; the page resumes from its last seq.
  for (let drop = 1; drop <= 2; drop += 1) {
    const seen = (await logRows(page)).length;
    await page.waitForFunction((n) => document.querySelectorAll('#event-log li').length > n, seen, { timeout: WAIT_MS });
    const opens = Number(await page.getAttribute('#stream-state', 'data-opens'));
    await page.evaluate(() => window.taskhostDashboard.dropConnections());
    log(`     dropped the connections after ${seen}+ events`);
    await page.waitForFunction((n) => Number(document.getElementById('stream-state').dataset.opens) > n, opens, { timeout: WAIT_MS });
  }
  await page.waitForSelector('#event-log li[data-type="run_completed"]', { timeout: WAIT_MS });
  const rows = await logRows(page);
  const stored = (await rest(`/tasks/${encodeURIComponent(id)}/events?limit=10000`)).events;
  const sameTypes = rows.every((r, i) => stored[i] && stored[i].event_type === r.type && stored[i].seq === r.seq);
  check(contiguous(rows) && rows.length === stored.length && sameTypes,
    `after two lost connections the log has every event once, no gap, no duplicate (${rows.length} = ${stored.length} stored)`);
  await screenshot(page, 'resumed-stream');
}

async function cvdScenario(page, plugins) {
  if (!plugins.includes('cvd')) {
    log('     (cvd is not loaded: no CVD chart to check)');
    return;
  }
  await overview(page);
  await page.selectOption('#submit-plugin', 'cvd');
  await page.click('#submit-example');
  const example = JSON.parse(await page.inputValue('#submit-input'));
  example.simulation = { ...example.simulation, speedup: 500 };
  const id = await submitThroughForm(page, 'cvd', example);
  await page.click('#submit-result a');
  await page.waitForSelector('#cvd-chart svg polyline.series', { timeout: WAIT_MS });
  await page.waitForSelector('#event-log li[data-type="run_completed"]', { timeout: WAIT_MS * 2 });
  await page.waitForFunction(() => document.querySelectorAll('#cvd-chart .mark').length > 0 && document.querySelector('#cvd-chart line.target'), null, { timeout: WAIT_MS });
  const marks = await page.$$eval('#cvd-chart .mark', (els) => els.map((el) => el.getAttribute('class')));
  const label = await page.getAttribute('#cvd-chart svg', 'aria-label');
  const stored = (await rest(`/tasks/${encodeURIComponent(id)}/events?limit=10000`)).events;
  const raised = stored.filter((e) => e.event_type === 'warning')
    .flatMap((e) => (Array.isArray(e.data.warnings) ? e.data.warnings : [e.data]));
  const listed = await page.$$eval('#cvd-warnings li', (items) => items.length);
  check(marks.length === raised.length && listed === raised.length && marks.every((m) => /mark-(stress|adhesion|rate|other)/.test(m)),
    `the CVD chart draws thickness vs time, the target line and each warning the run raised (${marks.length} marks of ${raised.length}: ${[...new Set(marks)].join(', ')})`);
  check(/target 100/.test(label), `the chart is described for screen readers: "${label}"`);
  const warningRows = (await logRows(page)).filter((r) => r.type === 'warning');
  check(warningRows.length > 0 && warningRows.every((r) => r.severity === 'warning'), 'CVD warning events are coloured as warnings in the log');
  await screenshot(page, 'cvd-chart');
  return id;
}

async function dftScenario(page, plugins) {
  if (!plugins.includes('dft_job')) {
    log('     (dft is not loaded: no SCF plot to check)');
    return;
  }
  await overview(page);
  await page.selectOption('#submit-plugin', 'dft_job');
  await page.click('#submit-example');
  const example = JSON.parse(await page.inputValue('#submit-input'));
  example.pace_ms = 100;
  await submitThroughForm(page, 'dft_job', example);
  await page.click('#submit-result a');
  await page.waitForSelector('#event-log li[data-type="run_completed"], #event-log li[data-type="run_failed"]', { timeout: WAIT_MS * 2 });
  await page.waitForFunction(() => document.querySelectorAll('#scf-chart circle.dot').length >= 3, null, { timeout: WAIT_MS });
  const dots = await page.$$eval('#scf-chart circle.dot', (els) => els.length);
  const iterations = (await logRows(page)).filter((r) => r.type === 'scf_iteration').length;
  check(dots === iterations, `the SCF plot has one point of log10 |ΔE| per iteration (${dots} of ${iterations})`);
  await screenshot(page, 'dft-scf');
}

// ---------------------------------------------------------------------------------------------

async function main() {
  fs.mkdirSync(artifactDir, { recursive: true });
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium; cargo xtask ci does it)`);
  }
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const problems = [];
  let page;
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    page = await context.newPage();
    page.on('pageerror', (error) => problems.push(`uncaught in the page: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() !== 'error') return;
      const text = message.text();
      // The 401s of the sign-in flow are expected; the browser reports them as console errors.
      if (token && /status of 401/.test(text)) return;
      problems.push(`console error: ${text}`);
    });
    page.on('dialog', (dialog) => {
      problems.push(`unexpected dialog: ${dialog.message()}`);
      dialog.dismiss();
    });

    if (token) {
      await signInScenario(page);
      await signedInWorkScenario(page);
    } else {
      const plugins = (await rest('/plugins')).plugins.flatMap((p) => [p.name, ...(p.tasks || [])]);
      await overviewScenario(page);
      await validationScenario(page);
      const succeeded = await progressScenario(page);
      const cancelled = await cancelScenario(page);
      await taskPageScenario(page, succeeded, cancelled);
      await resumeScenario(page);
      await cvdScenario(page, plugins);
      await dftScenario(page, plugins);
    }
    check(problems.length === 0, `no errors in the page${problems.length ? `:\n  ${problems.join('\n  ')}` : ''}`);
  } catch (error) {
    checks.failed += checks.failed ? 0 : 1;
    console.error(`\n${error.stack || error}`);
    if (problems.length) console.error(`problems seen in the page:\n  ${problems.join('\n  ')}`);
    if (page) {
      await screenshot(page, 'failure').catch(() => {});
      const text = await page.evaluate(() => document.body.innerText).catch(() => '');
      console.error(`the page said:\n${text.slice(0, 3000)}`);
    }
  } finally {
    await browser.close();
  }
  console.log(`dashboard: ${checks.passed} passed, ${checks.failed} failed`);
  clearTimeout(watchdog);
  process.exit(checks.failed ? 1 : 0);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
