'use strict';
// A real PostgreSQL for the tests: initdb into a temporary directory and
// pg_ctl on a free loopback port, as an unprivileged user (initdb refuses
// root, and CI runs as root: the user genrelay-test is created when missing),
// torn down when the test process exits (also on failure).
//
//   const pg = require('./lib/pg');
//   const server = await pg.start();          // one per test file is plenty
//   const url = await server.createDb('x');   // postgresql://postgres@127.0.0.1:PORT/x
//   await server.stop(); await server.start(); // an outage
//   await server.destroy();
//
// The harness uses it when GENRELAY_TEST_STORE=pg: one server per test file,
// one database per genrelay store directory (pg.shared(), dbForDir()).

const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const PG_BIN = process.env.GENRELAY_PG_BIN || findBin();
const TEST_USER = 'genrelay-test';

function findBin() {
  for (const v of ['17', '16', '15', '14', '13']) {
    const d = `/usr/lib/postgresql/${v}/bin`;
    if (fs.existsSync(path.join(d, 'initdb'))) return d;
  }
  return '/usr/lib/postgresql/15/bin';
}

function available() {
  return fs.existsSync(path.join(PG_BIN, 'initdb')) && fs.existsSync(path.join(PG_BIN, 'pg_ctl'));
}

// uid/gid to run the server as: ourselves, or genrelay-test when root.
function serverIdentity() {
  if (process.getuid() !== 0) return {};
  let id = spawnSync('id', ['-u', TEST_USER], { encoding: 'utf8' });
  if (id.status !== 0) {
    const r = spawnSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', TEST_USER], { encoding: 'utf8' });
    id = spawnSync('id', ['-u', TEST_USER], { encoding: 'utf8' });
    if (id.status !== 0) throw new Error(`cannot create the user ${TEST_USER} for PostgreSQL: ${r.stderr}`);
  }
  const gid = spawnSync('id', ['-g', TEST_USER], { encoding: 'utf8' });
  return { uid: Number(id.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function run(cmd, args, opts, timeoutMs = 60000) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, sig) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${path.basename(cmd)} ${args.join(' ')} failed (${code ?? sig}):\n${out.slice(-3000)}`));
    });
  });
}

const live = new Set();
process.on('exit', () => {
  for (const s of live) s.destroySync();
});
// A test process ended by a signal (a ctest timeout) still stops its
// servers: installed with the first server.
let signalsHooked = false;
function hookSignals() {
  if (signalsHooked) return;
  signalsHooked = true;
  for (const sig of ['SIGTERM', 'SIGINT']) {
    process.once(sig, () => {
      for (const s of live) s.destroySync();
      process.kill(process.pid, sig);
    });
  }
}

// Starts a fresh server. Resolves {port, dir, url(db), createDb(name), stop(), start(), destroy()}.
async function start({ settings = {} } = {}) {
  if (!available()) throw new Error(`PostgreSQL binaries not found in ${PG_BIN} (tools/install-deps installs postgresql)`);
  const ident = serverIdentity();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'genrelay-pg-'));
  const data = path.join(dir, 'data');
  const sock = path.join(dir, 'sock');
  fs.mkdirSync(sock);
  if (ident.uid !== undefined) {
    fs.chownSync(dir, ident.uid, ident.gid);
    fs.chownSync(sock, ident.uid, ident.gid);
  }
  const opts = { ...ident, cwd: dir, env: { ...process.env, LC_ALL: 'C', LANG: 'C' } };
  await run(path.join(PG_BIN, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync', '--no-instructions'], opts);
  const port = await freePort();
  const conf = {
    listen_addresses: "'127.0.0.1'",
    port: String(port),
    unix_socket_directories: `'${sock}'`,
    fsync: 'off',
    synchronous_commit: 'on',
    full_page_writes: 'off',
    max_connections: '200',
    shared_buffers: "'64MB'",
    log_min_messages: 'warning',
    ...settings,
  };
  fs.appendFileSync(path.join(data, 'postgresql.conf'), Object.entries(conf).map(([k, v]) => `${k} = ${v}\n`).join(''));
  const logFile = path.join(dir, 'postgres.log');
  const server = {
    port,
    dir,
    running: false,
    url: (db = 'postgres') => `postgresql://postgres@127.0.0.1:${port}/${db}`,
    log: () => {
      try {
        return fs.readFileSync(logFile, 'utf8');
      } catch (e) {
        return '';
      }
    },
    async start() {
      await run(path.join(PG_BIN, 'pg_ctl'), ['-D', data, '-l', logFile, '-w', '-t', '60', 'start'], opts, 90000);
      server.running = true;
    },
    // mode: fast (clients are disconnected) or immediate.
    async stop(mode = 'fast') {
      if (!server.running) return;
      await run(path.join(PG_BIN, 'pg_ctl'), ['-D', data, '-m', mode, '-w', '-t', '60', 'stop'], opts, 90000);
      server.running = false;
    },
    // Runs SQL through psql; resolves its output (unaligned, tuples only).
    async sql(text, db = 'postgres') {
      return run('psql', ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', db, '-c', text], { env: { ...process.env, PGCONNECT_TIMEOUT: '10' } });
    },
    async createDb(name) {
      await server.sql(`CREATE DATABASE "${name}"`);
      return server.url(name);
    },
    destroySync() {
      if (server.running) {
        spawnSync(path.join(PG_BIN, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', '-t', '30', 'stop'], { ...opts, stdio: 'ignore' });
        server.running = false;
      }
      if (!process.env.GENRELAY_E2E_KEEP) fs.rmSync(dir, { recursive: true, force: true });
      live.delete(server);
    },
    async destroy() {
      try {
        await server.stop('immediate');
      } catch (e) {
        /* fall through to the synchronous path */
      }
      server.destroySync();
    },
  };
  live.add(server);
  hookSignals();
  try {
    await server.start();
  } catch (e) {
    const log = server.log();
    server.destroySync();
    throw new Error(`${e.message}\n--- postgres.log ---\n${log.slice(-3000)}`);
  }
  return server;
}

// The test file's shared server (started on first use, destroyed at exit).
// GENRELAY_TEST_PG_RTT_MS=N puts tools/delayproxy.js (N ms of added round
// trip) between genrelay and it: dbForDir's URLs then name the proxy.
let sharedP = null;
function shared() {
  if (!sharedP) sharedP = start().then(async (server) => {
    const rtt = Number(process.env.GENRELAY_TEST_PG_RTT_MS || 0);
    server.clientPort = rtt > 0 ? await startDelayProxy(server.port, rtt) : server.port;
    return server;
  });
  return sharedP;
}

function startDelayProxy(port, rtt) {
  const proxy = path.resolve(__dirname, '..', '..', '..', 'tools', 'delayproxy.js');
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [proxy, '--listen', '127.0.0.1:0', '--to', `127.0.0.1:${port}`, '--rtt-ms', String(rtt)], { stdio: ['ignore', 'pipe', 'inherit'] });
    process.on('exit', () => c.kill('SIGKILL'));
    let out = '';
    c.stdout.on('data', (d) => {
      out += d;
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    c.on('exit', (code) => reject(new Error(`delayproxy exited (${code})`)));
  });
}

// One database per genrelay store directory, created on first use: a
// genrelay restarted on the same dir finds its store again.
const dbs = new Map();
let dbSeq = 0;
async function dbForDir(dir) {
  if (dbs.has(dir)) return dbs.get(dir);
  const server = await shared();
  const name = `gr_${process.pid}_${++dbSeq}`;
  const url = (await server.createDb(name)).replace(`:${server.port}/`, `:${server.clientPort}/`);
  dbs.set(dir, url);
  return url;
}

// Whether this run uses PostgreSQL for genrelay's store.
function enabled() {
  return process.env.GENRELAY_TEST_STORE === 'pg';
}

module.exports = { PG_BIN, available, start, shared, dbForDir, enabled };
