'use strict';
// Customer webhook shapes (issue 4): each shipped hook's body at a real
// receiver with a valid signature over exactly the bytes sent; a hook that
// returns nil skips the delivery; a hook that raises fails the attempt with
// SCRIPT_ERROR naming file and line, is retried, and goes out once the file is
// fixed; attempts record the hook version that ran; a request cannot pick a
// hook.
//
//   GENRELAY_BIN=$PWD/build/genrelay node --test tests/e2e/hooks.test.js
//
// genrelay runs on a private copy of scripts/ (tests rewrite hook files).
// Every customer has its own hook; every test its own receiver path.

const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const http = require('node:http');
const path = require('node:path');
const h = require('./lib/harness');
const sd = require('./lib/scriptdir');
const { verifyStandardWebhook, secretKey } = require(path.join(h.SRC, 'examples', 'receiver.js'));

const MODEL = 'fal-ai/flux/dev';
const RUN = `/v1/models/${MODEL}/run`;
const T = { timeout: 60000 };
const SECRET = h.ACME.webhook_secret; // every customer here signs with it, so one receiver verifies all

const SHIPPED = ['default', 'modelslab_compat', 'artificialstudio_compat', 'slack', 'first_url'];

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
  // A string body sent as is, with its own Content-Type; headers a hook may
  // not set (webhook-*, Content-Length) are dropped.
  'hooks/text_body.lua': `return {
	transform = function(event, ctx)
		return {
			body = "job " .. event.job_id .. " is " .. event.status .. ";  {\\"not\\" : json}  \\n",
			headers = { ["Content-Type"] = "text/plain; charset=utf-8", ["X-Shape"] = "text",
				["webhook-id"] = "msg_forged", ["Webhook-Signature"] = "v1,forged", ["Content-Length"] = "1" },
		}
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
  before(async () => { raw = await startRawReceiver(); });
  after(async () => { if (raw) await raw.close(); });

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

  test('a string body is sent byte for byte, with the hook\'s Content-Type, signed over exactly those bytes; webhook-* headers cannot be forged', T, async () => {
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
