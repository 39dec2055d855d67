'use strict';
// Shared machinery of provsim: request context, steering, job table, request
// and callback logs, outbound callback posting. Provider modules
// (../providers/*.js) use only what is exported here.

const crypto = require('node:crypto');
const http = require('node:http');
const https = require('node:https');

// ---------------------------------------------------------------------------
// Bounded log (ring buffer): push is O(1), list() returns oldest first.

class RingLog {
  constructor(cap) {
    this.cap = cap;
    this.items = new Array(cap);
    this.start = 0;
    this.size = 0;
  }
  push(item) {
    if (this.size < this.cap) {
      this.items[(this.start + this.size) % this.cap] = item;
      this.size++;
    } else {
      this.items[this.start] = item;
      this.start = (this.start + 1) % this.cap;
    }
  }
  list(filter) {
    const out = [];
    for (let i = 0; i < this.size; i++) {
      const it = this.items[(this.start + i) % this.cap];
      if (!filter || filter(it)) out.push(it);
    }
    return out;
  }
  clear() {
    this.items = new Array(this.cap);
    this.start = 0;
    this.size = 0;
  }
}

// ---------------------------------------------------------------------------
// Jobs of one provider surface. Insertion-ordered; beyond `cap` the oldest
// job is forgotten (and its timers cleared) so a long benchmark stays bounded.

class JobTable {
  constructor(cap) {
    this.cap = cap;
    this.map = new Map();
  }
  add(id, job) {
    this.map.set(String(id), job);
    if (this.map.size > this.cap) {
      const [oldId, old] = this.map.entries().next().value;
      clearJobTimers(old);
      this.map.delete(oldId);
    }
    return job;
  }
  get(id) {
    return this.map.get(String(id));
  }
  values() {
    return this.map.values();
  }
  clear() {
    for (const j of this.map.values()) clearJobTimers(j);
    this.map.clear();
  }
}

function clearJobTimers(job) {
  if (job && job.timers) {
    for (const t of job.timers) clearTimeout(t);
    job.timers.length = 0;
  }
}

// ---------------------------------------------------------------------------
// Steering: the optional `sim` object a test puts in the model input.

const CALLBACK_MODES = new Set(['normal', 'none', 'duplicate', 'late', 'malformed']);
const MAX_DELAY_MS = 6 * 3600 * 1000;

function parseSteer(sim) {
  const s = sim && typeof sim === 'object' && !Array.isArray(sim) ? sim : {};
  const delay = Number(s.delay_ms);
  const status = Number(s.http_status);
  const httpStatus = Number.isInteger(status) && status >= 100 && status <= 599 ? status : 0;
  const times = Number(s.http_times);
  return {
    delayMs: Number.isFinite(delay) && delay >= 0 ? Math.min(delay, MAX_DELAY_MS) : 200,
    outcome: s.outcome === 'fail' ? 'fail' : 'success',
    callback: CALLBACK_MODES.has(s.callback) ? s.callback : 'normal',
    httpStatus,
    httpTimes: httpStatus ? (Number.isInteger(times) && times >= 0 ? times : 1) : 0,
    message: typeof s.message === 'string' && s.message ? s.message : 'simulated failure',
  };
}

// A job's timeline is fixed at submit: it is terminal at created + delayMs.
// phase() gives the fraction of that time elapsed (>= 1 means terminal).
function phase(job, now = Date.now()) {
  if (job.delayMs <= 0) return 1;
  return (now - job.created) / job.delayMs;
}

function isoNow(ms = Date.now()) {
  return new Date(ms).toISOString();
}

function sha256hex(data) {
  return crypto.createHash('sha256').update(data).digest('hex');
}

// ---------------------------------------------------------------------------
// The Sim: one per provsim process; shared state and helpers for providers.

class Sim {
  constructor(opts = {}) {
    this.baseUrl = ''; // set once listening: http://127.0.0.1:PORT
    this.opts = opts;
    this.requests = new RingLog(opts.logCap || 10000);
    this.callbacksLog = new RingLog(opts.logCap || 10000);
    this.httpCounts = new Map(); // "provider:sha256(body)" -> failures answered
    this.down = new Set();
    this.jobCap = opts.jobCap || 200000;
    this.pending = new Set(); // timers not owned by a job (late, retries)
    this.closed = false;
    this.fileSeq = 0;
    this.agents = {
      http: new http.Agent({ keepAlive: true, maxSockets: 512, maxFreeSockets: 256 }),
      https: new https.Agent({ keepAlive: true, maxSockets: 512, maxFreeSockets: 256 }),
    };
  }

  jobTable() {
    return new JobTable(this.jobCap);
  }

  // A URL of an output file that provsim serves (GET /files/<id>.<ext>).
  fileUrl(ext) {
    this.fileSeq++;
    return `${this.baseUrl}/files/${Date.now().toString(36)}${this.fileSeq.toString(36)}${crypto.randomBytes(4).toString('hex')}.${ext}`;
  }

  // http_status steering: the first `httpTimes` submits of an identical body
  // (per provider) answer `httpStatus`. Returns the status to answer, or 0.
  steerHttp(provider, rawBody, steer) {
    if (!steer.httpStatus || steer.httpTimes <= 0) return 0;
    const key = provider + ':' + sha256hex(rawBody);
    const n = this.httpCounts.get(key) || 0;
    if (n >= steer.httpTimes) return 0;
    this.httpCounts.set(key, n + 1);
    return steer.httpStatus;
  }

  // Runs fn after ms, unless the job is canceled first (the timer is
  // cleared by clearJobTimers) or provsim is shut down.
  after(job, ms, fn) {
    const t = setTimeout(() => {
      if (job && job.timers) {
        const i = job.timers.indexOf(t);
        if (i >= 0) job.timers.splice(i, 1);
      }
      this.pending.delete(t);
      if (!this.closed) fn();
    }, Math.max(0, ms));
    if (job) (job.timers || (job.timers = [])).push(t);
    else this.pending.add(t);
    return t;
  }

  // Sends a provider callback according to the steering mode.
  //   provider: name for the log; url: where to post; mode: steer.callback;
  //   body: the JSON text; sign(bodyText) -> headers to add (signature etc.);
  //   ref: an id for the log (the provider's job id).
  callback({ provider, url, mode, body, sign, ref }) {
    if (!url || mode === 'none' || this.closed) return;
    const send = (kind, text) => this.postWithRetry({ provider, url, body: text, sign, ref, kind });
    switch (mode) {
      case 'duplicate':
        send('normal', body).then(() => send('duplicate', body));
        break;
      case 'late':
        send('normal', body);
        this.after(null, 1000, () => send('late', body));
        break;
      case 'malformed': {
        // A truncated JSON object is never valid JSON.
        const cut = body.slice(0, Math.max(1, Math.floor(body.length / 2)));
        send('malformed', cut);
        break;
      }
      default:
        send('normal', body);
    }
  }

  // POSTs with bounded retries: at most 3 tries, 1 s apart, on a network
  // error or a non-2xx answer. Resolves (never rejects) when done.
  postWithRetry({ provider, url, body, sign, ref, kind }) {
    return new Promise((resolve) => {
      const attempt = (n) => {
        if (this.closed) return resolve();
        const headers = Object.assign({ 'content-type': 'application/json' }, sign ? sign(body) : {});
        this.post(url, body, headers).then(
          (status) => {
            this.logCallback({ provider, url, ref, kind, attempt: n, status, error: null });
            if (status >= 200 && status < 300) return resolve();
            retry(n);
          },
          (err) => {
            this.logCallback({ provider, url, ref, kind, attempt: n, status: 0, error: String(err.code || err.message) });
            retry(n);
          },
        );
      };
      const retry = (n) => {
        if (n >= 3) return resolve();
        this.after(null, 1000, () => attempt(n + 1));
      };
      attempt(1);
    });
  }

  logCallback(entry) {
    entry.at = Date.now();
    this.callbacksLog.push(entry);
  }

  // One POST; resolves with the HTTP status, rejects on a network error or
  // after 10 s without an answer.
  post(url, body, headers) {
    return new Promise((resolve, reject) => {
      let u;
      try {
        u = new URL(url);
      } catch (e) {
        return reject(new Error('bad callback url'));
      }
      const mod = u.protocol === 'https:' ? https : http;
      const buf = Buffer.from(body);
      headers['content-length'] = String(buf.length);
      const req = mod.request(
        u,
        { method: 'POST', headers, agent: u.protocol === 'https:' ? this.agents.https : this.agents.http, timeout: 10000 },
        (res) => {
          res.resume(); // drain so the socket returns to the pool
          res.on('end', () => resolve(res.statusCode));
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
      req.on('error', reject);
      req.end(buf);
    });
  }

  reset() {
    this.requests.clear();
    this.callbacksLog.clear();
    this.httpCounts.clear();
    this.down.clear();
  }

  close() {
    this.closed = true;
    for (const t of this.pending) clearTimeout(t);
    this.pending.clear();
    this.agents.http.destroy();
    this.agents.https.destroy();
  }
}

// ---------------------------------------------------------------------------
// Request context given to provider handlers.

function makeContext(req, res, { path, query, raw }) {
  let json;
  let jsonError = false;
  if (raw.length) {
    try {
      json = JSON.parse(raw.toString('utf8'));
    } catch (e) {
      jsonError = true;
    }
  }
  const ctx = {
    req,
    res,
    method: req.method,
    path, // after the provider prefix, percent-decoded, starts with '/'
    segments: path.split('/').filter(Boolean),
    query,
    headers: req.headers,
    raw,
    json,
    jsonError,
    send(status, obj, extra) {
      const body = obj === undefined || obj === null ? '' : JSON.stringify(obj);
      const h = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };
      if (obj === undefined || obj === null) delete h['content-type'];
      if (extra) Object.assign(h, extra);
      res.writeHead(status, h);
      res.end(body);
    },
  };
  return ctx;
}

function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function bearer(headers) {
  const a = headers.authorization || '';
  const m = /^Bearer\s+(\S.*)$/i.exec(a);
  return m ? m[1].trim() : '';
}

module.exports = {
  RingLog,
  JobTable,
  Sim,
  parseSteer,
  phase,
  isoNow,
  sha256hex,
  clearJobTimers,
  makeContext,
  isObject,
  bearer,
};
