#!/usr/bin/env node
'use strict';
// Summarises a `perf record --call-graph dwarf` profile (bench/run --profile
// DIR writes them) in the terms bench/README.md reports: shares of all
// samples of the process.
//
//   node bench/perf-summary.js FILE.perf.data                 inclusive top 40 + self by library
//   node bench/perf-summary.js FILE.perf.data --children F... direct children of each frame F
//   node bench/perf-summary.js FILE.perf.data --under F       what runs below frame F (inclusive)
//
// Shares are of all samples in the file (one sample = 1/999 s of CPU).

const { spawnSync } = require('node:child_process');

process.stdout.on('error', (e) => process.exit(e.code === 'EPIPE' ? 0 : 1)); // `| head`

const args = process.argv.slice(2);
if (!args.length || args[0].startsWith('-')) {
  process.stderr.write('usage: node bench/perf-summary.js FILE.perf.data [--children FRAME...] [--under FRAME] [--top N]\n');
  process.exit(2);
}
const file = args[0];
let mode = 'top';
let frames = [];
let top = 40;
for (let i = 1; i < args.length; i++) {
  if (args[i] === '--children') mode = 'children';
  else if (args[i] === '--under') mode = 'under';
  else if (args[i] === '--top') top = Number(args[++i]);
  else frames.push(args[i]);
}

const r = spawnSync('perf', ['script', '-i', file, '-F', 'ip,sym,dso'], { maxBuffer: 1 << 30, encoding: 'utf8' });
if (r.status !== 0) {
  process.stderr.write(`perf script failed: ${r.stderr}\n`);
  process.exit(1);
}

// Each sample: [[symbol, library], ...] innermost first.
const stacks = [];
let cur = [];
for (const line of r.stdout.split('\n')) {
  if (!line.trim()) {
    if (cur.length) stacks.push(cur);
    cur = [];
    continue;
  }
  const m = /^\s+[0-9a-f]+\s+(.*?)\s+\((.*)\)$/.exec(line);
  if (m) cur.push([m[1].replace(/\+0x[0-9a-f]+$/, ''), m[2].split('/').pop()]);
}
if (cur.length) stacks.push(cur);
const N = stacks.length;
const pct = (n) => `${((100 * n) / N).toFixed(1).padStart(5)}%`;
const count = (m, k) => m.set(k, (m.get(k) || 0) + 1);
const sorted = (m) => [...m.entries()].sort((a, b) => b[1] - a[1]);

process.stdout.write(`${file}: ${N} samples\n`);
if (mode === 'top') {
  const incl = new Map();
  const lib = new Map();
  for (const st of stacks) {
    for (const s of new Set(st.map((f) => f[0]))) count(incl, s);
    count(lib, st[0][1]);
  }
  process.stdout.write('\ninclusive (frame and everything it calls):\n');
  for (const [s, n] of sorted(incl).slice(0, top)) process.stdout.write(`  ${pct(n)}  ${s}\n`);
  process.stdout.write('\nself time by library:\n');
  for (const [s, n] of sorted(lib).slice(0, 12)) process.stdout.write(`  ${pct(n)}  ${s}\n`);
} else if (mode === 'children') {
  for (const parent of frames) {
    const kids = new Map();
    let tot = 0;
    for (const st of stacks) {
      const i = st.findIndex((f) => f[0] === parent);
      if (i < 0) continue;
      tot++;
      count(kids, i > 0 ? st[i - 1][0] : '(self)');
    }
    process.stdout.write(`\n${parent}: ${pct(tot)} of samples; direct children:\n`);
    for (const [s, n] of sorted(kids).slice(0, 16)) process.stdout.write(`  ${pct(n)}  ${s}\n`);
  }
} else {
  for (const root of frames) {
    const incl = new Map();
    const lib = new Map();
    let tot = 0;
    for (const st of stacks) {
      const i = st.findIndex((f) => f[0] === root);
      if (i < 0) continue;
      tot++;
      for (const s of new Set(st.slice(0, i).map((f) => f[0]))) count(incl, s);
      count(lib, st[0][1]);
    }
    process.stdout.write(`\nunder ${root} (${pct(tot)} of samples):\n`);
    for (const [s, n] of sorted(incl).slice(0, top)) process.stdout.write(`  ${pct(n)}  ${s}\n`);
    process.stdout.write('  self time by library:\n');
    for (const [s, n] of sorted(lib).slice(0, 8)) process.stdout.write(`  ${pct(n)}  ${s}\n`);
  }
}
