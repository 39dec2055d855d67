'use strict';
// SSRF, end to end, loopback only: with allow_private = false no
// webhook, however spelled, reaches a receiver listening on loopback.
//
// - Every literal spelling of a loopback or unspecified address (decimal,
//   octal, hex, short forms, IPv4-mapped and -compatible IPv6, zone ids,
//   userinfo tricks, trailing dots, percent-encoding) and every non-HTTP
//   scheme is refused at submit: 400 INVALID_REQUEST.
// - Names that resolve to loopback at delivery time pass the syntax check
//   (genrelay resolves nothing at submit) and are refused when curl opens
//   the socket: the attempt fails with "address not allowed". The names come
//   from tests/e2e/shim/resolve_shim.c (LD_PRELOAD), which answers
//   *.genrelay.test from a file the test rewrites; also /etc/hosts entries.
// - DNS rebinding: a name that did not resolve to loopback when submitted
//   and does when delivered is refused at connect.
// - A URL stored while allow_private was true and delivered after a restart
//   with allow_private = false is refused at connect.
// - Redirects are never followed: a receiver answering 302 to the trap (or to
//   file://) is not followed.
// The trap receiver listens on the loopback port every spelling names and
// must receive nothing. Addresses outside loopback are covered by the unit
// tests (tests/unit/test_urlguard.c, test_ssrf_matrix.c).

const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const h = require('../lib/harness');
const R = require('../lib/reliability');

const FAL = 'fal-ai/flux/dev';
const RUN = `/v1/models/${FAL}/run`;
const T = { timeout: 120000 };

function shimPath() {
  const cands = [process.env.GENRELAY_RESOLVE_SHIM, path.join(path.dirname(h.BIN), 'libgenrelay_resolve_shim.so')].filter(Boolean);
  return cands.find((p) => fs.existsSync(p)) || null;
}

function ipv6LoopbackWorks() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(0, '::1', () => s.close(() => resolve(true)));
  });
}

describe('SSRF: nothing reaches loopback with allow_private = false', () => {
  let sim;
  let trap; // a receiver on 127.0.0.1 that must get nothing
  let trap6; // the same on ::1, when IPv6 loopback exists
  let gr;
  let hostsFile;
  const shim = shimPath();
  const figures = { spellings_refused_at_submit: 0, refused_at_connect: 0, redirects_not_followed: 0, schemes: 0 };

  before(async () => {
    sim = await h.startProvsim();
    trap = await R.startCountingReceiver();
    if (await ipv6LoopbackWorks()) trap6 = await R.startCountingReceiver({ host: '::1', port: trap.port }).catch(() => R.startCountingReceiver({ host: '::1' }));
    hostsFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'genrelay-ssrf-')), 'hosts');
    fs.writeFileSync(hostsFile, '');
    const env = {};
    if (shim) {
      env.LD_PRELOAD = shim;
      env.GENRELAY_SHIM_HOSTS = hostsFile;
      // An ASan build must tolerate a preloaded library ahead of its runtime.
      env.ASAN_OPTIONS = [process.env.ASAN_OPTIONS, 'verify_asan_link_order=0'].filter(Boolean).join(':');
    }
    gr = await h.startGenrelay({
      simUrl: sim.url,
      env,
      config: {
        webhooks: { require_https: false, allow_private: false, retry: [0.2], timeout_s: 2 },
        jobs: { poll_after_s: 1, poll_interval_s: 0.3 },
      },
    });
  });

  after(async () => {
    R.report('ssrf_e2e', figures);
    await R.shutdown(gr, trap, trap6, sim, () => hostsFile && fs.rmSync(path.dirname(hostsFile), { recursive: true, force: true }));
  });

  const P = () => trap.port;

  async function refusedAtSubmit(url, what) {
    const r = await gr.api('POST', RUN, { input: { prompt: 'ssrf' }, webhook_url: url });
    assert.equal(r.status, 400, `${what} ${JSON.stringify(url)}: ${r.status} ${r.text}`);
    assert.equal(r.body.error.code, 'INVALID_REQUEST');
    assert.match(r.body.error.message, /webhook_url/);
    assert.ok(!r.body.error.message.includes('hunter2'), 'userinfo never echoed');
    figures.spellings_refused_at_submit++;
  }

  // Submits url (which passes the syntax check), lets the job finish and
  // checks that every delivery attempt failed with "address not allowed".
  async function refusedAtConnect(url, what, api = gr.api, g = gr) {
    const r = await api('POST', RUN, { input: { prompt: 'ssrf', sim: { delay_ms: 50 } }, webhook_url: url });
    assert.equal(r.status, 202, `${what} ${url} passes the syntax check: ${r.text}`);
    const id = r.body.job_id;
    const d = await h.waitFor(async () => {
      const x = await g.api('GET', `/v1/jobs/${id}/deliveries`);
      const dd = x.body.data && x.body.data[0];
      return dd && dd.status === 'dead' && dd;
    }, 30000, { what: `${what}: delivery dead` });
    for (const a of d.attempts) assert.match(String(a.error), /address not allowed/, `${what}: ${JSON.stringify(a)}`);
    figures.refused_at_connect++;
    return id;
  }

  test('literal loopback and unspecified spellings are refused at submit', T, async (t) => {
    const p = P();
    const spellings = [
      `http://127.0.0.1:${p}/`, `http://127.0.0.2:${p}/`, `http://127.255.255.254:${p}/`, `http://127.1:${p}/`, `http://127.0.1:${p}/`,
      `http://2130706433:${p}/`, `http://0x7f000001:${p}/`, `http://0X7F000001:${p}/`, `http://017700000001:${p}/`, `http://0177.0.0.1:${p}/`,
      `http://0177.1:${p}/`, `http://0x7f.1:${p}/`, `http://0x7f.0.0.1:${p}/`, `http://0x7f.0x0.0x0.0x1:${p}/`, `http://0177.0000.0000.0001:${p}/`,
      `http://127.000.000.001:${p}/`, `http://127.0.0.1.:${p}/`, `http://0:${p}/`, `http://0.0.0.0:${p}/`, `http://0x0:${p}/`, `http://00:${p}/`,
      `http://[::1]:${p}/`, `http://[0:0:0:0:0:0:0:1]:${p}/`, `http://[::0:1]:${p}/`, `http://[0000::1]:${p}/`, `http://[::]:${p}/`,
      `http://[::ffff:127.0.0.1]:${p}/`, `http://[::ffff:7f00:1]:${p}/`, `http://[::FFFF:7F00:0001]:${p}/`, `http://[0:0:0:0:0:ffff:127.0.0.1]:${p}/`,
      `http://[::127.0.0.1]:${p}/`, `http://[::7f00:1]:${p}/`, `http://[64:ff9b::127.0.0.1]:${p}/`, `http://[::ffff:0.0.0.0]:${p}/`,
      `http://[::1%25lo]:${p}/`, `http://[::1%lo]:${p}/`, `http://[fe80::1%25lo]:${p}/`, `http://[::ffff:127.0.0.1%25lo]:${p}/`,
      `http://good.example@127.0.0.1:${p}/`, `http://user:hunter2@127.0.0.1:${p}/`, `http://127.0.0.1:${p}@good.example/`, `http://good.example:${p}@127.0.0.1:${p}/`,
      `http://good.example\\@127.0.0.1:${p}/`, `http://127.0.0.1%2f@good.example/`, `http://%31%32%37.0.0.1:${p}/`, `http://127%2e0%2e0%2e1:${p}/`,
      `http://127\u30020\u30020\u30021:${p}/`, `http://\uff11\uff12\uff17.0.0.1:${p}/`, `http://127.0.0.1\t:${p}/`, ` http://127.0.0.1:${p}/`,
      `http:/127.0.0.1:${p}/`, `http:127.0.0.1:${p}/`, `http:\\\\127.0.0.1:${p}/`, `//127.0.0.1:${p}/`, `127.0.0.1:${p}`,
      `http://localhost:${p}/`, `http://LOCALHOST:${p}/`, `http://localhost.:${p}/`, `http://foo.localhost:${p}/`, `http://a.b.localhost.:${p}/`,
      `http://LocalHost:${p}/x`, `http://metadata.google.internal:${p}/`, `http://metadata:${p}/`, `http://ip6-localhost:${p}/`,
      `HTTP://127.0.0.1:${p}/`, `http://127.0.0.1:${p}/#@good.example`, `http://[::1]:${p}@good.example/`,
    ];
    // Dotless names of /etc/hosts (they resolve to a local address; search domains make any dotless name risky).
    const hostsNames = [];
    try {
      for (const line of fs.readFileSync('/etc/hosts', 'utf8').split('\n')) {
        const f = line.replace(/#.*/, '').trim().split(/\s+/);
        if (f.length >= 2 && /^(127\.|::1$|0\.0\.0\.0$)/.test(f[0])) for (const n of f.slice(1)) hostsNames.push(n);
      }
    } catch (e) {
      /* no /etc/hosts */
    }
    for (const n of hostsNames.filter((x) => !x.includes('.'))) spellings.push(`http://${n}:${p}/`);
    // Each spelling is a test of its own.
    for (const u of spellings) await t.test(JSON.stringify(u), () => refusedAtSubmit(u, 'spelling'));
    figures.etc_hosts_names = hostsNames.length;
  });

  test('non-HTTP schemes are refused at submit', T, async (t) => {
    const p = P();
    for (const u of [
      'file:///etc/passwd', 'file://localhost/etc/passwd', `gopher://127.0.0.1:${p}/_POST%20/`, `dict://127.0.0.1:${p}/info`, `ftp://127.0.0.1:${p}/`,
      `ldap://127.0.0.1:${p}/`, `telnet://127.0.0.1:${p}/`, `tftp://127.0.0.1:${p}/x`, `smtp://127.0.0.1:${p}/`, `ws://127.0.0.1:${p}/`, `wss://example.com/`,
      `sftp://example.com/`, `scp://example.com/`, 'jar:http://example.com!/', 'data:text/plain,hi', 'javascript:alert(1)', `mailto:a@127.0.0.1`,
      `https+unix://%2Ftmp%2Fsock/`, `unix:///tmp/sock`, `httpx://127.0.0.1:${p}/`, `h%74tp://127.0.0.1:${p}/`,
    ]) {
      await t.test(JSON.stringify(u), async () => {
        await refusedAtSubmit(u, 'scheme');
        figures.schemes++;
      });
    }
  });

  test('names resolving to loopback at delivery time: refused when the socket is opened', { ...T, skip: shim ? false : 'resolve shim not built' }, async (t) => {
    const p = P();
    fs.writeFileSync(
      hostsFile,
      ['loop4.genrelay.test 127.0.0.1', 'loop4b.genrelay.test 127.9.9.9', 'loop6.genrelay.test ::1', 'mapped.genrelay.test ::ffff:127.0.0.1', 'zero.genrelay.test 0.0.0.0', 'zero6.genrelay.test ::'].join('\n') + '\n',
    );
    for (const n of ['loop4', 'loop4b', 'loop6', 'mapped', 'zero', 'zero6']) {
      for (const u of [`http://${n}.genrelay.test:${p}/${n}`, `http://${n.toUpperCase()}.GENRELAY.TEST.:${p}/${n}-upper`]) {
        await t.test(u, () => refusedAtConnect(u, n));
      }
    }
    // Dotted /etc/hosts names pointing at loopback, when there are any.
    const dotted = [];
    try {
      for (const line of fs.readFileSync('/etc/hosts', 'utf8').split('\n')) {
        const f = line.replace(/#.*/, '').trim().split(/\s+/);
        if (f.length >= 2 && /^(127\.|::1$)/.test(f[0])) dotted.push(...f.slice(1).filter((x) => x.includes('.') && !/localhost\.?$/i.test(x)));
      }
    } catch (e) {
      /* none */
    }
    for (const n of dotted) await t.test(`/etc/hosts ${n}`, () => refusedAtConnect(`http://${n}:${p}/etc-hosts`, `/etc/hosts ${n}`));
    figures.etc_hosts_dotted_names = dotted.length;
  });

  // The name does not resolve to loopback when the job is submitted (the
  // guard sees only the name then) and does when it is delivered. It has no
  // address at submit rather than a public one, so that no test traffic can
  // leave loopback even if genrelay resolved early.
  test('DNS rebinding: not loopback when submitted, loopback when delivered: refused at connect', { ...T, skip: shim ? false : 'resolve shim not built' }, async () => {
    const p = P();
    fs.writeFileSync(hostsFile, '');
    const r = await gr.api('POST', RUN, { input: { prompt: 'rebind', sim: { delay_ms: 1500 } }, webhook_url: `http://rebind.genrelay.test:${p}/rebind` });
    assert.equal(r.status, 202, r.text);
    fs.writeFileSync(hostsFile, 'rebind.genrelay.test 127.0.0.1\n');
    const d = await h.waitFor(async () => {
      const x = await gr.api('GET', `/v1/jobs/${r.body.job_id}/deliveries`);
      const dd = x.body.data && x.body.data[0];
      return dd && dd.status === 'dead' && dd;
    }, 30000, { what: 'rebound delivery dead' });
    for (const a of d.attempts) assert.match(String(a.error), /address not allowed/, JSON.stringify(a));
    figures.refused_at_connect++;
    figures.rebinding = 1;
  });

  test('a loopback URL stored while allow_private was true is refused at connect after a restart with allow_private = false', T, async () => {
    const lax = await h.startGenrelay({
      simUrl: sim.url,
      config: { webhooks: { require_https: false, allow_private: true, retry: [0.2], timeout_s: 2 }, jobs: { poll_after_s: 1, poll_interval_s: 0.3 } },
    });
    try {
      const r = await lax.api('POST', RUN, { input: { prompt: 'stored', sim: { delay_ms: 2500 } }, webhook_url: `http://127.0.0.1:${P()}/stored` });
      assert.equal(r.status, 202, r.text);
      await lax.stop();
      fs.writeFileSync(lax.configPath, h.renderConfig(h.deepMerge(lax.config, { webhooks: { allow_private: false } })));
      await lax.restart();
      const d = await h.waitFor(async () => {
        const x = await lax.api('GET', `/v1/jobs/${r.body.job_id}/deliveries`);
        const dd = x.body.data && x.body.data[0];
        return dd && dd.status === 'dead' && dd;
      }, 30000, { what: 'stored delivery dead' });
      for (const a of d.attempts) assert.match(String(a.error), /address not allowed/, JSON.stringify(a));
      figures.refused_at_connect++;
      figures.stored_then_restarted = 1;
    } finally {
      await lax.stop();
      await lax.assertNoSanitizerReport();
      fs.rmSync(lax.dir, { recursive: true, force: true });
    }
  });

  test('redirects are never followed (to the trap, to file://, to another scheme)', T, async () => {
    // allow_private = true here, or the redirector itself (on loopback) would be refused.
    const lax = await h.startGenrelay({
      simUrl: sim.url,
      config: { webhooks: { require_https: false, allow_private: true, retry: [0.2], timeout_s: 2 }, jobs: { poll_after_s: 1, poll_interval_s: 0.3 } },
    });
    const redirector = await R.startCountingReceiver();
    try {
      for (const target of [`http://127.0.0.1:${P()}/redirected`, 'file:///etc/passwd', `gopher://127.0.0.1:${P()}/_x`, `http://[::1]:${P()}/redirected6`]) {
        redirector.setMode('redirect', target);
        const r = await lax.api('POST', RUN, { input: { prompt: 'redirect', sim: { delay_ms: 50 } }, webhook_url: `${redirector.url}/r` });
        assert.equal(r.status, 202, r.text);
        const d = await h.waitFor(async () => {
          const x = await lax.api('GET', `/v1/jobs/${r.body.job_id}/deliveries`);
          const dd = x.body.data && x.body.data[0];
          return dd && dd.status === 'dead' && dd;
        }, 30000, { what: 'redirected delivery dead' });
        for (const a of d.attempts) assert.equal(a.status_code, 302, JSON.stringify(a));
        assert.equal(redirector.byJob.get(r.body.job_id).length, d.attempts.length, 'each attempt reached the redirector');
        figures.redirects_not_followed++;
      }
    } finally {
      await redirector.stop();
      await lax.stop();
      await lax.assertNoSanitizerReport();
      fs.rmSync(lax.dir, { recursive: true, force: true });
    }
  });

  test('the trap on loopback received nothing', T, async () => {
    await h.sleep(500);
    assert.deepEqual(trap.records.map((x) => x.path), [], 'requests that reached 127.0.0.1');
    if (trap6) assert.deepEqual(trap6.records.map((x) => x.path), [], 'requests that reached ::1');
    figures.trap_requests = trap.records.length + (trap6 ? trap6.records.length : 0);
    figures.total_spellings = figures.spellings_refused_at_submit + figures.refused_at_connect + figures.redirects_not_followed;
  });
});

// Connection reuse and proxies, loopback only.
// - Pooled connections: a provider reached by a name that resolves to
//   127.0.0.1 leaves an idle connection to name:port in curl's cache; a
//   webhook to the same name:port must not ride it (guarded transfers have
//   a pool of their own and the peer of every guarded transfer is checked,
//   reused connections included). The provider traffic itself still works.
//   With allow_private = true, a TCP forwarder in front of provsim shows that
//   no connection carries both a delivery and provider traffic (in either
//   order), and that deliveries still reuse their own connections.
// - Proxy variables in genrelay's environment (http_proxy, HTTPS_PROXY,
//   ALL_PROXY ...) are never used for deliveries: a loopback proxy that would
//   have answered 200 receives nothing, and the guard still refuses the
//   loopback target. With webhooks.proxy set, deliveries go through that
//   proxy (and only it, whatever no_proxy says), signed as usual.
// The proxy in these tests never forwards anything: it records the request
// line and answers itself.
describe('SSRF: connection reuse and proxies', { skip: shimPath() ? false : 'resolve shim not built' }, () => {
  const shim = shimPath();
  let sim;
  let tmp;
  const figures = { pooled_refused: 0, pooled_provider_jobs_ok: 0, env_proxy_vars: 0, env_proxy_requests: 0, env_proxy_refused: 0, explicit_proxy_deliveries: 0 };

  before(async () => {
    sim = await h.startProvsim();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'genrelay-ssrf-pool-'));
  });
  after(async () => {
    R.report('ssrf_pool_proxy_e2e', figures);
    await R.shutdown(null, sim, () => fs.rmSync(tmp, { recursive: true, force: true }));
  });

  function shimEnv(lines) {
    const file = path.join(tmp, `hosts-${crypto.randomBytes(4).toString('hex')}`);
    fs.writeFileSync(file, lines.join('\n') + '\n');
    return {
      LD_PRELOAD: shim,
      GENRELAY_SHIM_HOSTS: file,
      ASAN_OPTIONS: [process.env.ASAN_OPTIONS, 'verify_asan_link_order=0'].filter(Boolean).join(':'),
    };
  }

  // A loopback forward proxy that records what it is asked and answers 200
  // itself (never connecting anywhere).
  function startProxy() {
    const seen = [];
    const srv = http.createServer((req, res) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        seen.push({ method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks) });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"ok":true}');
      });
    });
    srv.on('connect', (req, sock) => {
      seen.push({ method: 'CONNECT', url: req.url, headers: req.headers });
      sock.end('HTTP/1.1 403 Forbidden\r\n\r\n');
    });
    return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve({
      url: `http://127.0.0.1:${srv.address().port}`,
      seen,
      stop: () => new Promise((r) => { srv.closeAllConnections(); srv.close(() => r()); }),
    })));
  }

  async function deadDelivery(g, id, what) {
    return h.waitFor(async () => {
      const x = await g.api('GET', `/v1/jobs/${id}/deliveries`);
      const dd = x.body.data && x.body.data[0];
      return dd && dd.status === 'dead' && dd;
    }, 30000, { what });
  }

  test('a webhook to the host:port of a provider reached at a private address by name does not ride its pooled connection', T, async () => {
    const simPort = new URL(sim.url).port;
    const named = `http://pooled.genrelay.test:${simPort}`;
    const gr = await h.startGenrelay({
      simUrl: named,
      env: shimEnv(['pooled.genrelay.test 127.0.0.1']),
      config: {
        webhooks: { require_https: false, allow_private: false, retry: [0.2, 0.2], timeout_s: 2 },
        jobs: { poll_after_s: 1, poll_interval_s: 0.3 },
      },
    });
    try {
      for (let i = 0; i < 3; i++) {
        const trapPath = `/fal/pooled-trap-${i}`;
        const r = await gr.api('POST', RUN, { input: { prompt: `pooled ${i}`, sim: { delay_ms: 50 } }, webhook_url: `${named}${trapPath}` });
        assert.equal(r.status, 202, r.text);
        const d = await deadDelivery(gr, r.body.job_id, 'pooled delivery dead');
        assert.equal(d.attempts.length, 3);
        for (const a of d.attempts) {
          assert.match(String(a.error), /address not allowed/, JSON.stringify(a));
          assert.equal(a.status_code, null, 'nothing was answered');
        }
        // The provider traffic over the same name:port worked.
        const j = (await gr.api('GET', `/v1/jobs/${r.body.job_id}`)).body;
        assert.equal(j.status, 'succeeded', JSON.stringify(j));
        const got = (await sim.requests()).filter((q) => q.path === trapPath);
        assert.deepEqual(got, [], 'provsim received no delivery');
        figures.pooled_refused += d.attempts.length;
        figures.pooled_provider_jobs_ok++;
      }
      const fal = (await sim.requests('fal')).filter((q) => !/pooled-trap/.test(q.path));
      assert.ok(fal.length >= 3, 'the provider was reached by name');
    } finally {
      await R.shutdown(gr);
      fs.rmSync(gr.dir, { recursive: true, force: true });
    }
  });

  // A TCP forwarder to provsim that records the request lines each client
  // connection carried, so a test can see which requests shared a connection.
  function startForwarder(targetPort) {
    const conns = [];
    const srv = net.createServer((c) => {
      const rec = { lines: [] };
      conns.push(rec);
      let pending = '';
      const up = net.connect(targetPort, '127.0.0.1');
      c.on('data', (chunk) => {
        pending += chunk.toString('latin1');
        // A request line may follow a body directly: no anchor.
        const re = /(GET|POST|PUT|DELETE|PATCH|HEAD) (\/\S*) HTTP\/1\.[01]\r\n/g;
        let m;
        let last = 0;
        while ((m = re.exec(pending))) {
          rec.lines.push(`${m[1]} ${m[2]}`);
          last = re.lastIndex;
        }
        pending = pending.slice(Math.max(last, pending.length - 4096));
      });
      c.pipe(up);
      up.pipe(c);
      c.on('error', () => up.destroy());
      up.on('error', () => c.destroy());
    });
    return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve({
      port: srv.address().port,
      conns,
      stop: () => new Promise((r) => srv.close(() => r())),
    })));
  }

  test('deliveries and provider traffic to the same name:port never share a connection, in either direction (allow_private = true)', T, async () => {
    const fwd = await startForwarder(Number(new URL(sim.url).port));
    const named = `http://shared.genrelay.test:${fwd.port}`;
    const gr = await h.startGenrelay({
      simUrl: named,
      env: shimEnv(['shared.genrelay.test 127.0.0.1']),
      config: {
        webhooks: { require_https: false, allow_private: true, retry: [0.2], timeout_s: 2 },
        jobs: { poll_after_s: 1, poll_interval_s: 0.3 },
      },
    });
    try {
      // One job at a time, so each delivery finds the provider's connection
      // idle in the cache, and the next submit finds the delivery's.
      for (let i = 0; i < 4; i++) {
        const r = await gr.api('POST', RUN, { input: { prompt: `shared ${i}`, sim: { delay_ms: 50 } }, webhook_url: `${named}/fal/shared-trap-${i}` });
        assert.equal(r.status, 202, r.text);
        await h.waitFor(async () => {
          const x = await gr.api('GET', `/v1/jobs/${r.body.job_id}/deliveries`);
          const dd = x.body.data && x.body.data[0];
          return dd && dd.attempts.length >= 1 && dd;
        }, 30000, { what: `delivery ${i} attempted` });
      }
      const kinds = fwd.conns.filter((c) => c.lines.length).map((c) => new Set(c.lines.map((l) => (/shared-trap/.test(l) ? 'delivery' : 'provider'))));
      assert.ok(kinds.some((k) => k.has('delivery')), `deliveries went through the forwarder: ${JSON.stringify(fwd.conns)}`);
      assert.ok(kinds.some((k) => k.has('provider')), 'provider traffic went through the forwarder');
      const mixed = fwd.conns.filter((c) => c.lines.some((l) => /shared-trap/.test(l)) && c.lines.some((l) => !/shared-trap/.test(l)));
      assert.deepEqual(mixed, [], 'a connection carried both a delivery and provider traffic');
      // Deliveries still reuse their own connections.
      const deliveryConns = fwd.conns.filter((c) => c.lines.some((l) => /shared-trap/.test(l))).length;
      assert.ok(deliveryConns < 4, `4 sequential deliveries over ${deliveryConns} connections: reused`);
      figures.shared_name_connections = fwd.conns.length;
      figures.shared_name_requests = fwd.conns.reduce((a, c) => a + c.lines.length, 0);
    } finally {
      await R.shutdown(gr, fwd);
      fs.rmSync(gr.dir, { recursive: true, force: true });
    }
  });

  test('proxy variables in the environment are not used for deliveries; the guard still refuses', T, async () => {
    const proxy = await startProxy();
    const vars = { http_proxy: proxy.url, HTTP_PROXY: proxy.url, https_proxy: proxy.url, HTTPS_PROXY: proxy.url, ALL_PROXY: proxy.url, all_proxy: proxy.url };
    // The providers (provsim on 127.0.0.1) are reached directly.
    const env = Object.assign(shimEnv(['envproxy.genrelay.test 127.0.0.1']), vars, { no_proxy: '127.0.0.1', NO_PROXY: '127.0.0.1' });
    const gr = await h.startGenrelay({
      simUrl: sim.url,
      env,
      config: {
        webhooks: { require_https: false, allow_private: false, retry: [0.2], timeout_s: 2 },
        jobs: { poll_after_s: 1, poll_interval_s: 0.3 },
      },
    });
    try {
      figures.env_proxy_vars = Object.keys(vars).length;
      const trap = await R.startCountingReceiver();
      try {
        for (const u of [`http://envproxy.genrelay.test:${trap.port}/env-proxy`, `http://ENVPROXY.genrelay.test.:${trap.port}/env-proxy-2`]) {
          const r = await gr.api('POST', RUN, { input: { prompt: 'env proxy', sim: { delay_ms: 50 } }, webhook_url: u });
          assert.equal(r.status, 202, r.text);
          const d = await deadDelivery(gr, r.body.job_id, 'env-proxy delivery dead');
          for (const a of d.attempts) assert.match(String(a.error), /address not allowed/, JSON.stringify(a));
          figures.env_proxy_refused += d.attempts.length;
        }
        assert.deepEqual(proxy.seen.map((x) => `${x.method} ${x.url}`), [], 'the environment\'s proxy received nothing');
        assert.deepEqual(trap.records.map((x) => x.path), [], 'the loopback target received nothing');

        // The same environment with allow_private = true (the only way to let
        // the guard pass a loopback proxy): deliveries still go direct, to the
        // target, and the proxy sees none of them. A proxy taken from the
        // environment would have answered them itself.
        const lax = await h.startGenrelay({
          simUrl: sim.url,
          env,
          config: {
            webhooks: { require_https: false, allow_private: true, retry: [0.2], timeout_s: 2 },
            jobs: { poll_after_s: 1, poll_interval_s: 0.3 },
          },
        });
        try {
          for (const u of [`http://envproxy.genrelay.test:${trap.port}/direct`, `http://ENVPROXY.genrelay.test.:${trap.port}/direct-2`]) {
            const r = await lax.api('POST', RUN, { input: { prompt: 'env proxy direct', sim: { delay_ms: 50 } }, webhook_url: u });
            assert.equal(r.status, 202, r.text);
            const d = await h.waitFor(async () => {
              const x = await lax.api('GET', `/v1/jobs/${r.body.job_id}/deliveries`);
              const dd = x.body.data && x.body.data[0];
              return dd && dd.status !== 'pending' && dd;
            }, 30000, { what: `delivery to ${u}` });
            assert.equal(d.status, 'delivered', JSON.stringify(d));
            assert.equal(trap.delivered(r.body.job_id).length, 1, `${u} reached the target itself, not a proxy`);
            figures.env_proxy_direct_deliveries = (figures.env_proxy_direct_deliveries || 0) + 1;
          }
        } finally {
          await R.shutdown(lax);
          fs.rmSync(lax.dir, { recursive: true, force: true });
        }
        assert.deepEqual(proxy.seen.map((x) => `${x.method} ${x.url}`), [], 'the environment\'s proxy received nothing');
        figures.env_proxy_requests = proxy.seen.length;
      } finally {
        await trap.stop();
      }
    } finally {
      await R.shutdown(gr, proxy);
      fs.rmSync(gr.dir, { recursive: true, force: true });
    }
  });

  test('with webhooks.proxy set, deliveries go through that proxy only, whatever the environment says', T, async () => {
    const explicit = await startProxy();
    const other = await startProxy();
    const vars = { http_proxy: other.url, HTTP_PROXY: other.url, ALL_PROXY: other.url, no_proxy: '*', NO_PROXY: '*' };
    const gr = await h.startGenrelay({
      simUrl: sim.url,
      env: Object.assign(shimEnv([]), vars),
      config: {
        webhooks: { require_https: false, allow_private: false, retry: [0.2], timeout_s: 2, proxy: explicit.url },
        jobs: { poll_after_s: 1, poll_interval_s: 0.3 },
      },
    });
    try {
      // The name resolves nowhere: only the proxy could deliver it.
      const target = 'http://receiver.via-proxy.genrelay.test:1/hook';
      const ids = [];
      for (let i = 0; i < 3; i++) {
        const r = await gr.api('POST', RUN, { input: { prompt: `explicit ${i}`, sim: { delay_ms: 50 } }, webhook_url: `${target}/${i}` });
        assert.equal(r.status, 202, r.text);
        ids.push(r.body.job_id);
      }
      for (const id of ids) {
        const d = await h.waitFor(async () => {
          const x = await gr.api('GET', `/v1/jobs/${id}/deliveries`);
          const dd = x.body.data && x.body.data[0];
          return dd && dd.status !== 'pending' && dd;
        }, 30000, { what: 'explicit-proxy delivery' });
        assert.equal(d.status, 'delivered', JSON.stringify(d));
      }
      assert.equal(explicit.seen.length, 3, JSON.stringify(explicit.seen.map((x) => x.url)));
      for (const [i, s] of explicit.seen.entries()) {
        assert.equal(s.method, 'POST');
        assert.match(s.url, /^http:\/\/receiver\.via-proxy\.genrelay\.test:1\/hook\/\d$/);
        assert.ok(s.headers['webhook-signature'], `signed: ${JSON.stringify(s.headers)}`);
        assert.ok(s.body.length > 0, `body ${i}`);
      }
      assert.deepEqual(other.seen, [], 'the environment\'s proxy received nothing');
      figures.explicit_proxy_deliveries = explicit.seen.length;
    } finally {
      await R.shutdown(gr, explicit, other);
      fs.rmSync(gr.dir, { recursive: true, force: true });
    }
  });
});
