'use strict';
// Customer webhook shapes: each shipped hook's body at a real
// receiver with a valid signature over exactly the bytes sent; a hook that
// returns nil skips the delivery; a hook that raises fails the attempt with
// SCRIPT_ERROR naming file and line, is retried, and goes out once the file is
// fixed; attempts record the hook version that ran; a request cannot pick a
// hook.
//
//   GENRELAY_BIN=$PWD/build/genrelay node --test tests/e2e/features/hooks.test.js
//
// genrelay runs on a private copy of scripts/ (tests rewrite hook files).
// Every customer has its own hook; every test its own receiver path.

const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const h = require('../lib/harness');
const R = require('../lib/reliability');
const sd = require('../lib/scriptdir');
const { verifyStandardWebhook, secretKey } = require(path.join(h.SRC, 'examples', 'receiver.js'));

const MODEL = 'fal-ai/flux/dev';
const RUN = `/v1/models/${MODEL}/run`;
const T = { timeout: 60000 };
const SECRET = h.ACME.webhook_secret; // every customer here signs with it, so one receiver verifies all

const SHIPPED = ['default', 'modelslab_compat', 'artificialstudio_compat', 'slack', 'first_url'];

// Headers a hook may not set, each with the name the error gives and a piece
// of its reason: the transport's (every case, '_' for '-'), the signature's
// (webhook-*), names that are not RFC 9110 tokens or carry whitespace, values
// with control characters. Each fails the attempt with SCRIPT_ERROR.
const BAD_HEADERS = {
  host: ['Host', 'evil.example', 'Host', 'set by the transport'],
  host_lower: ['host', 'evil.example', 'host', 'set by the transport'],
  host_upper: ['HOST', 'evil.example', 'HOST', 'set by the transport'],
  content_length: ['Content-Length', '1', 'Content-Length', 'set by the transport'],
  content_length_under: ['content_length', '1', 'content_length', 'set by the transport'],
  transfer_encoding: ['Transfer-Encoding', 'chunked', 'Transfer-Encoding', 'set by the transport'],
  transfer_encoding_mixed: ['tRANSFER_eNCODING', 'chunked', 'tRANSFER_eNCODING', 'set by the transport'],
  connection: ['CONNECTION', 'close', 'CONNECTION', 'set by the transport'],
  webhook_id: ['webhook-id', 'msg_forged', 'webhook-id', 'set by the core'],
  webhook_signature: ['Webhook-Signature', 'v1,forged', 'Webhook-Signature', 'set by the core'],
  webhook_signature_under: ['WEBHOOK_SIGNATURE', 'v1,forged', 'WEBHOOK_SIGNATURE', 'set by the core'],
  webhook_timestamp: ['Webhook-Timestamp', '1', 'Webhook-Timestamp', 'set by the core'],
  webhook_other: ['webhook-anything', 'x', 'webhook-anything', 'set by the core'],
  leading_space: [' X-Pad', '1', ' X-Pad', 'whitespace before or after'],
  trailing_space: ['X-Pad ', '1', 'X-Pad ', 'whitespace before or after'],
  trailing_space_host: ['Host ', 'evil.example', 'Host ', 'whitespace before or after'],
  colon: ['X:Y', '1', 'X:Y', 'not an RFC 9110 token'],
  inner_space: ['X Y', '1', 'X Y', 'not an RFC 9110 token'],
  crlf_name: ['X-A\\r\\nHost', '1', 'X-A\\x0d\\x0aHost', 'not an RFC 9110 token'],
  crlf_value: ['X-A', 'a\\r\\nX-Injected: 1', 'X-A', 'control character'],
  nul_value: ['X-A', 'a\\0b', 'X-A', 'control character'],
  empty_name: ['', '1', '', 'empty name'],
};
const BAD_HEADER_CASES = Object.entries(BAD_HEADERS).map(([k, [n, v]]) => `\t${k} = { ["${n}"] = "${v}", ["X-Fine"] = "yes" },`).join('\n');

// Test hooks, written next to the shipped ones.
const HOOKS = {
  // Skips every event but job.succeeded.
  'hooks/skip_failed.lua': `return {
	transform = function(event, ctx)
		if event.type ~= "job.succeeded" then return nil end
		return { body = { job_id = event.job_id, kept = true } }
	end,
}
`,
  // A string body sent as is, with its own Content-Type.
  'hooks/text_body.lua': `return {
	transform = function(event, ctx)
		return {
			body = "job " .. event.job_id .. " is " .. event.status .. ";  {\\"not\\" : json}  \\n",
			headers = { ["Content-Type"] = "text/plain; charset=utf-8", ["X-Shape"] = "text" },
		}
	end,
}
`,
  // Sends the headers of the case named by the job's track_id: each one a
  // header a hook may not set (see BAD_HEADERS), or fine ones.
  'hooks/bad_header.lua': `local cases = {
${BAD_HEADER_CASES}
	fine = { ["X-Fine"] = "yes", ["X_Under-score"] = "ok", ["X-Tab"] = "a\\tb" },
}
return {
	transform = function(event, ctx)
		return { body = { job_id = event.job_id }, headers = cases[event.track_id] }
	end,
}
`,
  // Raises on line 3 until fixed.
  'hooks/raiser.lua': `return {
	transform = function(event, ctx)
		error("shape not ready for " .. event.type)
	end,
}
`,
};
const RAISER_FIXED = `return {
	transform = function(event, ctx)
		return { body = { fixed = true, job_id = event.job_id, status = event.status } }
	end,
}
`;

const customer = (name, hook) => ({ api_key: `${name}-key`, webhook_secret: SECRET, hook });
const CUSTOMERS = {
  acme: customer('acme', 'default'),
  c_default: customer('c_default', 'default'),
  c_modelslab_compat: customer('c_modelslab_compat', 'modelslab_compat'),
  c_artificialstudio_compat: customer('c_artificialstudio_compat', 'artificialstudio_compat'),
  c_slack: customer('c_slack', 'slack'),
  c_first_url: customer('c_first_url', 'first_url'),
  c_skip: customer('c_skip', 'skip_failed'),
  c_text: customer('c_text', 'text_body'),
  c_raise: customer('c_raise', 'raiser'),
  c_bad_header: customer('c_bad_header', 'bad_header'),
  c_nosecret: { api_key: 'c_nosecret-key', hook: 'default' },
};

const dir = sd.copyScripts(HOOKS);

// What each shipped hook must send for a finished job j (the job object as
// GET /v1/jobs/{id} returns it) and event type.
const slackEsc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const EXPECTED = {
  default: (j, type) => ({ ...j, type }),
  modelslab_compat: (j) =>
    j.status === 'succeeded'
      ? { status: 'success', id: j.job_id, output: j.output.items.map((i) => i.url), track_id: j.track_id }
      : { status: 'failed', id: j.job_id, output: [], track_id: j.track_id, message: j.error.message },
  artificialstudio_compat: (j) => {
    const ok = j.status === 'succeeded';
    const first = ok ? j.output.items[0] : null;
    return {
      id: j.job_id, status: ok ? 'success' : 'error', tool: j.model_id, type: ok ? first.type : null,
      output: ok ? first.url : null, thumbnail: null, error: ok ? null : j.error.message, createdAt: j.created_at,
    };
  },
  slack: (j) => {
    const icon = { succeeded: ':white_check_mark:', failed: ':x:', canceled: ':no_entry_sign:' }[j.status];
    const first = j.output && j.output.items[0];
    let text = `${icon} ${slackEsc(j.model_id)} ${slackEsc(j.status)} (${slackEsc(j.job_id)})`;
    if (j.error) text += `: ${slackEsc(j.error.message)}`;
    else if (first) text += `: <${slackEsc(first.url)}>`;
    const blocks = [{ type: 'section', text: { type: 'mrkdwn', text } }];
    if (first && first.type === 'image') blocks.push({ type: 'image', image_url: first.url, alt_text: j.model_id });
    return { text, blocks };
  },
  first_url: (j) => ({ job_id: j.job_id, status: j.status, url: j.output ? j.output.items[0].url : null }),
};
const EXPECTED_HEADERS = {
  artificialstudio_compat: (j) => ({ 'x-webhook-source': 'artificial-studio', 'x-media-id': j.job_id }),
};

// A receiver that keeps the raw bytes and raw header list of every request.
function startRawReceiver() {
  const got = [];
  const srv = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      got.push({ path: req.url, headers: req.headers, rawHeaders: req.rawHeaders, raw: Buffer.concat(chunks) });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
    });
  });
  return new Promise((resolve) => {
    srv.listen(0, '127.0.0.1', () => {
      resolve({
        url: `http://127.0.0.1:${srv.address().port}`,
        forPath: (p) => got.filter((g) => g.path === p),
        close: () => new Promise((r) => { srv.closeAllConnections(); srv.close(() => r()); }),
      });
    });
  });
}

describe('customer webhook shapes', () => {
  const stack = h.useStack({
    config: {
      scripts: dir,
      customers: CUSTOMERS,
      // Long enough for a test to fix a raising hook before the delivery dies.
      webhooks: { retry: [0.3, 0.6, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1] },
    },
  });
  let raw;
  const figures = { hook_headers_refused: 0, unsigned_not_sent: 0, malformed_secrets_refused: 0 };
  before(async () => { raw = await startRawReceiver(); });
  after(async () => {
    R.report('hook_headers_e2e', figures);
    if (raw) await raw.close();
  });

  const uniq = (name) => `${name}-${crypto.randomBytes(5).toString('hex')}`;
  const as = (cust) => stack.gr.as(CUSTOMERS[cust].api_key);

  async function submit(cust, input, extra = {}) {
    const r = await as(cust)('POST', RUN, { input, ...extra });
    assert.equal(r.status, 202, r.text);
    return r.body.job_id;
  }
  async function getJob(cust, id) {
    const r = await as(cust)('GET', `/v1/jobs/${id}`);
    assert.equal(r.status, 200, r.text);
    return r.body;
  }
  async function deliveries(cust, id) {
    const r = await as(cust)('GET', `/v1/jobs/${id}/deliveries`);
    assert.equal(r.status, 200, r.text);
    return r.body.data;
  }
  // The job's one delivery, once pred(delivery) holds.
  function waitDelivery(cust, id, pred, ms = 20000, what = 'delivery') {
    return h.waitFor(async () => {
      const l = await deliveries(cust, id);
      return l.length === 1 && pred(l[0]) && l[0];
    }, ms, { what: `${what} of ${id}`, interval: 100 });
  }
  function waitReceived(id, n = 1, ms = 20000) {
    return h.waitFor(async () => {
      const l = (await stack.receiver.forJob(id)).filter((d) => d.answered === 200);
      return l.length >= n && l;
    }, ms, { what: `receiver got ${id}`, interval: 100 });
  }
  async function hookVersion(name) {
    const s = (await sd.scripts(stack.gr.admin))[`hooks/${name}`];
    assert.ok(s && s.version, `hooks/${name} loaded: ${JSON.stringify(s)}`);
    return s.version;
  }

  for (const hook of SHIPPED) {
    test(`shipped hook ${hook}: the documented body shape for a succeeded and a failed job, signed over exactly what was sent`, T, async () => {
      const cust = `c_${hook}`;
      const p = `/t/${uniq(hook)}`;
      const ids = {
        succeeded: await submit(cust, { prompt: uniq('ok') }, { webhook_url: stack.receiver.url + p, track_id: uniq('trk') }),
        failed: await submit(cust, { prompt: uniq('fail'), sim: { outcome: 'fail', message: 'nsfw <&> content' } }, { webhook_url: stack.receiver.url + p, track_id: uniq('trk') }),
      };
      // Bodies of non-default shapes may not carry job_id: find them by delivery id.
      for (const [status, id] of Object.entries(ids)) {
        const dl = await waitDelivery(cust, id, (d) => d.status === 'delivered', 20000, 'delivered');
        const all = await stack.receiver.forPath(p);
        const got = all.filter((d) => d.id === dl.delivery_id);
        assert.equal(got.length, 1, `one request for delivery ${dl.delivery_id}`);
        const d = got[0];
        assert.equal(d.verified, true, `signature valid over the raw body: ${d.reason}`);
        assert.equal(d.answered, 200);
        const j = await getJob(cust, id);
        assert.equal(j.status, status);
        assert.deepEqual(d.body, EXPECTED[hook](j, `job.${status}`), `${hook} body for a ${status} job`);
        assert.match(d.headers['content-type'], /^application\/json/);
        for (const [k, v] of Object.entries((EXPECTED_HEADERS[hook] || (() => ({})))(j))) assert.equal(d.headers[k], v, `header ${k}`);
        // The attempt records the hook version that ran.
        assert.equal(dl.attempts.length, 1);
        assert.equal(dl.attempts[0].status_code, 200);
        assert.equal(dl.attempts[0].script_version, sd.version(sd.read(dir, `hooks/${hook}.lua`)));
        assert.equal(dl.attempts[0].script_version, await hookVersion(hook), 'matches GET /v1/scripts');
      }
    });
  }

  test('a string body is sent byte for byte, with the hook\'s Content-Type, signed over exactly those bytes', T, async () => {
    const p = `/raw/${uniq('text')}`;
    const id = await submit('c_text', { prompt: uniq('text') }, { webhook_url: raw.url + p });
    const dl = await waitDelivery('c_text', id, (d) => d.status === 'delivered');
    const [g] = raw.forPath(p);
    assert.ok(g, 'received');
    assert.equal(g.raw.toString('utf8'), `job ${id} is succeeded;  {"not" : json}  \n`);
    const count = (name) => g.rawHeaders.filter((x, i) => i % 2 === 0 && x.toLowerCase() === name).length;
    assert.equal(count('content-type'), 1, `one Content-Type: ${g.rawHeaders}`);
    assert.equal(g.headers['content-type'], 'text/plain; charset=utf-8');
    assert.equal(g.headers['x-shape'], 'text');
    assert.equal(count('webhook-id'), 1);
    assert.equal(count('webhook-signature'), 1);
    assert.equal(g.headers['webhook-id'], dl.delivery_id, 'the core sets webhook-id');
    assert.equal(Number(g.headers['content-length']), g.raw.length);
    const v = verifyStandardWebhook(g.headers, g.raw, secretKey(SECRET));
    assert.equal(v.ok, true, v.reason);
    // Same check for a table body: the signature covers the exact JSON bytes sent.
    const p2 = `/raw/${uniq('json')}`;
    const id2 = await submit('c_first_url', { prompt: uniq('json') }, { webhook_url: raw.url + p2 });
    await waitDelivery('c_first_url', id2, (d) => d.status === 'delivered');
    const [g2] = raw.forPath(p2);
    assert.equal(verifyStandardWebhook(g2.headers, g2.raw, secretKey(SECRET)).ok, true);
    assert.deepEqual(JSON.parse(g2.raw.toString('utf8')), EXPECTED.first_url(await getJob('c_first_url', id2)));
  });

  test('a header a hook may not set fails the attempt with SCRIPT_ERROR naming it; nothing is sent; fine headers go out', T, async () => {
    const p = `/raw/${uniq('badhdr')}`;
    const ids = {};
    for (const k of Object.keys(BAD_HEADERS)) ids[k] = await submit('c_bad_header', { prompt: uniq(k) }, { webhook_url: raw.url + p, track_id: k });
    const fine = await submit('c_bad_header', { prompt: uniq('fine') }, { webhook_url: raw.url + p + '/fine', track_id: 'fine' });
    for (const [k, [, , shown, why]] of Object.entries(BAD_HEADERS)) {
      const dl = await waitDelivery('c_bad_header', ids[k], (d) => d.attempts.length >= 1, 20000, `attempt of ${k}`);
      const a = dl.attempts[0];
      assert.equal(a.status_code, null, `${k}: nothing was sent`);
      assert.ok(a.error.startsWith(`SCRIPT_ERROR: hooks/bad_header.lua: header '${shown}' `), `${k}: ${a.error}`);
      assert.ok(a.error.includes(why), `${k}: ${a.error}`);
      assert.ok(!/forged|evil\.example|X-Injected/.test(a.error), `${k}: the value is not quoted: ${a.error}`);
      assert.equal(a.script_version, await hookVersion('bad_header'));
      figures.hook_headers_refused++;
    }
    await waitDelivery('c_bad_header', fine, (d) => d.status === 'delivered');
    const [g] = raw.forPath(p + '/fine');
    assert.equal(g.headers['x-fine'], 'yes');
    assert.equal(g.headers['x_under-score'], 'ok');
    assert.equal(g.headers['x-tab'], 'a\tb');
    assert.equal(verifyStandardWebhook(g.headers, g.raw, secretKey(SECRET)).ok, true);
    assert.deepEqual(raw.forPath(p), [], 'no refused delivery reached the receiver');
  });

  test('a delivery is never sent unsigned: a webhook_url is refused for a customer without a secret; a job whose customer lost its secret gets failed attempts, nothing at the receiver', T, async () => {
    const r = await as('c_nosecret')('POST', RUN, { input: { prompt: uniq('u') }, webhook_url: raw.url + '/raw/never' });
    assert.equal(r.status, 400, r.text);
    assert.equal(r.body.error.code, 'INVALID_REQUEST');
    assert.match(r.body.error.message, /webhook_url.*no webhook_secret/);

    // A job accepted while the customer had a secret, delivered after a
    // restart without it.
    const lax = await h.startGenrelay({
      simUrl: stack.sim.url,
      config: { scripts: dir, webhooks: { require_https: false, allow_private: true, retry: [0.2, 0.2], timeout_s: 2 }, jobs: { poll_after_s: 1, poll_interval_s: 0.3 } },
    });
    try {
      const p = `/raw/${uniq('unsigned')}`;
      const s = await lax.api('POST', RUN, { input: { prompt: uniq('u'), sim: { delay_ms: 2500 } }, webhook_url: raw.url + p });
      assert.equal(s.status, 202, s.text);
      await lax.stop();
      fs.writeFileSync(lax.configPath, h.renderConfig(h.deepMerge(lax.config, { customers: { acme: { webhook_secret: null } } })));
      await lax.restart();
      const dl = await h.waitFor(async () => {
        const x = await lax.api('GET', `/v1/jobs/${s.body.job_id}/deliveries`);
        const dd = x.body.data && x.body.data[0];
        return dd && dd.status === 'dead' && dd;
      }, 30000, { what: 'unsigned delivery dead' }).catch(async (e) => {
        const state = { deliveries: (await lax.api('GET', `/v1/jobs/${s.body.job_id}/deliveries`)).body, job: (await lax.api('GET', `/v1/jobs/${s.body.job_id}`)).body };
        throw new Error(`${e.message}; state: ${JSON.stringify(state)}\n--- genrelay log ---\n${lax.logTail(60)}`);
      });
      assert.equal(dl.attempts.length, 3);
      for (const a of dl.attempts) {
        assert.equal(a.status_code, null);
        assert.equal(a.error, 'not signed, not sent: the customer has no webhook_secret');
      }
      assert.deepEqual(raw.forPath(p), [], 'nothing reached the receiver');
      figures.unsigned_not_sent += dl.attempts.length;
    } finally {
      await R.shutdown(lax);
      fs.rmSync(lax.dir, { recursive: true, force: true });
    }
  });

  test('a malformed whsec_ secret: genrelay check and serve refuse the config, naming the key and never the secret', T, () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'genrelay-whsec-'));
    try {
      const cases = {
        'whsec_c2hvcnQ=': 'whsec_ key shorter than 24 bytes', // "short"
        'whsec_YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE=': 'whsec_ key shorter than 24 bytes', // 23 bytes
        'whsec_not*base64*at*all*0123456789abcdef': 'not valid base64 after whsec_',
        'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwA': 'not valid base64 after whsec_', // 4n+1 characters
        'whsec_': 'whsec_ key shorter than 24 bytes',
      };
      for (const [secret, why] of Object.entries(cases)) {
        const conf = path.join(tmp, 'genrelay.conf.lua');
        fs.writeFileSync(conf, `store = "sqlite:${path.join(tmp, 'db.sqlite')}"\nscripts = "${dir}"\nlisten = "127.0.0.1:0"\n` +
          `customers = { acme = { api_key = "acme-key", webhook_secret = "${secret}" } }\n`);
        for (const cmd of ['check', 'serve']) {
          const r = spawnSync(h.BIN, [cmd, '--config', conf], { encoding: 'utf8', timeout: 20000, cwd: tmp });
          assert.notEqual(r.status, 0, `${cmd} with ${secret}: ${r.status} ${r.stderr}`);
          assert.equal(r.signal, null, `${cmd} exited by itself`);
          assert.ok(r.stderr.includes(`customers.acme.webhook_secret: ${why}`), `${cmd}: ${r.stderr}`);
          if (secret.length > 8) assert.ok(!r.stderr.includes(secret.slice(6, 14)), `${cmd}: the secret is not echoed: ${r.stderr}`);
          figures.malformed_secrets_refused++;
        }
      }
      // The shipped example and the harness's secrets pass.
      const ok = spawnSync(h.BIN, ['check', '--config', path.join(h.SRC, 'examples', 'genrelay.conf.lua')], { encoding: 'utf8', timeout: 20000, cwd: h.SRC });
      assert.equal(ok.status, 0, ok.stderr);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  test('a transform returning nil skips the delivery: recorded as skipped, nothing sent', T, async () => {
    const p = `/t/${uniq('skip')}`;
    const failed = await submit('c_skip', { prompt: uniq('f'), sim: { outcome: 'fail' } }, { webhook_url: stack.receiver.url + p });
    const ok = await submit('c_skip', { prompt: uniq('s') }, { webhook_url: stack.receiver.url + p });
    const skipped = await waitDelivery('c_skip', failed, (d) => d.status !== 'pending', 20000, 'skipped');
    assert.equal(skipped.status, 'skipped');
    assert.equal(skipped.attempts.length, 1);
    assert.equal(skipped.attempts[0].error, 'skipped by hook');
    assert.equal(skipped.attempts[0].script_version, await hookVersion('skip_failed'));
    const delivered = await waitDelivery('c_skip', ok, (d) => d.status === 'delivered');
    assert.equal(delivered.attempts.length, 1);
    await h.sleep(700); // a late send of the skipped one would show up now
    const got = await stack.receiver.forPath(p);
    assert.equal(got.length, 1, `only the succeeded job was sent: ${JSON.stringify(got.map((g) => g.body))}`);
    assert.deepEqual(got[0].body, { job_id: ok, kept: true });
    assert.equal(got[0].verified, true);
  });

  test('a raising transform fails the attempt with SCRIPT_ERROR naming hooks/raiser.lua:3, is retried, and goes out once the file is fixed', T, async () => {
    const p = `/t/${uniq('raise')}`;
    const broken = sd.read(dir, 'hooks/raiser.lua');
    const line = sd.lineOf(broken, 'error(');
    const id = await submit('c_raise', { prompt: uniq('r') }, { webhook_url: stack.receiver.url + p });
    const failing = await waitDelivery('c_raise', id, (d) => d.attempts.length >= 2, 20000, 'two failed attempts');
    assert.equal(failing.status, 'pending', 'still scheduled');
    for (const a of failing.attempts) {
      assert.equal(a.error, `SCRIPT_ERROR: hooks/raiser.lua:${line}: shape not ready for job.succeeded`);
      assert.equal(a.script_version, sd.version(broken));
      assert.equal(a.status_code, null, 'nothing was sent');
    }
    assert.equal((await stack.receiver.forPath(p)).length, 0, 'nothing reached the receiver');
    assert.ok((await h.request(stack.gr.url + '/healthz')).status === 200);

    sd.write(dir, 'hooks/raiser.lua', RAISER_FIXED);
    const done = await waitDelivery('c_raise', id, (d) => d.status === 'delivered', 20000, 'delivered after the fix');
    const last = done.attempts[done.attempts.length - 1];
    assert.equal(last.status_code, 200);
    assert.equal(last.error, null);
    assert.equal(last.script_version, sd.version(RAISER_FIXED), 'the fixed version ran');
    assert.ok(done.attempts.slice(0, -1).every((a) => a.error && a.error.startsWith('SCRIPT_ERROR: hooks/raiser.lua:')));
    const [d] = await waitReceived(id);
    assert.deepEqual(d.body, { fixed: true, job_id: id, status: 'succeeded' });
    assert.equal(d.verified, true);
    assert.equal(d.id, done.delivery_id, 'same webhook-id as the failed attempts');
  });

  test('the customer\'s hook picks the shape: a request cannot choose another hook', T, async () => {
    const p = `/t/${uniq('pick')}`;
    for (const hook of ['slack', 'default']) {
      const r = await as('c_first_url')('POST', RUN, { input: { prompt: 'x' }, webhook_url: stack.receiver.url + p, hook });
      assert.equal(r.status, 400, r.text);
      assert.equal(r.body.error.code, 'INVALID_REQUEST');
    }
    // Not through the query string or a header either.
    const r = await as('c_first_url')('POST', `${RUN}?hook=slack`, { input: { prompt: uniq('q') }, webhook_url: stack.receiver.url + p }, { 'x-genrelay-hook': 'slack', 'x-hook': 'slack' });
    assert.equal(r.status, 202, r.text);
    const id = r.body.job_id;
    const [d] = await h.waitFor(async () => {
      const l = (await stack.receiver.forPath(p)).filter((x) => x.answered === 200);
      return l.length && l;
    }, 20000, { what: 'delivery' });
    assert.deepEqual(d.body, EXPECTED.first_url(await getJob('c_first_url', id)), 'first_url shape, not slack');
  });
});
