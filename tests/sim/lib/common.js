'use strict';
// Shared machinery of provsim: request context, steering, job table, request
// and callback logs. Outbound callbacks are in callbacks.js. Provider modules
// (../providers/*.js) use only what is exported here.

const crypto = require('node:crypto');
const { CallbackPool } = require('./callbacks');

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
    // Documented shapes a test may ask for (tests/sim/README.md, "Steering"):
    payloadError: s.payload_error === true, // fal: webhook OK with payload null + payload_error
    urls: s.urls !== false, // fal: submit answer carries status_url/response_url/cancel_url
    form: FORMS.has(s.form) ? s.form : 'api', // abstrakt callback form
    signWith: s.sign_with === 'account' ? 'account' : 'request', // abstrakt: secret that signs
    states: s.states === 'full' ? 'full' : 'short', // Krea: the full documented state list
    progress: s.progress === true, // ModelsLab / abstrakt envelope: progress webhooks too
    echoAuth: s.echo_auth === true,
  };
}

const FORMS = new Set(['api', 'tutorial', 'envelope']);

// A job's timeline is fixed at submit: it is terminal at created + delayMs.
// How far along a job is (>= 1: done). A timer that ran for the job counts
// as that much time elapsed: setTimeout runs on the monotonic clock and
// Date.now() on the wall clock, so the callback timer at delayMs may fire a
// millisecond before Date.now() says delayMs have passed, and the job it
// reports on must already be done then.
function phase(job, now = Date.now()) {
  if (job.delayMs <= 0) return 1;
  return Math.max(now - job.created, job.timerElapsed || 0) / job.delayMs;
}

function isoNow(ms = Date.now()) {
  return new Date(ms).toISOString();
}

// JSON text of v with every object's keys sorted, so that two encodings of
// one value (any key order, any spacing) are equal.
function canonicalJson(v) {
  if (Array.isArray(v)) return '[' + v.map(canonicalJson).join(',') + ']';
  if (v && typeof v === 'object') {
    return '{' + Object.keys(v).sort().map((k) => JSON.stringify(k) + ':' + canonicalJson(v[k])).join(',') + '}';
  }
  return JSON.stringify(v);
}

// A body as steering compares it: canonical JSON when it parses, else its bytes.
function canonicalBody(raw) {
  try {
    return canonicalJson(JSON.parse(Buffer.isBuffer(raw) ? raw.toString('utf8') : String(raw)));
  } catch (e) {
    return raw;
  }
}

function sha256hex(data) {
  return crypto.createHash('sha256').update(data).digest('hex');
}

// ---------------------------------------------------------------------------
// The Sim: one per provsim process; shared state and helpers for providers.

class Sim {
  // opts: {jobCap, logCap, callbackWorkers, abstraktSecret, abstraktTimestamp, timeScale}
  constructor(opts = {}) {
    this.baseUrl = ''; // set once listening: http://127.0.0.1:PORT
    this.opts = opts;
    this.requests = new RingLog(opts.logCap || 10000);
    this.callbacksLog = new RingLog(opts.logCap || 10000);
    this.httpCounts = new Map(); // "provider:sha256(body)" -> failures answered
    this.down = new Set();
    this.jobCap = opts.jobCap || 200000;
    this.pending = new Set(); // timers not owned by a job
    this.closed = false;
    this.fileSeq = 0;
    this.filePrefix = crypto.randomBytes(4).toString('hex'); // unique per process
    // fal's webhook signing key, generated at start-up (JWKS at /fal/.well-known/jwks.json).
    this.falKeys = crypto.generateKeyPairSync('ed25519');
    this.callbacks = new CallbackPool(
      {
        falPrivateKeyPem: this.falKeys.privateKey.export({ format: 'pem', type: 'pkcs8' }),
        abstraktSecret: opts.abstraktSecret || 'abstrakt-sim-secret',
        abstraktTimestamp: !!opts.abstraktTimestamp,
        timeScale: opts.timeScale === undefined ? 1 : opts.timeScale,
      },
      opts.callbackWorkers === undefined ? 0 : opts.callbackWorkers,
      (entry) => this.callbacksLog.push(entry),
    );
  }

  jobTable() {
    return new JobTable(this.jobCap);
  }

  // A unique 24-hex-digit id (8 random per process + a 16-digit counter):
  // cheaper than randomBytes per job at benchmark rates.
  hexId() {
    this.idSeq = (this.idSeq || 0) + 1;
    return this.filePrefix + this.idSeq.toString(16).padStart(16, '0');
  }

  // A URL of an output file that provsim serves (GET /files/<id>.<ext>).
  fileUrl(ext) {
    this.fileSeq++;
    return `${this.baseUrl}/files/${this.filePrefix}${this.fileSeq.toString(36)}.${ext}`;
  }

  // http_status steering: the first `httpTimes` submits of an identical body
  // (per provider) answer `httpStatus`. Returns the status to answer, or 0.
  // A JSON body is compared by its content (canonicalJson), not its bytes:
  // the same request built by two of genrelay's workers (each with its own
  // Lua state, so its own key order) is the same request.
  steerHttp(provider, rawBody, steer) {
    if (!steer.httpStatus || steer.httpTimes <= 0) return 0;
    const key = provider + ':' + sha256hex(canonicalBody(rawBody));
    const n = this.httpCounts.get(key) || 0;
    if (n >= steer.httpTimes) return 0;
    this.httpCounts.set(key, n + 1);
    return steer.httpStatus;
  }

  // Runs fn after ms, unless the job's timers are cleared first (cancel,
  // eviction) or provsim shuts down. job may be null.
  after(job, ms, fn) {
    const t = setTimeout(() => {
      if (job && job.timers) {
        const i = job.timers.indexOf(t);
        if (i >= 0) job.timers.splice(i, 1);
      }
      if (job && job.created !== undefined) {
        job.timerElapsed = Math.max(job.timerElapsed || 0, Date.now() - job.created, ms);
      }
      this.pending.delete(t);
      if (!this.closed) fn();
    }, Math.max(0, ms));
    if (job) (job.timers || (job.timers = [])).push(t);
    else this.pending.add(t);
    return t;
  }

  // Sends a provider callback according to the steering mode (see
  // lib/callbacks.js): {provider, url, mode, body (JSON text), sign, ref}.
  callback(msg) {
    if (!msg.url || msg.mode === 'none' || this.closed) return;
    this.callbacks.send(msg);
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
    this.callbacks.close();
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
      const write = () => {
        res.writeHead(status, h);
        res.end(body);
      };
      // sim.answer_delay_ms holds the HTTP answer back (the job's own timers,
      // its callback among them, run as usual): a callback then overtakes
      // the submit answer, as it can with a real provider.
      const steer = json && typeof json === 'object' && (json.sim || (json.input && json.input.sim));
      const hold = steer && Number(steer.answer_delay_ms);
      if (hold > 0) setTimeout(write, Math.min(hold, 10000));
      else write();
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
  canonicalJson,
  clearJobTimers,
  makeContext,
  isObject,
  bearer,
};
