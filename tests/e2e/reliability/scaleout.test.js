'use strict';
// Scale-out: serving roles, several instances on one PostgreSQL store,
// SQLite's one-instance rule, retention on both stores, `store migrate` and
// a PostgreSQL outage. Every test runs real processes: genrelay, provsim and a
// PostgreSQL started for this file (lib/pg.js) as an unprivileged user.
//
// Every wait is for an observed state (a job's status, a delivery, an
// answer), bounded; nothing assumes how long anything takes.

const { describe, test } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('../lib/harness');
const R = require('../lib/reliability');

const MODEL = 'fal-ai/flux/dev';
const T = { timeout: 240000 };

describe('scale-out', () => {
  const env = R.usePgInstances('scale');
  const { newDb, start } = env;

  async function submit(gr, tag, i) {
    const r = await gr.api('POST', `/v1/models/${MODEL}/run`, { input: { prompt: `${tag}-${i}` }, webhook_url: `${env.rcv.url}/${tag}` });
    assert.equal(r.status, 202, r.text);
    return r.body.job_id;
  }

  async function status(gr, id) {
    const r = await gr.api('GET', `/v1/jobs/${id}`);
    return r.status === 200 ? r.body.status : `http ${r.status}`;
  }

  test('serve --role: an unknown role is refused with a clear message', () => {
    const r = spawnSync(h.BIN, ['serve', '--role', 'both'], { encoding: 'utf8', timeout: 10000 });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--role must be api, worker or all/);
  });

  test('SQLite: a second instance on the same store file is refused, and says why', T, async () => {
    const gr = await start({});
    const r = spawnSync(h.BIN, ['serve', '--config', gr.configPath], { encoding: 'utf8', timeout: 20000, cwd: gr.dir });
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /in use by another genrelay \(pid \d+\): SQLite allows one instance per store file/);
    assert.ok(gr.running(), 'the first instance keeps running');
    assert.equal((await gr.api('GET', '/healthz')).status, 200);
    await gr.stop();
  });

  test('roles on one PostgreSQL: api accepts and never runs, worker runs and serves only /healthz and /metrics', T, async () => {
    const store = await newDb();
    const api = await start({ config: { store }, args: ['--role', 'api'] });
    const tag = 'roles';
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push(await submit(api, tag, i));
    // No worker yet: the jobs wait in the store, and the provider saw nothing.
    const before = (await env.sim.requests('fal')).filter((x) => x.method === 'POST' && x.body && String(x.body.prompt).startsWith(`${tag}-`));
    assert.equal(before.length, 0, 'an api instance never runs work');
    for (const id of ids) assert.equal(await status(api, id), 'queued');

    const worker = await start({ config: { store }, args: ['--role', 'worker'] });
    const w404 = await worker.api('POST', `/v1/models/${MODEL}/run`, { input: { prompt: 'x' } });
    assert.equal(w404.status, 404, w404.text);
    assert.equal(w404.body.error.code, 'NOT_FOUND');
    assert.equal((await worker.api('GET', `/v1/jobs/${ids[0]}`)).status, 404);
    assert.equal((await worker.api('GET', '/healthz')).status, 200);
    assert.equal((await worker.admin('GET', '/metrics')).status, 200);

    await h.waitFor(() => ids.every((id) => env.rcv.delivered(id).length >= 1), 60000, { what: 'every job delivered by the worker' });
    for (const id of ids) assert.equal(await status(api, id), 'succeeded');
    await Promise.all([api.stop(), worker.stop()]);
  });

  test('two instances on one PostgreSQL share the work: every job runs once and is delivered once', T, async () => {
    const store = await newDb();
    const a = await start({ config: { store, workers: 2 } });
    const b = await start({ config: { store, workers: 2 } });
    const tag = 'pair';
    const n = 200;
    const ids = [];
    await Promise.all(
      Array.from({ length: 8 }, async (_, k) => {
        for (let i = k; i < n; i += 8) ids.push(await submit(i % 2 ? a : b, tag, i));
      }),
    );
    await h.waitFor(() => ids.every((id) => env.rcv.delivered(id).length >= 1), 120000, { what: `${n} jobs delivered` });
    const subs = (await env.sim.requests('fal')).filter((x) => x.method === 'POST' && x.body && String(x.body.prompt).startsWith(`${tag}-`));
    assert.equal(subs.length, n, 'each job submitted to the provider exactly once');
    const twice = ids.filter((id) => new Set(env.rcv.delivered(id).map((x) => x.id)).size !== 1 || env.rcv.delivered(id).length !== 1);
    assert.deepEqual(twice, [], 'each job delivered exactly once');
    // Either instance answers for any job.
    for (const id of ids.slice(0, 20)) {
      assert.equal(await status(a, id), 'succeeded');
      assert.equal(await status(b, id), 'succeeded');
    }
    await Promise.all([a.stop(), b.stop()]);
  });

  for (const kind of ['sqlite', 'postgresql']) {
    test(`retention on ${kind}: a finished job is purged and then answers 404 JOB_NOT_FOUND`, T, async () => {
      const base = kind === 'sqlite' ? null : await newDb();
      // 0.00002 days = 1.7 s: the purge runs a few times a second.
      const gr = await start({
        config: (defaults) => h.deepMerge(defaults, { store: { url: base || defaults.store, retention_days: 0.00002 } }),
      });
      const id = await submit(gr, `ret-${kind}`, 0);
      await h.waitFor(() => env.rcv.delivered(id).length >= 1, 30000, { what: 'the job delivered' });
      const r = await h.waitFor(async () => {
        const x = await gr.api('GET', `/v1/jobs/${id}`);
        return x.status === 404 && x;
      }, 60000, { what: 'the job purged' });
      assert.equal(r.body.error.code, 'JOB_NOT_FOUND');
      await gr.stop();
    });
  }

  test('store migrate: 100,000 jobs from SQLite arrive in PostgreSQL, resumably, and genrelay serves them', T, async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'genrelay-migrate-'));
    try {
      const db = path.join(dir, 'old.db');
      const ids = path.join(dir, 'ids.txt');
      const storegen = path.join(path.dirname(h.BIN), 'bench', 'bench_storegen');
      const g = spawnSync(storegen, ['--db', db, '--jobs', '100000', '--waiting', '100', '--ids', ids, '--ids-sample', '50'], { encoding: 'utf8', timeout: 120000 });
      assert.equal(g.status, 0, g.stderr);
      const to = await newDb();
      // A first run stopped part-way (killed after its first progress line)...
      await new Promise((resolve) => {
        const c = spawn(h.BIN, ['store', 'migrate', '--from', `sqlite:${db}`, '--to', to], { stdio: ['ignore', 'ignore', 'pipe'] });
        let err = '';
        c.stderr.on('data', (d) => {
          err += d;
          if (/jobs \d+\/100000/.test(err)) c.kill('SIGKILL');
        });
        c.on('exit', resolve);
      });
      // ... and a second run finishes the job and verifies every count.
      const m = spawnSync(h.BIN, ['store', 'migrate', '--from', `sqlite:${db}`, '--to', to], { encoding: 'utf8', timeout: 200000 });
      assert.equal(m.status, 0, m.stdout + m.stderr);
      assert.match(m.stderr, /store migrate: jobs \d+\/100000 rows/);
      assert.match(m.stdout, /jobs: sqlite 100000, postgresql 100000/);
      assert.match(m.stdout, /work: sqlite 100, postgresql 100/);
      assert.match(m.stdout, /every count matches/);
      assert.equal((await env.server.sql('SELECT count(*) FROM jobs', to.split('/').pop())).trim(), '100000');
      const gr = await start({ config: { store: to } });
      for (const id of fs.readFileSync(ids, 'utf8').trim().split('\n').slice(0, 20)) {
        const r = await gr.api('GET', `/v1/jobs/${id}`);
        assert.equal(r.status, 200, r.text);
        assert.equal(r.body.job_id, id);
      }
      await gr.stop();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('PostgreSQL outage: the API answers 503 UNAVAILABLE (never a hang or a 500), workers reconnect, nothing accepted is lost', T, async () => {
    const store = await newDb();
    const gr = await start({ config: { store, workers: 2 } });
    const tag = 'pgout';
    const accepted = [];
    const answers = {};
    let stop = false;
    let i = 0;
    const load = (async () => {
      while (!stop) {
        let st;
        try {
          const r = await gr.api('POST', `/v1/models/${MODEL}/run`, { input: { prompt: `${tag}-${i++}` }, webhook_url: `${env.rcv.url}/${tag}` }, {}, { timeoutMs: 15000 });
          st = r.status;
          if (r.status === 202) accepted.push(r.body.job_id);
          else if (r.status === 503) assert.equal(r.body.error.code, 'UNAVAILABLE');
        } catch (e) {
          st = `error: ${e.message}`;
        }
        answers[st] = (answers[st] || 0) + 1;
        await h.sleep(20);
      }
    })();
    await h.waitFor(() => accepted.length >= 20, 30000, { what: 'jobs accepted before the outage' });
    await env.server.stop('fast');
    const during = {};
    const outageUntil = Date.now() + 10000;
    while (Date.now() < outageUntil) {
      const r = await gr.api('POST', `/v1/models/${MODEL}/run`, { input: { prompt: `${tag}-probe` } }, {}, { timeoutMs: 15000 });
      during[r.status] = (during[r.status] || 0) + 1;
      await h.sleep(100);
    }
    assert.ok(during[503] > 0, `503 during the outage: ${JSON.stringify(during)}`);
    assert.deepEqual(Object.keys(during).filter((s) => s !== '503'), [], `only 503 during the outage: ${JSON.stringify(during)}`);
    await env.server.start();
    const n0 = accepted.length;
    await h.waitFor(() => accepted.length >= n0 + 20, 60000, { what: 'jobs accepted after the outage' });
    stop = true;
    await load;
    assert.ok(!answers[500], `no 500: ${JSON.stringify(answers)}`);
    assert.ok(!Object.keys(answers).some((k) => k.startsWith('error')), `no hang or reset: ${JSON.stringify(answers)}`);
    await h.waitFor(() => accepted.every((id) => env.rcv.delivered(id).length >= 1), 120000, { what: 'every accepted job delivered' });
    R.report('pg_store_outage', { outage_s: 10, accepted: accepted.length, answers_during: during, answers_load: answers, lost: 0 });
    await gr.stop();
  });
});
