'use strict';
// ModelsLab API v6 (docs/provider-facts.md, "ModelsLab"), served under /modelslab, so the
// adapter's base_url is http://127.0.0.1:PORT/modelslab/api/v6.
//
//   POST /api/v6/{family}/{endpoint}   submit (images/text2img, video/text2video, ...);
//                                       the model input is the body itself, with `key`,
//                                       optional `webhook` and `track_id`
//   POST /api/v6/{family}/fetch/{id}   body {key}
//   POST /api/v6/{family}/fetch        body {key, request_id}   (documented variant)
//
// Every call needs `key` in the body (401 {status:"error",message} without).
// Answers are HTTP 200 with status processing | success | error; the steered
// http_status and the down switch answer that HTTP status with the error shape.
// A job with delay_ms 0 answers its final result straight from the submit.
// Webhook: success {status:"success",id,output,generationTime,track_id,meta},
// failure {status:"failed",id,message,track_id}; unsigned; best effort (a
// failed delivery is not retried). With sim.progress a `processing` webhook
// (the submit answer's shape: eta, future_links, fetch_result) goes out at
// 30 % of delay_ms too.

const { parseSteer, phase, isObject } = require('../lib/common');
const { callbackRefusal } = require('../lib/strict');

module.exports = function createModelsLab(sim, { queueLimit = 0, strictCallbacks = false } = {}) {
  const jobs = sim.jobTable();
  // --modelslab-queue-limit: a plan's queue of N requests (queued = not finished yet).
  const queue = { limit: queueLimit, refused: 0, maxQueued: 0 };
  function queued() {
    let n = 0;
    for (const j of jobs.values()) if (phase(j) < 1) n++;
    return n;
  }
  let nextId = 100000;

  function error(status, message) {
    const body = { status: 'error', message };
    if (status === 429) body.retry_after = 1;
    return { status, body, headers: {} };
  }
  function sendError(ctx, status, message, headers) {
    ctx.send(status, error(status, message).body, headers);
  }

  function meta(job) {
    const i = job.input;
    return {
      prompt: typeof i.prompt === 'string' ? i.prompt : '',
      model_id: typeof i.model_id === 'string' ? i.model_id : null,
      width: Number(i.width) || 512,
      height: Number(i.height) || 512,
      seed: Number.isInteger(i.seed) ? i.seed : 42,
      samples: job.files.length,
    };
  }

  function fetchUrl(job) {
    return `${sim.baseUrl}/modelslab/api/v6/${job.family}/fetch/${job.id}`;
  }

  // The body of a submit or fetch answer for the job's current state.
  function answer(job) {
    const p = phase(job);
    if (p < 1) {
      return {
        status: 'processing',
        tip: 'Your request is processing; fetch the result with fetch_result or wait for the webhook',
        eta: Math.max(1, Math.ceil((job.created + job.delayMs - Date.now()) / 1000)),
        message: 'Request is being processed',
        fetch_result: fetchUrl(job),
        id: job.id,
        output: [],
        meta: meta(job),
        future_links: job.files,
      };
    }
    if (job.outcome === 'fail') return { status: 'error', id: job.id, message: job.message };
    return {
      status: 'success',
      generationTime: job.delayMs / 1000,
      id: job.id,
      output: job.files,
      proxy_links: job.files,
      meta: meta(job),
      nsfw_content_detected: false,
    };
  }

  function sendWebhook(job) {
    const trackId = job.input.track_id === undefined ? null : job.input.track_id;
    const body =
      job.outcome === 'success'
        ? { status: 'success', id: job.id, output: job.files, generationTime: job.delayMs / 1000, track_id: trackId, meta: meta(job) }
        : { status: 'failed', id: job.id, message: job.message, track_id: trackId };
    sim.callback({ provider: 'modelslab', url: job.webhook, mode: job.callback, body: JSON.stringify(body), ref: String(job.id) });
  }

  function sendProgress(job) {
    const body = Object.assign(answer(job), { track_id: job.input.track_id === undefined ? null : job.input.track_id });
    sim.callback({ provider: 'modelslab', url: job.webhook, mode: 'normal', body: JSON.stringify(body), ref: String(job.id) });
  }

  function submit(ctx, family, endpoint) {
    const input = ctx.json;
    const steer = parseSteer(input.sim);
    const forced = sim.steerHttp('modelslab', ctx.raw, steer);
    if (forced) return sendError(ctx, forced, `simulated HTTP ${forced}`, forced === 429 || forced === 503 ? { 'retry-after': '1' } : null);
    if (typeof input.prompt !== 'string' && /^text2/.test(endpoint)) return sendError(ctx, 400, 'The prompt field is required.');
    if (strictCallbacks && typeof input.webhook === 'string' && input.webhook) {
      const why = callbackRefusal(input.webhook, { https: true });
      if (why) return sendError(ctx, 400, `The webhook field is invalid: ${why}.`);
    }
    if (queue.limit > 0) {
      const n = queued();
      if (n >= queue.limit) {
        queue.refused++;
        // The wait is in the body, not a header (docs/provider-facts.md).
        return ctx.send(429, { status: 'error', message: `Rate limit exceeded. Maximum ${queue.limit} queued requests allowed.`, retry_after: 30 });
      }
      queue.maxQueued = Math.max(queue.maxQueued, n + 1);
    }

    const video = family === 'video';
    const n = video ? 1 : Math.max(1, Math.min(4, parseInt(input.samples, 10) || 1));
    const id = nextId++;
    const job = {
      id,
      family,
      endpoint,
      input,
      webhook: typeof input.webhook === 'string' && input.webhook ? input.webhook : null,
      created: Date.now(),
      delayMs: steer.delayMs,
      outcome: steer.outcome,
      callback: steer.callback,
      message: steer.message,
      files: Array.from({ length: n }, () => sim.fileUrl(video ? (input.output_type === 'gif' ? 'gif' : 'mp4') : 'png')),
      timers: [],
    };
    jobs.add(id, job);
    if (job.webhook) {
      if (steer.progress && job.delayMs > 0 && job.callback !== 'none') sim.after(job, job.delayMs * 0.3, () => sendProgress(job));
      sim.after(job, job.delayMs, () => sendWebhook(job));
    }
    ctx.send(200, answer(job));
  }

  function fetch(ctx, id) {
    const job = id === undefined || id === null || id === '' ? null : jobs.get(id);
    if (!job) return ctx.send(200, { status: 'error', message: 'Request not found' });
    ctx.send(200, answer(job));
  }

  function handle(ctx) {
    const seg = ctx.segments;
    if (seg[0] !== 'api' || seg[1] !== 'v6' || seg.length < 4) return sendError(ctx, 404, 'Not found');
    if (ctx.method !== 'POST') return sendError(ctx, 405, 'Method not allowed');
    if (ctx.jsonError || !isObject(ctx.json)) return sendError(ctx, 400, 'Request body must be a JSON object');
    if (typeof ctx.json.key !== 'string' || !ctx.json.key) return sendError(ctx, 401, 'Invalid API key provided');
    const family = seg[2];
    if (seg[3] === 'fetch') {
      if (seg.length === 5) return fetch(ctx, seg[4]);
      if (seg.length === 4) return fetch(ctx, ctx.json.request_id);
      return sendError(ctx, 404, 'Not found');
    }
    if (seg.length !== 4) return sendError(ctx, 404, 'Not found');
    submit(ctx, family, seg[3]);
  }

  function queueStats() {
    return { limit: queue.limit, queued: queued(), max_queued: queue.maxQueued, refused: queue.refused };
  }

  return { name: 'modelslab', handle, error, jobs, queueStats };
};
