'use strict';
// The operations examples: the Grafana dashboard (examples/grafana) is a
// well-formed dashboard whose every query is valid PromQL (promtool) and
// whose metrics genrelay exports; the alert rules (examples/prometheus,
// also checked by ctest prometheus_rules) use exported metrics too, except
// the planned ones they name.

const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { describe, test } = require('node:test');
const h = require('../lib/harness');

const DASH = path.join(h.SRC, 'examples', 'grafana', 'genrelay.json');
const ALERTS = path.join(h.SRC, 'examples', 'prometheus', 'alerts.yml');
// Planned metrics the alert rules already use (none now: every one is exported).
const PLANNED = [];

// Metric names in a PromQL expression (genrelay_* and up).
function metricNames(expr) {
  return [...new Set((expr.match(/\bgenrelay_[a-z_]+/g) || []))];
}

function panelsOf(d) {
  return d.panels.flatMap((p) => [p, ...(p.panels || [])]);
}

describe('operations examples', () => {
  const ADMIN = 'ops-test-admin-key-0123456789';
  const stack = h.useStack({ config: { admin_key: ADMIN } });
  const dash = JSON.parse(fs.readFileSync(DASH, 'utf8'));

  test('the dashboard is a well-formed Grafana dashboard', () => {
    assert.equal(dash.title, 'genrelay');
    assert.match(dash.uid, /^[a-zA-Z0-9_-]{1,40}$/);
    assert.ok(Number.isInteger(dash.schemaVersion) && dash.schemaVersion >= 30);
    const ids = new Set();
    const panels = panelsOf(dash);
    assert.ok(panels.filter((p) => p.type !== 'row').length >= 10);
    for (const p of panels) {
      assert.ok(p.title, 'every panel has a title');
      assert.ok(Number.isInteger(p.id) && !ids.has(p.id), `panel ids are unique (${p.title})`);
      ids.add(p.id);
      for (const k of ['h', 'w', 'x', 'y']) assert.ok(Number.isInteger(p.gridPos[k]), `${p.title} gridPos.${k}`);
      assert.ok(p.gridPos.x + p.gridPos.w <= 24, `${p.title} fits the 24-column grid`);
      if (p.type === 'row') continue;
      assert.ok(['timeseries', 'stat'].includes(p.type), p.type);
      assert.ok(p.targets.length, `${p.title} has queries`);
      for (const t of p.targets) assert.ok(t.expr && t.refId, `${p.title} query has expr and refId`);
    }
    const vars = dash.templating.list.map((v) => v.name);
    assert.deepEqual(vars, ['datasource', 'job', 'instance']);
    // What an operator must be able to see.
    const text = JSON.stringify(dash);
    for (const m of ['genrelay_deliveries_dead_total', 'genrelay_jobs_failed_total', 'genrelay_provider_submit_retries_total', 'genrelay_store_errors_total']) {
      assert.ok(text.includes(m), `the dashboard shows ${m}`);
    }
  });

  test('every dashboard query is valid PromQL (promtool)', () => {
    const exprs = panelsOf(dash).flatMap((p) => (p.targets || []).map((t) => t.expr));
    // Grafana's variables, as Grafana substitutes them.
    const rules = {
      groups: [{ name: 'dashboard', rules: exprs.map((e, i) => ({ record: `dashboard:query_${i}`, expr: e.replaceAll('$__rate_interval', '5m').replaceAll('$job', '.*').replaceAll('$instance', '.*') })) }],
    };
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'genrelay-dash-'));
    const file = path.join(tmp, 'rules.json');
    fs.writeFileSync(file, JSON.stringify(rules)); // JSON is YAML
    const r = spawnSync('promtool', ['check', 'rules', file], { encoding: 'utf8', timeout: 30000 });
    fs.rmSync(tmp, { recursive: true, force: true });
    assert.equal(r.error, undefined, 'promtool runs (Debian package prometheus; tools/install-deps)');
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`SUCCESS: ${exprs.length} rules found`));
  });

  test('the dashboard and the alert rules use metrics genrelay exports', async () => {
    // The admin key: what a scraper on the API listener presents.
    const r = await stack.gr.as(ADMIN)('GET', '/metrics');
    assert.equal(r.status, 200);
    // A histogram family is queried through its _bucket, _sum and _count series.
    const exported = new Set([...r.text.matchAll(/^# TYPE (\S+) (\S+)/gm)].flatMap((m) => (m[2] === 'histogram' ? [m[1], `${m[1]}_bucket`, `${m[1]}_sum`, `${m[1]}_count`] : [m[1]])));
    assert.ok(exported.size > 5);
    const dashNames = new Set(panelsOf(dash).flatMap((p) => (p.targets || []).flatMap((t) => metricNames(t.expr))));
    for (const n of dashNames) assert.ok(exported.has(n), `dashboard metric ${n} is exported`);
    const alertNames = metricNames(fs.readFileSync(ALERTS, 'utf8').split('\n').filter((l) => !/^\s*#/.test(l)).join('\n'));
    for (const n of alertNames) assert.ok(exported.has(n) || PLANNED.includes(n), `alert metric ${n} is exported or planned`);
    for (const n of PLANNED) assert.ok(!exported.has(n), `${n} is exported now: drop it from PLANNED here and from the planned list in alerts.yml`);
  });
});
