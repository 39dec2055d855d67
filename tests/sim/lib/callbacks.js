'use strict';
// Outbound provider callbacks: signing, the steering modes (duplicate, late,
// malformed), each provider's own retry schedule, over keep-alive connections.
//
// Posting a callback (sign + HTTP client) costs several times more CPU than
// answering a submit, so by default it runs in worker threads: the main
// thread hands each callback to a worker (round robin) and gets the log
// entries back in batches. With workers = 0 everything runs inline.
//
// A callback message: {provider, url, mode, body, sign, ref}
//   mode: normal | none | duplicate | late | malformed
//   sign: null | {type:"fal", requestId} | {type:"abstrakt", secret?} | {type:"static", headers}
//         (abstrakt's secret: the request's own webhook_secret; else --abstrakt-secret)
//   ref:  the provider's job id (for the log)

const crypto = require('node:crypto');
const https = require('node:https');
const { Worker, isMainThread, parentPort, workerData } = require('node:worker_threads');
const { HttpClient } = require('./httpclient');

const FAL_USER_ID = 'provsim-user';
const LATE_MS = 1000;

// Each provider's callback retry schedule: seconds to wait after a failed try
// (network error or non-2xx) before the next one; the list's length is the
// number of retries. Multiplied by --time-scale. docs/provider-facts.md has
// the sources: fal retries for about 2 h, 10 tries in all (the gaps are
// provsim's choice, fal does not publish them); Artificial Studio 5s, 15s,
// 1m, 5m, 15m, 1h, 6h, 12h, 24h; abstrakt's tutorial: immediately, then 1m,
// 5m, 15m, 1h (final); ModelsLab generation webhooks are best effort, no
// retry; Krea documents none.
const RETRY_SCHEDULES = {
  fal: [15, 30, 60, 120, 300, 600, 1200, 1800, 3000],
  artificialstudio: [5, 15, 60, 300, 900, 3600, 21600, 43200, 86400],
  abstrakt: [60, 300, 900, 3600],
  modelslab: [],
  krea: [],
};
// How long each provider waits for the receiver's answer (ms); docs/provider-facts.md.
const TIMEOUTS_MS = { artificialstudio: 5000, abstrakt: 10000, modelslab: 30000 };
const TIMEOUT_MS = 10000;

// The retry delays (ms) of a provider at a time scale.
function retryDelaysMs(provider, timeScale = 1) {
  return (RETRY_SCHEDULES[provider] || []).map((s) => Math.round(s * 1000 * timeScale));
}

// Signers from serialisable settings: {falPrivateKeyPem, abstraktSecret, abstraktTimestamp}.
function makeSigner(settings) {
  const falKey = crypto.createPrivateKey(settings.falPrivateKeyPem);
  const absSecret = settings.abstraktSecret;
  return function sign(spec, body) {
    if (!spec) return {};
    const ts = String(Math.floor(Date.now() / 1000));
    switch (spec.type) {
      case 'fal': {
        const msg = `${spec.requestId}\n${FAL_USER_ID}\n${ts}\n${crypto.createHash('sha256').update(body).digest('hex')}`;
        return {
          'x-fal-webhook-request-id': spec.requestId,
          'x-fal-webhook-user-id': FAL_USER_ID,
          'x-fal-webhook-timestamp': ts,
          'x-fal-webhook-signature': crypto.sign(null, Buffer.from(msg), falKey).toString('hex'),
        };
      }
      case 'abstrakt': {
        const secret = typeof spec.secret === 'string' && spec.secret ? spec.secret : absSecret;
        if (settings.abstraktTimestamp) {
          return { 'x-abstrakt-timestamp': ts, 'x-abstrakt-signature': crypto.createHmac('sha256', secret).update(`${ts}.${body}`).digest('hex') };
        }
        return { 'x-abstrakt-signature': crypto.createHmac('sha256', secret).update(body).digest('hex') };
      }
      case 'static':
        return Object.assign({}, spec.headers);
      default:
        return {};
    }
  };
}

// Sends callbacks in the current thread. log(entry) receives one entry per
// attempt: {provider, url, ref, kind, attempt, status, error, at}.
class Sender {
  constructor(settings, log) {
    this.sign = makeSigner(settings);
    this.timeScale = settings.timeScale === undefined ? 1 : settings.timeScale;
    this.log = log;
    this.closed = false;
    this.timers = new Set();
    this.http = new HttpClient(); // keep-alive, lean (see httpclient.js)
    this.httpsAgent = new https.Agent({ keepAlive: true, maxSockets: 256 });
  }

  later(ms, fn) {
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (!this.closed) fn();
    }, ms);
    this.timers.add(t);
  }

  send(msg) {
    const { mode, body } = msg;
    if (!msg.url || mode === 'none' || this.closed) return;
    const go = (kind, text) => this.postWithRetry(msg, kind, text);
    if (mode === 'duplicate') {
      go('normal', body).then(() => go('duplicate', body));
    } else if (mode === 'late') {
      go('normal', body);
      this.later(LATE_MS, () => go('late', body));
    } else if (mode === 'malformed') {
      // A truncated JSON object is never valid JSON. It is signed all the
      // same: the signature is fine, the content is not.
      go('malformed', body.slice(0, Math.max(1, Math.floor(body.length / 2))));
    } else {
      go('normal', body);
    }
  }

  // The first try, then one retry per entry of the provider's schedule on a
  // network error or non-2xx. Resolves (never rejects) when done. Each try is
  // signed afresh. Log entries carry `waited_ms`: the scheduled wait before
  // that try (0 for the first).
  postWithRetry(msg, kind, text) {
    const delays = retryDelaysMs(msg.provider, this.timeScale);
    const timeout = TIMEOUTS_MS[msg.provider] || TIMEOUT_MS;
    return new Promise((resolve) => {
      const attempt = (n) => {
        if (this.closed) return resolve();
        const headers = Object.assign({ 'content-type': 'application/json' }, this.sign(msg.sign, text));
        const entry = { provider: msg.provider, url: msg.url, ref: msg.ref, kind, attempt: n, status: 0, error: null, at: 0, sent_us: 0, waited_ms: n > 1 ? delays[n - 2] : 0 };
        // When the signed request is handed to the socket, on the monotonic
        // clock (CLOCK_MONOTONIC, microseconds): what latency benchmarks
        // compare with a receiver's arrival times.
        entry.sent_us = Number(process.hrtime.bigint() / 1000n);
        this.post(msg.url, text, headers, timeout).then(
          (status) => {
            entry.status = status;
            entry.at = Date.now();
            this.log(entry);
            if (status >= 200 && status < 300) return resolve();
            next(n);
          },
          (err) => {
            entry.error = String(err.code || err.message);
            entry.at = Date.now();
            this.log(entry);
            next(n);
          },
        );
      };
      const next = (n) => (n > delays.length ? resolve() : this.later(delays[n - 1], () => attempt(n + 1)));
      attempt(1);
    });
  }

  // One POST: resolves with the HTTP status; rejects on a network error or
  // when no answer comes within timeout ms.
  post(url, body, headers, timeout = TIMEOUT_MS) {
    if (!url.startsWith('https:')) return this.http.post(url, headers, body, timeout);
    return new Promise((resolve, reject) => {
      const buf = Buffer.from(body);
      headers['content-length'] = String(buf.length);
      const req = https.request(url, { method: 'POST', headers, agent: this.httpsAgent, timeout }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
      req.on('error', reject);
      req.end(buf);
    });
  }

  close() {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.http.close();
    this.httpsAgent.destroy();
  }
}

// Main-thread front: `workers` threads (0: inline). log(entry) as for Sender.
class CallbackPool {
  constructor(settings, workers, log) {
    this.log = log;
    this.workers = [];
    this.next = 0;
    if (workers <= 0) {
      this.inline = new Sender(settings, log);
      return;
    }
    for (let i = 0; i < workers; i++) {
      const w = new Worker(__filename, { workerData: { role: 'provsim-callbacks', settings } });
      w.on('message', (batch) => {
        for (const e of batch) log(e);
      });
      w.on('error', (e) => process.stderr.write(`provsim: callback worker: ${e.stack || e}\n`));
      w.unref();
      this.workers.push(w);
    }
  }

  send(msg) {
    if (this.inline) return this.inline.send(msg);
    const w = this.workers[this.next];
    this.next = (this.next + 1) % this.workers.length;
    w.postMessage(msg);
  }

  close() {
    if (this.inline) this.inline.close();
    for (const w of this.workers) w.terminate();
  }
}

// Worker thread body: send what the main thread hands over; report log
// entries in batches (every 20 ms, or 500 entries).
if (!isMainThread && workerData && workerData.role === 'provsim-callbacks') {
  let batch = [];
  let timer = null;
  const flush = () => {
    timer = null;
    if (batch.length) parentPort.postMessage(batch);
    batch = [];
  };
  const sender = new Sender(workerData.settings, (e) => {
    batch.push(e);
    if (batch.length >= 500) flush();
    else if (!timer) timer = setTimeout(flush, 20);
  });
  parentPort.on('message', (msg) => sender.send(msg));
}

module.exports = { CallbackPool, Sender, makeSigner, FAL_USER_ID, RETRY_SCHEDULES, retryDelaysMs };
