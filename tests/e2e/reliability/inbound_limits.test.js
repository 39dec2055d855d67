'use strict';
// Inbound limits: what a client can make genrelay hold before it is
// authenticated, and how much any client can.
//
// - A request with a body is authenticated from its headers (API key, or the
//   token in a callback URL) and answered 401 before any body byte is read:
//   raw connections announce 1 MiB bodies without Authorization and read the
//   answer right after their headers, then push the body anyway; genrelay's
//   VmRSS stays bounded. Clients that send head and body in one go still
//   read the answer (401, 413): genrelay lingers instead of resetting.
// - limits.buffered_bytes caps the bodies buffered by all connections of the
//   process: authenticated uploads that stall hold their share, past it the
//   next body is answered 503 from its headers; the memory goes back when
//   they close.
// - customers.NAME.rate: a burst, then 429 RATE_LIMITED with Retry-After,
//   one bucket per customer for the whole process (two workers), refilled
//   over time; another customer unaffected.
// - /metrics needs the admin key or metrics_token; metrics_listen serves
//   /metrics and /healthz open and nothing else.
// - An input nested deeper than the documented limit (64) is refused 400 at
//   submit; one exactly at the limit runs to the end through the Lua bridge.
//
// Figures go to build/reliability/inbound_limits.json.

const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const h = require('../lib/harness');
const R = require('../lib/reliability');

const FAL = 'fal-ai/flux/dev';
const RUN = `/v1/models/${FAL}/run`;
const MIB = 1024 * 1024;
const JSON_MAX_DEPTH = 64; // README "Limits"; core/jsonlimit.h
const T = { timeout: 180000 };

// Opens a connection and sends only the request head. Resolves once the
// answer's head has arrived (or the server closed, or timeoutMs passed):
// {sock, status, head, closed}. The socket stays open for the caller.
function announce(port, method, path, headers, timeoutMs = 15000) {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host: '127.0.0.1' });
    const chunks = [];
    let done = false;
    const st = { sock, status: null, head: '', closed: false, error: null };
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(st);
    };
    const timer = setTimeout(finish, timeoutMs);
    sock.setNoDelay(true);
    sock.on('connect', () => {
      let head = `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n`;
      for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
      sock.write(head + '\r\n');
    });
    sock.on('data', (d) => {
      chunks.push(d);
      const t = Buffer.concat(chunks).toString('latin1');
      const end = t.indexOf('\r\n\r\n');
      if (end >= 0) {
        st.head = t.slice(0, end);
        const m = /^HTTP\/1\.[01] (\d{3})/.exec(t);
        st.status = m ? Number(m[1]) : null;
        st.text = t;
        finish();
      }
    });
    sock.on('error', (e) => {
      st.error = e.code || e.message;
    });
    sock.on('close', () => {
      st.closed = true;
      finish();
    });
  });
}

// Writes n bytes of body in 64 KiB chunks; resolves with the bytes the
// socket took before it failed or closed (never rejects).
function pushBody(sock, n) {
  return new Promise((resolve) => {
    let sent = 0;
    const chunk = Buffer.alloc(64 * 1024, 'a');
    const done = () => resolve(sent);
    sock.once('error', done);
    sock.once('close', done);
    const more = () => {
      while (sent < n && !sock.destroyed) {
        const k = Math.min(chunk.length, n - sent);
        sent += k;
        if (!sock.write(k === chunk.length ? chunk : chunk.subarray(0, k))) {
          sock.once('drain', more);
          return;
        }
      }
      if (sent >= n) resolve(sent);
    };
    more();
  });
}

// Pool of raw connections with bounded concurrency (descriptor limits).
async function inBatches(n, size, fn) {
  const out = [];
  for (let i = 0; i < n; i += size) {
    const part = [];
    for (let k = i; k < Math.min(n, i + size); k++) part.push(fn(k));
    out.push(...(await Promise.all(part)));
  }
  return out;
}

// genrelay_buffered_bytes from /metrics.
async function buffered(gr) {
  const r = await h.request(gr.url + '/metrics', { headers: { authorization: `Bearer ${h.METRICS_TOKEN}` } });
  const m = /^genrelay_buffered_bytes (\d+)$/m.exec(r.text);
  return m ? Number(m[1]) : null;
}

function headerValue(head, name) {
  const m = new RegExp(`^${name}:\\s*(.*)$`, 'im').exec(head);
  return m ? m[1].trim() : null;
}

function nestedInput(levels) {
  // {"a":[{"a":[ ... 1 ... ]}]}: `levels` containers, a scalar at the bottom.
  let open = '';
  let close = '';
  for (let i = 0; i < levels; i++) {
    open += i % 2 ? '[' : '{"a":';
    close = (i % 2 ? ']' : '}') + close;
  }
  return open + '1' + close;
}

describe('inbound limits', () => {
  let sim;
  const figures = {};

  before(async () => {
    sim = await h.startProvsim();
  });
  after(async () => {
    if (sim) await sim.stop();
    R.report('inbound_limits', figures);
  });

  async function withGenrelay(config, fn) {
    const gr = await h.startGenrelay({ simUrl: sim.url, config });
    try {
      await fn(gr);
    } finally {
      await gr.stop();
      await gr.assertNoSanitizerReport();
      fs.rmSync(gr.dir, { recursive: true, force: true });
    }
  }

  test('unauthenticated bodies are refused 401 from the headers; memory stays bounded', T, async () => {
    await withGenrelay({}, async (gr) => {
      const pid = gr.child.pid;
      const N = 200;
      const rss0 = R.vmRssKb(pid);
      let rssMax = rss0;
      const targets = [
        () => ({ path: RUN, headers: {} }),
        () => ({ path: RUN, headers: { authorization: 'Bearer not-a-key' } }),
        () => ({ path: '/v1/callbacks/fal/job_0123456789abcdef/not-the-token', headers: {} }),
        () => ({ path: '/v1/deliveries/dlv_x/retry', headers: {} }),
        () => ({ path: '/v1/nowhere', headers: {} }),
      ];
      const results = await inBatches(N, 50, async (i) => {
        const t = targets[i % targets.length]();
        const c = await announce(gr.port, 'POST', t.path, { 'content-type': 'application/json', 'content-length': String(MIB), ...t.headers });
        // The answer came with no body byte sent; now push the body anyway.
        const pushed = c.closed ? 0 : await pushBody(c.sock, MIB);
        rssMax = Math.max(rssMax, R.vmRssKb(pid));
        c.sock.destroy();
        return { status: c.status, code: /"code":"([A-Z_]+)"/.exec(c.text || '')?.[1], pushed };
      });
      rssMax = Math.max(rssMax, R.vmRssKb(pid));
      for (const [i, r] of results.entries()) {
        assert.equal(r.status, 401, `connection ${i}: answered ${r.status} before its body`);
        assert.equal(r.code, 'UNAUTHORIZED', `connection ${i}`);
      }
      // Routes that need no auth and take no body keep working.
      assert.equal((await h.request(gr.url + '/healthz')).status, 200);
      assert.equal((await gr.api('GET', '/v1/jobs')).status, 200);
      const growthKb = rssMax - rss0;
      const pushedMb = results.reduce((a, r) => a + r.pushed, 0) / MIB;
      figures.unauthenticated = { connections: N, announced_bytes_each: MIB, body_bytes_pushed_mb: Math.round(pushedMb), rss_before_kb: rss0, rss_max_kb: rssMax, rss_growth_kb: growthKb };
      // 200 x 1 MiB buffered would be ~200 MB; the bound is generous.
      const bound = (R.sanitized(pid) ? 3 : 1) * 32 * 1024;
      assert.ok(growthKb < bound, `VmRSS grew ${growthKb} kB (bound ${bound} kB) for ${N} unauthenticated 1 MiB bodies`);
    });
  });

  test('an announced body over limits.body_bytes is 413 from the headers; a client sending its body anyway still reads the answer', T, async () => {
    await withGenrelay({ limits: { body_bytes: 65536 } }, async (gr) => {
      const c = await announce(gr.port, 'POST', RUN, { authorization: `Bearer ${h.ACME.api_key}`, 'content-type': 'application/json', 'content-length': String(65537) });
      c.sock.destroy();
      assert.equal(c.status, 413, c.text);
      assert.match(c.text, /PAYLOAD_TOO_LARGE/);
      // Clients that send head and body in one go (most do) must get the
      // answer, not a reset: genrelay lingers, dropping the body, then closes.
      const sendAll = (headers, len) =>
        new Promise((resolve) => {
          const sock = net.connect({ port: gr.port, host: '127.0.0.1' });
          const chunks = [];
          let error = null;
          sock.on('connect', () => {
            let head = `POST ${RUN} HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${len}\r\n`;
            for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
            sock.write(head + '\r\n');
            sock.write(Buffer.alloc(len, 'a'));
          });
          sock.on('data', (d) => chunks.push(d));
          sock.on('error', (e) => (error = e.code || e.message));
          sock.on('close', () => {
            const t = Buffer.concat(chunks).toString('latin1');
            const m = /^HTTP\/1\.[01] (\d{3})/.exec(t);
            resolve({ status: m ? Number(m[1]) : null, error });
          });
        });
      const got = [];
      for (let i = 0; i < 10; i++) {
        got.push(await sendAll({ authorization: `Bearer ${h.ACME.api_key}` }, 4 * MIB));
        got.push(await sendAll({}, 4 * MIB));
      }
      for (const [i, r] of got.entries()) {
        assert.equal(r.status, i % 2 ? 401 : 413, `client ${i}: ${JSON.stringify(r)}`);
        assert.equal(r.error, null, `client ${i}: the answer was followed by a reset`);
      }
      figures.early_answers = { clients: got.length, body_bytes_each: 4 * MIB, answered: got.filter((r) => r.status).length, resets: got.filter((r) => r.error).length };
    });
  });

  test('authenticated stalled uploads past limits.buffered_bytes get 503; memory is given back', T, async () => {
    const BUDGET = 24; // MiB
    await withGenrelay({ workers: 2, limits: { body_bytes: MIB, buffered_bytes: BUDGET * MIB, connection_timeout_s: 120 } }, async (gr) => {
      const pid = gr.child.pid;
      const auth = { authorization: `Bearer ${h.ACME.api_key}`, 'content-type': 'application/json' };
      const rss0 = R.vmRssKb(pid);
      const rounds = [];
      // Two rounds: glibc's allocator keeps freed memory after the first big
      // frees unless genrelay gives it back, which shows in the second.
      for (let round = 0; round < 2; round++) {
        const held = [];
        for (let i = 0; i < BUDGET; i++) {
          const c = await announce(gr.port, 'POST', RUN, { ...auth, 'content-length': String(MIB) }, 300);
          assert.equal(c.status, null, `round ${round}: stalled upload ${i} answered ${c.status} before its body: ${c.text}`);
          assert.equal(c.closed, false);
          held.push(c);
        }
        // Every stalled upload sends all but the last byte of its body.
        await Promise.all(held.map((c) => pushBody(c.sock, MIB - 1)));
        // Every stalled upload holds its Content-Length (reserved from its headers).
        await h.waitFor(async () => (await buffered(gr)) === BUDGET * MIB, 30000, { what: `genrelay_buffered_bytes = ${BUDGET} MiB`, interval: 100 });
        const full = await h.waitFor(() => {
          const kb = R.vmRssKb(pid);
          return kb - rss0 > (BUDGET * 1024) / 2 && kb;
        }, 30000, { what: 'the stalled bodies buffered' });
        // The budget is spent: the next body, any size, is 503 from its headers.
        const over = [];
        for (const len of [MIB, 100]) {
          const c = await announce(gr.port, 'POST', RUN, { ...auth, 'content-length': String(len) });
          c.sock.destroy();
          over.push(c.status);
          assert.equal(c.status, 503, `a ${len}-byte body past the budget: ${c.text}`);
          assert.match(c.text, /UNAVAILABLE/);
          assert.equal(headerValue(c.head, 'retry-after'), '1');
        }
        // Requests without a body are served.
        assert.equal((await gr.api('GET', '/v1/jobs')).status, 200);
        for (const c of held) c.sock.destroy();
        // The reservations come back, and a normal submit is accepted again.
        await h.waitFor(async () => (await buffered(gr)) === 0, 30000, { what: 'genrelay_buffered_bytes back to 0', interval: 100 });
        const again = await gr.api('POST', RUN, { input: { prompt: 'after the stall' } });
        assert.equal(again.status, 202, again.text);
        const after = await h.waitFor(() => {
          const kb = R.vmRssKb(pid);
          return kb - rss0 < 8 * 1024 && kb;
        }, 10000, { what: 'VmRSS back near its start', interval: 200 }).catch(() => R.vmRssKb(pid));
        rounds.push({ rss_full_kb: full, rss_after_close_kb: after, over_budget_statuses: over });
      }
      const last = rounds[rounds.length - 1];
      figures.buffered = { budget_mb: BUDGET, stalled_uploads: BUDGET, bytes_each: MIB - 1, rss_before_kb: rss0, rounds };
      if (!R.sanitized(pid)) {
        assert.ok(last.rss_after_close_kb - rss0 < 8 * 1024, `VmRSS ${last.rss_after_close_kb} kB after the stalled uploads closed, ${rss0} kB before: memory not given back`);
      }
    });
  });

  test('rate limits: a burst, then 429 RATE_LIMITED with Retry-After; one bucket per customer for the process', T, async () => {
    const config = {
      workers: 2,
      customers: {
        acme: { rate: { per_s: 0.01, burst: 3 } },
        initech: { api_key: 'initech-key', webhook_secret: h.ACME.webhook_secret, rate: { per_s: 2, burst: 1 } },
      },
    };
    await withGenrelay(config, async (gr) => {
      const acme = gr.api;
      const statuses = [];
      let limited = null;
      for (let i = 0; i < 10; i++) {
        const r = await acme('GET', '/v1/jobs');
        statuses.push(r.status);
        if (r.status === 429) limited = limited || r;
      }
      // Fresh connections spread over both workers: still exactly the burst.
      assert.deepEqual(statuses, [200, 200, 200, 429, 429, 429, 429, 429, 429, 429]);
      assert.equal(limited.body.error.code, 'RATE_LIMITED');
      const ra = limited.headers['retry-after'];
      assert.match(ra || '', /^[1-9][0-9]*$/, `Retry-After: ${ra}`);
      assert.ok(Number(ra) >= 1 && Number(ra) <= 100, `Retry-After ${ra} for 0.01/s`);
      // A submit is counted too, and refused from its headers (body never read).
      const c = await announce(gr.port, 'POST', RUN, { authorization: `Bearer ${h.ACME.api_key}`, 'content-type': 'application/json', 'content-length': String(MIB) });
      c.sock.destroy();
      assert.equal(c.status, 429, c.text);
      assert.match(headerValue(c.head, 'retry-after') || '', /^[1-9][0-9]*$/);
      // Another customer is unaffected.
      for (let i = 0; i < 10; i++) assert.equal((await gr.as(h.GLOBEX.api_key)('GET', '/v1/jobs')).status, 200);
      const g = await gr.as(h.GLOBEX.api_key)('POST', RUN, { input: { prompt: 'not limited' } });
      assert.equal(g.status, 202, g.text);
      // Tokens come back over time: initech (2/s, burst 1) is limited, then served again.
      const initech = gr.as('initech-key');
      let sawLimit = false;
      for (let i = 0; i < 50 && !sawLimit; i++) sawLimit = (await initech('GET', '/v1/jobs')).status === 429;
      assert.ok(sawLimit, 'initech was never limited');
      await h.waitFor(async () => (await initech('GET', '/v1/jobs')).status === 200, 10000, { what: 'a token refilled', interval: 100 });
      figures.rate = { burst: 3, per_s: 0.01, tried: statuses.length, allowed: statuses.filter((s) => s === 200).length, retry_after_s: Number(ra), workers: 2 };
    });
  });

  test('/metrics needs the admin key or metrics_token; metrics_listen serves it open', T, async () => {
    const mport = await h.freePort();
    await withGenrelay({ metrics_listen: `127.0.0.1:${mport}` }, async (gr) => {
      const get = (url, key) => h.request(url, { headers: key ? { authorization: `Bearer ${key}` } : {} });
      const none = await get(gr.url + '/metrics');
      assert.equal(none.status, 401, none.text);
      assert.equal(none.body.error.code, 'UNAUTHORIZED');
      assert.equal((await get(gr.url + '/metrics', h.ACME.api_key)).status, 401, 'a customer key is not enough');
      assert.equal((await get(gr.url + '/metrics', 'metrics-test-token-012345678X')).status, 401);
      for (const key of [h.ADMIN_KEY, h.METRICS_TOKEN]) {
        const r = await get(gr.url + '/metrics', key);
        assert.equal(r.status, 200, r.text);
        assert.match(r.text, /^genrelay_http_requests_total \d+$/m);
      }
      const murl = `http://127.0.0.1:${mport}`;
      const open = await get(murl + '/metrics');
      assert.equal(open.status, 200, open.text);
      assert.match(open.text, /^genrelay_http_requests_total \d+$/m);
      assert.equal((await get(murl + '/healthz')).status, 200);
      // Nothing else is served there, with or without a key.
      assert.equal((await get(murl + '/v1/jobs', h.ACME.api_key)).status, 404);
      const post = await h.request(murl + RUN, { method: 'POST', headers: { authorization: `Bearer ${h.ACME.api_key}` }, body: { input: { prompt: 'x' } } });
      assert.equal(post.status, 404, post.text);
      figures.metrics = { api_listener_without_key: none.status, metrics_listen_open: open.status };
    });
  });

  test(`input nested deeper than ${JSON_MAX_DEPTH} levels is 400 at submit; at the limit it runs`, T, async () => {
    await withGenrelay({}, async (gr) => {
      const { waitTerminal } = h.jobHelpers(gr);
      const deep = await gr.api('POST', RUN, `{"input":{"prompt":"deep","x":${nestedInput(JSON_MAX_DEPTH)}}}`, { 'content-type': 'application/json' });
      assert.equal(deep.status, 400, deep.text);
      assert.equal(deep.body.error.code, 'INVALID_REQUEST');
      assert.match(deep.body.error.message, /deeper than 64/);
      // {"prompt":..,"x":<63 levels>} is 64 levels: accepted and run to the end.
      const ok = await gr.api('POST', RUN, `{"input":{"prompt":"deep","x":${nestedInput(JSON_MAX_DEPTH - 1)}}}`, { 'content-type': 'application/json' });
      assert.equal(ok.status, 202, ok.text);
      const j = await waitTerminal(ok.body.job_id);
      assert.equal(j.status, 'succeeded', JSON.stringify(j).slice(0, 400));
      figures.depth = { limit: JSON_MAX_DEPTH, over_limit_status: deep.status, at_limit: j.status };
    });
  });
});
