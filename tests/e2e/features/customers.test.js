'use strict';
// Customers kept in the store (`genrelay customers add|list|rotate-key|remove`)
// against a running genrelay: a key added with the CLI works without a
// restart, its jobs are its own and their webhooks are signed with its
// stored secret; rotation retires the old key; list never shows a key or a
// secret; the store keeps only the key's SHA-256. Runs on SQLite and (as
// e2e_pg_customers) on PostgreSQL.

const { describe, test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const { execFile } = require('node:child_process');
const h = require('../lib/harness');

const T = { timeout: 90000 };
// The receiver verifies with acme's secret; the stored customer gets the same one.
const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

function run(args, input) {
  return new Promise((resolve) => {
    const p = execFile(h.BIN, args, { timeout: 30000, cwd: '/' }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
    if (input !== undefined) p.stdin.end(input);
  });
}

describe('stored customers', () => {
  const stack = h.useStack();
  const { waitDelivered } = h.jobHelpers(stack);
  const cli = (...args) => run(['customers', ...args, '--config', stack.gr.configPath]);
  const statusWith = async (key) => (await stack.gr.as(key)('GET', '/v1/jobs?limit=1')).status;

  test('add while running, use at once, webhook signed with the stored secret', T, async () => {
    const add = await cli('add', 'initech', '--webhook-secret', SECRET, '--hook', 'default');
    assert.equal(add.code, 0, add.stderr);
    const key = add.stdout.trim();
    assert.match(key, /^gr_[0-9a-f]{64}$/);
    assert.ok(!add.stderr.includes(key));
    // Within the cache's lifetime (a bounded wait, no fixed sleep).
    await h.waitFor(async () => (await statusWith(key)) === 200, 15000, { what: 'the new key accepted' });
    const api = stack.gr.as(key);
    const r = await api('POST', '/v1/models/fal-ai/flux/dev/run',
      { input: { prompt: 'stored customer', sim: { delay_ms: 20 } }, webhook_url: stack.receiver.url + '/initech' });
    assert.equal(r.status, 202, r.text);
    const id = r.body.job_id;
    const got = await waitDelivered(id);
    assert.ok(got.some((d) => d.verified === true), JSON.stringify(got.map((d) => [d.verified, d.reason])));
    // Its jobs are its own: acme does not see them.
    assert.equal((await stack.api('GET', `/v1/jobs/${id}`)).status, 404);
    assert.equal((await api('GET', `/v1/jobs/${id}`)).status, 200);
    // Neither the key nor the secret reached the log.
    assert.ok(!stack.gr.log().includes(key));
  });

  test('list shows stored customers without key or secret', T, async () => {
    const l = await cli('list', '--json');
    assert.equal(l.code, 0, l.stderr);
    const rows = JSON.parse(l.stdout);
    const row = rows.find((c) => c.name === 'initech');
    assert.ok(row, l.stdout);
    assert.equal(row.has_webhook_secret, true);
    assert.equal(row.hook, 'default');
    assert.deepEqual(Object.keys(row).sort(), ['created_at', 'has_webhook_secret', 'hook', 'name', 'webhook_url']);
    assert.ok(!l.stdout.includes(SECRET));
    const table = await cli('list');
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^NAME\s+HOOK\s+SECRET/);
    assert.match(table.stdout, /^initech\s+default\s+yes/m);
  });

  test('rotate-key: the old key stops working, the new one works', T, async () => {
    const add = await cli('add', 'hooli');
    assert.equal(add.code, 0, add.stderr);
    const oldKey = add.stdout.trim();
    await h.waitFor(async () => (await statusWith(oldKey)) === 200, 15000, { what: 'hooli key accepted' });
    const rot = await cli('rotate-key', 'hooli');
    assert.equal(rot.code, 0, rot.stderr);
    const newKey = rot.stdout.trim();
    assert.match(newKey, /^gr_[0-9a-f]{64}$/);
    assert.notEqual(newKey, oldKey);
    await h.waitFor(async () => (await statusWith(newKey)) === 200, 15000, { what: 'rotated key accepted' });
    await h.waitFor(async () => (await statusWith(oldKey)) === 401, 15000, { what: 'old key refused' });
    const again = await stack.gr.as(oldKey)('GET', '/v1/jobs?limit=1');
    assert.equal(again.body.error.code, 'UNAUTHORIZED');

    const rm = await cli('remove', 'hooli');
    assert.equal(rm.code, 0, rm.stderr);
    await h.waitFor(async () => (await statusWith(newKey)) === 401, 15000, { what: 'removed key refused' });
    assert.equal((await cli('remove', 'hooli')).code, 1);
  });

  test('the store keeps only the key hash (SQLite file)', T, async (t) => {
    if (!stack.gr.dbPath || stack.gr.dbPath.startsWith('postgres')) return t.skip('SQLite only');
    const add = await cli('add', 'umbrella');
    assert.equal(add.code, 0, add.stderr);
    const key = add.stdout.trim();
    await h.waitFor(async () => (await statusWith(key)) === 200, 15000, { what: 'umbrella accepted' });
    const hash = crypto.createHash('sha256').update(key).digest('hex');
    let raw = '';
    for (const f of [stack.gr.dbPath, stack.gr.dbPath + '-wal']) if (fs.existsSync(f)) raw += fs.readFileSync(f).toString('latin1');
    assert.ok(raw.includes(hash), 'the hash is stored');
    assert.ok(!raw.includes(key), 'the key is not stored in clear');
  });

  test('refusals: taken names, bad input, unknown customers', T, async () => {
    const dup = await cli('add', 'initech');
    assert.equal(dup.code, 1);
    assert.match(dup.stderr, /exists already/);
    const cfgName = await cli('add', 'acme');
    assert.equal(cfgName.code, 1);
    assert.match(cfgName.stderr, /configuration/);
    const badSecret = await cli('add', 'x1', '--webhook-secret', 'whsec_!!');
    assert.equal(badSecret.code, 2);
    assert.ok(!badSecret.stderr.includes('whsec_!!'));
    assert.equal((await cli('add', 'bad name')).code, 2);
    assert.equal((await cli('add', 'x2', '--webhook-url', 'ftp://127.0.0.1/', '--webhook-secret', SECRET)).code, 2);
    assert.equal((await cli('rotate-key', 'nobody')).code, 1);
    assert.equal((await cli('frobnicate')).code, 2);
    // The secret may come on stdin (not on the command line).
    const viaStdin = await run(['customers', 'add', 'stdin-co', '--webhook-secret', '-', '--config', stack.gr.configPath], SECRET + '\n');
    assert.equal(viaStdin.code, 0, viaStdin.stderr);
    const rows = JSON.parse((await cli('list', '--json')).stdout);
    assert.equal(rows.find((c) => c.name === 'stdin-co').has_webhook_secret, true);
    // Unknown keys stay 401 (and are cached as unknown, not looked up each time).
    for (let i = 0; i < 5; i++) assert.equal(await statusWith('gr_' + '0'.repeat(64)), 401);
    // Config customers work exactly as before.
    assert.equal(await statusWith(h.ACME.api_key), 200);
  });
});
