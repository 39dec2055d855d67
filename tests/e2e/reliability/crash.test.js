'use strict';
// Crashes: jobs flow through provsim to a receiver while genrelay
// is killed with SIGKILL at random moments and restarted; then the same with
// SIGTERM. DESIGN.md: "a 202 means the job is committed", "delivery is at
// least once", "kill -9 at any moment loses no accepted job and no delivery",
// "SIGTERM: ... release leases, exit 0".
//
// Clients retry a submit whose answer was lost (connection refused or reset
// while genrelay is down) with the same Idempotency-Key, as a real client
// would; every job that got a 202 must end terminal and reach the receiver
// at least once. Duplicates (a webhook-id delivered again) are counted for
// SIGKILL and must be zero for SIGTERM.
//
// On PostgreSQL (ctest e2e_pg_crash) genrelay runs 16 loops.
//
// make test: 5,000 jobs and at least 6 kills, then 1,500 jobs and 3
// SIGTERM restarts. make soak (GENRELAY_SOAK=1): 20,000 jobs and 30 kills,
// then 5,000 jobs and 10 SIGTERMs.

const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');
const R = require('../lib/reliability');
const pg = require('../lib/pg');

const PG_WORKERS = 16;

const P = R.SOAK
  ? { jobs: 20000, kills: 30, termJobs: 5000, terms: 10, concurrency: 48, waitMs: 900000 }
  : { jobs: 5000, kills: 6, termJobs: 1500, terms: 3, concurrency: 32, waitMs: 100000 };

describe('crashes', () => {
  let sim;
  let rcv;
  let gr;

  before(async () => {
    sim = await h.startProvsim();
    rcv = await R.startCountingReceiver();
    gr = await h.startGenrelay({
      simUrl: sim.url,
      readyMs: 30000, // restarts under load (and ASan) may take a while
      config: {
        // On PostgreSQL, many loops on one store (one connection each), as
        // workers = "auto" gives there: two loops may race for one job (a
        // callback and a poll) and the loser's writes roll back alone.
        workers: pg.enabled() ? PG_WORKERS : undefined,
        // Long windows: a job must survive restarts, not run out of time.
        jobs: { poll_after_s: 1, poll_interval_s: 0.3, poll_max_s: 2, submit_window_s: 120, job_deadline_s: 600 },
        webhooks: { retry: [0.2, 0.5, 1, 2, 4], timeout_s: 5 },
      },
    });
  });

  after(() => R.shutdown(gr, rcv, sim));

  // One run: n logical jobs submitted by `concurrency` clients while a
  // killer sends `sig` at random moments, at least `kills` times (at least
  // one of them after the last submit), restarting genrelay each time.
  async function run(tag, n, kills, sig) {
    const hook = `/${tag}`;
    const stats = { resubmits: 0 };
    const accepted = new Map(); // job_id -> expected outcome
    const refused = [];
    let submitted = 0;
    let killsDone = 0;
    const restartsAt = [];
    const killsAt = [];
    const badExits = []; // SIGTERM that did not end in exit 0
    let submitting = true;
    const t0 = Date.now();

    let killerError = null;
    const submitter = R.pool(n, P.concurrency, async (i) => {
      if (killerError) return; // genrelay could not be restarted: stop here
      const model = R.MODELS[i % R.MODELS.length];
      const fail = i % 20 === 7;
      const cb = ['normal', 'normal', 'none', 'duplicate', 'late'][i % 5];
      const payload = {
        input: { prompt: `${tag}-${i}`, sim: { delay_ms: 50 + ((i * 7919) % 1500), callback: cb, outcome: fail ? 'fail' : 'success' } },
        webhook_url: rcv.url + hook,
      };
      const r = await R.submitReliably(() => gr.api, model, payload, { stats, deadlineMs: 120000 });
      submitted++;
      if (r.job_id) accepted.set(r.job_id, fail ? 'failed' : 'succeeded');
      else refused.push(r);
    });

    const killer = (async () => {
      try {
        await killLoop();
      } catch (e) {
        killerError = e;
      }
    })();
    async function killLoop() {
      const killedAfterSubmits = () => killsDone >= kills && !submitting;
      let afterLast = 0;
      while (!killedAfterSubmits() || afterLast < 1) {
        await h.sleep(300 + Math.floor(Math.random() * 1700));
        killsAt.push(Date.now() - t0);
        const ex = await gr.kill(sig);
        if (sig === 'SIGTERM' && ex && ex.code !== 0) badExits.push(ex);
        await h.sleep(Math.floor(Math.random() * 300));
        restartsAt.push(Date.now() - t0);
        await gr.restart();
        killsDone++;
        if (!submitting) afterLast++;
        if (Date.now() - t0 > P.waitMs) break;
      }
    }

    await submitter;
    submitting = false;
    await killer;
    if (killerError) throw new Error(`restarting genrelay after ${sig} failed: ${killerError.message}`);

    // Everything accepted ends terminal and is delivered (bounded wait).
    const ids = [...accepted.keys()];
    const missing = () => ids.filter((id) => rcv.delivered(id).length === 0);
    try {
      await h.waitFor(() => missing().length === 0, P.waitMs, { interval: 500, what: `all ${ids.length} ${tag} jobs delivered` });
    } catch (e) {
      /* reported below with the figures */
    }
    const notDelivered = missing();
    const jobs = await R.fetchJobs(gr.api, ids, 16);
    const notTerminal = ids.filter((id) => !jobs.get(id) || !R.TERMINAL.has(jobs.get(id).status));
    const wrongOutcome = ids.filter((id) => jobs.get(id) && R.TERMINAL.has(jobs.get(id).status) && jobs.get(id).status !== accepted.get(id));
    const recs = rcv.records.filter((x) => x.path === hook);
    const duplicates = recs.filter((x) => x.duplicate && x.answered === 200).length;
    const jobsWithTwoDeliveryIds = ids.filter((id) => new Set(rcv.delivered(id).map((x) => x.id)).size > 1);
    const unverified = recs.filter((x) => !x.verified).length;
    const deliveredBody = ids.filter((id) => rcv.delivered(id).some((x) => x.status !== accepted.get(id))).length;
    const consistency = R.storeConsistency(gr.dbPath);
    // What genrelay recorded for the duplicated deliveries (for the report).
    const dupIds = [...new Set(recs.filter((x) => x.duplicate && x.answered === 200).map((x) => x.id))];
    const dupDetail = [];
    for (const id of dupIds.slice(0, 3)) {
      const rec = recs.filter((x) => x.id === id);
      const d = await gr.api('GET', `/v1/jobs/${rec[0].job_id}/deliveries`);
      dupDetail.push({ receiver: rec.map((x) => ({ at: x.at - t0, answered: x.answered })), genrelay: d.body, restarts: restartsAt });
    }
    if (dupDetail.length && sig === 'SIGTERM') process.stdout.write(`duplicates under SIGTERM: ${JSON.stringify(dupDetail, null, 1)}\n`);

    // A duplicate is a delivery the receiver answered while genrelay was
    // killed before recording the answer: its first arrival comes shortly
    // before a kill. The largest such distance is reported.
    let dupMaxBeforeKill = 0;
    let dupNotNearKill = 0;
    for (const id of new Set(recs.filter((x) => x.duplicate && x.answered === 200).map((x) => x.id))) {
      const first = recs.find((x) => x.id === id).at - t0;
      const k = killsAt.find((t) => t >= first);
      if (k === undefined) dupNotNearKill++;
      else dupMaxBeforeKill = Math.max(dupMaxBeforeKill, k - first);
    }
    const figures = {
      signal: sig,
      jobs_submitted: n,
      jobs_accepted: ids.length,
      jobs_refused: refused.length,
      resubmits: stats.resubmits,
      kills: killsDone,
      sigterm_bad_exits: badExits.length,
      deliveries: recs.length,
      jobs_delivered: ids.length - notDelivered.length,
      duplicates,
      duplicate_first_arrival_max_ms_before_kill: dupMaxBeforeKill,
      duplicates_not_before_a_kill: dupNotNearKill,
      jobs_with_two_delivery_ids: jobsWithTwoDeliveryIds.length,
      lost: notDelivered.length,
      not_terminal: notTerminal.length,
      wrong_outcome: wrongOutcome.length,
      unverified_signatures: unverified,
      store_consistent: consistency.ok,
      seconds: Math.round((Date.now() - t0) / 1000),
    };
    process.stdout.write(
      `crash ${tag}: ${figures.jobs_accepted} jobs, ${figures.kills} ${sig} restarts, ${figures.deliveries} deliveries, ` +
        `${figures.duplicates} duplicates, ${figures.lost} lost\n`,
    );
    return { dupDetail, figures, notDelivered, notTerminal, wrongOutcome, refused, jobsWithTwoDeliveryIds, consistency, deliveredBody };
  }

  test(`SIGKILL at random moments (${P.kills}+ times) while ${P.jobs} jobs run: nothing accepted is lost`, { timeout: P.waitMs * 3 }, async () => {
    const r = await run('kill9', P.jobs, P.kills, 'SIGKILL');
    R.report('crash_sigkill', r.figures);
    assert.equal(r.refused.length, 0, `submits that never got an answer: ${JSON.stringify(r.refused.slice(0, 3))}`);
    assert.ok(r.figures.kills >= P.kills, `killed ${r.figures.kills} times`);
    assert.deepEqual(r.notDelivered.slice(0, 10), [], `${r.notDelivered.length} accepted job(s) never delivered`);
    assert.deepEqual(r.notTerminal.slice(0, 10), [], `${r.notTerminal.length} job(s) not terminal`);
    assert.deepEqual(r.wrongOutcome.slice(0, 10), [], `${r.wrongOutcome.length} job(s) ended otherwise than provsim was told`);
    assert.equal(r.figures.unverified_signatures, 0);
    assert.equal(r.deliveredBody, 0, 'every delivery carries the final status');
    assert.deepEqual(r.jobsWithTwoDeliveryIds.slice(0, 5), [], 'a job ends once: one delivery id per job');
    assert.ok(r.consistency.ok, r.consistency.problems.join('\n'));
  });

  test(`SIGTERM (${P.terms} restarts) while ${P.termJobs} jobs run: nothing lost, nothing duplicated`, { timeout: P.waitMs * 3 }, async () => {
    const r = await run('term', P.termJobs, P.terms, 'SIGTERM');
    R.report('crash_sigterm', r.figures);
    assert.equal(r.refused.length, 0, `submits that never got an answer: ${JSON.stringify(r.refused.slice(0, 3))}`);
    assert.deepEqual(r.notDelivered.slice(0, 10), [], `${r.notDelivered.length} accepted job(s) never delivered`);
    assert.deepEqual(r.notTerminal.slice(0, 10), [], `${r.notTerminal.length} job(s) not terminal`);
    assert.deepEqual(r.wrongOutcome.slice(0, 10), [], `${r.wrongOutcome.length} job(s) ended otherwise than provsim was told`);
    assert.equal(r.figures.sigterm_bad_exits, 0, 'every SIGTERM ends in exit 0 within the drain deadline');
    assert.equal(r.figures.duplicates, 0, 'SIGTERM duplicates no delivery');
    assert.deepEqual(r.jobsWithTwoDeliveryIds.slice(0, 5), []);
    assert.ok(r.consistency.ok, r.consistency.problems.join('\n'));
  });
});
