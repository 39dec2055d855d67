'use strict';
// A third front dropped into scripts/fronts/ under a running genrelay: its
// routes appear with hot reload, a broken version changes nothing but the
// error, a raising front answers 502 in its own error shape, removing it
// removes its routes; and genrelay stops cleanly with a status stream open.

const { describe, test } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const h = require('../lib/harness');
const sd = require('../lib/scriptdir');

// A minimal front: POST /echo/run/{model...} waits for the job and answers
// {id, state, urls}; GET /echo/boom raises; errors are {oops: message}.
const ECHO = `
return {
  request = function(req, ctx)
    if req.path == "/boom" then error("kaboom") end
    local model = req.path:match("^/run/(.+)$")
    if not model then return { op = "respond", status = 404, body = { oops = "no route" } } end
    if type(req.body) ~= "table" then return { op = "respond", status = 400, body = { oops = req.body_error or "object please" } } end
    return { op = "submit", model = model, input = req.body, wait = 20, reply = "done" }
  end,
  respond = function(reply, job, req, ctx)
    local urls = {}
    for i, it in ipairs(type(job.output) == "table" and job.output.items or {}) do urls[i] = it.url end
    return { status = 200, body = { id = job.job_id, state = job.status, urls = ctx.array(urls), v = VERSION } }
  end,
  error = function(err, req, ctx) return { status = err.status, body = { oops = err.message, code = err.code } } end,
}
`;
const echo = (v) => `local VERSION = ${v}\n${ECHO}`;

describe('a front dropped in under a running genrelay', () => {
  const dir = sd.copyScripts();
  const stack = h.useStack({ config: { scripts: dir } });
  const K = () => ({ authorization: `Key ${h.ACME.api_key}`, 'content-type': 'application/json' });
  const listed = async () => (await (stack.gr.admin || stack.api)('GET', '/v1/scripts')).body.data.find((s) => s.kind === 'front' && s.name === 'echo');

  test('appears, runs jobs, survives a broken version, answers 502 when it raises, goes away', async () => {
    const before = await h.request(`${stack.gr.url}/echo/run/fal-ai/flux/dev`, { method: 'POST', headers: K(), body: '{}' });
    assert.equal(before.status, 404);
    assert.equal(before.body.error.code, 'NOT_FOUND');

    sd.write(dir, 'fronts/echo.lua', echo(1));
    await h.waitFor(listed, 10000, { what: 'echo listed' });
    const r = await h.request(`${stack.gr.url}/echo/run/fal-ai/flux/dev`, { method: 'POST', headers: K(), body: JSON.stringify({ prompt: 'echo' }) });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.state, 'succeeded');
    assert.equal(r.body.v, 1);
    assert.match(r.body.urls[0], new RegExp(`^${stack.sim.url}/files/`));
    const job = (await stack.api('GET', `/v1/jobs/${r.body.id}`)).body;
    assert.equal(job.provider, 'fal');

    // the core's checks in the front's shape
    const unknown = await h.request(`${stack.gr.url}/echo/run/nobody/serves-this`, { method: 'POST', headers: K(), body: '{}' });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.code, 'MODEL_NOT_FOUND');
    const nokey = await h.request(`${stack.gr.url}/echo/run/fal-ai/flux/dev`, { method: 'POST', body: '{}' });
    assert.equal(nokey.status, 401);
    assert.equal(nokey.body.code, 'UNAUTHORIZED');
    const boom = await h.request(`${stack.gr.url}/echo/boom`, { headers: K() });
    assert.equal(boom.status, 502);
    assert.equal(boom.body.code, 'SCRIPT_ERROR');
    assert.ok(!/kaboom|acme-key/.test(boom.text), boom.text);

    // a broken version: the running one stays, the error is shown
    const v1 = (await listed()).version;
    sd.write(dir, 'fronts/echo.lua', 'return { request = function( end }');
    await h.waitFor(async () => (await listed()).last_error, 10000, { what: 'last_error' });
    assert.equal((await listed()).version, v1);
    const still = await h.request(`${stack.gr.url}/echo/run/fal-ai/flux/dev`, { method: 'POST', headers: K(), body: '{}' });
    assert.equal(still.body.v, 1);

    sd.write(dir, 'fronts/echo.lua', echo(2));
    await h.waitFor(async () => {
      const x = await h.request(`${stack.gr.url}/echo/run/fal-ai/flux/dev`, { method: 'POST', headers: K(), body: '{}' });
      return x.body.v === 2;
    }, 10000, { what: 'version 2 answering' });

    require('node:fs').rmSync(require('node:path').join(dir, 'fronts', 'echo.lua'));
    await h.waitFor(async () => !(await listed()), 10000, { what: 'echo gone' });
    const gone = await h.request(`${stack.gr.url}/echo/run/fal-ai/flux/dev`, { method: 'POST', headers: K(), body: '{}' });
    assert.equal(gone.status, 404);
    assert.equal(gone.body.error.code, 'NOT_FOUND');
  });

  test('genrelay stops cleanly while a fal status stream is open', async () => {
    const sub = await h.request(`${stack.gr.url}/fal/queue/fal-ai/flux/dev`, { method: 'POST', headers: K(), body: JSON.stringify({ prompt: 'long', sim: { delay_ms: 60000 } }) });
    assert.equal(sub.status, 200, sub.text);
    const chunks = [];
    const ended = new Promise((resolve) => {
      const req = http.get(`${stack.gr.url}/fal/queue/fal-ai/flux/requests/${sub.body.request_id}/status/stream`, { headers: K() }, (res) => {
        res.on('data', (c) => chunks.push(c.toString()));
        res.on('end', () => resolve('end'));
        res.on('error', () => resolve('error'));
      });
      req.on('error', () => resolve('error'));
    });
    await h.waitFor(() => chunks.join('').includes('IN_'), 10000, { what: 'first event' });
    const exit = await stack.gr.stop();
    assert.equal(exit.code, 0, JSON.stringify(exit));
    assert.ok(['end', 'error'].includes(await ended));
    assert.match(chunks.join(''), /^data: \{.*"status":"IN_(QUEUE|PROGRESS)"/);
  });
});
