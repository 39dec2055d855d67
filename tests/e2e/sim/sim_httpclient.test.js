'use strict';
// provsim's lean callback HTTP client (tests/sim/lib/httpclient.js) against
// real servers: framing variants, keep-alive reuse, stale connections,
// timeouts, refused connections.

const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const net = require('node:net');
const { HttpClient, ResponseParser } = require('../../sim/lib/httpclient');

function listen(server) {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${server.address().port}`)));
}

describe('provsim HttpClient', () => {
  let client;
  let url;
  let server;
  const seen = [];
  const sockets = new Set();

  before(async () => {
    client = new HttpClient();
    server = http.createServer((req, res) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        seen.push({ url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString(), port: req.socket.remotePort });
        const p = req.url;
        if (p.startsWith('/chunked')) {
          res.writeHead(201, { 'content-type': 'text/plain' });
          res.write('part one;');
          setTimeout(() => res.end('part two'), 20);
        } else if (p.startsWith('/close')) {
          res.writeHead(202, { connection: 'close', 'content-length': '2' });
          res.end('ok');
        } else if (p.startsWith('/nocontent')) {
          res.writeHead(204);
          res.end();
        } else if (p.startsWith('/hang')) {
          // never answer
        } else {
          const body = 'x'.repeat(Number(new URL(p, 'http://x').searchParams.get('n') || 3));
          res.writeHead(Number(new URL(p, 'http://x').searchParams.get('status') || 200), { 'content-length': Buffer.byteLength(body) });
          res.end(body);
        }
      });
    });
    server.on('connection', (s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    });
    url = await listen(server);
  });
  after(async () => {
    client.close();
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  });

  test('POSTs the body and headers; reuses one keep-alive connection', async () => {
    for (let i = 0; i < 5; i++) {
      assert.equal(await client.post(`${url}/plain?i=${i}&n=${i * 1000}`, { 'content-type': 'application/json', 'x-t': 'v' }, `{"i":${i},"é":"ü"}`), 200);
    }
    const mine = seen.filter((s) => s.url.startsWith('/plain'));
    assert.equal(mine.length, 5);
    assert.deepEqual(JSON.parse(mine[4].body), { i: 4, é: 'ü' });
    assert.equal(mine[0].headers['x-t'], 'v');
    assert.equal(mine[0].headers['content-type'], 'application/json');
    assert.equal(new Set(mine.map((s) => s.port)).size, 1, 'one connection for all five');
  });

  test('chunked, connection: close, 204, error statuses', async () => {
    assert.equal(await client.post(`${url}/chunked`, {}, 'a'), 201);
    assert.equal(await client.post(`${url}/close`, {}, 'b'), 202);
    assert.equal(await client.post(`${url}/nocontent`, {}, 'c'), 204);
    assert.equal(await client.post(`${url}/plain?status=503`, {}, 'd'), 503);
    assert.equal(await client.post(`${url}/chunked`, {}, 'e'), 201, 'connection still usable after chunked');
  });

  test('many concurrent requests all complete', async () => {
    const rs = await Promise.all(Array.from({ length: 300 }, (_, i) => client.post(`${url}/plain?c=${i}`, {}, String(i))));
    assert.ok(rs.every((s) => s === 200));
  });

  test('a keep-alive connection the server closed while idle is retried transparently', async () => {
    assert.equal(await client.post(`${url}/plain?stale=1`, {}, 'x'), 200);
    for (const s of sockets) s.destroy(); // server drops idle connections
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(await client.post(`${url}/plain?stale=2`, {}, 'y'), 200);
  });

  test('a reused connection closed without an answer: one retry on a fresh connection', async () => {
    // Answers the first request of each connection, then closes on the next.
    let conns = 0;
    const raw = net.createServer((s) => {
      conns++;
      let n = 0;
      s.on('data', () => {
        if (++n === 1) s.write('HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n');
        else s.destroy();
      });
    });
    const rawUrl = await listen(raw);
    assert.equal(await client.post(`${rawUrl}/1`, {}, 'a'), 200);
    assert.equal(await client.post(`${rawUrl}/2`, {}, 'b'), 200, 'retried on a new connection');
    assert.equal(conns, 2);
    raw.close();
  });

  test('timeout and refused connection reject', async () => {
    await assert.rejects(client.post(`${url}/hang`, {}, 'z', 300), (e) => e.code === 'ETIMEDOUT');
    const dead = net.createServer();
    const deadUrl = await listen(dead);
    await new Promise((r) => dead.close(r));
    await assert.rejects(client.post(`${deadUrl}/x`, {}, 'z'), (e) => e.code === 'ECONNREFUSED');
    await assert.rejects(client.post('https://127.0.0.1/x', {}, 'z'), (e) => e.code === 'EINVAL');
    await assert.rejects(client.post(`${url}/x`, { 'x-bad': 'a\r\nb: c' }, 'z'), (e) => e.code === 'EINVAL');
  });

  test('a server answering without length (close-delimited) and an HTTP/1.0 server', async () => {
    const raw = net.createServer((s) => {
      s.once('data', () => {
        s.end('HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nbody until close');
      });
    });
    const rawUrl = await listen(raw);
    assert.equal(await client.post(`${rawUrl}/x`, {}, 'a'), 200);
    assert.equal(await client.post(`${rawUrl}/y`, {}, 'b'), 200);
    raw.close();
  });

  test('ResponseParser: 100 Continue, chunk trailers, split input', () => {
    const msg = 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n0\r\nX-T: 1\r\n\r\n';
    const p = new ResponseParser();
    let res;
    for (const ch of msg) res = res || p.feed(ch);
    assert.deepEqual(res, { status: 200, keepAlive: true, rest: '' });
    assert.throws(() => new ResponseParser().feed('garbage\r\n\r\n'), /bad status line/);
  });
});
