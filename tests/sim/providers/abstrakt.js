'use strict';
// abstrakt API, docs version A (docs/provider-facts.md, "abstrakt"), served under /abstrakt.
//
//   POST   /v1/models/{model}/run   {input, sync?, webhook_url?, webhook_secret?}; model may contain slashes
//   GET    /v1/jobs/{id}            {job_id, request_id, status, model_id, output, error, ...}
//   DELETE /v1/jobs/{id}            cancel while pending/processing
//
// With webhook_url, or sync:false, the run answers 202 {job_id, request_id,
// status:"processing", model_id, message} at once. Otherwise (sync defaults
// to true) it holds the request until the job ends and answers 200 with the
// finished job, or 202 as above after the sync window (55 s, --abstrakt-sync-ms).
// Job states pending -> processing -> completed | failed | cancelled.
// Webhook: {job_id, status:"succeeded", output:{type, items}, credits_used,
// completed_at} or {job_id, status:"failed", error:{code, message}}, signed with
// X-Abstrakt-Signature = hex HMAC-SHA256(secret, body) or, in timestamp mode,
// HMAC over "{ts}.{body}" with X-Abstrakt-Timestamp. The secret is the run's
// own webhook_secret when it passed one (the tutorial's per-request secret),
// else --abstrakt-secret (sim.sign_with "account" forces the latter).
// sim.form picks the callback form: "api" (above, the default), "tutorial"
// {request_id, status:"completed"|"failed", result:{items}, metrics, timestamp}
// or "envelope" {event:"job.completed"|"job.failed", timestamp, data:{...}};
// with sim.progress the envelope form also sends job.started and job.progress.
// Failed deliveries are retried on abstrakt's schedule (lib/callbacks.js).
// Errors: {error:{code, message}} (abstrakt's error shape is not documented).

const { parseSteer, phase, isoNow, isObject, bearer, clearJobTimers } = require('../lib/common');

module.exports = function createAbstrakt(sim, opts = {}) {
  const jobs = sim.jobTable();
  const syncMs = opts.syncMs || 55000;

  const CODES = { 400: 'INVALID_REQUEST', 401: 'UNAUTHORIZED', 404: 'NOT_FOUND', 409: 'CONFLICT', 429: 'RATE_LIMITED', 500: 'INTERNAL_ERROR', 502: 'BAD_GATEWAY', 503: 'UNAVAILABLE', 504: 'TIMEOUT' };
  function error(status, message, code) {
    return { status, body: { error: { code: code || CODES[status] || 'ERROR', message } }, headers: {} };
  }
  function sendError(ctx, status, message, headers, code) {
    ctx.send(status, error(status, message, code).body, headers);
  }

  function state(job) {
    if (job.canceled) return 'cancelled';
    const p = phase(job);
    if (p >= 1) return job.outcome === 'success' ? 'completed' : 'failed';
    return p < 0.2 ? 'pending' : 'processing';
  }

  function output(job) {
    return { type: job.type, items: job.files.map((url) => ({ type: job.type, url })) };
  }

  function jobObject(job) {
    const st = state(job);
    const done = st === 'completed' || st === 'failed';
    return {
      job_id: job.id,
      request_id: job.requestId,
      status: st,
      model_id: job.model,
      output: st === 'completed' ? output(job) : null,
      error: st === 'failed' ? { code: 'PROVIDER_FAILURE', message: job.message } : null,
      credits_used: st === 'completed' ? 1 : 0,
      created_at: isoNow(job.created),
      completed_at: done ? isoNow(job.created + job.delayMs) : st === 'cancelled' ? isoNow(job.canceledAt) : null,
    };
  }

  function accepted(job) {
    return { job_id: job.id, request_id: job.requestId, status: 'processing', model_id: job.model, message: `Job accepted; poll GET /v1/jobs/${job.id} or wait for the webhook` };
  }

  function finished(job) {
    const o = { job_id: job.id, request_id: job.requestId, status: state(job), model_id: job.model, duration_ms: job.delayMs, credits_used: job.outcome === 'success' ? 1 : 0 };
    if (job.canceled) o.error = { code: 'CANCELLED', message: 'Job was cancelled' };
    else if (job.outcome === 'success') o.output = output(job);
    else o.error = { code: 'PROVIDER_FAILURE', message: job.message };
    return o;
  }

  // The terminal callback body in the job's form.
  function webhookBody(job) {
    const ok = job.outcome === 'success';
    const err = { code: 'PROVIDER_FAILURE', message: job.message };
    const metrics = { inference_time: job.delayMs / 1000, queue_time: 0 };
    if (job.form === 'tutorial') {
      // The tutorial's form; its request_id is the id the run answered with.
      return ok
        ? { request_id: job.id, status: 'completed', result: { items: output(job).items }, metrics, timestamp: isoNow() }
        : { request_id: job.id, status: 'failed', error: job.message, timestamp: isoNow() };
    }
    if (job.form === 'envelope') {
      const data = ok
        ? { request_id: job.id, status: 'completed', model: job.model, output: { items: output(job).items }, metrics }
        : { request_id: job.id, status: 'failed', model: job.model, error: err };
      return { event: ok ? 'job.completed' : 'job.failed', timestamp: isoNow(), data };
    }
    return ok
      ? { job_id: job.id, status: 'succeeded', output: output(job), credits_used: 1, completed_at: isoNow() }
      : { job_id: job.id, status: 'failed', error: err };
  }

  function post(job, body, mode) {
    // Signed in lib/callbacks.js (X-Abstrakt-Signature, optionally with X-Abstrakt-Timestamp).
    const secret = job.signWith === 'request' ? job.secret : null;
    sim.callback({ provider: 'abstrakt', url: job.webhook, mode, body: JSON.stringify(body), sign: { type: 'abstrakt', secret }, ref: job.id });
  }

  function sendWebhook(job) {
    post(job, webhookBody(job), job.callback);
  }

  // The envelope form's non-terminal events (sim.progress).
  function sendProgress(job, event, extra) {
    if (job.callback === 'none') return;
    post(job, { event, timestamp: isoNow(), data: Object.assign({ request_id: job.id, status: 'processing', model: job.model }, extra) }, 'normal');
  }

  function run(ctx, model) {
    if (ctx.jsonError || !isObject(ctx.json)) return sendError(ctx, 400, 'Request body must be a JSON object');
    const body = ctx.json;
    if (!isObject(body.input)) return sendError(ctx, 400, '`input` must be an object');
    if (body.webhook_url !== undefined && (typeof body.webhook_url !== 'string' || !/^https?:\/\//.test(body.webhook_url))) {
      return sendError(ctx, 400, '`webhook_url` must be an http(s) URL');
    }
    if (body.webhook_secret !== undefined && (typeof body.webhook_secret !== 'string' || !body.webhook_secret)) {
      return sendError(ctx, 400, '`webhook_secret` must be a non-empty string');
    }
    const steer = parseSteer(body.input.sim);
    const forced = sim.steerHttp('abstrakt', ctx.raw, steer);
    if (forced) return sendError(ctx, forced, `simulated HTTP ${forced}`, forced === 429 || forced === 503 ? { 'retry-after': '1' } : null);

    const type = /video/i.test(model) ? 'video' : 'image';
    const id = 'job_' + sim.hexId();
    const job = {
      id,
      requestId: 'req_' + sim.hexId(),
      model,
      type,
      input: body.input,
      webhook: body.webhook_url || null,
      created: Date.now(),
      delayMs: steer.delayMs,
      outcome: steer.outcome,
      callback: steer.callback,
      message: steer.message,
      form: steer.form,
      signWith: steer.signWith,
      secret: body.webhook_secret || null,
      canceled: false,
      files: [sim.fileUrl(type === 'video' ? 'mp4' : 'png')],
      timers: [],
    };
    jobs.add(id, job);
    if (job.webhook) {
      if (job.form === 'envelope' && steer.progress) {
        sim.after(job, job.delayMs * 0.2, () => sendProgress(job, 'job.started', {}));
        sim.after(job, job.delayMs * 0.5, () => sendProgress(job, 'job.progress', { progress: 0.5 }));
      }
      sim.after(job, job.delayMs, () => sendWebhook(job));
    }

    const sync = body.sync !== false && !job.webhook;
    if (!sync) return ctx.send(202, accepted(job));
    // Sync mode: hold the request until the job ends or the window passes.
    const wait = Math.min(job.delayMs, syncMs);
    // (The timer is not the job's, so a cancel does not strand the request.)
    // A job that ends inside the window is answered finished: a timer may
    // fire a millisecond before the job's clock says it ended, so the answer
    // waits for that clock (at most a few more milliseconds).
    const settle = () => {
      if (ctx.res.destroyed) return;
      const live = state(job) === 'pending' || state(job) === 'processing';
      if (live && job.delayMs <= syncMs && !job.canceled) return sim.after(null, 2, settle);
      if (live) ctx.send(202, accepted(job));
      else ctx.send(200, finished(job));
    };
    sim.after(null, wait, settle);
  }

  function cancel(ctx, job) {
    const st = state(job);
    if (st !== 'pending' && st !== 'processing') return sendError(ctx, 409, `Job is ${st} and cannot be cancelled`, null, 'JOB_NOT_CANCELLABLE');
    job.canceled = true;
    job.canceledAt = Date.now();
    clearJobTimers(job);
    ctx.send(200, jobObject(job));
  }

  function handle(ctx) {
    const seg = ctx.segments;
    if (!bearer(ctx.headers)) return sendError(ctx, 401, 'Missing or invalid API key');
    if (seg[0] !== 'v1') return sendError(ctx, 404, 'Not found');
    if (seg[1] === 'models' && seg.length >= 4 && seg[seg.length - 1] === 'run') {
      if (ctx.method !== 'POST') return sendError(ctx, 405, 'Method not allowed', null, 'METHOD_NOT_ALLOWED');
      return run(ctx, seg.slice(2, -1).join('/'));
    }
    if (seg[1] === 'jobs' && seg.length === 3) {
      const job = jobs.get(seg[2]);
      if (ctx.method !== 'GET' && ctx.method !== 'DELETE') return sendError(ctx, 405, 'Method not allowed', null, 'METHOD_NOT_ALLOWED');
      if (!job) return sendError(ctx, 404, 'Job not found', null, 'JOB_NOT_FOUND');
      if (ctx.method === 'GET') return ctx.send(200, jobObject(job));
      return cancel(ctx, job);
    }
    sendError(ctx, 404, 'Not found');
  }

  return { name: 'abstrakt', handle, error, jobs };
};
