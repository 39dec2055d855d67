'use strict';
// The example receivers (examples/receivers: Node with `standardwebhooks`,
// Python with the standard library, C with genrelay's own signing code):
// each accepts what genrelay signs, delivered end to end, and refuses a
// genuine delivery replayed with its body, signature or timestamp tampered.

const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const { describe, test, before, after } = require('node:test');
const h = require('../lib/harness');

const DIR = path.join(h.SRC, 'examples', 'receivers');
const RECEIVERS = {
  node: [process.execPath, [path.join(DIR, 'node', 'receiver.js')]],
  python: ['python3', [path.join(DIR, 'python', 'receiver.py')]],
  c: [path.join(path.dirname(h.BIN), 'example_receiver_c'), []],
};

// A server that keeps each request's raw headers and body and answers 200.
function captureServer() {
  const got = [];
  const srv = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      got.push({ headers: req.headers, body: Buffer.concat(chunks) });
      res.end('ok');
    });
  });
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve({ srv, got, url: `http://127.0.0.1:${srv.address().port}` })));
}

function post(url, headers, body) {
  return h.request(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
}

describe('example receivers', () => {
  const stack = h.useStack();
  const { waitTerminal } = h.jobHelpers(stack);
  let capture;
  let genuine; // one delivery as genrelay signed it: {headers, body}
  const procs = {};

  before(async () => {
    capture = await captureServer();
    const r = await stack.api('POST', '/v1/models/fal-ai/flux/dev/run', { input: { prompt: 'captured' }, webhook_url: `${capture.url}/hook` });
    assert.equal(r.status, 202, r.text);
    genuine = await h.waitFor(() => capture.got[0], 20000, { what: 'a captured delivery' });
    for (const [name, [cmd, args]] of Object.entries(RECEIVERS)) {
      procs[name] = await h.spawnAndWait(cmd, [...args, '--listen', '127.0.0.1:0'], {
        re: /^listening on (http:\/\/\S+)$/m,
        env: { ...process.env, WEBHOOK_SECRET: h.ACME.webhook_secret },
      });
    }
  });

  after(async () => {
    await Promise.all(Object.values(procs).map((p) => h.stopChild(p.child)));
    if (capture) capture.srv.close();
    if (procs.c) {
      await h.waitClosed(procs.c.child);
      assert.equal(h.sanitizerReport(procs.c.log()), null, 'the C receiver printed a sanitizer report');
    }
  });

  for (const name of Object.keys(RECEIVERS)) {
    test(`${name}: refuses tampered deliveries, accepts the genuine one and genrelay's own`, async () => {
      const p = procs[name];
      const url = `${p.match[1]}/hook`;
      const hd = {
        'webhook-id': genuine.headers['webhook-id'],
        'webhook-timestamp': genuine.headers['webhook-timestamp'],
        'webhook-signature': genuine.headers['webhook-signature'],
      };
      assert.match(hd['webhook-signature'], /^v1,/);
      const body = genuine.body.toString('utf8');
      const tampered = [
        [hd, body.replace('"status":"succeeded"', '"status":"failed"')],
        [{ ...hd, 'webhook-signature': hd['webhook-signature'].replace(/^v1,(.)/, (m, c) => `v1,${c === 'A' ? 'B' : 'A'}`) }, body],
        [{ ...hd, 'webhook-timestamp': String(Number(hd['webhook-timestamp']) + 1) }, body],
        [{ ...hd, 'webhook-signature': '' }, body],
      ];
      assert.notEqual(tampered[0][1], body, 'the body was changed');
      for (const [headers, b] of tampered) {
        const r = await post(url, headers, b);
        assert.equal(r.status, 401, `${name} accepted a tampered delivery`);
      }
      const ok = await post(url, hd, body);
      assert.ok(ok.status >= 200 && ok.status < 300, `${name} refused the genuine delivery: ${ok.status}`);
      await h.waitFor(() => p.log().includes(`accepted ${hd['webhook-id']}`), 5000, { what: `${name} accepted` });
      assert.match(p.log(), /rejected/);

      // End to end: genrelay delivers a job to the receiver, which answers 2xx.
      const run = await stack.api('POST', '/v1/models/fal-ai/flux/dev/run', { input: { prompt: `to ${name}` }, webhook_url: url });
      assert.equal(run.status, 202, run.text);
      await waitTerminal(run.body.job_id);
      const dl = await h.waitFor(async () => {
        const d = (await stack.api('GET', `/v1/jobs/${run.body.job_id}/deliveries`)).body.data;
        return d.length && d[0].status === 'delivered' && d[0];
      }, 20000, { what: `delivered to ${name}` });
      assert.equal(dl.attempts[0].status_code, 204);
      await h.waitFor(() => p.log().includes(`accepted ${dl.delivery_id}`), 5000, { what: `${name} printed the delivery` });
    });
  }
});

describe('example configs', () => {
  const dir = path.join(h.SRC, 'examples', 'providers');
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.conf.lua'));

  test('one config per provider, each configuring that provider and passing genrelay check', () => {
    const providers = fs.readdirSync(path.join(h.SRC, 'scripts', 'providers')).map((f) => f.replace(/\.lua$/, ''));
    assert.deepEqual(files.map((f) => f.replace(/\.conf\.lua$/, '')).sort(), providers.sort());
    for (const f of files) {
      const name = f.replace(/\.conf\.lua$/, '');
      const text = fs.readFileSync(path.join(dir, f), 'utf8');
      assert.match(text, new RegExp(`^  ${name} = \\{`, 'm'), `${f} configures ${name}`);
      const r = spawnSync(h.BIN, ['check', '--config', path.join(dir, f)], { cwd: h.SRC, encoding: 'utf8', timeout: 30000 });
      assert.equal(r.status, 0, `${f}: ${r.stderr}`);
      assert.match(r.stdout, /configuration and scripts OK/);
    }
  });

  test('the systemd unit passes systemd-analyze verify', (t) => {
    const which = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
    if (which.status !== 0) return t.skip('systemd-analyze is not installed');
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'genrelay-unit-'));
    const unit = path.join(tmp, 'genrelay.service');
    // verify checks that the binary exists: point it at the one built here.
    fs.writeFileSync(unit, fs.readFileSync(path.join(h.SRC, 'examples', 'systemd', 'genrelay.service'), 'utf8').replaceAll('/usr/local/bin/genrelay', h.BIN));
    const r = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8', timeout: 30000 });
    fs.rmSync(tmp, { recursive: true, force: true });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr.trim(), '', r.stderr);
  });
});
