#!/usr/bin/env node
// Every page of the web app at its default state, in Debian's chromium: the server time and size of each request
// the page makes, read from the server's own access log (docs/api.md). A measurement, not a test.
//
//   node tools/widget_latency.mjs [--rounds 5] [--binary build/blocklab] [--json]
//
// Starts `blocklab serve --port 0` on a scratch store with the web app (scripts/web.sh build first), opens each
// page fresh `--rounds` times (the first load of a page also pays the model's first use), waits until its
// requests have settled, and prints per page and API path: requests, server ms (minimum, median, maximum over
// the rounds after the first) and response bytes. The target (issue 16): every widget request at the default
// state within 16 ms of server time, one frame.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(path.join(repo, 'web', 'package.json'));
const { chromium } = require('playwright-core');

const args = process.argv.slice(2);
const flag = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const rounds = Number(flag('--rounds', '5'));
const binary = flag('--binary', path.join(repo, 'build', 'blocklab'));
const asJson = args.includes('--json');
if (!Number.isInteger(rounds) || rounds < 2) throw new Error(`--rounds: expected an integer >= 2, got ${flag('--rounds')}`);
if (!existsSync(binary)) throw new Error(`${binary}: no blocklab binary (scripts/build.sh)`);
if (!existsSync(path.join(repo, 'web', 'dist', 'index.html'))) throw new Error('web/dist: not built (scripts/web.sh build)');

const PAGES = ['other-half', 'ffn', 'layernorm', 'gradflow', 'addnorm', 'train'];
const dir = mkdtempSync(path.join(os.tmpdir(), 'blocklab-latency-'));
const server = spawn(binary, ['serve', '--port', '0', '--models', path.join(repo, 'models'), '--web',
  path.join(repo, 'web', 'dist'), '--db', path.join(dir, 'store.db')], { stdio: ['ignore', 'ignore', 'pipe'] });
const log = [];
let stderr = '';
const base = await new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error(`blocklab serve did not start: ${stderr}`)), 20000);
  server.stderr.setEncoding('utf8');
  server.stderr.on('data', (chunk) => {
    stderr += chunk;
    let nl;
    while ((nl = stderr.indexOf('\n')) >= 0) {
      const line = stderr.slice(0, nl);
      stderr = stderr.slice(nl + 1);
      const m = /blocklab serve: (http:\/\/127\.0\.0\.1:\d+)\//.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
      if (line.startsWith('{')) {
        try {
          log.push(JSON.parse(line));
        } catch {
          /* not an access-log line */
        }
      }
    }
  });
  server.on('exit', (code) => reject(new Error(`blocklab serve exited (${code}): ${stderr}`)));
});

const browser = await chromium.launch({
  executablePath: process.env.BLOCKLAB_CHROMIUM ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run'],
});
const results = {};
try {
  for (const page of PAGES) {
    for (let round = 0; round < rounds; ++round) {
      const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      const tab = await context.newPage();
      const from = log.length;
      await tab.goto(`${base}/?page=${page}`, { waitUntil: 'networkidle' });
      await tab.waitForTimeout(300);  // debounced requests (the pages wait 200 ms after a change)
      await context.close();
      await new Promise((r) => setTimeout(r, 50));  // the last access-log lines
      for (const e of log.slice(from)) {
        if (!String(e.path).startsWith('/api/') || round === 0) continue;
        const key = `${page} ${e.method} ${e.path}`;
        (results[key] ??= { page, method: e.method, path: e.path, ms: [], bytes: [], status: new Set() });
        results[key].ms.push(e.ms);
        results[key].bytes.push(e.bytes);
        results[key].status.add(e.status);
      }
    }
  }
} finally {
  await browser.close();
  server.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
}

const rows = Object.values(results).map((r) => {
  const ms = [...r.ms].sort((a, b) => a - b);
  return { page: r.page, request: `${r.method} ${r.path}`, status: [...r.status].join(','), requests: ms.length,
    ms_min: ms[0], ms_median: ms[Math.floor(ms.length / 2)], ms_max: ms[ms.length - 1], bytes_max: Math.max(...r.bytes) };
});
if (asJson) {
  console.log(JSON.stringify({ rounds, cpu: os.cpus()[0]?.model, rows }, null, 2));
} else {
  console.log(`CPU: ${os.cpus()[0]?.model}, ${os.cpus().length} cores; ${rounds - 1} loads per page after the first`);
  console.log('| page | request | status | requests | server ms min | median | max | bytes (max) |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of rows)
    console.log(`| ${r.page} | ${r.request} | ${r.status} | ${r.requests} | ${r.ms_min} | ${r.ms_median} | ${r.ms_max} | ${r.bytes_max} |`);
}
