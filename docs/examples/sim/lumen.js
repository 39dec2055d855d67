'use strict';
// A provsim surface for the fictional Lumen API of
// docs/examples/providers/lumen.lua (see docs/providers.md, "Run it against
// provsim"). Copy it to tests/sim/providers/lumen.js and register it in
// tests/sim/provsim.js (PROVIDERS list and the `providers` table).
//
//   POST /v2/tasks               {model, params, callback_url?, reference?} -> 201 {task}
//   GET  /v2/tasks/{id}          {task}
//   POST /v2/tasks/{id}/cancel   200 {task} while queued/running, else 409
//
// Auth: X-Api-Key, any non-empty value. Task states queued -> running ->
// succeeded | failed | canceled. The callback {event:"task.finished", task} is
// signed with Lumen-Signature: t=<unix>,v1=<hex HMAC-SHA256("<t>.<body>")>
// under SECRET. Steering: `sim` in params, as for the other surfaces.

const crypto = require('node:crypto');
const { parseSteer, phase, isObject, clearJobTimers } = require('../lib/common');

const SECRET = 'lumen-sim-secret';

module.exports = function createLumen(sim) {
  const jobs = sim.jobTable();

  // Used by provsim for /_control/lumen/down (503) and http_status steering.
  function error(status, message) {
    return { status, body: { error: { type: 'error', message } }, headers: {} };
  }
  const sendError = (ctx, status, message, headers) => ctx.send(status, error(status, message).body, headers);

  function task(job) {
    let state = 'queued';
    if (job.canceled) state = 'canceled';
    else if (phase(job) >= 1) state = job.outcome === 'success' ? 'succeeded' : 'failed';
    else if (phase(job) >= 0.2) state = 'running';
    const t = { id: job.id, state };
    if (state === 'succeeded') t.outputs = [{ url: job.file, mime: 'image/png' }];
    if (state === 'failed') t.failure = { message: job.message };
    return t;
  }

  function sendCallback(job) {
    const body = JSON.stringify({ event: 'task.finished', task: task(job) });
    const ts = String(Math.floor(Date.now() / 1000));
    const v1 = crypto.createHmac('sha256', SECRET).update(`${ts}.${body}`).digest('hex');
    sim.callback({ provider: 'lumen', url: job.webhook, mode: job.callback, body, ref: job.id,
      sign: { type: 'static', headers: { 'lumen-signature': `t=${ts},v1=${v1}` } } });
  }

  function submit(ctx) {
    const b = ctx.json;
    if (ctx.jsonError || !isObject(b) || typeof b.model !== 'string') return sendError(ctx, 422, 'model is required');
    const params = isObject(b.params) ? b.params : {};
    const steer = parseSteer(params.sim);
    const forced = sim.steerHttp('lumen', ctx.raw, steer);
    if (forced) return sendError(ctx, forced, `simulated HTTP ${forced}`, forced === 429 || forced === 503 ? { 'retry-after': '1' } : null);
    const job = {
      id: 'tsk_' + sim.hexId(), webhook: typeof b.callback_url === 'string' ? b.callback_url : null,
      created: Date.now(), delayMs: steer.delayMs, outcome: steer.outcome, callback: steer.callback,
      message: steer.message, canceled: false, file: sim.fileUrl('png'), timers: [],
    };
    jobs.add(job.id, job);
    if (job.webhook) sim.after(job, job.delayMs, () => sendCallback(job));
    ctx.send(201, { task: task(job) });
  }

  function handle(ctx) {
    const seg = ctx.segments;
    if (!ctx.headers['x-api-key']) return sendError(ctx, 401, 'missing X-Api-Key');
    if (seg[0] !== 'v2' || seg[1] !== 'tasks') return sendError(ctx, 404, 'not found');
    if (seg.length === 2 && ctx.method === 'POST') return submit(ctx);
    const job = seg.length >= 3 ? jobs.get(seg[2]) : null;
    if (!job) return sendError(ctx, 404, 'task not found');
    if (seg.length === 3 && ctx.method === 'GET') return ctx.send(200, { task: task(job) });
    if (seg.length === 4 && seg[3] === 'cancel' && ctx.method === 'POST') {
      const st = task(job).state;
      if (st !== 'queued' && st !== 'running') return sendError(ctx, 409, `task is ${st}`);
      job.canceled = true;
      clearJobTimers(job);
      return ctx.send(200, { task: task(job) });
    }
    sendError(ctx, 405, 'method not allowed');
  }

  return { name: 'lumen', handle, error, jobs };
};
