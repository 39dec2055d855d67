'use strict';
// Krea API (docs/provider-facts.md, "Krea"), served under /krea.
//
//   POST   /generate/{family}/{provider}/{model}   body = model input; header X-Webhook-URL
//   GET    /jobs/{id}                              the job object
//   GET    /jobs?limit=&cursor=&status=            {items, next_cursor}
//   DELETE /jobs/{id}                              200 empty while queued/processing
//
// Job object: {job_id, status, created_at, completed_at, result}; states
// queued -> processing -> completed | failed | cancelled, or with sim.states
// "full" the whole documented list: backlogged -> queued -> scheduled ->
// processing -> sampling -> intermediate-complete -> terminal (each an equal
// share of delay_ms). Completed jobs carry
// result.urls, failed ones result.error. The webhook is the job object, sent
// when the job reaches any terminal state (cancelled too); Krea documents no
// retries, so a failed delivery is not retried. Errors: {error}.

const crypto = require('node:crypto');
const { parseSteer, phase, isoNow, isObject, bearer, clearJobTimers } = require('../lib/common');

// Krea's non-terminal states in order (its job-lifecycle document).
const FULL_STATES = ['backlogged', 'queued', 'scheduled', 'processing', 'sampling', 'intermediate-complete'];

module.exports = function createKrea(sim) {
  const jobs = sim.jobTable();

  function error(status, message) {
    return { status, body: { error: message }, headers: {} };
  }
  function sendError(ctx, status, message, headers) {
    ctx.send(status, { error: message }, headers);
  }

  function state(job) {
    if (job.canceled) return 'cancelled';
    const p = phase(job);
    if (p >= 1) return job.outcome === 'success' ? 'completed' : 'failed';
    if (job.states === 'full') return FULL_STATES[Math.min(FULL_STATES.length - 1, Math.floor(p * FULL_STATES.length))];
    return p < 0.2 ? 'queued' : 'processing';
  }

  function jobObject(job) {
    const st = state(job);
    let result = null;
    let completedAt = null;
    if (st === 'completed') result = { urls: job.files };
    if (st === 'failed') result = { error: job.message };
    if (st === 'completed' || st === 'failed') completedAt = isoNow(job.created + job.delayMs);
    if (st === 'cancelled') completedAt = isoNow(job.canceledAt);
    return { job_id: job.id, status: st, created_at: isoNow(job.created), completed_at: completedAt, result };
  }

  function sendWebhook(job) {
    sim.callback({ provider: 'krea', url: job.webhook, mode: job.callback, body: JSON.stringify(jobObject(job)), ref: job.id });
  }

  function submit(ctx) {
    if (ctx.jsonError) return sendError(ctx, 400, 'Invalid JSON body');
    if (!isObject(ctx.json)) return sendError(ctx, 400, 'Request body must be a JSON object');
    const input = ctx.json;
    const steer = parseSteer(input.sim);
    const forced = sim.steerHttp('krea', ctx.raw, steer);
    if (forced) return sendError(ctx, forced, `simulated HTTP ${forced}`, forced === 429 || forced === 503 ? { 'retry-after': '1' } : null);

    const family = ctx.segments[1];
    const ext = family === 'video' ? 'mp4' : 'png';
    const webhook = ctx.headers['x-webhook-url'] || null;
    const id = crypto.randomUUID();
    const job = {
      id,
      model: ctx.segments.slice(1).join('/'),
      input,
      webhook,
      created: Date.now(),
      delayMs: steer.delayMs,
      outcome: steer.outcome,
      callback: steer.callback,
      // echo_auth: a provider that quotes the request's credentials back.
      message: steer.echoAuth ? `${steer.message} (Authorization: ${ctx.headers.authorization || ''})` : steer.message,
      states: steer.states,
      canceled: false,
      files: [sim.fileUrl(ext)],
      timers: [],
    };
    jobs.add(id, job);
    if (webhook) sim.after(job, job.delayMs, () => sendWebhook(job));
    ctx.send(200, jobObject(job));
  }

  function list(ctx) {
    const limit = Math.max(1, Math.min(1000, parseInt(ctx.query.limit, 10) || 100));
    const all = [...jobs.values()].reverse().map(jobObject).filter((j) => !ctx.query.status || j.status === ctx.query.status);
    let start = 0;
    if (ctx.query.cursor) {
      const i = all.findIndex((j) => j.job_id === ctx.query.cursor);
      start = i >= 0 ? i : all.length;
    }
    const items = all.slice(start, start + limit);
    const next = all[start + limit];
    ctx.send(200, { items, next_cursor: next ? next.job_id : null });
  }

  function cancel(ctx, job) {
    const st = state(job);
    if (st !== 'queued' && st !== 'processing') return sendError(ctx, 400, `Job cannot be cancelled in state ${st}`);
    job.canceled = true;
    job.canceledAt = Date.now();
    clearJobTimers(job);
    if (job.webhook) sendWebhook(job);
    ctx.send(200, null);
  }

  function handle(ctx) {
    const seg = ctx.segments;
    if (!bearer(ctx.headers)) return sendError(ctx, 401, 'Unauthorized');
    if (seg[0] === 'generate' && seg.length >= 4) {
      if (ctx.method !== 'POST') return sendError(ctx, 405, 'Method not allowed');
      return submit(ctx);
    }
    if (seg[0] === 'jobs' && seg.length === 1 && ctx.method === 'GET') return list(ctx);
    if (seg[0] === 'jobs' && seg.length === 2) {
      const job = jobs.get(seg[1]);
      if (ctx.method !== 'GET' && ctx.method !== 'DELETE') return sendError(ctx, 405, 'Method not allowed');
      if (!job) return sendError(ctx, 404, 'Job not found');
      if (ctx.method === 'GET') return ctx.send(200, jobObject(job));
      return cancel(ctx, job);
    }
    sendError(ctx, 404, 'Not found');
  }

  return { name: 'krea', handle, error, jobs };
};
