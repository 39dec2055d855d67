'use strict';
// /metrics with labels and histograms after jobs on two providers (bounded
// label sets, monotonic buckets, queue depths, `promtool check metrics` on
// the live scrape), JSON log lines carrying the job's id, customer and
// provider, and X-Request-Id on every answer (echoed when sane, else made).

const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const { describe, test } = require('node:test');
const h = require('../lib/harness');

const KREA = 'krea:image/bfl/flux-1-dev';
const FAL = 'fal:fal-ai/flux/dev';
const T = { timeout: 60000 };
const MAX_SERIES = 64; // METRICS_MAX_SERIES (core/metrics.h), plus one "_other" series

// Parses the text exposition: {families: {name: type}, samples: [{name, labels, value}]}.
function parse(text) {
  const families = {};
  const samples = [];
  for (const line of text.split('\n')) {
    let m = line.match(/^# TYPE (\S+) (\S+)$/);
    if (m) {
      families[m[1]] = m[2];
      continue;
    }
    if (!line || line.startsWith('#')) continue;
    m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/);
    assert.ok(m, `a sample line: ${line}`);
    const labels = {};
    for (const l of (m[2] || '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return { families, samples };
}

const key = (labels, drop = []) => JSON.stringify(Object.entries(labels).filter(([k]) => !drop.includes(k)).sort());

describe('metrics, logs and request ids', () => {
  const stack = h.useStack({
    config: {
      log: { format: 'json', level: 'info' },
      models: { 'flux-krea': [KREA], 'flux-fal': [FAL] },
    },
  });
  const { waitDelivered } = h.jobHelpers(stack);
  const ids = {};

  test('jobs on two providers run and are delivered', T, async () => {
    for (const alias of ['flux-krea', 'flux-fal']) {
      const hook = `${stack.receiver.url}/m/${crypto.randomBytes(5).toString('hex')}`;
      const r = await stack.api('POST', `/v1/models/${alias}/run`, { input: { prompt: `m-${alias}` }, webhook_url: hook }, { 'X-Request-Id': `trace-${alias}` });
      assert.equal(r.status, 202, r.text);
      assert.equal(r.headers['x-request-id'], `trace-${alias}`, 'a sane X-Request-Id is echoed');
      ids[alias] = r.body.job_id;
    }
    await Promise.all(Object.values(ids).map((id) => waitDelivered(id)));
  });

  test('/metrics: labelled families, bounded, with monotonic histograms and queue depths', T, async () => {
    // The deliveries were answered 2xx: wait until both are counted (the
    // counter moves after the receiver answered).
    const text = await h.waitFor(async () => {
      const r = await stack.gr.admin('GET', '/metrics');
      assert.equal(r.status, 200);
      const { samples } = parse(r.text);
      const ok = samples.filter((s) => s.name === 'genrelay_webhook_attempts_total' && s.labels.outcome === 'delivered');
      return ok.reduce((a, s) => a + s.value, 0) >= 2 && r.text;
    }, 15000, { what: 'two delivered attempts counted' });
    const { families, samples } = parse(text);
    const find = (name, labels) => samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));

    for (const [provider, alias] of [['krea', 'flux-krea'], ['fal', 'flux-fal']]) {
      assert.ok(find('genrelay_jobs_total', { provider, alias, state: 'accepted' }), `${alias} accepted`);
      assert.ok(find('genrelay_jobs_total', { provider, alias, state: 'succeeded' }), `${alias} succeeded`);
      assert.ok(find('genrelay_provider_calls_total', { provider, step: 'submit', outcome: 'ok' }), `${provider} submit ok`);
      assert.ok(find('genrelay_provider_submit_duration_seconds_count', { provider }).value >= 1);
      assert.ok(find('genrelay_job_duration_seconds_count', { provider, state: 'succeeded' }).value >= 1);
    }
    assert.ok(find('genrelay_webhook_attempts_total', { outcome: 'delivered', status_class: '2xx' }).value >= 2);
    assert.ok(find('genrelay_callback_to_webhook_seconds_count', {}).value >= 2);
    assert.ok(find('genrelay_delivery_duration_seconds_count', {}).value >= 2);
    assert.ok(find('genrelay_store_commit_duration_seconds_count', {}).value >= 1);
    assert.ok(find('genrelay_script_calls_total', { script: 'providers/krea.lua' }), 'script calls by script');
    for (const state of ['due', 'leased', 'waiting']) assert.ok(find('genrelay_queue_depth', { state }).value >= 0, state);
    assert.ok(find('genrelay_queue_oldest_due_age_seconds', {}).value >= 0);
    assert.ok(find('genrelay_store_size_bytes', {}).value > 0);
    assert.equal(families.genrelay_jobs_total, 'counter');
    assert.equal(families.genrelay_job_duration_seconds, 'histogram');

    // Bounded: no job id, customer URL or host in any label, and few series per family.
    const perFamily = {};
    for (const s of samples) {
      for (const v of Object.values(s.labels)) {
        assert.doesNotMatch(v, /job_|http|127\.0\.0\.1|\/m\//, `${s.name} label ${v}`);
        for (const id of Object.values(ids)) assert.ok(!v.includes(id));
      }
      const fam = s.name.replace(/_(bucket|sum|count)$/, '');
      (perFamily[fam] ||= new Set()).add(key(s.labels, ['le']));
    }
    for (const [fam, set] of Object.entries(perFamily)) assert.ok(set.size <= MAX_SERIES + 1, `${fam}: ${set.size} series`);

    // Histograms: buckets cumulative in le order, +Inf equal to _count.
    const hists = Object.entries(families).filter(([, t]) => t === 'histogram').map(([n]) => n);
    assert.ok(hists.length >= 5, hists.join());
    for (const name of hists) {
      const series = {};
      for (const s of samples.filter((x) => x.name === `${name}_bucket`)) (series[key(s.labels, ['le'])] ||= []).push(s);
      assert.ok(Object.keys(series).length >= 1, `${name} has series`);
      for (const [k, bs] of Object.entries(series)) {
        const les = bs.map((b) => (b.labels.le === '+Inf' ? Infinity : Number(b.labels.le)));
        for (let i = 1; i < bs.length; i++) {
          assert.ok(les[i] > les[i - 1], `${name} ${k}: le increases`);
          assert.ok(bs[i].value >= bs[i - 1].value, `${name} ${k}: buckets monotonic`);
        }
        assert.equal(les[les.length - 1], Infinity);
        const count = samples.find((s) => s.name === `${name}_count` && key(s.labels) === k);
        assert.equal(count.value, bs[bs.length - 1].value, `${name} ${k}: +Inf is _count`);
      }
    }

    // promtool parses and lints the live scrape.
    const p = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 30000 });
    assert.equal(p.error, undefined, 'promtool runs (Debian package prometheus; tools/install-deps)');
    assert.equal(p.status, 0, p.stdout + p.stderr);
  });

  test('JSON log lines parse and carry the job id, customer and provider', T, async () => {
    const lines = stack.gr.log().split('\n').filter((l) => l.startsWith('{'));
    assert.ok(lines.length > 3, stack.gr.logTail(20));
    const objs = lines.map((l) => JSON.parse(l));
    for (const o of objs) {
      assert.match(o.ts, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.ok(['debug', 'info', 'warn', 'error'].includes(o.level));
      assert.equal(typeof o.msg, 'string');
    }
    for (const [alias, id] of Object.entries(ids)) {
      const mine = objs.filter((o) => o.msg.includes(id));
      assert.ok(mine.length >= 2, `${id}: accepted and ended lines`);
      for (const o of mine) {
        assert.equal(o.job_id, id, o.msg);
        assert.equal(o.customer, 'acme');
        assert.equal(o.provider, alias === 'flux-krea' ? 'krea' : 'fal');
      }
      const accepted = mine.find((o) => /accepted/.test(o.msg));
      assert.equal(accepted.request_id, `trace-${alias}`, 'the accepting request id is logged');
      assert.ok(mine.some((o) => /succeeded/.test(o.msg)), 'the end is logged');
    }
    // Nothing else leaks a job's context: lines without a job id in them name none or their own.
    for (const o of objs) if (o.job_id && !o.msg.includes(o.job_id)) assert.match(o.job_id, /^job_/);
    // Every line of the process is JSON.
    const other = stack.gr.log().split('\n').filter((l) => l && !l.startsWith('{'));
    assert.deepEqual(other, []);
  });

  test('X-Request-Id: echoed when sane, generated otherwise, on every answer', T, async () => {
    const seen = new Set();
    for (const [hdr, echoed] of [['abc-123_x.y:z', true], ['has space', false], ['x'.repeat(64), false], ['', false], [null, false], ['bad"quote', false]]) {
      const r = await stack.api('GET', '/v1/jobs/job_doesnotexist', undefined, hdr === null ? {} : { 'X-Request-Id': hdr });
      assert.equal(r.status, 404);
      const got = r.headers['x-request-id'];
      if (echoed) assert.equal(got, hdr);
      else assert.match(got, /^req_[0-9a-f]{16}$/);
      assert.ok(!seen.has(got), 'ids differ');
      seen.add(got);
    }
    // Unauthenticated, the metrics listener's paths and the health check carry one too.
    for (const [p, key] of [['/healthz', null], ['/v1/jobs', 'wrong-key'], ['/metrics', h.METRICS_TOKEN]]) {
      const r = await stack.gr.as(key)('GET', p);
      assert.match(r.headers['x-request-id'] || '', /^req_[0-9a-f]{16}$/, `${p} ${r.status}`);
    }
    // An API key as a request id is not echoed (nor logged).
    const r = await stack.api('GET', '/v1/jobs/job_doesnotexist', undefined, { 'X-Request-Id': h.ACME.api_key });
    assert.notEqual(r.headers['x-request-id'], h.ACME.api_key);
  });
});
