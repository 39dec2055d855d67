'use strict';
// Slow and many clients: slow-loris connections dribbling headers
// byte by byte, 10,000 idle connections, and a webhook receiver that never
// answers. genrelay's memory stays bounded (VmRSS from /proc), slow and idle
// connections time out (limits.connection_timeout_s), deliveries to the
// silent receiver time out (webhooks.timeout_s) and are retried, and another
// customer's traffic (submit, callback, delivery) is served throughout.

const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const h = require('../lib/harness');
const R = require('../lib/reliability');

const FAL = 'fal-ai/flux/dev';
const T = { timeout: 180000 };

// The soft limit on open files, which bounds how many connections one
// process can hold (Node raises its soft limit to the hard one).
function fdLimit(pid = 'self') {
  try {
    const m = /Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/.exec(fs.readFileSync(`/proc/${pid}/limits`, 'utf8'));
    return m ? (m[1] === 'unlimited' ? 1 << 20 : Number(m[1])) : 1024;
  } catch (e) {
    return 1024;
  }
}

function connect(port) {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    const st = { sock: s, open: false, closedAt: null, error: null };
    s.setNoDelay(true);
    s.on('connect', () => {
      st.open = true;
      resolve(st);
    });
    s.on('data', () => {});
    s.on('error', (e) => {
      st.error = e.code || e.message;
      if (!st.open) resolve(st);
    });
    s.on('close', () => {
      st.closedAt = Date.now();
      if (!st.open) resolve(st);
    });
  });
}

describe('slow and many clients', () => {
  let sim;
  let rcv;
  const figures = {};

  before(async () => {
    sim = await h.startProvsim();
    rcv = await R.startCountingReceiver({ secrets: { '/globex': h.GLOBEX.webhook_secret } });
  });
  after(async () => {
    if (rcv) await rcv.stop();
    if (sim) await sim.stop();
    R.report('slow_clients', figures);
  });

  async function withGenrelay(config, fn) {
    const gr = await h.startGenrelay({
      simUrl: sim.url,
      config: h.deepMerge({ jobs: { poll_after_s: 1, poll_interval_s: 0.3, poll_max_s: 1 }, webhooks: { retry: [0.5, 1], timeout_s: 2 } }, config),
    });
    try {
      await fn(gr);
    } finally {
      await gr.stop();
      await gr.assertNoSanitizerReport();
      fs.rmSync(gr.dir, { recursive: true, force: true });
    }
  }

  // Another customer's whole round trip: submit, provider callback, signed
  // delivery. Resolves the job id once delivered (bounded).
  async function globexRoundTrip(gr, tag) {
    const api = gr.as(h.GLOBEX.api_key);
    const r = await api('POST', `/v1/models/${FAL}/run`, { input: { prompt: tag, sim: { delay_ms: 100 } }, webhook_url: `${rcv.url}/globex/${tag}` }, {}, { timeoutMs: 20000 });
    assert.equal(r.status, 202, r.text);
    const id = r.body.job_id;
    await h.waitFor(() => rcv.delivered(id).length >= 1, 30000, { what: `globex job ${tag} delivered` });
    assert.equal(rcv.delivered(id)[0].verified, true);
    return id;
  }

  test('slow-loris: headers dribbled byte by byte are cut off; memory bounded; others served', T, async () => {
    const timeoutS = 2;
    await withGenrelay({ limits: { connection_timeout_s: timeoutS } }, async (gr) => {
      const pid = gr.child.pid;
      const rss0 = R.vmRssKb(pid);
      const N = 200;
      const conns = [];
      for (let i = 0; i < N; i++) conns.push(await connect(gr.port));
      const opened = conns.filter((c) => c.open).length;
      const t0 = Date.now();
      // Each connection sends one byte of an endless header every 400 ms,
      // always inside the idle timeout, for at most 10 x the timeout.
      const line = 'POST /v1/models/fal-ai/flux/dev/run HTTP/1.1\r\nHost: x\r\nX-Slow: ' + 'a'.repeat(100000);
      let bytes = 0;
      const dribble = setInterval(() => {
        for (const c of conns) {
          if (c.closedAt || c.error) continue;
          const k = c.sent || 0;
          c.sent = k + 1;
          c.sock.write(line[k % line.length]);
          bytes++;
        }
      }, 400);
      let served = 0;
      let rssMax = rss0;
      try {
        // Others are served while the dribblers hang on.
        for (let i = 0; i < 3; i++) {
          await globexRoundTrip(gr, `loris-${i}`);
          served++;
          rssMax = Math.max(rssMax, R.vmRssKb(pid));
        }
        await h
          .waitFor(() => conns.every((c) => c.closedAt || c.error), timeoutS * 10000, { interval: 200, what: 'every slow-loris connection cut off' })
          .catch(() => {});
      } finally {
        clearInterval(dribble);
      }
      rssMax = Math.max(rssMax, R.vmRssKb(pid));
      const cut = conns.filter((c) => c.closedAt || c.error).length;
      const lifetimes = conns.filter((c) => c.closedAt).map((c) => c.closedAt - t0);
      for (const c of conns) c.sock.destroy();
      Object.assign(figures, {
        slowloris_connections: opened,
        slowloris_bytes_dribbled: bytes,
        slowloris_cut_off: cut,
        slowloris_longest_life_ms: lifetimes.length ? Math.max(...lifetimes) : null,
        slowloris_rss_growth_kb: rssMax - rss0,
        slowloris_others_served: served,
      });
      assert.equal(served, 3);
      assert.equal(
        cut,
        opened,
        `${opened - cut} of ${opened} connections dribbling one header byte every 400 ms were still open after ${timeoutS * 10} s; ` +
          `limits.connection_timeout_s = ${timeoutS} is an idle timeout, so a client that keeps sending a byte now and then holds a connection (and its slot under max_connections) forever`,
      );
      const bound = R.sanitized(pid) ? 256 * 1024 : 64 * 1024;
      assert.ok(rssMax - rss0 < bound, `RSS grew ${rssMax - rss0} kB for ${N} slow connections (bound ${bound} kB)`);
    });
  });

  test('10,000 idle connections: memory bounded, others served, idle ones time out', T, async () => {
    const timeoutS = 8;
    const limit = Math.min(fdLimit(), fdLimit(process.pid));
    const N = Math.min(10000, Math.max(100, limit - 1000));
    await withGenrelay({ limits: { connection_timeout_s: timeoutS, max_connections: N + 100 } }, async (gr) => {
      const pid = gr.child.pid;
      assert.ok(fdLimit(pid) >= N + 100, `genrelay may open ${fdLimit(pid)} files; the test needs ${N + 100}`);
      const rss0 = R.vmRssKb(pid);
      const t0 = Date.now();
      const conns = [];
      for (let i = 0; i < N; i += 250) {
        const batch = [];
        for (let k = i; k < Math.min(N, i + 250); k++) batch.push(connect(gr.port));
        conns.push(...(await Promise.all(batch)));
      }
      const openMs = Date.now() - t0;
      const opened = conns.filter((c) => c.open && !c.closedAt).length;
      const fds = R.openFds(pid);
      // With all of them open: others are served.
      const rssOpen = R.vmRssKb(pid);
      await globexRoundTrip(gr, 'idle-1');
      const stillOpen = conns.filter((c) => c.open && !c.closedAt).length;
      // Idle ones are closed by genrelay after the timeout.
      await h.waitFor(() => conns.every((c) => c.closedAt || c.error), (timeoutS + 20) * 1000, { interval: 250, what: 'idle connections closed by genrelay' }).catch(() => {});
      const closed = conns.filter((c) => c.closedAt || c.error).length;
      const rssAfter = R.vmRssKb(pid);
      for (const c of conns) c.sock.destroy();
      await globexRoundTrip(gr, 'idle-2');
      Object.assign(figures, {
        idle_connections: opened,
        idle_connections_fd_limit: limit,
        idle_open_ms: openMs,
        idle_still_open_when_served: stillOpen,
        idle_genrelay_fds: fds,
        idle_rss_before_kb: rss0,
        idle_rss_open_kb: rssOpen,
        idle_rss_after_kb: rssAfter,
        idle_closed_by_timeout: closed,
      });
      assert.ok(opened >= N * 0.99, `opened ${opened} of ${N}`);
      assert.equal(closed, conns.length, `${conns.length - closed} idle connections still open ${timeoutS + 20} s after the ${timeoutS} s timeout`);
      // Bounded: MHD's per-connection pool is 64 KB; the whole must stay far below N x 64 KB.
      const bound = ((R.sanitized(pid) ? 2 : 1) * N * 64) / 2;
      assert.ok(rssOpen - rss0 < bound, `RSS grew ${rssOpen - rss0} kB for ${opened} idle connections (bound ${bound} kB)`);
    });
  });

  test('connections beyond limits.max_connections wait outside (not accepted); genrelay stays within its limit and serves again', T, async () => {
    const max = 50;
    await withGenrelay({ limits: { connection_timeout_s: 3, max_connections: max } }, async (gr) => {
      const pid = gr.child.pid;
      const fds0 = R.openFds(pid);
      const conns = [];
      for (let i = 0; i < max + 30; i++) conns.push(await connect(gr.port));
      await h.sleep(500);
      // Connections over the limit stay in the kernel's backlog: genrelay
      // holds at most max of them.
      const fdsFlooded = R.openFds(pid);
      // Once the idle ones time out genrelay takes the waiting ones, times
      // them out too, and serves others again.
      await h.waitFor(() => conns.every((c) => c.closedAt || c.error), 30000, { interval: 250, what: 'every flood connection closed by genrelay' });
      await globexRoundTrip(gr, 'limit');
      Object.assign(figures, { limit_connections_tried: conns.length, limit_max_connections: max, limit_fds_flooded: fdsFlooded - fds0 });
      assert.ok(fdsFlooded - fds0 <= max + 2, `genrelay holds ${fdsFlooded - fds0} descriptors more with ${conns.length} connections waiting; the limit is ${max}`);
    });
  });

  test('a receiver that never answers: deliveries time out and retry, memory bounded, others delivered', T, async () => {
    const hole = await R.startBlackhole();
    try {
      await withGenrelay({ limits: { max_inflight: 64 }, webhooks: { retry: [0.5, 0.5], timeout_s: 1 } }, async (gr) => {
        const pid = gr.child.pid;
        const rss0 = R.vmRssKb(pid);
        const N = 300;
        const ids = [];
        await R.pool(N, 16, async (i) => {
          const r = await gr.api('POST', `/v1/models/${FAL}/run`, { input: { prompt: `hole-${i}`, sim: { delay_ms: 50 } }, webhook_url: `${hole.url}/never` });
          assert.equal(r.status, 202, r.text);
          ids.push(r.body.job_id);
        });
        // Meanwhile another customer is served.
        const others = [];
        for (let i = 0; i < 5; i++) others.push(await globexRoundTrip(gr, `hole-other-${i}`));
        let rssMax = R.vmRssKb(pid);
        // Every delivery to the silent receiver ends dead after 3 timed-out tries.
        const dead = new Set();
        await h.waitFor(
          async () => {
            rssMax = Math.max(rssMax, R.vmRssKb(pid));
            for (const id of ids) {
              if (dead.has(id)) continue;
              const r = await gr.api('GET', `/v1/jobs/${id}/deliveries`);
              const d = r.body && r.body.data && r.body.data[0];
              if (d && d.status === 'dead') dead.add(id);
            }
            return dead.size === ids.length;
          },
          120000,
          { interval: 500, what: 'deliveries to the silent receiver dead' },
        );
        const r = await gr.api('GET', `/v1/jobs/${ids[0]}/deliveries`);
        const atts = r.body.data[0].attempts;
        assert.equal(atts.length, 3, JSON.stringify(atts));
        for (const a of atts) assert.ok(a.error && /time|Timeout/i.test(a.error), `a timeout: ${JSON.stringify(a)}`);
        await h.waitFor(() => hole.open() === 0, 20000, { what: 'genrelay closed its connections to the silent receiver' });
        Object.assign(figures, {
          silent_receiver_deliveries: N,
          silent_receiver_connections: hole.accepted(),
          silent_receiver_dead: dead.size,
          silent_receiver_others_delivered: others.length,
          silent_receiver_rss_growth_kb: rssMax - rss0,
        });
        // Under ASan freed memory stays resident in its quarantine (256 MB by default).
        const bound = R.sanitized(pid) ? 512 * 1024 : 128 * 1024;
        assert.ok(rssMax - rss0 < bound, `RSS grew ${rssMax - rss0} kB (bound ${bound} kB)`);
      });
    } finally {
      await hole.close();
    }
  });
});
