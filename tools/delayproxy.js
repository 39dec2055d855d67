#!/usr/bin/env node
'use strict';
// A TCP proxy on loopback that adds round-trip time: every byte from the
// client is held RTT ms before it goes on to the server (answers go back at
// once), so each request/response exchange takes RTT ms longer. For the
// benchmarks and tests that put latency between genrelay and PostgreSQL.
//
//   tools/delayproxy.js --listen 127.0.0.1:0 --to 127.0.0.1:5432 --rtt-ms 5
//   -> prints "delayproxy listening on 127.0.0.1:PORT"; SIGTERM ends it.
//
// Order is kept: chunks are released by one timer queue per connection in
// arrival order, each no sooner than its arrival + RTT. Only loopback
// addresses are accepted for --listen and --to.

const net = require('node:net');

function arg(name, def) {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

function hostPort(s) {
  const m = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\]):(\d+)$/.exec(s || '');
  if (!m) {
    process.stderr.write(`delayproxy: '${s}' is not a loopback host:port\n`);
    process.exit(2);
  }
  return { host: m[1].replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}

const listen = hostPort(arg('--listen', '127.0.0.1:0'));
const to = hostPort(arg('--to'));
const rtt = Number(arg('--rtt-ms', '0'));
if (!(rtt >= 0 && rtt <= 10000)) {
  process.stderr.write('delayproxy: --rtt-ms must be between 0 and 10000\n');
  process.exit(2);
}

const conns = new Set();
const server = net.createServer((client) => {
  client.setNoDelay(true);
  const upstream = net.connect(to.port, to.host);
  upstream.setNoDelay(true);
  conns.add(client);
  conns.add(upstream);
  const queue = []; // [releaseAtMs, chunk]
  let timer = null;
  const pump = () => {
    timer = null;
    const now = performance.now();
    while (queue.length && queue[0][0] <= now) upstream.write(queue.shift()[1]);
    if (queue.length) timer = setTimeout(pump, Math.max(0, queue[0][0] - performance.now()));
  };
  client.on('data', (d) => {
    if (rtt === 0) return upstream.write(d);
    queue.push([performance.now() + rtt, d]);
    if (!timer) timer = setTimeout(pump, rtt);
  });
  upstream.on('data', (d) => client.write(d));
  const end = () => {
    if (timer) clearTimeout(timer);
    client.destroy();
    upstream.destroy();
    conns.delete(client);
    conns.delete(upstream);
  };
  client.on('close', end);
  upstream.on('close', end);
  client.on('error', end);
  upstream.on('error', end);
});

server.listen(listen.port, listen.host, () => {
  const a = server.address();
  process.stdout.write(`delayproxy listening on ${a.address}:${a.port}\n`);
});
process.on('SIGTERM', () => {
  server.close();
  for (const c of conns) c.destroy();
  process.exit(0);
});
