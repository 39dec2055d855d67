'use strict';
// fal.ai queue API (docs/provider-facts.md, "fal"), served under /fal.
//
//   POST /{owner}/{app}[/{path}][?fal_webhook=URL]   submit; body = model input
//   GET  /{owner}/{app}/requests/{id}/status[?logs=1] 202 IN_QUEUE|IN_PROGRESS, 200 COMPLETED
//   GET  /{owner}/{app}/requests/{id}/status/stream   SSE of the same objects
//   GET  /{owner}/{app}/requests/{id}                 the model's answer (200, or 422 {detail})
//   PUT  /{owner}/{app}/requests/{id}/cancel          202 CANCELLATION_REQUESTED | 400 ALREADY_COMPLETED | 404 NOT_FOUND
//   GET  /.well-known/jwks.json                       the webhook signing key
//
// Status, result and cancel take only owner/app (plus a "workflows"/"comfy"
// namespace), as fal and @fal-ai/client do; a sub-path there is a 404.
// Webhook: {request_id, gateway_request_id, status:"OK"|"ERROR", payload, error},
// signed with Ed25519 over "request_id\nuser_id\ntimestamp\nhex(sha256(body))".
// sim.payload_error: the success webhook has payload null and payload_error
// (the result could not be attached; it is still served by the result call).
// sim.urls false: the submit answer leaves out status_url/response_url/cancel_url.
// Failed deliveries are retried on fal's schedule (lib/callbacks.js).

const crypto = require('node:crypto');
const { parseSteer, phase, isObject, clearJobTimers } = require('../lib/common');

const NAMESPACES = new Set(['workflows', 'comfy']);

module.exports = function createFal(sim) {
  const jobs = sim.jobTable();
  const jwk = sim.falKeys.publicKey.export({ format: 'jwk' });
  const kid = crypto.createHash('sha256').update(jwk.x).digest('hex').slice(0, 16);

  // fal's error shape: {detail, error_type} plus X-Fal-Error-Type.
  const ERROR_TYPES = { 400: 'bad_request', 429: 'rate_limited', 500: 'internal_error', 502: 'runner_incomplete_response', 503: 'runner_scheduling_failure', 504: 'request_timeout' };
  function error(status, message) {
    const type = ERROR_TYPES[status];
    const headers = type ? { 'x-fal-error-type': type } : {};
    const body = type ? { detail: message, error_type: type } : { detail: message };
    return { status, body, headers };
  }
  function sendError(ctx, status, message, extraHeaders) {
    const e = error(status, message);
    ctx.send(status, e.body, Object.assign(e.headers, extraHeaders || {}));
  }

  // owner/app (with namespace) of a model id: the part status URLs use.
  function appIdOf(segments) {
    const n = NAMESPACES.has(segments[0]) ? 3 : 2;
    return segments.slice(0, n).join('/');
  }

  function urls(job) {
    const base = `${sim.baseUrl}/fal/${job.appId}/requests/${job.id}`;
    return { response_url: base, status_url: `${base}/status`, cancel_url: `${base}/cancel` };
  }

  // The queue status of a job now.
  function queueStatus(job) {
    if (job.canceled || phase(job) >= 1) return 'COMPLETED';
    return phase(job) < 0.2 ? 'IN_QUEUE' : 'IN_PROGRESS';
  }

  function outputOf(job) {
    const input = job.input;
    const seed = Number.isInteger(input.seed) ? input.seed : 42;
    if (/video/i.test(job.model)) {
      return { video: { url: job.files[0], content_type: 'video/mp4', file_name: job.files[0].split('/').pop(), file_size: 24 }, seed };
    }
    return {
      images: job.files.map((url) => ({ url, content_type: 'image/png', file_name: url.split('/').pop(), file_size: 68, width: 1, height: 1 })),
      timings: { inference: job.delayMs / 1000 },
      seed,
      has_nsfw_concepts: job.files.map(() => false),
      prompt: typeof input.prompt === 'string' ? input.prompt : '',
    };
  }

  function failureBody(job) {
    return { detail: [{ loc: ['body', 'prompt'], msg: job.message, type: 'value_error' }] };
  }

  function sendWebhook(job) {
    const ok = job.outcome === 'success';
    const payload = {
      request_id: job.id,
      gateway_request_id: job.id,
      status: ok ? 'OK' : 'ERROR',
      payload: ok ? outputOf(job) : failureBody(job),
      error: ok ? null : 'Invalid status code: 422',
    };
    if (ok && job.payloadError) {
      payload.payload = null;
      payload.payload_error = 'Response payload is not JSON serializable: the result is available from the queue';
    }
    // Signed in lib/callbacks.js: Ed25519 over "request_id\nuser_id\nts\nhex(sha256(body))".
    sim.callback({ provider: 'fal', url: job.webhook, mode: job.callback, body: JSON.stringify(payload), sign: { type: 'fal', requestId: job.id }, ref: job.id });
  }

  function submit(ctx) {
    if (ctx.jsonError) return sendError(ctx, 400, 'Request body is not valid JSON');
    const input = ctx.json === undefined ? {} : ctx.json;
    if (!isObject(input)) return sendError(ctx, 422, 'Input should be a valid dictionary');
    const steer = parseSteer(input.sim);
    const forced = sim.steerHttp('fal', ctx.raw, steer);
    if (forced) return sendError(ctx, forced, `simulated HTTP ${forced}`, forced === 429 || forced === 503 ? { 'retry-after': '1' } : null);

    const id = crypto.randomUUID();
    const n = Math.max(1, Math.min(4, Number.isInteger(input.num_images) ? input.num_images : 1));
    const video = /video/i.test(ctx.segments.join('/'));
    const job = {
      id,
      model: ctx.segments.join('/'),
      appId: appIdOf(ctx.segments),
      input,
      webhook: typeof ctx.query.fal_webhook === 'string' ? ctx.query.fal_webhook : null,
      created: Date.now(),
      delayMs: steer.delayMs,
      outcome: steer.outcome,
      callback: steer.callback,
      message: steer.message,
      payloadError: steer.payloadError,
      canceled: false,
      files: Array.from({ length: video ? 1 : n }, () => sim.fileUrl(video ? 'mp4' : 'png')),
      timers: [],
    };
    jobs.add(id, job);
    if (job.webhook) sim.after(job, job.delayMs, () => sendWebhook(job));
    ctx.send(200, { request_id: id, gateway_request_id: id, status: 'IN_QUEUE', queue_position: 0, ...(steer.urls ? urls(job) : {}) }, { 'x-fal-request-id': id });
  }

  // Finds the job of a /requests/{id} call; answers 404 itself when none.
  function lookup(ctx, prefix, id) {
    const job = jobs.get(id);
    if (!job || job.appId !== prefix) {
      sendError(ctx, 404, `Request ${id} not found`);
      return null;
    }
    return job;
  }

  function statusObject(job, withLogs) {
    const st = queueStatus(job);
    const o = { status: st, request_id: job.id, ...urls(job) };
    if (st === 'IN_QUEUE') o.queue_position = 0;
    if (withLogs) o.logs = st === 'IN_QUEUE' ? [] : [{ message: 'provsim: running', level: 'INFO', source: 'USER', timestamp: new Date(job.created).toISOString() }];
    if (st === 'COMPLETED') o.metrics = { inference_time: job.canceled ? null : job.delayMs / 1000 };
    return o;
  }

  function status(ctx, job) {
    const o = statusObject(job, ctx.query.logs === '1');
    ctx.send(o.status === 'COMPLETED' ? 200 : 202, o, { 'x-fal-request-id': job.id });
  }

  function statusStream(ctx, job) {
    ctx.res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-fal-request-id': job.id });
    const tick = () => {
      const o = statusObject(job, ctx.query.logs === '1');
      ctx.res.write(`data: ${JSON.stringify(o)}\n\n`);
      if (o.status === 'COMPLETED') return ctx.res.end();
      timer = setTimeout(tick, 100);
    };
    let timer = null;
    ctx.res.on('close', () => clearTimeout(timer));
    tick();
  }

  function result(ctx, job) {
    const h = { 'x-fal-request-id': job.id };
    if (job.canceled) return sendError(ctx, 499, 'Request was cancelled by the client', Object.assign(h, { 'x-fal-error-type': 'client_cancelled' }));
    if (phase(job) < 1) return sendError(ctx, 400, 'Request is still in progress', h);
    if (job.outcome === 'fail') return ctx.send(422, failureBody(job), h);
    ctx.send(200, outputOf(job), h);
  }

  function cancel(ctx, job) {
    if (job.canceled || phase(job) >= 1) return ctx.send(400, { status: 'ALREADY_COMPLETED' });
    job.canceled = true;
    job.canceledAt = Date.now();
    clearJobTimers(job); // no webhook for a canceled request
    ctx.send(202, { status: 'CANCELLATION_REQUESTED' });
  }

  function handle(ctx) {
    const seg = ctx.segments;
    if (ctx.method === 'GET' && ctx.path === '/.well-known/jwks.json') {
      return ctx.send(200, { keys: [{ kty: 'OKP', crv: 'Ed25519', x: jwk.x, kid, use: 'sig', alg: 'EdDSA' }] });
    }
    const auth = ctx.headers.authorization || '';
    if (!/^Key\s+\S+/.test(auth)) return sendError(ctx, 401, 'Missing or malformed Authorization header (expected "Key <FAL_KEY>")');

    const r = seg.indexOf('requests');
    if (r >= 2 && seg.length >= r + 2 && seg.length <= r + 4) {
      const prefix = seg.slice(0, r).join('/');
      const id = seg[r + 1];
      const rest = seg.slice(r + 2).join('/');
      const route = `${ctx.method} ${rest}`;
      if (!['GET ', 'GET status', 'GET status/stream', 'PUT cancel'].includes(route)) return sendError(ctx, 405, 'Method Not Allowed');
      if (route === 'PUT cancel' && (!jobs.get(id) || jobs.get(id).appId !== prefix)) return ctx.send(404, { status: 'NOT_FOUND' });
      const job = lookup(ctx, prefix, id);
      if (!job) return;
      if (route === 'GET ') return result(ctx, job);
      if (route === 'GET status') return status(ctx, job);
      if (route === 'GET status/stream') return statusStream(ctx, job);
      return cancel(ctx, job);
    }
    if (ctx.method === 'POST' && seg.length >= 2) return submit(ctx);
    sendError(ctx, seg.length >= 2 ? 405 : 404, seg.length >= 2 ? 'Method Not Allowed' : 'Not Found');
  }

  return { name: 'fal', handle, error, jobs };
};
