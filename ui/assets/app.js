'use strict';
// The genrelay dashboard: hash-routed pages over the admin views under
// /ui/api/. Everything shown is built with textContent (no HTML from data),
// and every action sends the session's CSRF token.

const main = document.getElementById('main');
let csrf = '';

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const k of kids.flat()) {
    if (k === null || k === undefined) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

async function api(path, opts = {}) {
  const headers = { accept: 'application/json' };
  if (opts.method === 'POST') headers['x-csrf-token'] = csrf;
  const r = await fetch('/ui/api/' + path, { method: opts.method || 'GET', headers, credentials: 'same-origin' });
  if (r.status === 401) {
    location.href = '/ui/login';
    throw new Error('logged out');
  }
  const body = await r.json().catch(() => null);
  if (!r.ok) throw new Error((body && body.error && body.error.message) || `HTTP ${r.status}`);
  return body;
}

const fmtTime = (t) => (t ? new Date(t).toLocaleString() : '');
const badge = (s) => el('span', { class: `badge ${s}` }, s);
const jobLink = (id) => el('a', { href: `#/job/${encodeURIComponent(id)}`, class: 'mono' }, id);

function table(cols, rows, empty) {
  if (!rows.length) return el('p', { class: 'muted empty' }, empty || 'Nothing here.');
  return el('table', {},
    el('thead', {}, el('tr', {}, cols.map((c) => el('th', {}, c[0])))),
    el('tbody', {}, rows.map((r) => el('tr', {}, cols.map((c) => el('td', {}, c[1](r)))))));
}

function page(title, ...kids) {
  main.replaceChildren(el('h1', {}, title), ...kids);
}

function failure(err) {
  main.append(el('p', { class: 'error' }, String(err.message || err)));
}

// ---- jobs ------------------------------------------------------------------

async function jobsPage(params) {
  const form = el('form', { class: 'filters', id: 'job-filters' },
    ...[['q', 'Job id or track id'], ['customer', 'Customer'], ['provider', 'Provider']].map(([n, p]) =>
      el('input', { name: n, placeholder: p, value: params.get(n) || '' })),
    el('select', { name: 'status' }, ['', 'queued', 'processing', 'succeeded', 'failed', 'canceled'].map((s) =>
      el('option', { value: s, selected: params.get('status') === s }, s || 'any state'))),
    el('input', { name: 'since', type: 'datetime-local', title: 'created since', value: params.get('since_local') || '' }),
    el('input', { name: 'until', type: 'datetime-local', title: 'created before', value: params.get('until_local') || '' }),
    el('button', { type: 'submit' }, 'Search'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) {
      if (!v) continue;
      if (k === 'since' || k === 'until') q.set(`${k}_local`, v);
      else q.set(k, v);
    }
    location.hash = `#/jobs?${q}`;
  });
  const results = el('div', { id: 'jobs' });
  page('Jobs', form, results);
  const q = new URLSearchParams();
  for (const k of ['q', 'customer', 'provider', 'status']) if (params.get(k)) q.set(k, params.get(k));
  for (const k of ['since', 'until']) {
    const v = params.get(`${k}_local`);
    if (v) q.set(k, String(new Date(v).getTime()));
  }
  let cursor = null;
  const more = el('button', { class: 'more', hidden: true }, 'More');
  const body = el('div');
  results.append(body, more);
  async function load() {
    if (cursor) q.set('cursor', cursor);
    const r = await api(`jobs?${q}`);
    body.append(table([
      ['Job', (j) => jobLink(j.job_id)], ['Customer', (j) => j.customer], ['Model', (j) => j.model_id],
      ['Provider', (j) => j.provider || ''], ['State', (j) => badge(j.status)],
      ['Created', (j) => fmtTime(j.created_at)], ['Completed', (j) => fmtTime(j.completed_at)],
    ], r.data, 'No job matches.'));
    cursor = r.next_cursor;
    more.hidden = !cursor;
  }
  more.addEventListener('click', () => load().catch(failure));
  await load();
}

// ---- one job's timeline ----------------------------------------------------------

function timelineOf(d) {
  const items = [{ at: d.job.created_at, kind: 'run', text: `submitted as ${d.job.model_id}` }];
  for (const e of d.events) items.push({ at: e.at, kind: e.kind, text: describeEvent(e) });
  for (const c of d.callbacks) items.push({ at: c.at, kind: 'callback', text: `${c.provider}: ${c.outcome} (${c.body_bytes} bytes)` });
  for (const dl of d.deliveries) {
    for (const a of dl.attempts) {
      const what = a.error ? a.error : `HTTP ${a.status_code}`;
      items.push({ at: a.at, kind: 'delivery', text: `${dl.event} → ${what}, ${Math.round(a.latency_ms)} ms`, body: a.body });
    }
  }
  return items.sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
}

function describeEvent(e) {
  const d = e.detail || {};
  switch (e.kind) {
    case 'submitted': return `${d.provider} accepted it (request ${d.request_id || '-'}, HTTP ${d.http_status})`;
    case 'submit_retry': return `${d.provider} submit retried (attempt ${d.attempt}): ${d.reason}`;
    case 'failover': return `failover ${d.from} → ${d.to}: ${d.code} ${d.reason || ''}`;
    case 'ended': return `ended ${d.status}${d.error ? ` (${d.error})` : ''} on ${d.provider || '-'}`;
    default: return typeof d === 'string' ? d : JSON.stringify(d);
  }
}

async function jobPage(id) {
  const d = await api(`jobs/${encodeURIComponent(id)}`);
  const j = d.job;
  const summary = el('dl', { class: 'summary' },
    ...[['Job', j.job_id], ['Customer', j.customer], ['Model', j.model_id], ['Provider', j.provider],
      ['Request', j.request_id], ['Track', j.track_id], ['Webhook', j.webhook_url],
      ['Created', fmtTime(j.created_at)], ['Completed', fmtTime(j.completed_at)]]
      .map(([k, v]) => [el('dt', {}, k), el('dd', {}, v || '-')]).flat(),
    el('dt', {}, 'State'), el('dd', {}, badge(j.status)));
  if (j.error) summary.append(el('dt', {}, 'Error'), el('dd', { class: 'error' }, `${j.error.code}: ${j.error.message}`));
  const timeline = el('ol', { class: 'timeline', id: 'timeline' }, timelineOf(d).map((it) =>
    el('li', { class: `t-${it.kind}` }, el('time', {}, fmtTime(it.at)), el('b', {}, it.kind), ' ', it.text,
      it.body ? el('details', {}, el('summary', {}, 'body sent'), el('pre', {}, it.body)) : null)));
  const deliveries = table([
    ['Delivery', (x) => el('span', { class: 'mono' }, x.delivery_id)], ['Event', (x) => x.event],
    ['State', (x) => badge(x.status)], ['Attempts', (x) => x.attempt_count],
    ['Next', (x) => fmtTime(x.next_attempt_at)], ['', (x) => retryButton(x.delivery_id, () => route())],
  ], d.deliveries, 'No webhook for this job.');
  page(`Job ${j.job_id}`, summary, el('h2', {}, 'Timeline'), timeline, el('h2', {}, 'Deliveries'), deliveries);
  if (j.output) main.append(el('h2', {}, 'Output'), el('pre', {}, JSON.stringify(j.output, null, 2)));
}

function retryButton(id, after) {
  return el('button', {
    class: 'retry', 'data-delivery': id,
    onclick: async (ev) => {
      ev.target.disabled = true;
      try {
        await api(`deliveries/${encodeURIComponent(id)}/retry`, { method: 'POST' });
        ev.target.textContent = 'Retrying…';
        setTimeout(after, 500);
      } catch (e) {
        ev.target.disabled = false;
        failure(e);
      }
    },
  }, 'Retry');
}

// ---- deliveries ----------------------------------------------------------

async function deliveriesPage(params) {
  const state = params.get('state') === 'failing' ? 'failing' : 'dead';
  const customer = params.get('customer') || '';
  const q = new URLSearchParams({ state });
  if (customer) q.set('customer', customer);
  const r = await api(`deliveries?${q}`);
  const tabs = el('p', { class: 'tabs' },
    el('a', { href: '#/deliveries?state=dead', class: state === 'dead' ? 'on' : '' }, 'Dead'), ' ',
    el('a', { href: '#/deliveries?state=failing', class: state === 'failing' ? 'on' : '' }, 'Failing'));
  const all = el('button', {
    id: 'retry-all', hidden: !r.data.length,
    onclick: async () => {
      const res = await api(`deliveries/retry?${q}`, { method: 'POST' });
      all.textContent = `Retried ${res.retried}`;
      setTimeout(route, 800);
    },
  }, `Retry all ${r.data.length}`);
  page('Deliveries', tabs, all, table([
    ['Delivery', (x) => el('span', { class: 'mono' }, x.delivery_id)], ['Job', (x) => jobLink(x.job_id)],
    ['Customer', (x) => x.customer], ['Event', (x) => x.event], ['URL', (x) => x.url],
    ['Attempts', (x) => x.attempt_count],
    ['Last', (x) => x.last_error || (x.last_status_code ? `HTTP ${x.last_status_code}` : '')],
    ['', (x) => retryButton(x.delivery_id, route)],
  ], r.data, state === 'dead' ? 'No dead delivery.' : 'No failing delivery.'));
}

// ---- scripts and providers ----------------------------------------------------

async function scriptsPage() {
  const r = await api('scripts');
  page('Scripts', table([
    ['Script', (s) => `${s.kind}/${s.name}`], ['Version', (s) => el('span', { class: 'mono' }, s.version || '')],
    ['Loaded', (s) => fmtTime(s.loaded_at)], ['Last error', (s) => (s.last_error ? el('span', { class: 'error' }, s.last_error) : '')],
  ], r.data));
}

async function providersPage() {
  const r = await api('providers');
  const rows = r.configured.map((name) => ({ name, ...(r.stats[name] || {}) }));
  page('Providers', el('p', { class: 'muted' }, `Jobs that ended in the last ${r.window_s / 60} minutes.`), table([
    ['Provider', (p) => p.name],
    ['Succeeded', (p) => p.succeeded || 0], ['Failed', (p) => p.failed || 0],
    ['Success rate', (p) => {
      const n = (p.succeeded || 0) + (p.failed || 0);
      return n ? `${Math.round((100 * (p.succeeded || 0)) / n)} %` : '-';
    }],
    ['Mean duration', (p) => (p.avg_duration_ms ? `${Math.round(p.avg_duration_ms)} ms` : '-')],
  ], rows, 'No provider is configured.'));
  // Key pools: each key by its id (never its value) with its state.
  const pools = Object.entries(r.keys || {});
  if (!pools.length) return;
  const keyRows = pools.flatMap(([provider, keys]) => keys.map((k) => ({ provider, ...k })));
  main.append(el('h2', {}, 'Key pools'),
    el('p', { class: 'muted' }, 'A key cools down after a 429 and is broken after a 401 or 403 until its value changes in the configuration.'),
    el('div', { id: 'keys' }, table([
      ['Provider', (k) => k.provider], ['Key', (k) => el('span', { class: 'mono' }, k.id)],
      ['State', (k) => badge(k.state)],
      ['Usable again', (k) => (k.state === 'cooling' ? `in ${k.cooling_s} s` : k.state === 'broken' ? 'after a config change' : '')],
    ], keyRows)));
}

// ---- routing ------------------------------------------------------------------

async function route() {
  const h = location.hash.slice(1) || '/jobs';
  const [path, qs] = h.split('?');
  const params = new URLSearchParams(qs || '');
  const parts = path.split('/').filter(Boolean);
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('on', a.dataset.page === parts[0] || (parts[0] === 'job' && a.dataset.page === 'jobs'));
  try {
    if (parts[0] === 'job' && parts[1]) await jobPage(decodeURIComponent(parts[1]));
    else if (parts[0] === 'deliveries') await deliveriesPage(params);
    else if (parts[0] === 'scripts') await scriptsPage();
    else if (parts[0] === 'providers') await providersPage();
    else await jobsPage(params);
  } catch (e) {
    failure(e);
  }
}

window.addEventListener('hashchange', route);
api('session').then((s) => {
  csrf = s.csrf;
  return route();
}).catch(failure);
