#!/usr/bin/env node
'use strict';
// A webhook receiver for genrelay deliveries, verifying Standard Webhooks
// signatures. No dependencies beyond Node.js (>= 18).
//
//   node examples/receiver.js --listen 127.0.0.1:0 --secret whsec_...
//
// Prints "receiver listening on http://HOST:PORT". Any POST to any path is a
// delivery. A delivery with a valid signature is answered 200; one without is
// answered 401 (genrelay will retry it, as it should).
//
// What a real receiver needs is verifyStandardWebhook() below: compute
// HMAC-SHA256 over "{webhook-id}.{webhook-timestamp}.{raw body}" with the
// base64-decoded secret, compare it in constant time with every "v1,<base64>"
// entry of webhook-signature, refuse timestamps more than 5 minutes off, and
// deduplicate on webhook-id (deliveries are at least once).
//
// For tests it also offers:
//   GET  /_received          every delivery: [{id, timestamp, verified, reason,
//                            duplicate, headers, body, path, at, answered}]
//   POST /_control/fail      {"count":2, "status":500[, "path":"/prefix"]}: the next
//                            N deliveries (to paths starting with prefix) answer status
//   POST /_control/hang      {"count":1[, "path":"/prefix"]}: never answer the next N
//   POST /_control/reset     forget deliveries and pending fail/hang rules

const crypto = require('node:crypto');
const http = require('node:http');

const TOLERANCE_S = 5 * 60;

// The signing key of a secret: "whsec_<base64>" is base64-decoded; any other
// string is used as raw bytes.
function secretKey(secret) {
  if (secret.startsWith('whsec_')) return Buffer.from(secret.slice(6), 'base64');
  return Buffer.from(secret, 'utf8');
}

// Verifies one delivery. headers: lower-case names; body: the raw bytes
// exactly as received (never a re-serialised JSON). Returns {ok, reason}.
function verifyStandardWebhook(headers, body, key, nowSeconds = Math.floor(Date.now() / 1000)) {
  const id = headers['webhook-id'];
  const ts = headers['webhook-timestamp'];
  const sigHeader = headers['webhook-signature'];
  if (!id || !ts || !sigHeader) return { ok: false, reason: 'missing webhook-id, webhook-timestamp or webhook-signature' };
  if (!/^\d+$/.test(ts)) return { ok: false, reason: 'bad webhook-timestamp' };
  if (Math.abs(nowSeconds - Number(ts)) > TOLERANCE_S) return { ok: false, reason: 'timestamp outside the 5 minute tolerance' };

  const expected = crypto
    .createHmac('sha256', key)
    .update(`${id}.${ts}.`)
    .update(body)
    .digest();
  // The header may carry several space-separated signatures (key rotation).
  for (const part of sigHeader.split(' ')) {
    const [version, b64] = part.split(',', 2);
    if (version !== 'v1' || !b64) continue;
    const given = Buffer.from(b64, 'base64');
    if (given.length === expected.length && crypto.timingSafeEqual(given, expected)) return { ok: true, reason: null };
  }
  return { ok: false, reason: 'no matching v1 signature' };
}

function parseArgs(argv) {
  const o = { listen: '127.0.0.1:0', secret: process.env.WEBHOOK_SECRET || '' };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--listen') o.listen = argv[++i];
    else if (argv[i] === '--secret') o.secret = argv[++i];
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  if (!o.secret) throw new Error('--secret whsec_... is required');
  const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(o.listen || '');
  if (!m) throw new Error('--listen wants HOST:PORT');
  o.host = m[1];
  o.port = Number(m[2]);
  return o;
}

function createReceiver({ secret, maxRecords = 100000 }) {
  const key = secretKey(secret);
  let received = [];
  const seenIds = new Set();
  let rules = []; // [{kind:"fail"|"hang", count, status, path}], consumed in order
  const hanging = new Set();

  function json(res, status, obj) {
    const body = JSON.stringify(obj);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }

  // The first rule matching this path, with one use taken from it.
  function takeRule(path) {
    const r = rules.find((x) => x.count > 0 && (!x.path || path.startsWith(x.path)));
    if (!r) return null;
    r.count--;
    rules = rules.filter((x) => x.count > 0);
    return r;
  }

  function control(req, res, path, raw) {
    let body = {};
    try {
      body = raw.length ? JSON.parse(raw) : {};
    } catch (e) {
      return json(res, 400, { error: 'bad JSON' });
    }
    const count = Number.isInteger(body.count) && body.count > 0 ? body.count : 1;
    const prefix = typeof body.path === 'string' ? body.path : null;
    if (path === '/_control/fail') {
      rules.push({ kind: 'fail', count, status: Number(body.status) || 500, path: prefix });
    } else if (path === '/_control/hang') {
      rules.push({ kind: 'hang', count, path: prefix });
    } else if (path === '/_control/reset') {
      received = [];
      seenIds.clear();
      rules = [];
    } else {
      return json(res, 404, { error: 'unknown control call' });
    }
    json(res, 200, { ok: true, rules });
  }

  function delivery(req, res, path, raw) {
    const check = verifyStandardWebhook(req.headers, raw, key);
    let body;
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch (e) {
      body = raw.toString('utf8');
    }
    const id = req.headers['webhook-id'] || null;
    const record = {
      id,
      timestamp: req.headers['webhook-timestamp'] || null,
      verified: check.ok,
      reason: check.reason,
      duplicate: id !== null && seenIds.has(id),
      headers: req.headers,
      body,
      path,
      at: Date.now(),
      answered: null,
    };
    if (id !== null) seenIds.add(id);
    if (received.length >= maxRecords) received.shift();
    received.push(record);

    const rule = takeRule(path);
    if (rule && rule.kind === 'hang') {
      // Never answer; the sender's timeout has to deal with it.
      hanging.add(res);
      res.on('close', () => hanging.delete(res));
      return;
    }
    if (rule && rule.kind === 'fail') {
      record.answered = rule.status;
      return json(res, rule.status, { error: 'failing on purpose' });
    }
    if (!check.ok) {
      record.answered = 401;
      return json(res, 401, { error: check.reason });
    }
    // A real receiver would now process the event, once per webhook-id.
    record.answered = 200;
    json(res, 200, { ok: true });
  }

  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const path = req.url.split('?')[0];
      if (req.method === 'GET' && path === '/_received') return json(res, 200, received);
      if (req.method === 'POST' && path.startsWith('/_control/')) return control(req, res, path, raw);
      if (req.method === 'POST') return delivery(req, res, req.url, raw);
      json(res, 405, { error: 'POST deliveries here' });
    });
  });
  server.requestTimeout = 0; // let "hang" hang
  server.keepAliveTimeout = 30000;
  server.close_hanging = () => {
    for (const r of hanging) r.destroy();
  };
  return server;
}

function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`receiver: ${e.message}\n`);
    process.exit(2);
  }
  const server = createReceiver({ secret: opts.secret });
  server.listen(opts.port, opts.host, () => {
    const a = server.address();
    const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    process.stdout.write(`receiver listening on http://${host}:${a.port}\n`);
  });
  const stop = () => {
    server.close_hanging();
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 1000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

module.exports = { verifyStandardWebhook, secretKey, createReceiver };

if (require.main === module) main();
