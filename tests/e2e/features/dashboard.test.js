'use strict';
// The operator dashboard (/ui) in a real browser: Debian's chromium, driven
// by playwright-core. Log in (a wrong key first), find a job, open its
// timeline, see its dead delivery, retry it and see it delivered. The
// session and CSRF rules are checked over plain HTTP as well.
//
// Screenshots of each page go to the test's temp dir, or to
// $GENRELAY_SCREENSHOTS when set (docs/ holds the ones the README shows:
// `GENRELAY_SCREENSHOTS=docs/screenshots node --test tests/e2e/features/dashboard.test.js`).

const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('../lib/harness');

const ADMIN = 'admin-key-0123456789abcdef';
const T = { timeout: 120000 };
const CHROMIUM = process.env.GENRELAY_CHROMIUM || '/usr/bin/chromium';

let chromium = null;
try {
  ({ chromium } = require(path.join(h.REPO, 'tests/browser/node_modules/playwright-core')));
} catch (e) {
  /* reported by the test below */
}

describe('dashboard', () => {
  // krea has a key pool of one revoked key: its first job breaks it, and the
  // providers page shows the key (by id) broken.
  const stack = h.useStack({
    config: { admin_key: ADMIN, providers: { krea: { keys: [{ id: 'revoked', key: 'krea-sim-401-dashboard' }] } } },
  });
  const { waitTerminal } = h.jobHelpers(stack);
  const shots = process.env.GENRELAY_SCREENSHOTS || fs.mkdtempSync(path.join(os.tmpdir(), 'genrelay-ui-'));
  let browser = null;

  before(async () => {
    assert.ok(chromium, 'playwright-core is installed (tools/install-deps: npm ci in tests/browser)');
    assert.ok(fs.existsSync(CHROMIUM), `chromium at ${CHROMIUM} (tools/install-deps installs it)`);
    fs.mkdirSync(shots, { recursive: true });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync'],
    });
  });
  after(async () => {
    if (browser) await browser.close();
  });

  const base = () => stack.gr.url;
  const raw = (method, p, headers = {}, body) => h.request(base() + p, { method, headers, body });

  // A job whose webhook fails every try, so its delivery ends dead.
  async function deadJob(tag) {
    const p = `/ui-hook/${tag}-${Date.now()}`;
    await stack.receiver.fail(4, 500, p);
    const r = await stack.api('POST', '/v1/models/fal-ai/flux/dev/run', {
      input: { prompt: `dashboard ${tag}`, sim: { delay_ms: 50 } }, webhook_url: stack.receiver.url + p, track_id: `track-${tag}`,
    });
    assert.equal(r.status, 202, r.text);
    const id = r.body.job_id;
    await waitTerminal(id);
    await h.waitFor(async () => {
      const d = await stack.api('GET', `/v1/jobs/${id}/deliveries`);
      return d.body.data.length && d.body.data[0].status === 'dead';
    }, 20000, { what: `dead delivery of ${id}`, interval: 100 });
    return id;
  }

  test('HTTP rules: redirects to the login, cookie flags, CSRF on actions, admin views need a session', T, async () => {
    const home = await raw('GET', '/ui');
    assert.equal(home.status, 303);
    assert.equal(home.headers.location, '/ui/login');
    assert.equal((await raw('GET', '/ui/api/jobs')).status, 401);
    assert.equal((await raw('GET', '/ui/api/jobs', { authorization: 'Bearer acme-not-admin' })).status, 401);

    const bad = await raw('POST', '/ui/login', { 'content-type': 'application/x-www-form-urlencoded' }, 'key=nope');
    assert.equal(bad.status, 303);
    assert.equal(bad.headers.location, '/ui/login?failed=1');
    assert.equal(bad.headers['set-cookie'], undefined);

    const ok = await raw('POST', '/ui/login', { 'content-type': 'application/x-www-form-urlencoded' }, `key=${encodeURIComponent(ADMIN)}`);
    assert.equal(ok.status, 303);
    const setCookie = [].concat(ok.headers['set-cookie'])[0];
    assert.match(setCookie, /^genrelay_session=[^;]+; Path=\/ui; Max-Age=\d+; HttpOnly; Secure; SameSite=Strict$/);
    const cookie = setCookie.split(';')[0];

    const page = await raw('GET', '/ui/', { cookie });
    assert.equal(page.status, 200);
    assert.match(page.headers['content-security-policy'], /script-src 'self'/);
    assert.equal(page.headers['x-frame-options'], 'DENY');
    assert.match(page.text, /<script src="\/ui\/assets\/app.js">/);

    const id = await deadJob('http');
    const list = await raw('GET', `/ui/api/deliveries?state=dead`, { cookie });
    assert.equal(list.status, 200, list.text);
    const d = list.body.data.find((x) => x.job_id === id);
    assert.ok(d, list.text);
    assert.equal(d.customer, 'acme');
    // An action without the session's CSRF token is refused, and changes nothing.
    const noCsrf = await raw('POST', `/ui/api/deliveries/${d.delivery_id}/retry`, { cookie });
    assert.equal(noCsrf.status, 403, noCsrf.text);
    const wrongCsrf = await raw('POST', `/ui/api/deliveries/${d.delivery_id}/retry`, { cookie, 'x-csrf-token': 'f'.repeat(32) });
    assert.equal(wrongCsrf.status, 403, wrongCsrf.text);
    const still = await stack.api('GET', `/v1/jobs/${id}/deliveries`);
    assert.equal(still.body.data[0].status, 'dead');
    // A tampered session is no session.
    const forged = cookie.replace(/.$/, (c) => (c === '0' ? '1' : '0'));
    assert.equal((await raw('GET', '/ui/api/jobs', { cookie: forged })).status, 401);
    // Tools may use the admin key instead of a session; no CSRF token needed then.
    const byKey = await raw('GET', `/ui/api/jobs/${id}`, { authorization: `Bearer ${ADMIN}` });
    assert.equal(byKey.status, 200, byKey.text);
    assert.equal(byKey.body.job.job_id, id);
    assert.ok(byKey.body.events.some((e) => e.kind === 'submitted'));
    assert.equal(byKey.body.deliveries[0].attempts.length, 4);
    // Each attempt keeps the body it sent: the signed job object, as the receiver got it.
    for (const a of byKey.body.deliveries[0].attempts) assert.equal(JSON.parse(a.body).job_id, id);
    const retried = await raw('POST', `/ui/api/deliveries/${d.delivery_id}/retry`, { authorization: `Bearer ${ADMIN}` });
    assert.equal(retried.status, 200, retried.text);
    await h.waitFor(async () => (await stack.api('GET', `/v1/jobs/${id}/deliveries`)).body.data[0].status === 'delivered',
      10000, { what: 'delivered after retry' });
  });

  test('in chromium: log in, find a job, its timeline, retry its dead delivery, scripts and providers', T, async () => {
    const id = await deadJob('browser');
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    const page = await ctx.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    try {
      await page.goto(`${base()}/ui`);
      assert.match(page.url(), /\/ui\/login$/);
      await page.fill('#key', 'not-the-key');
      await page.click('#login');
      await page.waitForURL(/failed=1/);
      assert.equal(await page.isVisible('#failed'), true);
      await page.screenshot({ path: path.join(shots, 'login.png') });

      await page.fill('#key', ADMIN);
      await page.click('#login');
      await page.waitForSelector('#jobs table');
      const cookies = await ctx.cookies();
      const sess = cookies.find((c) => c.name === 'genrelay_session');
      assert.ok(sess && sess.httpOnly && sess.secure && sess.sameSite === 'Strict', JSON.stringify(cookies));
      // The session cookie is not readable from the page's scripts.
      assert.equal(await page.evaluate(() => document.cookie), '');

      // Find the job by its track id.
      // The unfiltered list is already on the page and may hold the job too: mark it, so
      // that the wait below sees only the list the search renders.
      await page.evaluate(() => { document.querySelector('#jobs').dataset.stale = '1'; });
      await page.fill('input[name=q]', 'track-browser');
      await page.click('#job-filters button[type=submit]');
      await page.waitForSelector('#jobs:not([data-stale]) table, #jobs:not([data-stale]) p.empty');
      const links = await page.$$eval('#jobs tbody tr td:first-child a', (as) => as.map((a) => a.textContent));
      assert.deepEqual(links, [id]);
      await page.screenshot({ path: path.join(shots, 'jobs.png') });

      // Its timeline: the run, the provider's acceptance, its callback, its end, every delivery attempt.
      await page.click(`#jobs td a:text-is("${id}")`);
      await page.waitForSelector('#timeline li');
      const items = await page.$$eval('#timeline li b', (bs) => bs.map((b) => b.textContent));
      for (const k of ['run', 'submitted', 'callback', 'ended']) assert.ok(items.includes(k), `${k} in ${items}`);
      assert.equal(items.filter((k) => k === 'delivery').length, 4, String(items));
      const sent = await page.$$eval('#timeline details pre', (ps) => ps.map((p) => p.textContent));
      assert.equal(sent.length, 4);
      assert.equal(JSON.parse(sent[0]).job_id, id);
      await page.screenshot({ path: path.join(shots, 'job.png'), fullPage: true });

      // Dead deliveries: retry this one from the list and see it delivered.
      await page.click('nav a[data-page=deliveries]');
      const btn = `button.retry[data-delivery]`;
      await page.waitForSelector(btn);
      await page.screenshot({ path: path.join(shots, 'deliveries.png') });
      const deliveryId = (await stack.api('GET', `/v1/jobs/${id}/deliveries`)).body.data[0].delivery_id;
      await page.click(`button.retry[data-delivery="${deliveryId}"]`);
      await h.waitFor(async () => (await stack.receiver.forJob(id)).some((x) => x.answered === 200 && x.verified), 15000,
        { what: 'the retried delivery arrives, signed' });
      await h.waitFor(async () => (await stack.api('GET', `/v1/jobs/${id}/deliveries`)).body.data[0].status === 'delivered',
        10000, { what: 'delivery marked delivered' });
      // The list no longer shows it once it reloaded.
      await page.waitForFunction((did) => ![...document.querySelectorAll('button.retry')].some((b) => b.dataset.delivery === did), deliveryId);

      await page.click('nav a[data-page=scripts]');
      await page.waitForFunction(() => [...document.querySelectorAll('td')].some((td) => td.textContent === 'provider/fal'));
      await page.screenshot({ path: path.join(shots, 'scripts.png') });

      const krea = await stack.api('POST', '/v1/models/krea:image/bfl/flux-1-dev/run', { input: { prompt: 'dashboard key pool' } });
      assert.equal(krea.status, 202, krea.text);
      assert.equal((await waitTerminal(krea.body.job_id)).status, 'failed', 'its only key was refused');
      await page.click('nav a[data-page=providers]');
      await page.waitForFunction(() => [...document.querySelectorAll('td')].some((td) => td.textContent === 'fal'));
      const falRow = await page.$$eval('tbody tr', (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)).find((c) => c[0] === 'fal'));
      assert.ok(Number(falRow[1]) >= 2, `fal succeeded count in ${falRow}`);
      // The key pool: krea's key by id, broken; its value nowhere on the page.
      const keyRows = await page.$$eval('#keys tbody tr', (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)));
      assert.deepEqual(keyRows.map((c) => c.slice(0, 3)), [['krea', 'revoked', 'broken']]);
      assert.ok(!(await page.content()).includes('krea-sim-401-dashboard'), 'no key value on the page');
      await page.screenshot({ path: path.join(shots, 'providers.png') });

      assert.deepEqual(errors, []);
    } finally {
      await ctx.close();
    }
  });
});
