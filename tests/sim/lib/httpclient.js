'use strict';
// A minimal HTTP/1.1 client for provsim's callbacks: POST a body, learn the
// status code, keep the connection for the next one.
//
// Why not node:http? At benchmark rates (thousands of callbacks a second) its
// client costs ~110 us of CPU per request; this one ~20 us. It does only what
// callbacks need: one request at a time per connection (no pipelining), a
// pool of keep-alive connections per host:port, responses framed by
// Content-Length, chunked encoding or connection close; body discarded.
// https URLs are not handled here (callbacks.js uses node:https for those).

const net = require('node:net');

const MAX_SOCKETS = 256; // per host:port; further requests wait in a queue
const IDLE_MS = 30000; // idle connections are closed after this
const MAX_HEAD = 64 * 1024;

class HttpError extends Error {
  constructor(message, code) {
    super(message);
    this.code = code;
  }
}

// Incremental response parser for one response. feed(str) returns
// undefined (need more), or {status, keepAlive, rest} once complete.
class ResponseParser {
  constructor() {
    this.buf = '';
    this.status = 0;
    this.head = null; // parsed once the header block is complete
    this.mode = null; // 'length' | 'chunked' | 'close' | 'none'
    this.need = 0; // bytes still to skip (length mode, or current chunk + CRLF)
    this.chunkState = 'size'; // chunked: 'size' | 'data' | 'trailer'
    this.keepAlive = true;
  }

  feed(s) {
    this.buf += s;
    for (;;) {
      if (!this.head) {
        const i = this.buf.indexOf('\r\n\r\n');
        if (i < 0) {
          if (this.buf.length > MAX_HEAD) throw new HttpError('response head too large', 'EPROTO');
          return undefined;
        }
        const head = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 4);
        const m = /^HTTP\/1\.([01]) (\d{3})/.exec(head);
        if (!m) throw new HttpError('bad status line', 'EPROTO');
        const status = Number(m[2]);
        if (status >= 100 && status < 200) continue; // interim response: skip it
        this.status = status;
        this.head = head;
        const lower = head.toLowerCase();
        const conn = /\r\nconnection:[ \t]*([^\r]*)/.exec(lower);
        this.keepAlive = m[1] === '1' ? !(conn && /close/.test(conn[1])) : !!(conn && /keep-alive/.test(conn[1]));
        const te = /\r\ntransfer-encoding:[ \t]*([^\r]*)/.exec(lower);
        const cl = /\r\ncontent-length:[ \t]*(\d+)/.exec(lower);
        if (status === 204 || status === 304) this.mode = 'none';
        else if (te && /chunked/.test(te[1])) this.mode = 'chunked';
        else if (cl) {
          this.mode = 'length';
          this.need = Number(cl[1]);
        } else {
          this.mode = 'close';
          this.keepAlive = false;
        }
      }
      switch (this.mode) {
        case 'none':
          return this.done();
        case 'length': {
          const take = Math.min(this.need, this.buf.length);
          this.need -= take;
          this.buf = this.buf.slice(take);
          return this.need === 0 ? this.done() : undefined;
        }
        case 'close':
          this.buf = '';
          return undefined; // complete at end of stream (see end())
        case 'chunked':
          if (this.chunked()) return this.done();
          return undefined;
        default:
          return undefined;
      }
    }
  }

  // Walks chunked framing; true once the last chunk and trailers are read.
  chunked() {
    for (;;) {
      if (this.chunkState === 'size') {
        const i = this.buf.indexOf('\r\n');
        if (i < 0) return false;
        const size = parseInt(this.buf.slice(0, i), 16);
        if (!Number.isFinite(size) || size < 0) throw new HttpError('bad chunk size', 'EPROTO');
        this.buf = this.buf.slice(i + 2);
        if (size === 0) this.chunkState = 'trailer';
        else {
          this.chunkState = 'data';
          this.need = size + 2; // data + CRLF
        }
      } else if (this.chunkState === 'data') {
        const take = Math.min(this.need, this.buf.length);
        this.need -= take;
        this.buf = this.buf.slice(take);
        if (this.need > 0) return false;
        this.chunkState = 'size';
      } else {
        // trailer section: lines until an empty line
        const i = this.buf.indexOf('\r\n');
        if (i < 0) return false;
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 2);
        if (line === '') return true;
      }
    }
  }

  done() {
    return { status: this.status, keepAlive: this.keepAlive, rest: this.buf };
  }

  // The stream ended: a close-delimited response is complete now.
  end() {
    if (this.head && this.mode === 'close') return { status: this.status, keepAlive: false, rest: '' };
    return undefined;
  }
}

// Keep-alive connections to one host:port.
class Origin {
  constructor(client, host, port) {
    this.client = client;
    this.host = host;
    this.port = port;
    this.idle = [];
    this.active = 0; // connections open (busy or idle)
    this.queue = [];
  }

  request(job) {
    const sock = this.idle.pop();
    if (sock) return this.run(sock, job, true);
    if (this.active < MAX_SOCKETS) return this.run(this.connect(), job, false);
    this.queue.push(job);
  }

  connect() {
    const sock = net.connect({ host: this.host, port: this.port });
    sock.setNoDelay(true);
    sock.setEncoding('latin1');
    this.active++;
    sock.job = null;
    sock.lastUsed = Date.now();
    sock.on('data', (d) => this.onData(sock, d));
    sock.on('end', () => this.onEnd(sock));
    sock.on('error', (e) => this.fail(sock, e));
    sock.on('close', () => {
      this.active--;
      this.dropIdle(sock);
      this.fail(sock, new HttpError('connection closed before the response', 'ECONNRESET'));
      this.pump();
    });
    return sock;
  }

  run(sock, job, reused) {
    job.origin = this;
    job.sock = sock;
    job.reused = reused;
    job.gotBytes = false;
    job.parser = new ResponseParser();
    job.deadline = Date.now() + job.timeoutMs;
    sock.job = job;
    this.client.inflight.add(job);
    sock.write(job.payload);
  }

  onData(sock, d) {
    const job = sock.job;
    if (!job) return sock.destroy(); // bytes nobody asked for
    job.gotBytes = true;
    let res;
    try {
      res = job.parser.feed(d);
    } catch (e) {
      this.fail(sock, e);
      return sock.destroy();
    }
    if (res) this.complete(sock, job, res);
  }

  onEnd(sock) {
    const job = sock.job;
    if (job) {
      const res = job.parser.end();
      if (res) return this.complete(sock, job, res);
    }
    sock.destroy();
  }

  complete(sock, job, res) {
    sock.job = null;
    this.client.inflight.delete(job);
    if (res.keepAlive && res.rest === '' && !sock.destroyed) {
      sock.lastUsed = Date.now();
      this.idle.push(sock);
    } else {
      sock.destroy();
    }
    job.resolve(res.status);
    this.pump();
  }

  // The request on sock failed. A reused keep-alive connection that failed
  // before any answer byte was probably closed by the server while idle: the
  // request is tried once more on a fresh connection.
  fail(sock, err) {
    const job = sock.job;
    if (!job) return;
    sock.job = null;
    this.client.inflight.delete(job);
    sock.destroy();
    if (job.reused && !job.gotBytes && !job.retried && err.code !== 'ETIMEDOUT') {
      job.retried = true;
      return this.request(job);
    }
    job.reject(err);
  }

  dropIdle(sock) {
    const i = this.idle.indexOf(sock);
    if (i >= 0) this.idle.splice(i, 1);
  }

  pump() {
    while (this.queue.length && (this.idle.length || this.active < MAX_SOCKETS)) this.request(this.queue.shift());
  }
}

class HttpClient {
  constructor() {
    this.origins = new Map();
    this.inflight = new Set();
    // One sweeper for timeouts and idle connections instead of a timer per request.
    this.sweeper = setInterval(() => this.sweep(), 250);
    this.sweeper.unref();
  }

  // POST body (string) to an http: URL; resolves with the status code.
  post(url, headers, body, timeoutMs = 10000) {
    return new Promise((resolve, reject) => {
      let u;
      try {
        u = new URL(url);
      } catch (e) {
        return reject(new HttpError('bad url', 'EINVAL'));
      }
      if (u.protocol !== 'http:') return reject(new HttpError('only http: URLs', 'EINVAL'));
      const host = u.hostname.replace(/^\[|\]$/g, '');
      const port = Number(u.port) || 80;
      const key = `${host}:${port}`;
      let origin = this.origins.get(key);
      if (!origin) {
        origin = new Origin(this, host, port);
        this.origins.set(key, origin);
      }
      let head = `POST ${u.pathname}${u.search} HTTP/1.1\r\nhost: ${u.host}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n`;
      for (const k of Object.keys(headers)) {
        const v = String(headers[k]);
        if (/[\r\n]/.test(k) || /[\r\n]/.test(v)) return reject(new HttpError('bad header', 'EINVAL'));
        if (k.toLowerCase() !== 'content-length' && k.toLowerCase() !== 'host') head += `${k}: ${v}\r\n`;
      }
      const payload = Buffer.concat([Buffer.from(head + '\r\n', 'latin1'), Buffer.from(body)]);
      origin.request({ payload, timeoutMs, resolve, reject });
    });
  }

  sweep() {
    const now = Date.now();
    for (const job of this.inflight) {
      if (now > job.deadline && job.sock) job.origin.fail(job.sock, new HttpError('timeout', 'ETIMEDOUT'));
    }
    for (const o of this.origins.values()) {
      for (const s of o.idle.slice()) if (now - s.lastUsed > IDLE_MS) s.destroy();
    }
  }

  close() {
    clearInterval(this.sweeper);
    for (const o of this.origins.values()) {
      for (const s of o.idle) s.destroy();
      o.queue.length = 0;
    }
    for (const job of this.inflight) if (job.sock) job.sock.destroy();
  }
}

module.exports = { HttpClient, ResponseParser };
