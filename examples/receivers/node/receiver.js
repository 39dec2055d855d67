#!/usr/bin/env node
'use strict';
// A genrelay webhook receiver in Node.js, verifying each delivery with the
// `standardwebhooks` package (npm install in this folder).
//
//   WEBHOOK_SECRET=whsec_... node receiver.js [--listen 127.0.0.1:3000]
//
// genrelay signs every delivery with the customer's webhook_secret
// (Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature).
// Verify the raw body exactly as received (never re-serialised JSON), answer
// 2xx quickly, and deduplicate on webhook-id: delivery is at least once and a
// replay keeps its id.

const http = require('node:http');
const { Webhook } = require('standardwebhooks');

const args = process.argv.slice(2);
const listen = args[args.indexOf('--listen') + 1] && args.includes('--listen') ? args[args.indexOf('--listen') + 1] : '127.0.0.1:3000';
const secret = process.env.WEBHOOK_SECRET;
if (!secret) {
  console.error('set WEBHOOK_SECRET to the customer\'s webhook_secret (whsec_...)');
  process.exit(2);
}
const wh = new Webhook(secret);
const seen = new Set(); // webhook-ids handled; a real app keeps them in its database
const MAX_BODY = 1 << 20;

const server = http.createServer((req, res) => {
  const chunks = [];
  let size = 0;
  req.on('data', (c) => {
    size += c.length;
    if (size > MAX_BODY) req.destroy();
    else chunks.push(c);
  });
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    let event;
    try {
      event = wh.verify(body, req.headers);
    } catch (e) {
      console.log(`rejected ${req.headers['webhook-id'] || '-'}: ${e.message}`);
      res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"invalid signature"}');
      return;
    }
    const id = req.headers['webhook-id'];
    if (seen.has(id)) {
      console.log(`duplicate ${id}`);
    } else {
      seen.add(id);
      // The default hook sends the job object with its event type.
      console.log(`accepted ${id} ${event && event.type} ${event && event.job_id} ${event && event.status}`);
    }
    res.writeHead(204).end();
  });
});

const i = listen.lastIndexOf(':');
server.listen(Number(listen.slice(i + 1)), listen.slice(0, i).replace(/^\[|\]$/g, ''), () => {
  const a = server.address();
  console.log(`listening on http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => server.close(() => process.exit(0)));
