'use strict';
// A private copy of scripts/ for tests that rewrite scripts under a running
// genrelay (hooks, reload, sandbox), and helpers around it.
//
//   const sd = require('./lib/scriptdir');
//   const dir = sd.copyScripts({ 'hooks/live.lua': '...' }); // before the stack starts
//   const stack = h.useStack({ config: { scripts: dir } });
//   sd.write(dir, 'hooks/live.lua', text);          // in place (truncate + write)
//   sd.write(dir, 'hooks/live.lua', text, { atomic: true }); // temp file + rename
//   sd.version(text)                                 // what GET /v1/scripts shows

const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { after } = require('node:test');
const h = require('./harness');

// Copies SRC/scripts to a fresh temp dir, then writes `extra` files
// ({"hooks/x.lua": text}). The dir is removed after the file's tests
// (unless GENRELAY_E2E_KEEP is set). Returns the dir.
function copyScripts(extra = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'genrelay-scripts-'));
  fs.cpSync(path.join(h.SRC, 'scripts'), dir, { recursive: true });
  for (const [rel, text] of Object.entries(extra)) write(dir, rel, text);
  after(() => {
    if (!process.env.GENRELAY_E2E_KEEP) fs.rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

// Writes dir/rel. In place by default (what most editors and `cp` do);
// atomic: a temp file in the same directory renamed over it (what others do).
// The temp name is not NAME.lua, so genrelay never loads it as a script.
function write(dir, rel, text, { atomic = false } = {}) {
  const file = path.join(dir, rel);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  if (!atomic) {
    fs.writeFileSync(file, text);
    return file;
  }
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
  return file;
}

function read(dir, rel) {
  return fs.readFileSync(path.join(dir, rel), 'utf8');
}

function remove(dir, rel) {
  fs.rmSync(path.join(dir, rel), { force: true });
}

// The version genrelay reports for a script with this source: the first 12
// hex characters of its SHA-256.
function version(text) {
  return crypto.createHash('sha256').update(text).digest('hex').slice(0, 12);
}

// The 1-based line of the first line of text containing marker.
function lineOf(text, marker) {
  const i = text.split('\n').findIndex((l) => l.includes(marker));
  if (i < 0) throw new Error(`marker ${marker} not found`);
  return i + 1;
}

// GET /v1/scripts as {"hooks/NAME": {name, kind, version, loaded_at, last_error}}.
async function scripts(api) {
  const r = await api('GET', '/v1/scripts');
  if (r.status !== 200) throw new Error(`GET /v1/scripts: ${r.status} ${r.text}`);
  const out = {};
  for (const s of r.body.data) out[`${{ hook: 'hooks', front: 'fronts' }[s.kind] || 'providers'}/${s.name}`] = s;
  return out;
}

// n answers of GET /v1/scripts, each on a new connection, so that with
// several workers (SO_REUSEPORT) every worker is very likely asked.
async function scriptsViews(api, n = 12) {
  const views = [];
  for (let i = 0; i < n; i++) views.push(await scripts(api));
  return views;
}

module.exports = { copyScripts, write, read, remove, version, lineOf, scripts, scriptsViews };
