'use strict';
// Artificial Studio API (docs/provider-facts.md, "Artificial Studio"), served under /artificialstudio.
//
//   POST /api/run                {tool, input?, webhook?}; strict: any other top-level
//                                field is a 400. Answers 202 {id, status:"processing", tool, createdAt}
//   GET  /api/generations/{id}   {id, status, tool, type, output, thumbnail, error, payload, createdAt}
//   GET  /api/generations        {data, pagination:{total, limit, offset, hasMore}}
//
// Auth: `Authorization: <key>`, the raw key; a "Bearer ..." value is refused
// like any wrong key. States pending -> processing -> uploading -> success | error;
// `output` is one URL string. The webhook is sent only on success, with
// headers X-Webhook-Source: artificial-studio and X-Media-Id: <id>, unsigned.
// Errors: {message} (validation errors add errors:[{field, message, code}]).

const { parseSteer, phase, isoNow, isObject } = require('../lib/common');

const { callbackRefusal } = require('../lib/strict');

const RUN_FIELDS = new Set(['tool', 'input', 'webhook']);

module.exports = function createArtificialStudio(sim, { strictCallbacks = false } = {}) {
  const jobs = sim.jobTable();

  function error(status, message) {
    return { status, body: { message }, headers: {} };
  }
  function sendError(ctx, status, message, headers, errors) {
    const body = { message };
    if (errors) body.errors = errors;
    ctx.send(status, body, headers);
  }

  function typeOf(tool) {
    if (/video/.test(tool)) return 'video';
    if (/audio|speech|music|voice/.test(tool)) return 'audio';
    return 'image';
  }

  function state(job) {
    const p = phase(job);
    if (p >= 1) return job.outcome === 'success' ? 'success' : 'error';
    if (p < 0.1) return 'pending';
    return p < 0.8 ? 'processing' : 'uploading';
  }

  function generation(job) {
    const st = state(job);
    return {
      id: job.id,
      status: st,
      tool: job.tool,
      type: job.type,
      output: st === 'success' ? job.file : null,
      thumbnail: st === 'success' ? job.thumbnail : null,
      error: st === 'error' ? job.message : null,
      payload: job.input,
      createdAt: isoNow(job.created),
    };
  }

  function sendWebhook(job) {
    if (job.outcome !== 'success') return; // success-only webhooks (current docs)
    const body = { id: job.id, status: 'success', tool: job.tool, type: job.type, output: job.file, thumbnail: job.thumbnail, createdAt: isoNow(job.created) };
    sim.callback({
      provider: 'artificialstudio',
      url: job.webhook,
      mode: job.callback,
      body: JSON.stringify(body),
      sign: { type: 'static', headers: { 'x-webhook-source': 'artificial-studio', 'x-media-id': job.id } },
      ref: job.id,
    });
  }

  function run(ctx) {
    if (ctx.jsonError || !isObject(ctx.json)) return sendError(ctx, 400, 'Request body must be a JSON object');
    const body = ctx.json;
    const unknown = Object.keys(body).filter((k) => !RUN_FIELDS.has(k));
    if (unknown.length) {
      return sendError(ctx, 400, `Unrecognized key(s) in object: ${unknown.map((k) => `'${k}'`).join(', ')}`, null,
        unknown.map((k) => ({ field: k, message: 'Unrecognized key', code: 'unrecognized_keys' })));
    }
    if (typeof body.tool !== 'string' || !body.tool) return sendError(ctx, 400, 'Validation failed', null, [{ field: 'tool', message: 'Required', code: 'invalid_type' }]);
    if (body.input !== undefined && !isObject(body.input)) return sendError(ctx, 400, 'Validation failed', null, [{ field: 'input', message: 'Expected object', code: 'invalid_type' }]);
    if (body.webhook !== undefined && (typeof body.webhook !== 'string' || !/^https?:\/\//.test(body.webhook))) {
      return sendError(ctx, 400, 'Validation failed', null, [{ field: 'webhook', message: 'Invalid url', code: 'invalid_string' }]);
    }
    if (strictCallbacks && body.webhook) {
      const why = callbackRefusal(body.webhook, { https: true, public: true });
      if (why) return sendError(ctx, 400, 'Validation failed', null, [{ field: 'webhook', message: why, code: 'invalid_string' }]);
    }
    const input = body.input || {};
    const steer = parseSteer(input.sim);
    const forced = sim.steerHttp('artificialstudio', ctx.raw, steer);
    if (forced) return sendError(ctx, forced, `simulated HTTP ${forced}`, forced === 429 || forced === 503 ? { 'retry-after': '1' } : null);

    const type = typeOf(body.tool);
    const id = sim.hexId();
    const job = {
      id,
      tool: body.tool,
      type,
      input,
      webhook: body.webhook || null,
      created: Date.now(),
      delayMs: steer.delayMs,
      outcome: steer.outcome,
      callback: steer.callback,
      message: steer.message,
      file: sim.fileUrl(type === 'video' ? 'mp4' : type === 'audio' ? 'mp3' : 'png'),
      thumbnail: type === 'audio' ? null : sim.fileUrl('png'),
      timers: [],
    };
    jobs.add(id, job);
    if (job.webhook) sim.after(job, job.delayMs, () => sendWebhook(job));
    ctx.send(202, { id, status: 'processing', tool: job.tool, createdAt: isoNow(job.created) });
  }

  function list(ctx) {
    const limit = Math.max(1, Math.min(100, parseInt(ctx.query.limit, 10) || 20));
    const offset = Math.max(0, parseInt(ctx.query.offset, 10) || 0);
    const all = [...jobs.values()].reverse().map(generation).filter((g) => !ctx.query.status || g.status === ctx.query.status);
    ctx.send(200, { data: all.slice(offset, offset + limit), pagination: { total: all.length, limit, offset, hasMore: offset + limit < all.length } });
  }

  function handle(ctx) {
    const seg = ctx.segments;
    const key = ctx.headers.authorization || '';
    if (!key || /^Bearer\s/i.test(key)) return sendError(ctx, 401, 'Invalid API key');
    if (seg[0] !== 'api') return sendError(ctx, 404, 'Not found');
    if (seg[1] === 'run' && seg.length === 2) {
      if (ctx.method !== 'POST') return sendError(ctx, 405, 'Method not allowed');
      return run(ctx);
    }
    if (seg[1] === 'generations' && seg.length <= 3) {
      if (ctx.method !== 'GET') return sendError(ctx, 405, 'Method not allowed');
      if (seg.length === 2) return list(ctx);
      const job = jobs.get(seg[2]);
      if (!job) return sendError(ctx, 404, 'Generation not found');
      return ctx.send(200, generation(job));
    }
    sendError(ctx, 404, 'Not found');
  }

  return { name: 'artificialstudio', handle, error, jobs };
};
