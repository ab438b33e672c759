#!/usr/bin/env node
// Every page of the web app at its default state, in Debian's chromium: the server time and size of each request
// the page makes, read from the server's own access log (docs/api.md). A measurement, not a test.
//
//   node tools/widget_latency.mjs [--rounds 5] [--binary build/blocklab] [--json]
//
// Starts `blocklab serve --port 0` on a scratch store with the web app (scripts/web.sh build first), opens each
// page once, records the API requests it makes at its default state (method, path, body), closes the browser,
// then replays each page's requests together, as the page sends them, `--rounds` times (the first round also
// pays each model's first use and is left out), so that the browser's own work on this machine's cores does not
// count as server time. Prints per page and request: server ms (minimum, median, maximum) and response bytes,
// from the server's access log. The target (issue 16): every widget request at the default state within 16 ms
// of server time, one frame.
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
const recorded = {};  // page -> [{method, path, body}]
const results = {};
try {
  for (const page of PAGES) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const tab = await context.newPage();
    const asked = [];
    tab.on('request', (r) => {
      const url = new URL(r.url());
      if (url.pathname.startsWith('/api/') && r.resourceType() !== 'eventsource')
        asked.push({ method: r.method(), path: url.pathname + url.search, body: r.postData() ?? undefined });
    });
    await tab.goto(`${base}/?page=${page}`, { waitUntil: 'networkidle' });
    await tab.waitForTimeout(300);  // debounced requests (the pages wait 200 ms after a change)
    await context.close();
    recorded[page] = asked.filter((q) => q.path !== '/api/events');
  }
} finally {
  await browser.close();
}
try {
  for (const page of PAGES) {
    for (let round = 0; round < rounds; ++round) {
      const from = log.length;
      await Promise.all(recorded[page].map((q) => fetch(base + q.path, {
        method: q.method, body: q.body, headers: q.body ? { 'Content-Type': 'application/json' } : {},
      }).then((r) => r.arrayBuffer())));
      await new Promise((r) => setTimeout(r, 30));  // the last access-log lines
      if (round === 0) continue;
      for (const e of log.slice(from)) {
        const key = `${page} ${e.method} ${e.path}`;
        (results[key] ??= { page, method: e.method, path: e.path, ms: [], bytes: [], status: new Set() });
        results[key].ms.push(e.ms);
        results[key].bytes.push(e.bytes);
        results[key].status.add(e.status);
      }
    }
  }
} finally {
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
  console.log(`CPU: ${os.cpus()[0]?.model}, ${os.cpus().length} cores; each page's requests replayed together ${rounds - 1} times after a first round`);
  console.log('| page | request | status | requests | server ms min | median | max | bytes (max) |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of rows)
    console.log(`| ${r.page} | ${r.request} | ${r.status} | ${r.requests} | ${r.ms_min} | ${r.ms_median} | ${r.ms_max} | ${r.bytes_max} |`);
}
