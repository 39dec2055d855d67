'use strict';
// Processes for bench/run.js: the C helpers (ceiling, receiver, storegen,
// scriptcost), wrk, perf, and small readers of /proc. Everything that waits
// is bounded; every child is killed when the run ends (harness.js does that
// for what it spawns, and so does `children` here).

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const h = require('../../tests/e2e/lib/harness');

const WRK_DIR = path.join(__dirname, '..', 'wrk');

// Runs cmd to completion (bounded by timeoutMs, then SIGKILL). Resolves
// {code, stdout, stderr}.
function run(cmd, args, { timeoutMs = 60000, cwd, env } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env: env || process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`${cmd}: ${e.message}`));
    });
    child.on('exit', (code, sig) => {
      clearTimeout(timer);
      resolve({ code: code === null ? sig : code, stdout, stderr });
    });
  });
}

const children = new Set();
process.on('exit', () => {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch (e) {
      /* gone */
    }
  }
});

// A C helper that prints "NAME listening on URL" (bounded wait). Resolves
// {url, child, pid, log(), stop()}.
function startServer(bin, args, timeoutMs = 10000) {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let out = '';
    let done = false;
    const timer = setTimeout(() => finish(new Error(`${path.basename(bin)} not ready within ${timeoutMs} ms: ${out}`)), timeoutMs);
    const finish = (err, v) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) {
        child.kill('SIGKILL');
        reject(err);
      } else resolve(v);
    };
    const onData = (d) => {
      out = (out + d).slice(-20000);
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) finish(null, { url: m[1], child, pid: child.pid, log: () => out, stop: () => h.stopChild(child) });
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', (e) => finish(e));
    child.on('exit', (code) => {
      children.delete(child);
      finish(new Error(`${path.basename(bin)} exited (${code}) before it was ready: ${out}`));
    });
  });
}

// extra: e.g. ['--suspend'] (answers held for one loop iteration, as genrelay holds them for its commit).
async function startCeiling(build, extra = []) {
  return startServer(path.join(build, 'bench', 'bench_ceiling'), ['--listen', '127.0.0.1:0', ...extra]);
}

// The fast receiver / fal stub. countFile: where it keeps its delivered count.
async function startReceiver(build, { secret, countFile } = {}) {
  const args = ['--listen', '127.0.0.1:0', '--secret', secret];
  if (countFile) args.push('--count-file', countFile);
  const s = await startServer(path.join(build, 'bench', 'bench_receiver'), args);
  s.stats = async () => (await h.request(s.url + '/_stats', { timeoutMs: 10000 })).body;
  s.reset = async () => h.request(s.url + '/_reset', { method: 'POST', body: '' });
  // [{job, ns (BigInt), verified}] of every recorded delivery.
  s.arrivals = async () => {
    const r = await h.request(s.url + '/_arrivals', { timeoutMs: 60000 });
    const out = [];
    for (const line of r.text.split('\n')) {
      if (!line) continue;
      const [job, ns, v] = line.split(' ');
      out.push({ job, ns: BigInt(ns), verified: v === '1' });
    }
    return out;
  };
  return s;
}

// wrk with one of the scripts in bench/wrk. Resolves the WRKJSON object of
// its done() plus {raw}. Throws when wrk fails or prints no result.
async function wrk({ url, script, args = [], threads = 1, connections = 32, seconds = 5, timeoutS = 5 }) {
  seconds = Math.max(1, Math.round(seconds)); // wrk takes whole seconds
  const argv = [`-t${threads}`, `-c${connections}`, `-d${seconds}s`, `--timeout`, `${timeoutS}s`, '-s', path.join(WRK_DIR, script), url];
  if (args.length) argv.push('--', ...args.map(String));
  const r = await run('wrk', argv, { timeoutMs: (seconds + 30) * 1000 });
  const m = /^WRKJSON (.*)$/m.exec(r.stdout);
  if (r.code !== 0 || !m) throw new Error(`wrk ${argv.join(' ')} failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  const out = JSON.parse(m[1]);
  out.raw = r.stdout;
  out.command = `wrk ${argv.join(' ')}`;
  return out;
}

// Resident memory of pid in MB: {rss, hwm}.
function memoryMb(pid) {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number((new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s) || [])[1] || NaN);
  return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
}

// CPU seconds (user + system) used so far by pid.
function cpuSeconds(pid) {
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch (e) {
    return NaN;
  }
}

// perf record (DWARF call graphs) of pid for seconds into file (when perf is there and
// allowed); resolves the file or null.
async function perfRecord(pid, seconds, file) {
  const r = await run('perf', ['record', '-F', '999', '--call-graph', 'dwarf,32768', '-p', String(pid), '-o', file, '--', 'sleep', String(seconds)], {
    timeoutMs: (seconds + 30) * 1000,
  }).catch(() => null);
  return r && r.code === 0 && fs.existsSync(file) ? file : null;
}

// The Prometheus counters of a genrelay as {name: number}.
async function metrics(url) {
  const r = await h.request(url + '/metrics', { timeoutMs: 10000, headers: { authorization: `Bearer ${h.METRICS_TOKEN}` } });
  const out = {};
  for (const line of r.text.split('\n')) {
    const m = /^([a-z_]+) ([0-9.e+-]+)$/.exec(line);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

function machine() {
  const os = require('node:os');
  let cpu = 'unknown';
  let mhz = null;
  try {
    const info = fs.readFileSync('/proc/cpuinfo', 'utf8');
    cpu = (/^model name\s*:\s*(.*)$/m.exec(info) || [])[1] || cpu;
    mhz = Number((/^cpu MHz\s*:\s*(.*)$/m.exec(info) || [])[1]) || null;
  } catch (e) {
    /* not Linux */
  }
  return {
    nproc: os.availableParallelism ? os.availableParallelism() : os.cpus().length,
    cpu,
    cpu_mhz: mhz,
    memory_gb: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    kernel: os.release(),
    node: process.version,
    loadavg_at_start: os.loadavg().map((x) => Math.round(x * 100) / 100),
  };
}

// A provider that accepts connections and never reads or answers.
async function blackhole() {
  const net = require('node:net');
  const socks = new Set();
  const srv = net.createServer((sock) => {
    sock.pause();
    socks.add(sock);
    sock.on('close', () => socks.delete(sock));
    sock.on('error', () => {});
  });
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${srv.address().port}`,
    stop: () => {
      for (const x of socks) x.destroy();
      return new Promise((resolve) => srv.close(() => resolve()));
    },
  };
}

module.exports = { blackhole, run, startServer, startCeiling, startReceiver, wrk, memoryMb, cpuSeconds, perfRecord, metrics, machine };
